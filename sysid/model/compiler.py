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

import operator
from typing import Callable, Sequence

import sympy as sp
import torch

from .functions import SUPPORTED_FUNCTIONS
from ..errors import ExpressionError, suggest
from .ops import _broadcast_shape, _is_slot
from .optimise import Optimisation
from .translate import Translation

__all__ = ["CompiledExprs", "compile_exprs", "SUPPORTED_FUNCTIONS"]


class CompiledExprs(Translation, Optimisation):
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


def _picker(regs: list) -> Callable:
    """``r -> (r[k] for k in regs)`` as a sequence, without a Python-level loop."""
    if len(regs) > 1:
        return operator.itemgetter(*regs)             # a tuple
    if regs:
        return operator.itemgetter(slice(regs[0], regs[0] + 1))   # a one-item list
    return lambda r: ()


def compile_exprs(exprs: Sequence[sp.Expr], variables: Sequence[sp.Symbol],
                  batch: Sequence[sp.Symbol] | None = None) -> CompiledExprs:
    """Compile ``exprs`` over ``variables``; see :class:`CompiledExprs`."""
    return CompiledExprs(exprs, variables, batch)
