"""What a model's constructor reads from its arguments, checked: numbers, parameter
entries with bounds, algebraic states and the states that have no equation.

- :func:`number`: a finite float, or a :class:`~sysid.errors.ModelError` saying what was
  received (a guess given as the string ``"0.5"`` is refused with the fix).
- :func:`parameter_entry`: ``guess`` or ``(guess, low, high)`` (``None`` for an open
  side); :class:`ParameterGuesses` is ``model.parameters``, a dict of guesses that
  carries the bounds, so a model rebuilt from it keeps them.
- :func:`eliminate`: ``physics={z: sympy.Eq(z, x**2)}`` makes ``z`` an algebraic state,
  solved for and substituted into the other equations (:func:`solve_for`).
- :func:`missing_physics_warning`: the warning for a state with neither physics nor a
  residual term.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import sympy as sp

from ..errors import ModelError, ModelWarning

__all__ = ["number", "parameter_entry", "ParameterGuesses", "solve_for", "eliminate",
           "missing_physics_warning", "assumption_clash", "check_signs", "as_expr",
           "invariant_equations"]


def number(value, what: str, name: str | None = None) -> float:
    """``value`` as a finite float, or a ModelError naming ``what`` (``name``: the
    symbol, for the message of a value that is not finite)."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (str, bytes)):
        value_ok = False
    else:
        try:
            out = float(value)
            value_ok = True
        except (TypeError, ValueError):
            value_ok = False
    if not value_ok:
        hint = (f" Write the number itself: {value.strip()}." if isinstance(value, str)
                and _is_float_text(value) else "")
        raise ModelError(f"{what} must be a number; received {value!r} of type "
                         f"{type(value).__name__}.{hint}")
    if not math.isfinite(out):
        subject = what if name is None else f"The value of {name}"
        raise ModelError(f"{subject} must be finite; received {value!r}.")
    return out


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def solve_for(sym: sp.Symbol, eq: sp.Equality, where: str) -> sp.Expr:
    """The unique solution of ``eq`` for ``sym``, or a ModelError saying why there is none.
    Linear equations are solved directly; others by ``sympy.solve`` (which honours the
    symbol's assumptions, e.g. positive=True keeps one root of a quadratic)."""
    expr = eq.lhs - eq.rhs
    if not expr.has(sym):
        raise ModelError(
            f"{where} is the equation {eq}, which does not contain {sym.name}: an algebraic "
            f"state's equation must define it, e.g. physics={{{sym.name}: sp.Eq({sym.name}, "
            f"x**2)}}. A constraint between other states (an invariant) is not supported.")
    slope = sp.diff(expr, sym)
    if not slope.has(sym) and slope != 0:
        return sp.simplify(-expr.xreplace({sym: sp.Integer(0)}) / slope)
    try:
        roots = sp.solve(expr, sym)
    except (NotImplementedError, ValueError, TypeError):
        roots = []
    if len(roots) == 1 and not roots[0].has(sym):
        return roots[0]
    found = (f"SymPy finds {len(roots)} solutions ({', '.join(map(str, roots))})" if roots
             else "SymPy cannot solve it")
    example = f"sp.Eq({sym.name}, {roots[0]})" if roots else f"sp.Eq({sym.name}, ...)"
    raise ModelError(
        f"{where} is the algebraic equation {eq}, which sysid eliminates only where it has "
        f"one explicit solution for {sym.name}; {found}. Fix: write the solution you mean, "
        f"e.g. physics={{{sym.name}: {example}}} (or declare {sym.name} positive=True to "
        f"pick the positive root). Implicit algebraic equations (DAEs) are not supported.")


class ParameterGuesses(dict):
    """Symbol -> initial guess (a float), and ``bounds``: Symbol -> (low, high) for the
    parameters given as ``(guess, low, high)``. A plain dict to read; passed back as
    ``parameters=`` to :class:`HybridODE` it keeps the bounds."""

    def __init__(self, guesses=(), bounds=None):
        super().__init__(guesses)
        self.bounds = dict(bounds or {})

    def entries(self) -> dict:
        """Symbol -> guess, or (guess, low, high) for a bounded parameter (``None`` for an
        open side): what ``parameters=`` takes."""
        def side(v):
            return None if not math.isfinite(v) else v
        return {s: (g, side(self.bounds[s][0]), side(self.bounds[s][1]))
                if s in self.bounds else g for s, g in self.items()}

    def __reduce__(self):               # pickles (Dask workers) with its bounds
        return (ParameterGuesses, (dict(self), self.bounds))


def parameter_entry(sym: sp.Symbol, entry) -> tuple[float, tuple[float, float] | None]:
    """(guess, (low, high) or None) from ``parameters={sym: entry}``."""
    name = sym.name
    if not isinstance(entry, (tuple, list)):
        return number(entry, f"The initial guess of parameter {name}", name), None
    if len(entry) != 3:
        raise ModelError(
            f"Parameter {name} is given as {entry!r}; a bounded parameter is a tuple "
            f"(guess, low, high), e.g. parameters={{{name}: (0.5, 0.0, 1.0)}} (None for an "
            f"open side: (2.0, 1.0, None)), and a free one is a number.")
    guess = number(entry[0], f"The initial guess of parameter {name} (first entry of "
                              f"(guess, low, high))", name)
    sides = []
    for value, which, open_value in ((entry[1], "low", -math.inf), (entry[2], "high", math.inf)):
        if value is None or (isinstance(value, float) and value == open_value):
            sides.append(open_value)
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isinf(value):
            raise ModelError(f"The {which} bound of parameter {name} is {value}; use None "
                             f"(or {'-' if which == 'low' else ''}math.inf) for an open side.")
        sides.append(number(value, f"The {which} bound of parameter {name} (in (guess, low, "
                                    f"high) = {tuple(entry)!r})"))
    low, high = sides
    if not low < high:
        raise ModelError(f"Parameter {name} has bounds low = {entry[1]!r} >= high = "
                         f"{entry[2]!r}; give (guess, low, high) with low < high, e.g. "
                         f"({guess}, 0.0, 1.0).")
    if not low < guess < high:
        raise ModelError(
            f"The initial guess {guess} of parameter {name} is not strictly inside its bounds "
            f"({entry[1]!r}, {entry[2]!r}); the parameter is kept inside the open interval "
            f"by a smooth transform, which never reaches a bound. Fix: a guess inside, e.g. "
            f"{name}: ({_inside(low, high)}, {entry[1]!r}, {entry[2]!r}).")
    return guess, (low, high)


def _inside(low: float, high: float) -> float:
    """A round point inside (low, high)."""
    if math.isfinite(low) and math.isfinite(high):
        return float(np.format_float_positional(0.5 * (low + high), 4))
    return low + 1.0 if math.isfinite(low) else high - 1.0


def eliminate(states: list, physics: dict, equations: dict, residual) -> tuple[list, dict, dict]:
    """Solve each ``sympy.Eq`` of the physics (``equations``: state -> Eq) for its state,
    an algebraic state: it leaves the state vector and its solution is substituted into
    the other equations. Returns (differential states, their physics, {algebraic state:
    its expression in the others})."""
    if not equations:
        return states, physics, {}
    solved = {z: solve_for(z, eq, f"physics[{z}]") for z, eq in equations.items()}
    for _ in range(len(solved) + 1):        # chains: z = x**2, w = z + 1
        nxt = {z: e.xreplace(solved) for z, e in solved.items()}
        if nxt == solved:
            break
        solved = nxt
    for z, e in solved.items():
        loop = sorted(s.name for s in e.free_symbols if s in solved)
        if loop:
            raise ModelError(
                f"The algebraic states {', '.join(sorted({z.name, *loop}))} are defined in "
                f"terms of each other ({z.name} = {e}); sysid eliminates algebraic states one "
                f"after the other, so give one of them a differential equation.")
    if residual is not None:
        named = set(residual.inputs or ()) | set(
            residual.states if residual.states is not None else ())
        clash = sorted(named & {z.name for z in solved})
        if clash:
            raise ModelError(
                f"MLP states/inputs name the algebraic state {', '.join(clash)} (given by "
                f"sympy.Eq in physics), which is not integrated: its value follows from the "
                f"other states. Name the differential states instead.")
    kept = [s for s in states if s not in solved]
    if not kept:
        raise ModelError("Every state is algebraic (sympy.Eq in physics); a model needs at "
                         "least one state with a differential equation.")
    return kept, {s: e.xreplace(solved) for s, e in physics.items()}, solved


def missing_physics_warning(alone: list[str], stacklevel: int) -> None:
    """Warn that the states ``alone`` have no physics and no residual (d/dt = 0)."""
    if not alone:
        return
    one = len(alone) == 1
    names = ", ".join(alone)
    warnings.warn(
        f"State{'' if one else 's'} {names} {'has' if one else 'have'} no equation in physics "
        f"and no residual network term, so d/dt = 0: {'it stays' if one else 'they stay'} "
        f"at {'its' if one else 'their'} initial value{'' if one else 's'}. If that is "
        f"intended, say so with physics={{{alone[0]}: 0, ...}} (which silences this "
        f"warning); otherwise add {'its' if one else 'their'} equation to physics or a "
        f"residual (sysid.MLP(states=[{names}])).", ModelWarning, stacklevel=stacklevel + 1)


def _symbol_text(sym: sp.Symbol) -> str:
    """How the symbol was created, e.g. ``Symbol('x', positive=True)``."""
    stated = getattr(sym, "_assumptions_orig", None)      # as given (SymPy >= 1.12)
    if stated is None:                                    # else all that they imply
        stated = sym.assumptions0
    given = sorted((k, v) for k, v in stated.items() if not (k == "commutative" and v))
    return f"Symbol({sym.name!r}{''.join(f', {k}={v}' for k, v in given)})"


def assumption_clash(where: str, clashes, roles) -> str:
    """The message for equation symbols that share a name with a declared one but not
    its assumptions; ``roles``: name -> (role, declared Symbol)."""
    many = len(clashes) > 1
    names = ", ".join(repr(s.name) for s in clashes)
    parts = "; ".join(f"{s.name!r} is {_symbol_text(s)} there, but the {roles[s.name][0]} "
                      f"{s.name!r} is declared as {_symbol_text(roles[s.name][1])}"
                      for s in clashes)
    fix = ", ".join(f"{s.name} = sympy.{_symbol_text(roles[s.name][1])}" for s in clashes)
    return (f"{where} uses {'symbols' if many else 'a symbol'} {names} whose assumptions "
            f"differ from the one{'s' if many else ''} declared: {parts}. SymPy treats "
            f"symbols of the same name with other assumptions as different symbols, so the "
            f"equation would not use the declared {'ones' if many else 'one'}. Fix: create "
            f"each symbol once and reuse it in states/parameters and in the equations "
            f"({fix}).")


def check_signs(bounds: dict) -> None:
    """Refuse bounds that contradict a parameter's SymPy sign assumption."""
    for sym, (low, high) in bounds.items():
        if (sym.is_positive or sym.is_nonnegative) and high <= 0:
            raise ModelError(f"Parameter {sym.name} is declared positive but its bounds "
                             f"({low}, {high}) lie at or below 0; drop positive=True or "
                             f"give bounds above 0.")
        if (sym.is_negative or sym.is_nonpositive) and low >= 0:
            raise ModelError(f"Parameter {sym.name} is declared negative but its bounds "
                             f"({low}, {high}) lie at or above 0; drop negative=True or "
                             f"give bounds below 0.")


def as_expr(obj, what: str) -> sp.Expr:
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return sp.Float(obj) if isinstance(obj, float) else sp.Integer(obj)
    if isinstance(obj, sp.Expr):
        return obj
    if isinstance(obj, sp.Basic):       # Eq(...), x > 0, And(...), True: not a number
        kind = "an equation" if isinstance(obj, sp.Equality) else "a condition"
        raise ModelError(
            f"{what} is {kind} ({obj}), not an expression: each entry gives the value of "
            f"the right-hand side. Fix: write the expression itself (e.g. -k*x); a condition "
            f"belongs inside Piecewise((value, condition), (other, True)).")
    raise ModelError(
        f"{what} must be a SymPy expression; received {obj!r} of type {type(obj).__name__}. "
        f"Write it with SymPy symbols, e.g. alpha * x.")


def invariant_equations(states: list, invariants, physics: dict, state_symbol) -> dict:
    """Each invariant as the equation of the state it is solved for (see ``invariants``
    in :class:`~sysid.HybridODE`), after checking that the physics conserves it;
    ``state_symbol(key, where)``: the declared state of a physics key."""
    if invariants is None:
        return {}
    if isinstance(invariants, (sp.Basic, str)) or not hasattr(invariants, "__iter__"):
        raise ModelError(f"invariants must be a list of SymPy expressions that stay 0, e.g. "
                         f"invariants=[S + I + R - 1]; received {invariants!r}.")
    given = {state_symbol(k, "physics"): v for k, v in physics.items()}
    out = {}
    for k, item in enumerate(invariants):
        where = f"invariants[{k}]"
        expr = item.lhs - item.rhs if isinstance(item, sp.Equality) else \
            as_expr(item, where)
        chosen, why = None, []
        for sym in reversed(states):
            if sym in out or not expr.has(sym) or isinstance(given.get(sym), sp.Equality):
                continue
            try:
                solve_for(sym, sp.Eq(expr, 0), where)
            except ModelError as err:
                why.append(f"{sym.name}: {str(err).split(';')[1].strip() if ';' in str(err) else err}")
                continue
            chosen = sym
            break
        if chosen is None:
            raise ModelError(
                f"{where} = {expr} cannot be solved explicitly for any state it contains "
                f"that is not already algebraic ({'; '.join(why) or 'it contains none'}). "
                f"Write the state's equation yourself: physics={{x: sp.Eq(x, ...)}}.")
        rates = {s: given[s] for s in states
                 if s in given and not isinstance(given[s], sp.Equality)}
        if all(s in rates for s in expr.free_symbols if s in states):
            drift = sp.simplify(sum(sp.diff(expr, s) * sp.sympify(r) for s, r in rates.items()))
            if drift != 0:
                raise ModelError(
                    f"The physics does not conserve {where}: d/dt ({expr}) = {drift} along "
                    f"it, not 0. Fix the physics (or drop the invariant); sysid would "
                    f"otherwise drop d{chosen.name}/dt and use {chosen.name} = "
                    f"{solve_for(chosen, sp.Eq(expr, 0), where)} instead.")
        out[chosen] = sp.Eq(chosen, solve_for(chosen, sp.Eq(expr, 0), where))
    return out
