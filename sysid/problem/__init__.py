"""The fitting problem: model + data -> a differentiable objective.

Owns the options and status of a fit (:mod:`~sysid.problem.options`), the measurement
noise models (:mod:`~sysid.problem.noise`), the :class:`Problem` itself (units and the
loss; :mod:`~sysid.problem.problem`), its time grids and shooting windows
(:mod:`~sysid.problem.segments`), its initial guesses from the data
(:mod:`~sysid.problem.starts`), the weighted residuals with their Jacobian
(:mod:`~sysid.problem.jacobian`) and the device a problem trains on
(:mod:`~sysid.problem.placement`).

May import: :mod:`sysid.errors`, :mod:`sysid.runtime`, :mod:`sysid.model`,
:mod:`sysid.data`, :mod:`sysid.solve`.
"""

from .options import FitOptions, FitStatus
from .problem import Problem, build_problem

__all__ = ["FitOptions", "FitStatus", "Problem", "build_problem"]
