"""Compile SymPy expressions into one batched, differentiable torch function.

The SymPy trees are walked once, at construction, after a common-subexpression
elimination (:func:`sympy.cse`) over all expressions together.  The result is a
flat SSA program over a register list: registers ``0 .. n_vars-1`` hold the
inputs, the next ones the compile-time constants (Python floats, passed to torch
as scalars), and every instruction -- a torch callable plus the registers of its
one to three arguments -- appends one register.  Instructions are ordered into
blocks of equal arity, so a call is a few tight loops over ``(callable,
registers...)`` tuples (no per-instruction closures or dispatch, no name
look-ups, no tree walks, no ``eval``).

Between compiling and running, two exact rewrites make the program smaller:

* sign folding: ``neg(v)`` is pushed into ``v`` where the product, quotient or
  sum that makes ``v`` is used only there and the sign change becomes free or
  moves to a cheaper value -- into a scalar coefficient (``-(2*x) -> x*(-2)``),
  a swapped difference (``-(a - b) -> b - a``), or a factor that does not depend
  on the batch variables (``-(alpha*omega) -> (-alpha)*omega`` with a 0-d
  ``alpha``).  Only IEEE-exact identities are used (negation commutes with
  rounding), so values are unchanged, except that a zero result may change its
  sign (``-(x - x)`` is ``-0.0``, ``x - x`` is ``+0.0``);
* dead-code elimination of the instructions that these rewrites left unused.

Reordering into blocks keeps, for every value, the order of the instructions
that use it; autograd sums a value's gradient contributions in that (reversed)
order, so gradients are unchanged as well.

Shapes: every output has the broadcast shape of all inputs.  By default, an
output that does not depend on every variable is checked against that shape on
each call (and expanded where needed).  A caller that always passes some
variables with one common shape that all other inputs broadcast to -- the
``batch`` variables, e.g. states of shape ``(B,)`` next to 0-d parameters --
declares them, and the shape work then happens only for outputs that depend on
none of them (constants, parameter-only terms).  :meth:`CompiledExprs.stack`
returns the outputs stacked into one tensor; it skips the copies that keep the
outputs of :meth:`CompiledExprs.__call__` from aliasing inputs or each other,
since stacking copies anyway.

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
  arguments.  Unevaluated input (e.g. from :mod:`sysid.model.parser`) is fine.
* Outputs of :meth:`CompiledExprs.__call__` never alias the inputs or each
  other (bare variables and repeated outputs are copied), so callers may
  modify them in place.
"""

from __future__ import annotations

import heapq
import math
import operator
from collections import Counter
from typing import Callable, Sequence

import sympy as sp
from sympy.logic.boolalg import Boolean, BooleanAtom
import torch

from .functions import FUNCTIONS, SUPPORTED_FUNCTIONS, check_expression
from ..errors import ExpressionError, UnsupportedExpressionError, suggest

__all__ = ["CompiledExprs", "compile_exprs", "SUPPORTED_FUNCTIONS"]


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


class CompiledExprs:
    """Compiled list of SymPy expressions over an ordered list of Symbols.

    Parameters
    ----------
    exprs : sequence of sympy.Expr
        Expressions to evaluate together (numbers are accepted too).
    variables : sequence of sympy.Symbol
        Ordered inputs; ``values[i]`` passed to :meth:`__call__` is ``variables[i]``.
    batch : sequence of sympy.Symbol, optional
        Variables (among ``variables``) that every call passes with one common
        shape, the batch shape, which all other inputs broadcast to without
        enlarging it -- e.g. the states of a batch, unbound from one ``(B, n)``
        tensor, next to 0-d parameters.  This is a promise of the caller and is
        not checked per call: outputs that depend on a batch variable are returned
        as computed, and only the others (constants, terms of the non-batch
        variables alone) are brought to the shape of the first batch variable's
        value.  It also steers sign folding towards non-batch values.  Default:
        none; every output that does not depend on all variables is then checked
        against the broadcast shape of all inputs on each call.

    Attributes
    ----------
    exprs, variables : tuple
        The (sympified) expressions and the variables, as given.
    batch : tuple or None
        The batch variables, as given.
    n_ops : int
        Number of instructions after CSE, constant folding, sign folding and
        dead-code elimination.
    program : list of tuple
        ``(name, argument registers)`` per instruction, for inspection: registers
        ``0 .. n_vars-1`` are the inputs, then come the constants, then one
        register per instruction.

    Raises
    ------
    ExpressionError
        Unknown symbols, non-symbol variables, or ``nan``/``zoo``/complex constants.
    UnsupportedExpressionError
        A SymPy function (or other construct) without a torch counterpart.
    """

    def __init__(self, exprs: Sequence[sp.Expr], variables: Sequence[sp.Symbol],
                 batch: Sequence[sp.Symbol] | None = None):
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
        if batch is not None:
            batch = tuple(batch)
            stray = [str(v) for v in batch if v not in variables]
            if stray:
                raise ExpressionError(
                    f"Batch variables {stray} are not among the variables "
                    f"{[str(v) for v in variables]}. Fix: name batch variables from the "
                    "variables list.")
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

        self.exprs, self.variables, self.batch = tuple(exprs), tuple(variables), batch
        self._n = len(variables)
        # batch variables as input registers; None: no batch declared
        self._batch = frozenset(variables.index(v) for v in batch or ()) or None
        # while compiling: (name, fn, args), args are registers (int) or constants;
        # instruction k writes register n + k.  _finalize turns it into the run form.
        self._code: list[tuple] = []
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
        # the program holds torch callables and lambdas: pickle the expressions, recompile
        return (type(self), (self.exprs, self.variables, self.batch))

    @property
    def n_ops(self) -> int:
        """Number of instructions executed per call."""
        return len(self.program)

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

    # ------------------------------------------------------------ sign folding
    def _fold_signs(self, outs: list) -> list:
        """Push each ``neg`` into the value it negates where that is cheaper; exact.

        ``-v`` is rewritten through the instruction that makes ``v`` when ``v`` is
        used by nothing else (that instruction then dies):

        * ``-(a - b) = b - a`` and ``-(-a) = a``: free;
        * ``-(a * b) = (-a) * b = a * (-b)``, likewise for ``a / b``, and
          ``-(a + b) = (-a) - b = (-b) - a``: as costly as negating the cheaper of
          ``a`` and ``b``, which is free for a constant and recursive otherwise.

        Each identity holds exactly in IEEE arithmetic (rounding commutes with
        negation; ``+`` and ``*`` commute), up to the sign of a zero result.  Costs
        compare (extra instructions, extra instructions on values that depend on a
        batch variable); a rewrite is taken only when it is strictly cheaper than
        a plain ``neg``, so programs that cannot gain stay as compiled.  The
        rewritten instructions take the place of the ``neg``; where a rewrite moves
        a use of a value shared with other users, that value's gradient is summed
        in another order (last-bit differences at most).
        """
        n, code, deps = self._n, self._code, self._deps
        if not any(fn is _NEG for _, fn, _ in code):
            return outs
        uses = Counter(a for _, _, args in code for a in args if _is_slot(a))
        uses.update(o for o in outs if _is_slot(o))
        batch = self._batch

        def batched(s: int) -> int:      # 1 if ``s`` may have the full batch shape
            return int(bool(deps[s] & batch) if batch is not None else bool(deps[s]))

        plans: dict = {}

        def plan(s, depth: int = 0):
            """(cost, how) of computing ``-s``; how: None (plain neg), 'unwrap',
            'swap' or the index of the argument to negate."""
            if not _is_slot(s):
                return (0, 0), None
            if s in plans:
                return plans[s]
            best = ((1, batched(s)), None)
            if s >= n and uses[s] == 1 and depth < 32:   # depth: bounded recursion
                _, fn, args = code[s - n]
                if fn is _NEG:
                    best = min(best, ((-1, -batched(s)), "unwrap"), key=_cost)
                elif fn is _SUB or fn is _RSUB:
                    best = min(best, ((0, 0), "swap"), key=_cost)
                elif fn is _MUL or fn is _DIV or fn is _ADD:
                    for i, a in enumerate(args):
                        best = min(best, (plan(a, depth + 1)[0], i), key=_cost)
            plans[s] = best
            return best

        new: dict = {}    # old slot -> operand in the rebuilt program

        def op(a):
            return new.get(a, a) if _is_slot(a) else a

        def negated(s):
            """Emit ``-s`` (s: an old operand) into the rebuilt program."""
            if not _is_slot(s):
                return -s
            how = plan(s)[1]
            if how is None:
                return self._emit("neg", _NEG, (op(s),))
            name, fn, args = code[s - n]
            if how == "unwrap":                               # -(-a) = a
                return op(args[0])
            if how == "swap":
                a, b = (op(x) for x in args)
                if fn is _RSUB:                               # -(b - a) = a - b
                    return self._emit("sub", _SUB, (a, b))
                return self._emit("sub", _SUB, (b, a))        # -(a - b) = b - a
            neg = negated(args[how])
            if fn is _ADD:                                    # -(a + b) = (-a) - b
                return self._emit("sub", _SUB, (neg, op(args[1 - how])))
            new_args = [op(a) for a in args]                  # -(a*b) = (-a)*b = a*(-b)
            new_args[how] = neg
            return self._emit(name, fn, tuple(new_args))

        self._code, self._deps = [], deps[:n]
        for k, (name, fn, args) in enumerate(code):
            if fn is _NEG and plan(args[0])[1] is not None:
                new[n + k] = negated(args[0])
            else:
                new[n + k] = self._emit(name, fn, tuple(op(a) for a in args))
        return [op(o) for o in outs]

    # ----------------------------------------------------------------- output
    def _assemble(self, outs: list) -> list:
        """Drop dead instructions, order the rest into blocks of equal arity and lay
        out the registers; returns the outputs' registers (constants stay numbers)."""
        n, code = self._n, self._code
        live = {o for o in outs if _is_slot(o)}
        for k in range(len(code) - 1, -1, -1):
            if n + k in live:
                live.update(a for a in code[k][2] if _is_slot(a))
        # Reordering must keep the order in which each value's users run: autograd
        # sums a value's gradient contributions in reverse creation order of its users,
        # so gradients stay bit-identical too.
        nodes, last_user = [], {}
        for k in range(len(code)):
            if n + k in live:
                slots = {a for a in code[k][2] if _is_slot(a)}
                nodes.append((k, [a - n for a in slots if a >= n]
                              + [last_user[a] for a in slots if a in last_user]))
                last_user.update((a, k) for a in slots)
        order = _schedule(nodes, lambda k: len(code[k][2]))
        consts = [a for k in order for a in code[k][2] if not _is_slot(a)]
        reg = {i: i for i in range(n)}
        next_const, next_reg = n, n + len(consts)
        blocks: list = []       # [arity, [(fn, register, ...), ...]]
        program, deps = [], self._deps[:n] + [frozenset()] * len(consts)
        for k in order:
            name, fn, args = code[k]
            regs = []
            for a in args:
                if _is_slot(a):
                    regs.append(reg[a])
                else:
                    regs.append(next_const)
                    next_const += 1
            reg[n + k] = next_reg
            next_reg += 1
            deps.append(self._deps[n + k])
            if not blocks or blocks[-1][0] != len(regs):
                blocks.append([len(regs), []])
            blocks[-1][1].append((fn, *regs))
            program.append((name, tuple(regs)))
        self._consts: tuple = tuple(consts)
        self._blocks = [(arity, tuple(block)) for arity, block in blocks]
        self._deps, self.program = deps, program
        del self._code
        return [reg[o] if _is_slot(o) else o for o in outs]

    def _finalize(self, outs: list) -> None:
        """Optimise the program, then decide per output how to return it: as
        computed, copied (__call__ only), brought to the batch shape, or filled."""
        outs = self._assemble(self._fold_signs(outs))
        everything, batch = frozenset(range(self._n)), self._batch
        seen: set = set()
        self._outputs = []   # (register or None, constant, has the full shape?, copy?)
        for o in outs:
            if not _is_slot(o):
                self._outputs.append((None, float(o), False, False))
                continue
            shaped = bool(self._deps[o] & batch) if batch is not None \
                else self._deps[o] == everything
            # copy inputs and repeated outputs, so that results never alias
            self._outputs.append((o, None, shaped, o < self._n or o in seen))
            seen.add(o)
        self._shaped = all(shaped for _, _, shaped, _ in self._outputs)
        # the fast paths: all outputs are registers of the full shape, picked as they are
        self._pick = _picker([o for o, _, _, _ in self._outputs]) if self._shaped else None
        self._plain = self._shaped and not any(copy for _, _, _, copy in self._outputs)
        self._ref = min(batch) if batch is not None else None   # its value has the batch shape

    def _wrong_count(self, values) -> None:
        raise ExpressionError(
            f"Expected {self._n} input tensors (for {[str(v) for v in self.variables]}), "
            f"received {len(values)}. Fix: pass one tensor per variable, in order.")

    def _run(self, values: Sequence[torch.Tensor]) -> list:
        """All registers after running the program on ``values``."""
        if len(values) != self._n:
            self._wrong_count(values)
        r = [*values, *self._consts]
        # one loop per block of equal arity: cheaper than dispatching per instruction
        for arity, block in self._blocks:
            if arity == 2:
                for fn, a, b in block:
                    r.append(fn(r[a], r[b]))
            elif arity == 1:
                for fn, a in block:
                    r.append(fn(r[a]))
            else:
                for fn, a, b, c in block:
                    r.append(fn(r[a], r[b], r[c]))
        return r

    def _outputs_shaped(self, values, r: list, copy: bool) -> list[torch.Tensor]:
        """The outputs, each brought to the full shape (and copied where ``copy``
        and it would alias an input or another output)."""
        shape = values[self._ref].shape if self._ref is not None else _broadcast_shape(values)
        result = []
        for reg, const, shaped, dup in self._outputs:
            if reg is None:
                dtype, device = torch.float64, None
                if values:
                    dtype, device = values[0].dtype, values[0].device
                    for v in values[1:]:
                        dtype = torch.promote_types(dtype, v.dtype)
                out = torch.full(shape, const, dtype=dtype, device=device)
            else:
                out = r[reg]
                if not shaped and out.shape != shape:
                    out = out.expand(shape)
                    if copy:
                        out = out.clone()
                elif copy and dup:
                    out = out.clone()
            result.append(out)
        return result

    def __call__(self, values: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Evaluate all expressions; returns one tensor per expression.

        Parameters
        ----------
        values : sequence of torch.Tensor
            One tensor per variable, mutually broadcastable (see ``batch``).

        Returns
        -------
        list of torch.Tensor
            Each of the broadcast shape of all inputs, with their dtype and device;
            none aliases an input or another output.
        """
        r = self._run(values)
        if self._plain:
            return list(self._pick(r))
        return self._outputs_shaped(values, r, copy=True)

    def stack(self, values: Sequence[torch.Tensor], dim: int = -1) -> torch.Tensor:
        """Evaluate all expressions and stack them along a new dimension ``dim``.

        Like ``torch.stack(self(values), dim)`` but without the copies that keep
        the outputs of :meth:`__call__` apart (stacking copies anyway).  Needs at
        least one expression.
        """
        r = self._run(values)
        if self._shaped:
            return torch.stack(self._pick(r), dim)
        return torch.stack(self._outputs_shaped(values, r, copy=False), dim)


def _cost(option: tuple) -> tuple:
    return option[0]


def _picker(regs: list) -> Callable:
    """``r -> (r[k] for k in regs)`` as a sequence, without a Python-level loop."""
    if len(regs) > 1:
        return operator.itemgetter(*regs)             # a tuple
    if regs:
        return operator.itemgetter(slice(regs[0], regs[0] + 1))   # a one-item list
    return lambda r: ()


def _schedule(nodes: list, arity: Callable) -> list:
    """A topological order of ``nodes`` that keeps equal arities together.

    ``nodes``: ``(key, keys that must come first)`` in a valid order, keys sortable
    by that order.  Greedy: keep taking the earliest ready node of the current arity;
    when none is ready, continue with the arity of the earliest ready node.
    O(N log N).
    """
    waiting = {k: len(set(pre)) for k, pre in nodes}
    users: dict = {}
    for k, pre in nodes:
        for p in set(pre):
            users.setdefault(p, []).append(k)
    ready: dict = {}                                   # arity -> heap of ready keys
    for k, count in waiting.items():
        if not count:
            heapq.heappush(ready.setdefault(arity(k), []), k)
    order, current = [], None
    while len(order) < len(nodes):
        if not ready.get(current):
            current = min((h[0], a) for a, h in ready.items() if h)[1]
        k = heapq.heappop(ready[current])
        order.append(k)
        for u in users.get(k, ()):
            waiting[u] -= 1
            if not waiting[u]:
                heapq.heappush(ready.setdefault(arity(u), []), u)
    return order


def compile_exprs(exprs: Sequence[sp.Expr], variables: Sequence[sp.Symbol],
                  batch: Sequence[sp.Symbol] | None = None) -> CompiledExprs:
    """Compile ``exprs`` over ``variables``; see :class:`CompiledExprs`."""
    return CompiledExprs(exprs, variables, batch)
