"""Compile SymPy expressions into one batched, differentiable torch function.

The SymPy trees are walked once, at construction, after a common-subexpression
elimination (:func:`sympy.cse`) over all expressions together.  The result is a
flat SSA program: every instruction is a torch callable plus the indices of the
register slots holding its arguments.  Slots ``0 .. n_vars-1`` are the inputs;
each instruction appends one slot.  Constant sub-trees are folded to Python
floats at compile time and passed to torch as scalars, so a call is one tight
loop over prepared closures (no name look-ups, no tree walks, no ``eval``).

Caveats
-------
* ``x**(1/3)`` (``cbrt``) is computed with :func:`torch.pow`, which gives NaN
  for negative ``x`` (SymPy's principal cube root of a negative number is
  complex as well).  Write ``sign(x)*Abs(x)**(1/3)`` for the real cube root.
* Piecewise evaluates *all* branches and selects with :func:`torch.where`.  A
  branch that is NaN/inf where it is not selected (e.g.
  ``Piecewise((sqrt(x), x > 0), (0, True))`` at ``x < 0``) still gives correct
  values but NaN *gradients*; guard the argument of such a branch, e.g.
  ``sqrt(Max(x, 1e-12))``.  Points where no condition holds give NaN, as in SymPy.
* Heaviside uses ``H(0) = 1/2`` (SymPy's default) unless a second argument is
  given; Heaviside, sign, floor and ceiling have zero gradient.
* Complex constants, ``nan`` and ``zoo`` are refused; ``oo`` becomes ``inf``.
* CSE and compilation run under ``sympy.evaluate(False)``: SymPy's automatic
  simplification of rebuilt nodes can take minutes on large symbolic
  arguments.  Unevaluated input (e.g. from :mod:`sysid._spec`) is fine.
* Outputs never alias the inputs or each other (bare variables and repeated
  outputs are copied), so callers may modify them in place.
"""

from __future__ import annotations

import math
import operator
from typing import Callable, Sequence

import sympy as sp
from sympy.functions.elementary.piecewise import ExprCondPair
from sympy.logic.boolalg import Boolean, BooleanAtom
import torch

from .errors import ExpressionError, UnsupportedExpressionError, suggest

__all__ = ["CompiledExprs", "compile_exprs", "SUPPORTED_FUNCTIONS"]


def _recip(fn: Callable) -> Callable:
    return lambda a: torch.reciprocal(fn(a))


# One-argument SymPy functions and their torch counterparts.
_UNARY: dict[type, Callable] = {
    sp.exp: torch.exp, sp.log: torch.log,
    sp.sin: torch.sin, sp.cos: torch.cos, sp.tan: torch.tan,
    sp.cot: _recip(torch.tan), sp.sec: _recip(torch.cos), sp.csc: _recip(torch.sin),
    sp.asin: torch.asin, sp.acos: torch.acos, sp.atan: torch.atan,
    sp.sinh: torch.sinh, sp.cosh: torch.cosh, sp.tanh: torch.tanh,
    sp.asinh: torch.asinh, sp.acosh: torch.acosh, sp.atanh: torch.atanh,
    sp.Abs: torch.abs, sp.sign: torch.sign, sp.floor: torch.floor,
    sp.ceiling: torch.ceil, sp.erf: torch.special.erf, sp.erfc: torch.special.erfc,
}
_COMPARE = {sp.StrictLessThan: operator.lt, sp.LessThan: operator.le,
            sp.StrictGreaterThan: operator.gt, sp.GreaterThan: operator.ge,
            sp.Equality: operator.eq, sp.Unequality: operator.ne}
_LOGIC = {sp.And: torch.logical_and, sp.Or: torch.logical_or, sp.Xor: torch.logical_xor}

SUPPORTED_FUNCTIONS: tuple[str, ...] = tuple(
    [f.__name__ for f in _UNARY]
    + ["sqrt", "cbrt", "atan2", "Heaviside", "Min", "Max", "Piecewise"])
_STRUCTURAL = (sp.Add, sp.Mul, sp.Pow, sp.Piecewise, ExprCondPair, sp.Not,
               sp.atan2, sp.Heaviside, sp.Min, sp.Max, *_COMPARE, *_LOGIC, *_UNARY)


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


class CompiledExprs:
    """Compiled list of SymPy expressions over an ordered list of Symbols.

    Parameters
    ----------
    exprs : sequence of sympy.Expr
        Expressions to evaluate together (numbers are accepted too).
    variables : sequence of sympy.Symbol
        Ordered inputs; ``values[i]`` passed to :meth:`__call__` is ``variables[i]``.

    Attributes
    ----------
    exprs, variables : tuple
        The (sympified) expressions and the variables, as given.
    n_ops : int
        Number of instructions after CSE and constant folding.
    program : list of tuple
        ``(name, argument slots)`` per instruction, for inspection.

    Raises
    ------
    ExpressionError
        Unknown symbols, non-symbol variables, or ``nan``/``zoo``/complex constants.
    UnsupportedExpressionError
        A SymPy function (or other construct) without a torch counterpart.
    """

    def __init__(self, exprs: Sequence[sp.Expr], variables: Sequence[sp.Symbol]):
        exprs = [self._sympify(e) for e in exprs]
        variables = list(variables)
        for v in variables:
            if not isinstance(v, sp.Symbol):
                raise ExpressionError(
                    f"Every variable must be a sympy.Symbol; received {v!r} of type "
                    f"{type(v).__name__}. Fix: pass sympy.Symbol('name') objects.")
        if len(set(variables)) != len(variables):
            dup = sorted({str(v) for v in variables if variables.count(v) > 1})
            raise ExpressionError(f"Variables must be unique; received duplicates {dup}. "
                                  "Fix: list each symbol once.")
        known = [str(v) for v in variables]
        unknown = sorted(set().union(*(e.free_symbols for e in exprs)) - set(variables), key=str)
        if unknown:
            names = [str(u) for u in unknown]
            same = [n for n in names if n in known]
            hint = (f" Symbol(s) {same} share a name with a variable but have other "
                    "assumptions (e.g. real=True); create both the same way."
                    if same else suggest(names[0], known))
            raise ExpressionError(
                f"Expression uses unknown symbol(s) {names}.{hint} "
                f"Known symbols: {known}. Fix: add them to the variables (states, "
                "inputs or parameters) or correct the spelling.")
        for e in exprs:
            self._validate(e)

        self.exprs, self.variables = tuple(exprs), tuple(variables)
        self._n = len(variables)
        self._steps: list[Callable] = []
        self.program: list[tuple[str, tuple[int, ...]]] = []
        self._deps: list[frozenset] = [frozenset([i]) for i in range(self._n)]
        self._env: dict = {v: i for i, v in enumerate(variables)}   # symbol -> operand
        self._memo: dict = {}

        # evaluate(False): CSE and the walk rebuild some nodes, and SymPy's automatic
        # simplification of large symbolic arguments can take minutes.
        with sp.evaluate(False):
            names = sp.numbered_symbols("_cse", cls=sp.Dummy)
            replacements, reduced = sp.cse(exprs, symbols=names)
            consts: dict = {}
            for sym, sub in replacements:
                op = self._compile(sub.xreplace(consts) if consts else sub)
                if _is_slot(op):
                    self._env[sym] = op
                else:   # constant CSE value: substitute it so that folding sees it
                    consts[sym] = sp.S(op) if isinstance(op, bool) else sp.Float(op)
            outs = [self._compile(e.xreplace(consts) if consts else e) for e in reduced]
        self._finalize(outs)
        del self._memo, self._env

    def __reduce__(self):
        # the program holds closures: pickle the expressions and recompile
        return (type(self), (self.exprs, self.variables))

    @property
    def n_ops(self) -> int:
        """Number of instructions executed per call."""
        return len(self._steps)

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _sympify(e):
        if isinstance(e, str):
            raise ExpressionError(
                f"Expected a SymPy expression, received the string {e!r}. Fix: build it "
                "with SymPy, or parse text with sysid._spec.parse_expression.")
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
        for node in sp.preorder_traversal(expr):
            if node in (sp.nan, sp.zoo) or node is sp.I:
                what = {sp.nan: "nan", sp.zoo: "complex infinity (zoo, e.g. 1/0)"}.get(node, "I")
                raise ExpressionError(
                    f"Expression {_clip(expr)} contains {what}, which has no real float64 value. "
                    "Fix: rewrite it so that it is finite and real (check divisions by "
                    "zero and roots/logs of negative constants).")
            if isinstance(node, (sp.Symbol, sp.Number, sp.NumberSymbol, BooleanAtom)) \
                    or isinstance(node, _STRUCTURAL):
                continue
            name = getattr(type(node), "__name__", str(type(node)))
            raise UnsupportedExpressionError(
                f"'{name}' in expression {_clip(expr)} is not supported by the torch "
                f"compiler (received {_clip(node)}). Supported functions: "
                f"{', '.join(SUPPORTED_FUNCTIONS)}, "
                "plus + - * / ** and Piecewise conditions (<, <=, >, >=, Eq, Ne, And, Or, "
                "Not). Fix: rewrite the expression with these, or put this term in the "
                "neural residual.")

    # ---------------------------------------------------------------- emitters
    def _emit(self, name: str, fn: Callable, args: tuple) -> int:
        """Append an instruction ``fn(*args)``; args are slots (int) or constants."""
        slots = tuple(a for a in args if _is_slot(a))
        if not slots:   # all-constant arguments (rare, e.g. a folded Piecewise): fold now
            out = fn(*[torch.tensor(a, dtype=torch.float64) for a in args])
            return bool(out) if out.dtype == torch.bool else float(out)
        if len(args) == 1:
            (i,) = args
            step = lambda r: fn(r[i])  # noqa: E731
        elif len(args) == 2:
            a, b = args
            if _is_slot(a) and _is_slot(b):
                step = lambda r: fn(r[a], r[b])  # noqa: E731
            elif _is_slot(a):
                step = lambda r: fn(r[a], b)  # noqa: E731
            else:
                step = lambda r: fn(a, r[b])  # noqa: E731
        elif len(slots) == 3 == len(args):
            a, b, c = args
            step = lambda r: fn(r[a], r[b], r[c])  # noqa: E731
        else:
            idx = [(a, _is_slot(a)) for a in args]
            step = lambda r: fn(*[r[a] if s else a for a, s in idx])  # noqa: E731
        self._steps.append(step)
        self.program.append((name, slots))
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
            acc = self._chain("add", operator.add, pos)
        elif const != 0.0 or not neg:
            acc, const = const, 0.0
        else:
            acc = self._emit("neg", torch.neg, (neg.pop(0),))
        for n in neg:
            acc = self._emit("sub", operator.sub, (acc, n))
        return self._emit("add", operator.add, (acc, const)) if const != 0.0 else acc

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
            acc = self._chain("mul", operator.mul, num)
            if coeff == -1.0:
                acc = self._emit("neg", torch.neg, (acc,))
            elif coeff != 1.0:
                acc = self._emit("mul", operator.mul, (acc, coeff))
        else:
            d = self._chain("mul", operator.mul, den)
            if coeff == 1.0:
                return self._emit("reciprocal", torch.reciprocal, (d,))
            return self._emit("div", operator.truediv, (coeff, d))
        for d in den:
            acc = self._emit("div", operator.truediv, (acc, d))
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

    # ----------------------------------------------------------------- output
    def _finalize(self, outs: list) -> None:
        """Decide per output how to return it: as is, copied, or broadcast."""
        everything = frozenset(range(self._n))
        seen: set = set()
        self._final = []   # (slot or None, constant, broadcast?, copy?)
        for o in outs:
            if not _is_slot(o):
                self._final.append((None, float(o), True, False))
            else:   # copy inputs and repeated outputs, so results never alias
                copy = o < self._n or o in seen
                self._final.append((o, None, self._deps[o] != everything, copy))
                seen.add(o)
        self._simple = not any(b or c for _, _, b, c in self._final)
        self._out_slots = [o for o, _, _, _ in self._final]

    def __call__(self, values: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Evaluate all expressions; returns one tensor per expression.

        Parameters
        ----------
        values : sequence of torch.Tensor
            One tensor per variable, mutually broadcastable.

        Returns
        -------
        list of torch.Tensor
            Each of the broadcast shape of all inputs, with their dtype and device.
        """
        if len(values) != self._n:
            raise ExpressionError(
                f"Expected {self._n} input tensors (for {[str(v) for v in self.variables]}), "
                f"received {len(values)}. Fix: pass one tensor per variable, in order.")
        r = list(values)
        for step in self._steps:
            r.append(step(r))
        if self._simple:
            return [r[k] for k in self._out_slots]
        shape = _broadcast_shape(values)
        result = []
        for slot, const, broadcast, copy in self._final:
            if slot is None:
                dtype, device = torch.float64, None
                if values:
                    dtype, device = values[0].dtype, values[0].device
                    for v in values[1:]:
                        dtype = torch.promote_types(dtype, v.dtype)
                out = torch.full(shape, const, dtype=dtype, device=device)
            else:
                out = r[slot]
                if broadcast and out.shape != shape:
                    out = out.expand(shape).clone()
                elif copy:
                    out = out.clone()
            result.append(out)
        return result


def compile_exprs(exprs: Sequence[sp.Expr], variables: Sequence[sp.Symbol]) -> CompiledExprs:
    """Compile ``exprs`` over ``variables``; see :class:`CompiledExprs`."""
    return CompiledExprs(exprs, variables)
