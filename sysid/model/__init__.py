"""The model a scientist writes, and its torch form.

Owns the model specification (:class:`HybridODE`, :class:`MLP`, the time symbol ``t``;
:mod:`~sysid.model.hybrid`), the functions an equation may use
(:mod:`~sysid.model.functions`), the safe text <-> SymPy parser
(:mod:`~sysid.model.parser`), a model as plain data (:mod:`~sysid.model.spec`), the
SymPy -> torch compiler (:mod:`~sysid.model.compiler`, with its passes in
:mod:`~sysid.model.translate` and :mod:`~sysid.model.optimise` and the torch operation
tables in :mod:`~sysid.model.ops`), the parameter transforms that
honour SymPy assumptions (:mod:`~sysid.model.parameters`), the residual network
(:mod:`~sysid.model.residual`) and the hybrid vector field as a torch module
(:mod:`~sysid.model.field`); fields over space by the method of lines
(:class:`HybridPDE` in :mod:`~sysid.model.pde`, its grid and finite differences in
:mod:`~sysid.model.lattice`, its torch form and local residual in
:mod:`~sysid.model.pde_field`).

May import: :mod:`sysid.errors`, :mod:`sysid.runtime`.
"""

from .functions import SUPPORTED_FUNCTIONS
from .hybrid import MLP, HybridODE, t
from .pde import HybridPDE

__all__ = ["HybridODE", "HybridPDE", "MLP", "t", "SUPPORTED_FUNCTIONS"]
