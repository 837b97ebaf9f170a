"""The torch operations that compiled SymPy programs run, by SymPy node type, and the
helpers on operands (a register index or a constant) that the compiler's passes share.
"""

from __future__ import annotations

import operator
from typing import Callable, Sequence

import sympy as sp
import torch

from .functions import FUNCTIONS


def _recip(fn: Callable) -> Callable:
    return lambda a: torch.reciprocal(fn(a))


# One-argument functions of sysid.model.functions.FUNCTIONS (the list of what equations may
# use) and their torch counterparts; the others have a _c_<Name> method or, like sqrt
# and cbrt, make a power.
_UNARY_TORCH: dict[str, Callable] = {
    "exp": torch.exp, "log": torch.log,
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan,
    "cot": _recip(torch.tan), "sec": _recip(torch.cos), "csc": _recip(torch.sin),
    "asin": torch.asin, "acos": torch.acos, "atan": torch.atan,
    "sinh": torch.sinh, "cosh": torch.cosh, "tanh": torch.tanh,
    "asinh": torch.asinh, "acosh": torch.acosh, "atanh": torch.atanh,
    "Abs": torch.abs, "sign": torch.sign, "floor": torch.floor,
    "ceiling": torch.ceil, "erf": torch.special.erf, "erfc": torch.special.erfc,
}
_UNARY: dict[type, Callable] = {FUNCTIONS[name].node: fn for name, fn in _UNARY_TORCH.items()}
_COMPARE = {sp.StrictLessThan: torch.lt, sp.LessThan: torch.le,
            sp.StrictGreaterThan: torch.gt, sp.GreaterThan: torch.ge,
            sp.Equality: torch.eq, sp.Unequality: torch.ne}
# Arithmetic.  The torch functions run the same kernels as Python's operators on
# tensors, with the same results, but parse their arguments faster (about 0.1 us
# a call); for negation the operator (Tensor.__neg__) is the faster one.  The
# torch functions take no constant first argument: _emit turns ``c - x``,
# ``c / x``, ``c + x``, ``c * x``, ``c < x`` etc. into what Python's reflected
# operators compute (_MIRROR: the comparison or operation with swapped operands).
_ADD, _SUB, _MUL, _DIV, _RSUB, _NEG = torch.add, torch.sub, torch.mul, torch.div, torch.rsub, \
    operator.neg
_MIRROR = {torch.lt: torch.gt, torch.le: torch.ge, torch.gt: torch.lt, torch.ge: torch.le,
           torch.eq: torch.eq, torch.ne: torch.ne, _ADD: _ADD, _MUL: _MUL}
_LOGIC = {sp.And: torch.logical_and, sp.Or: torch.logical_or, sp.Xor: torch.logical_xor}


def _clip(obj, n: int = 200) -> str:
    text = str(obj)
    return text if len(text) <= n else text[: n - 3] + "..."


def _is_slot(v) -> bool:
    return type(v) is int


def _broadcast_shape(values: Sequence[torch.Tensor]) -> torch.Size:
    """Broadcast shape of ``values``; fast when shapes are equal or ``()``."""
    shape = values[0].shape if values else torch.Size()
    for v in values[1:]:
        s = v.shape
        if s != shape and s:
            shape = s if not shape else torch.broadcast_shapes(shape, s)
    return shape
