"""The :class:`System` record: one synthetic dynamical system defined as data.

A system is a set of SymPy right-hand sides ``dx/dt = f(t, x, u; p)`` together
with its true parameter values, default initial state and time grid, units and
references.  :func:`sysid.datasets.simulate` turns it into a noisy
:class:`xarray.Dataset` with known ground truth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import sympy as sp

__all__ = ["System", "Staircase", "uniform_box"]

#: ``sample(rng, n) -> array (n, n_states)`` of random initial states.
Sampler = Callable[[np.random.Generator, int], np.ndarray]


@dataclass(frozen=True)
class Staircase:
    """A seeded random piecewise-constant input (zero-order hold).

    Starting at the first sample time, a new level drawn from
    ``U(low, high)`` is held for ``hold`` time units, then the next, and so
    on.  The fields are *names* of entries of :attr:`System.input_parameters`
    so that they can be overridden through ``simulate(..., params=...)``.

    Examples
    --------
    >>> from sysid.datasets import system
    >>> system("two_tank").signals["u"]
    Staircase(low='u_low', high='u_high', hold='u_hold')
    """

    low: str
    high: str
    hold: str

    def __str__(self) -> str:
        return (f"piecewise-constant random staircase: a new level ~ U({self.low}, "
                f"{self.high}) every {self.hold} time units (zero-order hold)")


def uniform_box(low: tuple[float, ...], high: tuple[float, ...]) -> Sampler:
    """Return a sampler drawing each state independently from ``U(low, high)``.

    Examples
    --------
    >>> import numpy as np
    >>> draw = uniform_box((0.0, 1.0), (1.0, 2.0))
    >>> draw(np.random.default_rng(0), 3).shape
    (3, 2)
    """
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(lo, hi, size=(n, lo.size))

    return sample


@dataclass(frozen=True)
class System:
    """A synthetic system with known equations and parameters.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"lotka_volterra"``.
    title : str
        One-line human-readable title.
    states, inputs : tuple of str
        Names of the state variables (in order) and of the exogenous inputs.
    symbols : dict of str to sympy.Symbol
        Every symbol by name: ``"t"``, states, inputs, parameters and input
        parameters.
    rhs : dict of sympy.Symbol to sympy.Expr
        ``d(state)/dt`` for every state symbol, in state order.
    parameters : dict of str to float
        True values of the parameters appearing in :attr:`rhs`.
    x0 : tuple of float
        Default initial state (used for a single trajectory).
    random_x0 : callable
        ``random_x0(rng, n)`` draws ``n`` initial states (used when several
        trajectories are simulated and no ``x0`` is given);
        :attr:`random_x0_description` says what the distribution is.
    t_end, dt : float
        Default time grid ``0, dt, ..., t_end``.
    units, long_names : dict of str to str
        Per state, per input and for ``"time"``.
    signals : dict of str to sympy.Expr or Staircase
        How each input is generated: an expression of ``t`` and input
        parameters, or a :class:`Staircase`.
    input_parameters : dict of str to float
        Settings of the input signals (not part of the identified model).
    nonnegative : tuple of str
        States that must stay >= 0 (checked on user-given ``x0``).
    citation, description : str
        References and a free-text description.

    Examples
    --------
    >>> from sysid.datasets import system
    >>> lv = system("lotka_volterra")
    >>> lv.states, lv.parameters["a"]
    (('x', 'y'), 1.3)
    >>> lv.rhs[lv.symbols["x"]]
    a*x - b*x*y
    """

    name: str
    title: str
    states: tuple[str, ...]
    symbols: dict[str, sp.Symbol]
    rhs: dict[sp.Symbol, sp.Expr]
    parameters: dict[str, float]
    x0: tuple[float, ...]
    random_x0: Sampler
    random_x0_description: str
    t_end: float
    dt: float
    units: dict[str, str]
    long_names: dict[str, str]
    citation: str
    description: str
    inputs: tuple[str, ...] = ()
    signals: dict[str, object] = field(default_factory=dict)
    input_parameters: dict[str, float] = field(default_factory=dict)
    nonnegative: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Consistency checks of our own definitions (a failure is a bug in sysid).
        sym = self.symbols
        names = ("t", *self.states, *self.inputs, *self.parameters, *self.input_parameters)
        assert set(names) == set(sym) and len(names) == len(sym), (self.name, names)
        assert tuple(self.rhs) == tuple(sym[s] for s in self.states), self.name
        allowed = {sym[n] for n in ("t", *self.states, *self.inputs, *self.parameters)}
        for expr in self.rhs.values():
            assert expr.free_symbols <= allowed, (self.name, expr)
        assert set(self.signals) == set(self.inputs), self.name
        assert len(self.x0) == len(self.states), self.name
        for n in (*self.states, *self.inputs, "time"):
            assert n in self.units and n in self.long_names, (self.name, n)

    @property
    def true_parameters(self) -> dict[str, float]:
        """Alias of :attr:`parameters` (the true parameter values)."""
        return self.parameters

    @property
    def equations(self) -> str:
        """The right-hand sides as text, ``"dx/dt = ...; dy/dt = ..."``."""
        return "; ".join(f"d{s}/dt = {sp.sstr(e)}" for s, e in zip(self.states, self.rhs.values()))

    @property
    def input_equations(self) -> str:
        """How the inputs are generated, as text (empty without inputs)."""
        return "; ".join(f"{n} = {self.signals[n]}" for n in self.inputs)

    def copy(self) -> "System":
        """Return a copy whose dictionaries can be changed safely."""
        return dataclasses.replace(
            self, symbols=dict(self.symbols), rhs=dict(self.rhs),
            parameters=dict(self.parameters), units=dict(self.units),
            long_names=dict(self.long_names), signals=dict(self.signals),
            input_parameters=dict(self.input_parameters))


def format_values(values: Mapping[str, float]) -> str:
    """``{"a": 1.3, "b": 0.9}`` -> ``"a=1.3, b=0.9"`` (full float precision)."""
    return ", ".join(f"{k}={float(v)!r}" for k, v in values.items())
