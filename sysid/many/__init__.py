"""Many fits at once: ``fit_many``, ``sweep`` and ``fit_ensemble``, serially or on Dask.

Owns collections of independent fits (one dataset, option set or seed each), what
travels to and from Dask workers (plain data: model specs, netCDF bytes, tensors), and
ensembles of seeds or data subsets with their spread.

May import: every room below it, up to :mod:`sysid.results`.
"""

from .collection import FitCollection
from .ensemble import Ensemble, fit_ensemble
from .fits import fit_many, sweep

__all__ = ["Ensemble", "FitCollection", "fit_ensemble", "fit_many", "sweep"]
