"""The functions an equation may use: one list for the model, the text parser and the compiler.

:data:`FUNCTIONS` is the single source of truth.  :class:`sysid.HybridODE` checks its
equations against it when it is constructed (:func:`check_expression`), the text parser
(:mod:`sysid.model.parser`) accepts exactly these names (plus the alias ``abs``), and the torch
compiler (:mod:`sysid.model.compiler`) has a counterpart for each (the tests check all three).

This module does not import torch.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.functions.elementary.piecewise import ExprCondPair
from sympy.logic.boolalg import BooleanAtom

from ..errors import ExpressionError, UnsupportedExpressionError

__all__ = ["FUNCTIONS", "SUPPORTED_FUNCTIONS", "TEXT_ALIASES", "RELATIONALS", "LOGIC",
           "OPERATORS_TEXT", "check_expression", "unsupported_message"]


class Function(NamedTuple):
    """One supported function: how text builds it and what the SymPy tree holds."""

    build: Callable          # the SymPy callable, e.g. sympy.sin
    min_args: int
    max_args: int | None     # None: any number
    node: type | None        # class of the node in a SymPy tree; None: it makes a power


def _one(f) -> Function:
    return Function(f, 1, 1, f)


#: name (as SymPy writes it) -> :class:`Function`; the order is the one error messages show.
FUNCTIONS: dict[str, Function] = {
    "exp": _one(sp.exp), "log": Function(sp.log, 1, 2, sp.log),   # log(x, b) = log(x)/log(b)
    **{name: _one(getattr(sp, name)) for name in (
        "sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan",
        "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
        "Abs", "sign", "floor", "ceiling", "erf", "erfc")},
    "sqrt": Function(sp.sqrt, 1, 1, None), "cbrt": Function(sp.cbrt, 1, 1, None),
    "atan2": Function(sp.atan2, 2, 2, sp.atan2),
    "Heaviside": Function(sp.Heaviside, 1, 2, sp.Heaviside),
    "Min": Function(sp.Min, 1, None, sp.Min), "Max": Function(sp.Max, 1, None, sp.Max),
    "Piecewise": Function(sp.Piecewise, 1, None, sp.Piecewise),
}
#: The names of :data:`FUNCTIONS`; public as ``sysid.SUPPORTED_FUNCTIONS``.
SUPPORTED_FUNCTIONS: tuple[str, ...] = tuple(FUNCTIONS)
#: Extra names the text parser accepts: alias -> name in :data:`FUNCTIONS`.
TEXT_ALIASES: dict[str, str] = {"abs": "Abs"}

#: Comparisons and logic allowed in Piecewise conditions.
RELATIONALS: tuple[type, ...] = (sp.StrictLessThan, sp.LessThan, sp.StrictGreaterThan,
                                 sp.GreaterThan, sp.Equality, sp.Unequality)
LOGIC: tuple[type, ...] = (sp.And, sp.Or, sp.Xor, sp.Not)
OPERATORS_TEXT = ("plus + - * / ** and Piecewise conditions (<, <=, >, >=, Eq, Ne, And, Or, "
                  "Not)")

_ALLOWED_NODES: tuple[type, ...] = (
    sp.Symbol, sp.Number, sp.NumberSymbol, BooleanAtom, sp.Add, sp.Mul, sp.Pow, ExprCondPair,
    *RELATIONALS, *LOGIC, *(f.node for f in FUNCTIONS.values() if f.node is not None))


def _clip(obj, n: int = 200) -> str:
    text = str(obj)
    return text if len(text) <= n else text[: n - 3] + "..."


def _describe(node) -> str:
    name = getattr(type(node), "__name__", str(type(node)))
    if isinstance(node, AppliedUndef):
        return (f"the undefined function '{name}' (a sympy.Function('{name}') without a "
                f"formula)")
    if isinstance(node, sp.Function):
        return f"the function '{name}'"
    return f"'{name}'"


def unsupported_message(node, expr, where: str | None = None,
                        equation: str | None = None) -> str:
    """Why ``node`` (inside ``expr``) cannot be compiled, and what to do instead.

    ``where`` names the equation (e.g. ``"physics[v]"``) and ``equation`` shows it
    (e.g. ``"dv/dt = -k*x + besselj(0, x)"``); without them the message speaks of the
    expression alone, as the compiler does.
    """
    supported = (f"Supported functions: {', '.join(SUPPORTED_FUNCTIONS)} "
                 f"(sysid.SUPPORTED_FUNCTIONS), {OPERATORS_TEXT}.")
    if where is None:
        name = getattr(type(node), "__name__", str(type(node)))
        return (f"'{name}' in expression {_clip(expr)} is not supported by the torch "
                f"compiler (received {_clip(node)}). {supported} Fix: rewrite the "
                f"expression with these, or put this term in the neural residual.")
    shown = _clip(equation if equation is not None else f"{where} = {expr}")
    fix = ("rewrite the term with these, or leave it out of the physics and let a neural "
           "residual (residual=sysid.MLP(...)) learn it" if where.startswith("physics")
           else "rewrite the expression with these")
    return (f"{where} uses {_describe(node)}, which sysid cannot compile: {_clip(node, 80)} "
            f"in {shown}. {supported} Fix: {fix}.")


def check_expression(expr, where: str | None = None, equation: str | None = None) -> None:
    """Refuse what the compiler cannot turn into finite real torch code.

    ``where`` and ``equation`` name and show the equation in the messages (see
    :func:`unsupported_message`).

    Raises
    ------
    ExpressionError
        ``nan``, complex infinity (``zoo``, e.g. ``1/0``) or the imaginary unit.
    UnsupportedExpressionError
        A function (or other SymPy construct) that is not in :data:`FUNCTIONS`.
    """
    for node in sp.preorder_traversal(expr):
        if node in (sp.nan, sp.zoo) or node is sp.I:
            what = {sp.nan: "nan", sp.zoo: "complex infinity (zoo, e.g. 1/0)"}.get(node, "I")
            subject = f"Expression {_clip(expr)}" if where is None else \
                f"{where} ({_clip(equation if equation is not None else expr)})"
            raise ExpressionError(
                f"{subject} contains {what}, which has no real float64 value. "
                "Fix: rewrite it so that it is finite and real (check divisions by "
                "zero and roots/logs of negative constants).")
        if not isinstance(node, _ALLOWED_NODES):
            raise UnsupportedExpressionError(unsupported_message(node, expr, where, equation))
