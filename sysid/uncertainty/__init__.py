"""Uncertainty of a fit: Laplace curvature, parameter tables, bands on trajectories.

Owns the Gauss-Newton curvature at the optimum and what follows from it: standard errors,
identifiability, :func:`parameter_table`, :func:`parameter_correlation` and the bands that
:meth:`~sysid.FitResult.impute` and :meth:`~sysid.FitResult.forecast` add. Its functions
take a result (anything with ``_problem``, ``options``, ``parameters``) and never import
:mod:`sysid.results`.

May import: :mod:`sysid.errors`, :mod:`sysid.runtime`, :mod:`sysid.model`,
:mod:`sysid.solve`, :mod:`sysid.problem`.
"""

from .bands import add_bands
from .laplace import gauss_newton, laplace
from .tables import parameter_correlation, parameter_table

__all__ = ["add_bands", "gauss_newton", "laplace", "parameter_correlation",
           "parameter_table"]
