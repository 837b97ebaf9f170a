"""SymPy nodes to instructions: the first pass of :class:`~sysid.model.compiler.CompiledExprs`.

:class:`Translation` walks a SymPy tree and appends one instruction per node (a torch
callable and its argument registers), folding constants on the way; the compiler mixes it
in and runs it once per expression, after common-subexpression elimination.
"""

from __future__ import annotations

import math
from typing import Callable

import sympy as sp
from sympy.logic.boolalg import Boolean, BooleanAtom
import torch

from ..errors import ExpressionError, UnsupportedExpressionError
from .functions import SUPPORTED_FUNCTIONS, check_expression
from .ops import (_ADD, _COMPARE, _DIV, _LOGIC, _MIRROR, _MUL, _NEG, _RSUB, _SUB, _UNARY,
                  _clip, _is_slot)


class Translation:
    """How each SymPy node becomes instructions (mixed into
    :class:`~sysid.model.compiler.CompiledExprs`, whose ``__init__`` sets ``_code``,
    ``_deps``, ``_env`` and ``_memo``)."""

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _sympify(e):
        if isinstance(e, str):
            raise ExpressionError(
                f"Expected a SymPy expression, received the string {e!r}. Fix: build it "
                "with SymPy, or parse text with sysid.model.parser.parse_expression.")
        try:
            out = sp.sympify(e, strict=True)
        except (sp.SympifyError, TypeError) as exc:
            out = exc
        if not isinstance(out, sp.Expr):
            raise ExpressionError(
                f"Expected a numeric SymPy expression, received {e!r} ({type(e).__name__}). "
                "Fix: pass sympy.Expr objects or numbers; turn a condition into a number "
                "with Piecewise((value, condition), (other, True)).")
        return out

    @staticmethod
    def _validate(expr) -> None:
        check_expression(expr)      # the list in sysid.model.functions, shared with the model

    # ---------------------------------------------------------------- emitters
    def _emit(self, name: str, fn: Callable, args: tuple) -> int:
        """Append an instruction ``fn(*args)``; args are slots (int) or constants.

        Returns the instruction's slot, or the folded value if every argument is a
        constant.  A constant first argument of a binary operation is moved to where
        the torch functions take it, as Python's reflected operators do: ``c - x`` is
        ``rsub(x, c)``, ``c / x`` is ``reciprocal(x) * c`` (what ``Tensor.__rtruediv__``
        computes), ``c + x`` is ``x + c``, ``c < x`` is ``x > c``.
        """
        assert 1 <= len(args) <= 3, (name, args)     # the run loop handles 1 to 3
        slots = tuple(a for a in args if _is_slot(a))
        if not slots:   # all-constant arguments (rare, e.g. a folded Piecewise): fold now
            out = fn(*[torch.tensor(a, dtype=torch.float64) for a in args])
            return bool(out) if out.dtype == torch.bool else float(out)
        if len(args) == 2 and not _is_slot(args[0]):
            c, a = args
            if fn is _SUB:
                name, fn, args = "rsub", _RSUB, (a, c)
            elif fn is _DIV:
                rec = self._emit("reciprocal", torch.reciprocal, (a,))
                name, fn, args, slots = "mul", _MUL, (rec, c), (rec,)
            elif fn in _MIRROR:
                fn, args = _MIRROR[fn], (a, c)
        self._code.append((name, fn, args))
        self._deps.append(frozenset().union(*(self._deps[s] for s in slots)))
        return len(self._deps) - 1

    def _chain(self, name: str, fn: Callable, ops: list) -> int:
        acc = ops[0]
        for o in ops[1:]:
            acc = self._emit(name, fn, (acc, o))
        return acc

    # --------------------------------------------------------------- compiler
    def _compile(self, expr):
        """Return an operand for ``expr``: a slot index (int) or a constant."""
        if expr in self._env:
            return self._env[expr]
        if expr in self._memo:
            return self._memo[expr]
        if not expr.free_symbols:
            out = self._constant(expr)
        else:
            handler = getattr(self, "_c_" + type(expr).__name__, None)
            if handler is not None:
                out = handler(expr)
            elif type(expr) in _UNARY:
                arg = self._compile(expr.args[0])
                out = self._emit(type(expr).__name__, _UNARY[type(expr)], (arg,))
            elif type(expr) in _COMPARE:
                a, b = (self._compile(x) for x in expr.args)
                out = self._emit(type(expr).__name__, _COMPARE[type(expr)], (a, b))
            elif type(expr) in _LOGIC:
                out = self._logic(expr)
            else:  # pragma: no cover - _validate refuses these first
                raise UnsupportedExpressionError(
                    f"Cannot compile {type(expr).__name__} ({_clip(expr)}). Supported functions: "
                    f"{', '.join(SUPPORTED_FUNCTIONS)}. Fix: rewrite the expression.")
        self._memo[expr] = out
        return out

    @staticmethod
    def _constant(expr):
        if isinstance(expr, Boolean):
            with sp.evaluate(True):
                val = expr.doit()
            if not isinstance(val, BooleanAtom):
                raise ExpressionError(
                    f"Constant condition {_clip(expr)} cannot be decided (received {val}). "
                    "Fix: simplify the condition.")
            return bool(val)
        if expr.is_Number and expr is not sp.nan:
            return float(expr)
        with sp.evaluate(True):
            val = expr.doit().evalf(30)
        if not val.is_Number or val is sp.nan:
            raise ExpressionError(
                f"Constant {_clip(expr)} does not evaluate to a real number (received {val}). "
                "Fix: make the constant real, e.g. avoid logs/roots of negative numbers.")
        return float(val)

    def _c_Add(self, expr):
        const, pos, neg = 0.0, [], []
        for term in expr.args:
            coeff, rest = term.as_coeff_Mul()
            if coeff.is_negative and rest.free_symbols:
                neg.append(self._compile(sp.Mul(-coeff, rest)))
            else:
                v = self._compile(term)
                if _is_slot(v):
                    pos.append(v)
                else:
                    const += v
        if pos:
            acc = self._chain("add", _ADD, pos)
        elif const != 0.0 or not neg:
            acc, const = const, 0.0
        else:
            acc = self._emit("neg", _NEG, (neg.pop(0),))
        for n in neg:
            acc = self._emit("sub", _SUB, (acc, n))
        return self._emit("add", _ADD, (acc, const)) if const != 0.0 else acc

    def _c_Mul(self, expr):
        coeff, num, den = 1.0, [], []
        for f in expr.args:
            if f.is_Pow and f.exp.is_Number and f.exp.is_negative:
                den.append(self._compile(sp.Pow(f.base, -f.exp)))
                continue
            v = self._compile(f)
            if _is_slot(v):
                num.append(v)
            else:
                coeff *= v
        for d in [d for d in den if not _is_slot(d)]:
            coeff /= d
        den = [d for d in den if _is_slot(d)]
        if num:
            acc = self._chain("mul", _MUL, num)
            if coeff == -1.0:
                acc = self._emit("neg", _NEG, (acc,))
            elif coeff != 1.0:
                acc = self._emit("mul", _MUL, (acc, coeff))
        else:
            d = self._chain("mul", _MUL, den)
            if coeff == 1.0:
                return self._emit("reciprocal", torch.reciprocal, (d,))
            return self._emit("div", _DIV, (coeff, d))
        for d in den:
            acc = self._emit("div", _DIV, (acc, d))
        return acc

    def _c_Pow(self, expr):
        base, e = expr.args
        b = self._compile(base)
        if e.free_symbols:
            if base is sp.E:    # unevaluated E**x
                return self._emit("exp", torch.exp, (self._compile(e),))
            return self._emit("pow", torch.pow, (b, self._compile(e)))
        if e == sp.S.Half:
            return self._emit("sqrt", torch.sqrt, (b,))
        if e == -sp.S.Half:
            return self._emit("rsqrt", torch.rsqrt, (b,))
        if e.is_Integer:
            n = int(e)
            if n < 0:
                pos = self._c_Pow(sp.Pow(base, -e, evaluate=False))
                return self._emit("reciprocal", torch.reciprocal, (pos,))
            if n == 1:
                return b
            if n == 2:
                return self._emit("square", torch.square, (b,))
            return self._emit("pow", torch.pow, (b, float(n)))
        return self._emit("pow", torch.pow, (b, self._constant(e)))

    def _c_atan2(self, expr):
        y, x = (self._compile(a) for a in expr.args)
        if not _is_slot(y):
            return self._emit("atan2", lambda t, c=y: torch.atan2(torch.full_like(t, c), t), (x,))
        if not _is_slot(x):
            return self._emit("atan2", lambda t, c=x: torch.atan2(t, torch.full_like(t, c)), (y,))
        return self._emit("atan2", torch.atan2, (y, x))

    def _c_Heaviside(self, expr):
        arg = self._compile(expr.args[0])
        h0 = self._compile(expr.args[1]) if len(expr.args) > 1 else 0.5
        step = self._emit("heaviside", lambda t: (torch.sign(t) + 1.0) * 0.5, (arg,))
        if h0 == 0.5:
            return step   # (sign(x) + 1)/2 is exactly 0, 1/2, 1
        if not _is_slot(h0):
            return self._emit("heaviside", lambda t, s, c=h0: torch.where(t == 0, c, s),
                              (arg, step))
        return self._emit("heaviside", lambda t, s, h: torch.where(t == 0, h, s), (arg, step, h0))

    def _minmax(self, expr, pair: Callable, clamp_kw: str):
        ops = [self._compile(a) for a in expr.args]
        slots = [o for o in ops if _is_slot(o)]
        acc = self._chain(type(expr).__name__, pair, slots)
        for c in (o for o in ops if not _is_slot(o)):
            acc = self._emit(type(expr).__name__,
                             lambda t, c=c: torch.clamp(t, **{clamp_kw: c}), (acc,))
        return acc

    def _c_Min(self, expr):
        return self._minmax(expr, torch.minimum, "max")

    def _c_Max(self, expr):
        return self._minmax(expr, torch.maximum, "min")

    def _c_Not(self, expr):
        arg = self._compile(expr.args[0])
        return (not arg) if isinstance(arg, bool) else self._emit("not", torch.logical_not, (arg,))

    def _logic(self, expr):
        ops = [self._compile(a) for a in expr.args]
        slots = [o for o in ops if _is_slot(o)]
        consts = [o for o in ops if not _is_slot(o)]   # constant truth values
        kind = type(expr)
        if kind is sp.Xor:
            if not slots:
                return sum(consts) % 2 == 1
            acc = self._chain("Xor", torch.logical_xor, slots)
            return self._emit("not", torch.logical_not, (acc,)) if sum(consts) % 2 else acc
        absorbing = kind is sp.Or                     # True absorbs Or, False absorbs And
        if absorbing in consts or not slots:
            return absorbing if absorbing in consts else not absorbing
        return self._chain(kind.__name__, _LOGIC[kind], slots)

    def _c_Piecewise(self, expr):
        branches, otherwise = [], math.nan     # SymPy gives nan where no condition holds
        for pair in expr.args:
            cond = self._compile(pair.cond)
            if cond is False:
                continue
            value = self._compile(pair.expr)
            if cond is True:
                otherwise = value
                break
            branches.append((cond, value))
        if not branches:
            return otherwise
        acc = otherwise
        if not _is_slot(acc):
            cond, value = branches[-1]
            if _is_slot(value):
                acc = self._emit("where", torch.where, (cond, value, acc))
                branches.pop()
            else:   # torch.where of two Python floats would be float32: use a ref tensor
                ref = min(self._deps[cond])
                acc = self._emit("full_like", lambda t, c=acc: torch.full_like(t, c), (ref,))
        for cond, value in reversed(branches):
            acc = self._emit("where", torch.where, (cond, value, acc))
        return acc
