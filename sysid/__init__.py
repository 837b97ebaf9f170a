"""sysid: scientific system identification with known physics and a neural residual.

Write the physics you know in SymPy, let a neural network learn the rest, fit both to
noisy, partial, irregular measurements in an ``xarray.Dataset``, and get back
parameters, every state imputed, forecasts and equations.

The package's rooms, bottom to top (each imports only from the ones below it; see
``docs/architecture.md``): :mod:`sysid.errors` and :mod:`sysid.runtime`;
:mod:`sysid.model`; :mod:`sysid.data` and :mod:`sysid.solve`; :mod:`sysid.problem`;
:mod:`sysid.training` and :mod:`sysid.uncertainty`; :mod:`sysid.symbolic`;
:mod:`sysid.results`; :mod:`sysid.many`; :mod:`sysid.cli`. :mod:`sysid.datasets` stands
beside them and needs only :mod:`sysid.errors`.
"""

from . import datasets, errors
from .many import Ensemble, FitCollection, fit_ensemble, fit_many, sweep
from .model import MLP, SUPPORTED_FUNCTIONS, HybridODE, HybridPDE, t
from .problem import FitOptions, FitStatus
from .results import FieldResult, FitResult, compare, fit, load
from .symbolic import SymbolicSummary

__version__ = "0.1.0"

__all__ = ["HybridODE", "HybridPDE", "MLP", "fit", "FitResult", "FieldResult", "FitOptions", "FitStatus", "load",
           "SymbolicSummary", "datasets", "errors", "t", "__version__",
           "fit_many", "sweep", "fit_ensemble", "FitCollection", "Ensemble",
           "SUPPORTED_FUNCTIONS", "compare"]

_LAZY_MODULES = ("cli",)     # imported on first access: ``sysid.cli.main([...])``


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")   # also sets sysid.<name>
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_MODULES))
