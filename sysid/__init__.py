"""sysid: scientific system identification with known physics and a neural residual.

Write the physics you know in SymPy, let a neural network learn the rest, fit both to
noisy, partial, irregular measurements in an ``xarray.Dataset``, and get back
parameters, every state imputed, forecasts and equations.
"""

from . import datasets, errors
from ._functions import SUPPORTED_FUNCTIONS
from ._io import load
from ._model import MLP, HybridODE, t
from ._options import FitOptions, FitStatus
from ._result import FitResult
from ._scale import Ensemble, FitCollection, fit_ensemble, fit_many, sweep
from ._symbolic import SymbolicSummary
from ._train import fit

__version__ = "0.1.0"

__all__ = ["HybridODE", "MLP", "fit", "FitResult", "FitOptions", "FitStatus", "load",
           "SymbolicSummary", "datasets", "errors", "t", "__version__",
           "fit_many", "sweep", "fit_ensemble", "FitCollection", "Ensemble",
           "SUPPORTED_FUNCTIONS"]

_LAZY_MODULES = ("cli",)     # imported on first access: ``sysid.cli.main([...])``


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")   # also sets sysid.<name>
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_MODULES))
