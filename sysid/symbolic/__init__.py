"""Symbolic distillation: the neural residual as sparse equations, selected on the data.

Owns the candidate libraries, the sparse regressions (pysindy, in
:mod:`~sysid.symbolic.sparse_regression`), the search over supports with its refits and
EBIC selection, and :class:`SymbolicSummary`. :func:`summarize` takes a result and the
function that refits a candidate model (``fit_from``), so this room never imports
:mod:`sysid.results` or :mod:`sysid.training`.

May import: :mod:`sysid.errors`, :mod:`sysid.runtime`, :mod:`sysid.model`,
:mod:`sysid.problem`, :mod:`sysid.uncertainty`.
"""

from .distill import summarize
from .summary import SymbolicSummary

__all__ = ["SymbolicSummary", "summarize"]
