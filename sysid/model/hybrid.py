"""The model specification: known physics in SymPy plus an optional neural residual.

:class:`HybridODE` only describes the model (symbols, equations, initial guesses);
it holds no tensors. :mod:`sysid.model.field` turns it into a torch vector field for a
given dataset, and :mod:`sysid.results.files` stores it as text.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Sequence

import numpy as np
import sympy as sp

from .functions import check_expression
from .entries import ParameterGuesses, as_expr as _as_expr, assumption_clash, check_signs, \
    eliminate, invariant_equations, missing_physics_warning, number, parameter_entry
from ..errors import ModelError, suggest

__all__ = ["HybridODE", "MLP", "t"]

#: The time symbol. Use it in the physics for explicitly time-dependent terms.
t = sp.Symbol("t", real=True)


@dataclass(frozen=True)
class MLP:
    """A neural residual: a multilayer perceptron added to d(state)/dt.

    Parameters
    ----------
    width : int
        Neurons per hidden layer.
    depth : int
        Number of hidden layers.
    states : sequence of Symbol or str, or dict {Symbol or str: number}, optional
        States whose derivative receives a residual term (default: all states), one
        network output each. A dict gives the network one output, an unknown rate, added
        to each named state's derivative times its coefficient: a reaction whose
        stoichiometry is known but not its rate law (``{y1: 1, y2: -1}``: converts y2
        into y1). The coefficients are kept exactly, so what one species loses the other
        gains, and the rate is found from whichever species the data show.
    inputs : sequence of Symbol or str, optional
        What the network reads: states and exogenous inputs (default: all of them).
    activation : {"tanh", "softplus", "gelu", "silu"}
        Hidden-layer activation; smooth choices keep the adaptive solver efficient.
    local : bool
        For a :class:`~sysid.HybridPDE`: one network applied at every grid point to the
        fields and their first and second spatial derivatives there, with shared
        weights (a local reaction or flux); ``states`` and ``inputs`` do not apply.

    Notes
    -----
    The last layer starts at zero, so an untrained model is exactly the physics.
    Inputs are standardised with the data's location and scale, and the output is
    scaled by each state's typical rate of change, so the same defaults work for
    data in any units.

    Examples
    --------
    >>> import sysid
    >>> sysid.MLP(width=16, depth=2)
    MLP(width=16, depth=2, states=None, inputs=None, activation='tanh', local=False)

    A residual on the velocity only, reading the velocity only (the network then cannot
    stand in for a term of the angle):

    >>> import sympy as sp
    >>> theta, omega = sp.symbols("theta omega")
    >>> omega0 = sp.Symbol("omega0", positive=True)
    >>> model = sysid.HybridODE(
    ...     states=[theta, omega],
    ...     physics={theta: omega, omega: -omega0**2 * sp.sin(theta)},
    ...     parameters={omega0: 1.0},
    ...     residual=sysid.MLP(width=16, depth=2, states=[omega], inputs=[omega]))
    >>> model
    HybridODE(
      dtheta/dt = omega
      domega/dt = -omega0**2*sin(theta) + NN
    )
    >>> model.residual_states, model.residual_inputs
    (['omega'], ['omega'])
    """

    width: int = 32
    depth: int = 2
    states: Sequence[sp.Symbol | str] | None = None
    inputs: Sequence[sp.Symbol | str] | None = None
    activation: str = "tanh"
    local: bool = False

    def __post_init__(self):
        if not isinstance(self.local, bool):
            raise ModelError(f"MLP local must be True or False; received {self.local!r}.")
        for name in ("width", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ModelError(
                    f"MLP {name} must be a positive integer; received {value!r}. "
                    f"Use e.g. sysid.MLP(width=32, depth=2).")
        if self.activation not in ("tanh", "softplus", "gelu", "silu"):
            raise ModelError(
                f"MLP activation must be one of 'tanh', 'softplus', 'gelu', 'silu'; "
                f"received {self.activation!r}.")
        if isinstance(self.states, dict):
            coefficients = {}
            for key, c in self.states.items():
                try:
                    c = float(c)
                except (TypeError, ValueError):
                    c = float("nan")
                if not (np.isfinite(c) and c != 0.0):
                    raise ModelError(
                        f"MLP states as a dict gives each state's stoichiometric coefficient "
                        f"(a finite, non-zero number); received {self.states[key]!r} for "
                        f"{key}. Use e.g. states={{y1: 1, y2: -1}}.")
                coefficients[str(key)] = c
            if not coefficients:
                raise ModelError("MLP states={} names no state; give at least one, e.g. "
                                 "states={y1: 1, y2: -1}.")
            object.__setattr__(self, "states", coefficients)
        for name in ("states", "inputs"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                object.__setattr__(self, name, tuple(str(v) for v in value))

    @property
    def stoichiometry(self) -> dict[str, float] | None:
        """State name -> coefficient of the network's one shared output (a rate), or
        None when each state has its own output."""
        return dict(self.states) if isinstance(self.states, dict) else None

    def to_dict(self) -> dict:
        out = {"width": self.width, "depth": self.depth,
               "states": (None if self.states is None else dict(self.states)
                          if isinstance(self.states, dict) else list(self.states)),
               "inputs": None if self.inputs is None else list(self.inputs),
               "activation": self.activation}
        if self.local:                  # (absent otherwise: older specs read the same)
            out["local"] = True
        return out


def _as_symbol(obj, what: str) -> sp.Symbol:
    if isinstance(obj, sp.Symbol):
        return obj
    raise ModelError(
        f"{what} must be SymPy Symbols; received {obj!r} of type {type(obj).__name__}. "
        f"Create them with sympy.symbols('x y').")


class HybridODE:
    """A hybrid model: known physics in SymPy plus a neural residual.

    ``d(state)/dt = physics(state, inputs, t; parameters) + residual(state, inputs)``

    Parameters
    ----------
    states : sequence of Symbol
        The state vector, in order.
    physics : dict {Symbol: Expr}
        The known part of each state's derivative; a state left out has no known physics
        (d/dt = 0, or the residual alone); where no residual covers it either, a
        :class:`~sysid.errors.ModelWarning` names it (write ``{z: 0}`` to mean it). An
        algebraic state is given by an equation, ``{z: sympy.Eq(z, x**2)}``: it is solved
        for ``z`` (one explicit solution, else a ModelError), ``z`` leaves the state
        vector and is substituted into the other equations, and it stays measurable as
        the channel ``z`` (``model.algebraic`` holds ``{z: x**2}``).
        The equations may use the functions in ``sysid.SUPPORTED_FUNCTIONS``; any other
        raises :class:`~sysid.errors.UnsupportedExpressionError` here.
    parameters : dict {Symbol: float or (float, float, float)}
        Learnable physical constants and their initial guesses. SymPy assumptions are
        honoured: ``positive=True`` (or ``nonnegative``) keeps the parameter positive,
        ``negative=True`` keeps it negative. A tuple ``(guess, low, high)`` keeps the
        parameter inside the open interval (a scaled logistic transform; ``None`` for an
        open side), e.g. a fraction ``{h: (0.5, 0, 1)}``; its interval in
        ``parameter_table()`` stays inside too. ``model.parameters`` holds the guesses,
        ``model.bounds`` the intervals. The optimiser works in units of each guess's
        size; an unconstrained parameter guessed as 0 ("unknown, maybe absent") takes the
        size at which its term matters in its equation along the data.
    residual : MLP or None
        The neural term; ``None`` fits the physics alone.
    inputs : sequence of Symbol
        Exogenous inputs, read from data variables of the same name.
    observations : dict {str: Expr}, optional
        Measured channels as functions of states (and inputs, parameters). A data
        variable named like a state measures that state unless listed here.
    fixed : dict {Symbol: float}
        Known constants substituted into the equations and not trained.
    invariants : list of Expr (or sympy.Eq), optional
        Quantities that stay 0 along every trajectory, e.g. ``[S + I + R - 1]`` (the
        fractions of a closed population) or a conserved total mass. Each one is solved
        for the last state in ``states`` that it contains and can be solved for
        explicitly; that state becomes algebraic (as with ``sympy.Eq`` in ``physics``:
        it leaves the state vector and stays measurable as its own channel), so the
        invariant holds exactly and one initial state fewer is fitted. The physics given
        must conserve it (its time derivative along the physics simplifies to 0), else a
        ModelError shows the derivative. To pick another state, write its equation
        instead: ``physics={S: sp.Eq(S, 1 - I - R)}``.

    Examples
    --------
    A spring with a known stiffness law and an unknown damping, learnt by a network:

    >>> import sympy as sp, sysid
    >>> x, v = sp.symbols("x v")
    >>> k = sp.Symbol("k", positive=True)
    >>> model = sysid.HybridODE(states=[x, v], physics={x: v, v: -k * x},
    ...                         parameters={k: 1.0}, residual=sysid.MLP(8, 1, states=[v]))
    >>> model
    HybridODE(
      dx/dt = v
      dv/dt = -k*x + NN
    )
    >>> model.state_names, model.parameter_names
    (['x', 'v'], ['k'])

    A driven system: the input ``u`` is a data variable of the same name, and the
    position is measured through a sensor with a known gain:

    >>> u = sp.Symbol("u")
    >>> driven = sysid.HybridODE(states=[x, v], physics={x: v, v: -k * x + u},
    ...                          parameters={k: 1.0}, inputs=[u],
    ...                          observations={"sensor": 2.5 * x})
    >>> list(driven.channels)
    ['sensor', 'x', 'v']

    Mistakes are reported with a fix:

    >>> sysid.HybridODE(states=[x, v], physics={x: v, v: -k * x})
    Traceback (most recent call last):
        ...
    sysid.errors.ModelError: physics[v] uses the symbol 'k', which is not a state, input, parameter or fixed constant. Add it to parameters={...} (learnable) or fixed={...} (known).

    A fraction kept inside (0, 1), and an algebraic state solved for and eliminated:

    >>> h, z = sp.Symbol("h"), sp.Symbol("z")
    >>> m = sysid.HybridODE(states=[x, z], physics={x: -h * z, z: sp.Eq(z, x**2)},
    ...                     parameters={h: (0.5, 0, 1)})
    >>> m, m.bounds, m.algebraic
    (HybridODE(
      dx/dt = -h*x**2
      z = x**2
    ), {h: (0.0, 1.0)}, {z: x**2})

    A function without a torch counterpart is refused at once, not when fitting starts:

    >>> 'erf' in sysid.SUPPORTED_FUNCTIONS, 'besselj' in sysid.SUPPORTED_FUNCTIONS
    (True, False)
    >>> sysid.HybridODE(states=[x, v], physics={x: v, v: -k * sp.besselj(0, x)},
    ...                 parameters={k: 1.0})
    Traceback (most recent call last):
        ...
    sysid.errors.UnsupportedExpressionError: physics[v] uses the function 'besselj', which sysid cannot compile: besselj(0, x) in dv/dt = -k*besselj(0, x). Supported functions: exp, log, ...
    """

    def __init__(self, states, physics=None, parameters=None, residual=None, inputs=(),
                 observations=None, fixed=None, invariants=None):
        self.states = [_as_symbol(s, "states") for s in states]
        if not self.states:
            raise ModelError("A model needs at least one state; received states=[].")
        self.inputs = [_as_symbol(s, "inputs") for s in (inputs or [])]
        given_bounds = getattr(parameters, "bounds", None) or {}
        guesses, bounds = {}, {}
        for k, v in (parameters or {}).items():
            sym = _as_symbol(k, "parameter keys")
            if sym in given_bounds and not isinstance(v, (tuple, list)):
                low, high = given_bounds[sym]     # a ParameterGuesses passed back
                v = (v, low, high)
            guesses[sym], interval = parameter_entry(sym, v)
            if interval is not None:
                bounds[sym] = interval
        self.parameters = ParameterGuesses(guesses, bounds)
        self.fixed = {_as_symbol(k, "fixed keys"): number(
            v, f"The value of fixed constant {getattr(k, 'name', k)}", getattr(k, "name", k))
            for k, v in (fixed or {}).items()}
        if residual is not None and not isinstance(residual, MLP):
            raise ModelError(
                f"residual must be sysid.MLP(...) or None; received {type(residual).__name__}.")
        self.residual = residual
        self.physics = {}
        equations = invariant_equations(self.states, invariants, physics or {},
                                        self._state_symbol)
        for key, expr in (physics or {}).items():
            sym = self._state_symbol(key, "physics")
            if sym in equations and not isinstance(expr, sp.Equality):
                continue                # its rate is implied by an invariant (checked)
            if isinstance(expr, sp.Equality):
                equations[sym] = expr
                continue
            self.physics[sym] = _as_expr(expr, f"physics[{sym}]")
        self.states, self.physics, self.algebraic = eliminate(self.states, self.physics,
                                                              equations, residual)
        self.observations = {}
        for name, expr in (observations or {}).items():
            if not isinstance(name, str) or not name.isidentifier():
                hint = f" Write observations={{{str(name)!r}: {expr}}}." \
                    if isinstance(name, sp.Symbol) and name.name.isidentifier() else ""
                raise ModelError(
                    f"Observation keys are data-variable names, strings that are valid "
                    f"identifiers (e.g. {{'y': x2}}: the variable 'y' measures x2); received "
                    f"{name!r} ({type(name).__name__}).{hint}")
            self.observations[name] = _as_expr(expr, f"observations[{name!r}]").xreplace(
                self.algebraic)
        for z, expr in self.algebraic.items():
            if z.name not in self.observations:     # the algebraic state's own channel
                self.observations[z.name] = expr
        self._check_names()
        self._check_symbols()
        self._check_functions()
        self._check_parameter_values()
        if residual is not None:
            self.residual_states = self._subset(residual.states, self.state_names, "MLP states")
            shared = residual.stoichiometry
            self.residual_coefficients = (None if shared is None else
                                          [shared[s] for s in self.residual_states])
            self.residual_inputs = self._subset(residual.inputs, self.state_names + self.input_names,
                                                "MLP inputs")
        if self._state_equations:
            self._complete_physics()

    #: Whether each state has its own equation in ``physics`` (False for HybridPDE, whose
    #: grid states' equations are derived from the fields').
    _state_equations = True

    def _complete_physics(self) -> None:
        """A state left out of the physics gets an explicit 0 (the contract: d/dt = 0);
        where no residual covers it either, a warning names it (probably forgotten). The
        explicit 0 is what the model keeps, so models rebuilt from it do not warn again."""
        covered = set(self.residual_states) if self.residual is not None else set()
        missing = [s for s in self.states if s not in self.physics]
        missing_physics_warning([s.name for s in missing if s.name not in covered], 3)
        for s in missing:
            self.physics[s] = sp.Integer(0)
        self.physics = {s: self.physics[s] for s in self.states}

    # -- names ---------------------------------------------------------------------------
    @property
    def state_names(self) -> list[str]:
        return [s.name for s in self.states]

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def parameter_names(self) -> list[str]:
        return [s.name for s in self.parameters]

    @property
    def channels(self) -> dict[str, sp.Expr]:
        """Every measurable channel: explicit observations, then states by name."""
        out = dict(self.observations)
        for s in self.states:
            out.setdefault(s.name, s)
        return out

    def _state_symbol(self, key, where: str) -> sp.Symbol:
        names = {s.name: s for s in self.states}
        name = key.name if isinstance(key, sp.Symbol) else str(key)
        if name not in names:
            raise ModelError(
                f"{where} has an entry for {name!r}, which is not a state.{suggest(name, names)} "
                f"States: {list(names)}.")
        return names[name]

    def _subset(self, chosen, allowed: list[str], what: str) -> list[str]:
        if chosen is None:
            return list(allowed)
        for name in chosen:
            if name not in allowed:
                raise ModelError(f"{what} names {name!r}, which is not one of {allowed}."
                                 f"{suggest(name, allowed)}")
        return [a for a in allowed if a in chosen]

    def _check_names(self):
        groups = {"state": self.states, "algebraic state": list(self.algebraic),
                  "input": self.inputs,
                  "parameter": list(self.parameters), "fixed constant": list(self.fixed)}
        seen: dict[str, str] = {"t": "time"}
        for kind, syms in groups.items():
            for s in syms:
                if s.name in seen:
                    raise ModelError(
                        f"The name {s.name!r} is used as a {seen[s.name]} and as "
                        f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}; "
                        f"each symbol must have one role ('t' is reserved for time).")
                seen[s.name] = kind

    def _roles(self) -> dict[str, tuple[str, sp.Symbol]]:
        """name -> (role, declared Symbol) for states, inputs, parameters and constants."""
        roles = {}
        for role, syms in (("state", self.states), ("input", self.inputs),
                           ("parameter", self.parameters), ("fixed constant", self.fixed)):
            roles.update((s.name, (role, s)) for s in syms)
        return roles

    def _equations(self) -> list[tuple[str, sp.Basic, str]]:
        """(where, expression, the equation as text) of the physics and observations."""
        return [(f"physics[{k}]", e, f"d{k}/dt = {e}") for k, e in self.physics.items()] + \
            [(f"observations[{k!r}]", e, f"{k} = {e}") for k, e in self.observations.items()]

    def _check_symbols(self):
        known = set(self.states) | set(self.inputs) | set(self.parameters) | set(self.fixed)
        roles = self._roles()
        for where, expr, _ in self._equations():
            free = sorted(expr.free_symbols, key=lambda s: s.name)
            clashes = [s for s in free if s not in known and s.name in roles]
            if clashes:
                raise ModelError(assumption_clash(where, clashes, roles))
            for sym in free:
                if sym in known or sym.name == "t":
                    continue
                raise ModelError(
                    f"{where} uses the symbol {sym.name!r}, which is not a state, input, "
                    f"parameter or fixed constant.{suggest(sym.name, roles)} Add it to "
                    f"parameters={{...}} (learnable) or fixed={{...}} (known).")

    def _check_functions(self):
        """Refuse now what the compiler could not turn into torch code at fit time."""
        for where, expr, equation in self._equations():
            check_expression(expr, where, equation)

    @property
    def bounds(self) -> dict[sp.Symbol, tuple[float, float]]:
        """Symbol -> (low, high) of each parameter given as ``(guess, low, high)``
        (``-inf``/``inf`` for an open side); parameters without bounds are absent."""
        return dict(self.parameters.bounds)

    def _check_parameter_values(self):
        for sym, value in list(self.parameters.items()) + list(self.fixed.items()):
            if not math.isfinite(value):
                raise ModelError(f"The value of {sym.name} must be finite; received {value}.")
        check_signs(self.parameters.bounds)
        for sym, value in self.parameters.items():
            if (sym.is_positive or sym.is_nonnegative) and value <= 0:
                raise ModelError(
                    f"Parameter {sym.name} is declared positive (or nonnegative) but its "
                    f"initial guess is {value}; it is fitted on a log scale, so give a "
                    f"positive initial guess (e.g. a small value like 1e-3 for 'about zero').")
            if (sym.is_negative and value >= 0) or (sym.is_nonpositive and value > 0):
                raise ModelError(
                    f"Parameter {sym.name} is declared negative but its initial guess is "
                    f"{value}; give a negative initial guess.")

    # -- derived -------------------------------------------------------------------------
    def with_parameters(self, values: dict) -> "HybridODE":
        """The same model with the parameters' guesses replaced by ``values`` (name ->
        value; parameters not named keep theirs). A positive or non-negative parameter's
        value that underflowed to 0 is kept at the smallest positive float, so that it
        stays a valid guess.

        Examples
        --------
        >>> import sympy as sp, sysid
        >>> x = sp.Symbol("x")
        >>> k = sp.Symbol("k", positive=True)
        >>> sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 1.0}) \\
        ...     .with_parameters({"k": 0.25}).parameters
        {k: 0.25}
        """
        tiny = np.finfo(float).tiny
        new = {}
        for p, guess in self.parameters.items():
            value = float(values.get(p.name, guess))
            new[p] = max(value, tiny) if (p.is_positive or p.is_nonnegative) else value
            if p in self.parameters.bounds:     # a fitted value that rounded onto a bound
                low, high = self.parameters.bounds[p]
                new[p] = min(max(new[p], np.nextafter(low, math.inf)),
                             np.nextafter(high, -math.inf))
        return self._with_guesses(ParameterGuesses(new, self.parameters.bounds))

    def _with_guesses(self, parameters: dict) -> "HybridODE":
        algebraic = {z: sp.Eq(z, e) for z, e in self.algebraic.items()}
        observations = {k: e for k, e in self.observations.items()
                        if not any(k == z.name and e == x for z, x in self.algebraic.items())}
        return HybridODE(states=self.states + list(self.algebraic),
                         physics={**self.physics, **algebraic}, parameters=parameters,
                         residual=self.residual, inputs=self.inputs,
                         observations=observations, fixed=self.fixed)

    def rhs(self) -> list[sp.Expr]:
        """Known physics per state (fixed constants substituted), zero where absent."""
        return [sp.sympify(self.physics.get(s, 0)).subs(self.fixed) for s in self.states]

    def __repr__(self) -> str:
        lines = [f"d{s.name}/dt = {self.physics.get(s, 0)}"
                 + (" + NN" if self.residual is not None and s.name in self.residual_states else "")
                 for s in self.states]
        lines += [f"{z.name} = {e}" for z, e in self.algebraic.items()]
        return "HybridODE(\n  " + "\n  ".join(lines) + "\n)"
