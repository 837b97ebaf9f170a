"""Simulation of the synthetic systems: integration, sampling, noise, missing data."""

from __future__ import annotations

from typing import Callable

import numpy as np
import sympy as sp
import xarray as xr
from scipy.integrate import solve_ivp

from ..errors import DataError
from ._options import Options, check_options
from ._system import Staircase, System, format_values
from ._catalogue import get_system
from ._fields import FIELDS, simulate_field

__all__ = ["simulate"]

RTOL, ATOL = 1e-10, 1e-12


def _rhs_function(sys: System) -> Callable[..., list]:
    """numpy function ``f(t, *states, *inputs, *params)`` of the system's own RHS."""
    s = sys.symbols
    args = [s["t"], *(s[n] for n in (*sys.states, *sys.inputs, *sys.parameters))]
    # lambdify of our own trusted SymPy expressions (never of user text)
    return sp.lambdify(args, list(sys.rhs.values()), modules="numpy", dummify=True)


class _Input:
    """One trajectory's input signals: values at times and switch points."""

    def __init__(self, sys: System, opts: Options, rng: np.random.Generator) -> None:
        self.parts: list[tuple[str, object]] = []
        breaks: list[np.ndarray] = []
        s, p = sys.symbols, opts.input_params
        for name in sys.inputs:
            sig = sys.signals[name]
            if isinstance(sig, Staircase):
                hold = p[sig.hold]
                n_levels = int(np.floor((opts.t_last - opts.t0) / hold)) + 1
                switch = opts.t0 + hold * np.arange(n_levels)
                levels = rng.uniform(p[sig.low], p[sig.high], size=n_levels)
                self.parts.append(("zoh", (switch, levels)))
                breaks.append(switch[1:])
            else:
                expr = sp.sympify(sig).subs({s[k]: v for k, v in p.items()})
                self.parts.append(("expr", sp.lambdify([s["t"]], expr, modules="numpy")))
        self.breaks = np.unique(np.concatenate(breaks)) if breaks else np.empty(0)

    def values(self, t: np.ndarray) -> np.ndarray:
        """Input values ``(n_inputs, len(t))``; staircases are right-continuous."""
        t = np.asarray(t, dtype=np.float64)
        out = np.empty((len(self.parts), t.size))
        for i, (kind, how) in enumerate(self.parts):
            if kind == "zoh":
                switch, levels = how
                out[i] = levels[np.searchsorted(switch, t, side="right") - 1]
            else:
                out[i] = np.broadcast_to(how(t), t.shape)
        return out

    def on_segment(self, lo: float, hi: float) -> Callable[[float], np.ndarray]:
        """``u(t)`` inside ``[lo, hi]``: held levels fixed at their segment value."""
        held = self.values(np.array([0.5 * (lo + hi)]))[:, 0]
        exprs = [(i, how) for i, (kind, how) in enumerate(self.parts) if kind == "expr"]
        if not exprs:
            return lambda t: held
        def u(t: float) -> np.ndarray:
            out = held.copy()
            for i, f in exprs:
                out[i] = f(t)
            return out
        return u


def _integrate(sys: System, f, pvals: list[float], x0: np.ndarray, grid: np.ndarray,
               inp: _Input) -> np.ndarray:
    """States ``(n_states, len(grid))``; integrated piecewise between input switches."""
    inner = inp.breaks[(inp.breaks > grid[0]) & (inp.breaks < grid[-1])]
    edges = np.concatenate([[grid[0]], inner, [grid[-1]]])
    out = np.empty((len(sys.states), grid.size))
    state = np.asarray(x0, dtype=np.float64)
    for lo, hi in zip(edges[:-1], edges[1:]):
        u = inp.on_segment(lo, hi)
        sel = (grid >= lo) & (grid <= hi)
        t_eval = np.union1d(grid[sel], [lo, hi])
        sol = solve_ivp(lambda t, x: np.asarray(f(t, *x, *u(t), *pvals), dtype=np.float64),
                        (lo, hi), state, method="DOP853", rtol=RTOL, atol=ATOL, t_eval=t_eval)
        if sol.status != 0 or not np.all(np.isfinite(sol.y)):
            raise DataError(
                f"simulate({sys.name!r}): integration failed at t={sol.t[-1] if sol.t.size else lo:g} "
                f"({sol.message}); x0={x0.tolist()}, parameters={format_values(dict(zip(sys.parameters, pvals)))}. "
                "Fix: use parameters/initial states closer to the defaults or a shorter t_end.")
        out[:, sel] = sol.y[:, np.searchsorted(t_eval, grid[sel])]
        state = sol.y[:, -1]
    return out


def _sample_times(opts: Options, rng: np.random.Generator) -> list[np.ndarray]:
    if not opts.irregular:
        return [opts.times] * opts.n_trajectories
    out = []
    for _ in range(opts.n_trajectories):
        while True:
            t = np.sort(rng.uniform(opts.t0, opts.t_last, size=opts.n_samples - 1))
            if t[0] > opts.t0 and np.all(np.diff(t) > 0):
                break
        out.append(np.concatenate([[opts.t0], t]))
    return out


def _attrs(sys: System, opts: Options, kind: str) -> dict:
    attrs = {
        "title": f"{sys.title} ({kind})",
        "source": (f"simulated by sysid.datasets.simulate({sys.name!r}) with "
                   f"scipy.integrate.solve_ivp (DOP853, rtol={RTOL:g}, atol={ATOL:g})"),
        "citation": sys.citation,
        "license": "CC0-1.0 (synthetic data generated by sysid)",
        "description": sys.description,
        "system": sys.name,
        "equations": sys.equations,
        "true_parameters": format_values(opts.params),
        "noise": opts.noise, "missing": opts.missing, "irregular": int(opts.irregular),
        "seed": opts.seed,
    }
    if sys.inputs:
        attrs["inputs"] = sys.input_equations
        attrs["input_parameters"] = format_values(opts.input_params)
    return attrs


def _variable(sys: System, name: str, values: np.ndarray, dims: tuple, **extra) -> tuple:
    attrs = {"units": sys.units[name], "long_name": sys.long_names[name], **extra}
    return (dims, values, attrs)


def _coords(sys: System, times: np.ndarray, n_traj: int) -> dict:
    coords = {"time": ("time", times, {"units": sys.units["time"],
                                       "long_name": sys.long_names["time"]})}
    if n_traj > 1:
        coords["trajectory"] = ("trajectory", np.arange(n_traj),
                                {"units": "1", "long_name": "trajectory index"})
    return coords


def simulate(name: str, *, times=None, t_end=None, dt=None, n_trajectories=1, x0=None,
             params=None, noise=0.05, observed=None, missing=0.0, irregular=False,
             seed=0, truth=False, n_points=None, sensors=None, n_times=40):
    """Simulate a synthetic system with known truth as a noisy :class:`xarray.Dataset`.

    Parameters
    ----------
    name : str
        System name; see ``available("simulate")`` and :func:`system`.
    times : array_like, optional
        Explicit sample times (strictly increasing, >= 2); ``x0`` is the state
        at ``times[0]``.  Cannot be combined with ``t_end``/``dt``.
    t_end, dt : float, optional
        Regular grid ``0, dt, ..., t_end``; defaults are the system's.
    n_trajectories : int, default 1
        Number of trajectories; several add a ``trajectory`` dimension.
    x0 : array_like, optional
        Shape ``(n_states,)`` (shared) or ``(n_trajectories, n_states)``.  Default:
        the system's ``x0`` for one trajectory, random (``System.random_x0``) for
        several.
    params : dict, optional
        Overrides of true parameters (and input settings) by name.
    noise : float, default 0.05
        Relative noise: channel ``c`` gets Gaussian noise of std
        ``noise * mean(|x_c|)`` over its noise-free samples (Rackauckas et al. 2020).
    observed : list of str, optional
        States to return as data variables (default all).
    missing : float, default 0.0
        Fraction of each trajectory's samples dropped at random (never the first).
        One trajectory: dropped times are removed; several: set to NaN.
    irregular : bool, default False
        Sorted uniform random sample times in ``[t0, t_end]`` (first at ``t0``,
        as many as the regular grid), per trajectory, on a union grid with NaN.
    seed : int, default 0
        Seed; the same seed gives an identical dataset.
    truth : bool, default False
        Also return the noise-free, complete states and inputs on the same time
        coordinate.
    n_points, sensors, n_times : int, optional
        Field systems only (``"fisher_kpp"``, ``"burgers"``, ``"heat_2d"``): grid points
        per dimension, number of sensors (evenly spaced in 1-D, random grid points in
        2-D) and of irregular sample times in ``[0, t_end]``. The data variable ``u``
        has dims ``(time, x)`` (or ``(time, x, y)``) and is NaN off the sensors; the
        truth is computed on a 4x finer grid.

    Returns
    -------
    xarray.Dataset or (xarray.Dataset, xarray.Dataset)
        Data (observed states with noise and NaN, inputs with ``role="input"``),
        and the truth if requested.  ``attrs`` hold ``true_parameters``,
        ``equations``, ``system``, ``noise`` and ``seed``; each data variable
        has ``true_noise_std``.

    Raises
    ------
    DataError
        Unknown system or invalid option value.

    Examples
    --------
    >>> from sysid.datasets import simulate
    >>> ds = simulate("lotka_volterra", noise=0.0)
    >>> ds.sizes["time"], round(float(ds.x[0]), 8)
    (31, 0.44249296)
    >>> ds.attrs["true_parameters"]
    'a=1.3, b=0.9, c=0.8, d=1.8'
    >>> data, truth = simulate("pendulum", n_trajectories=3, irregular=True, truth=True)
    >>> data.theta.dims, bool(truth.theta.isnull().any())
    (('trajectory', 'time'), False)

    A field measured by 8 sensors on a grid of 64 points:

    >>> field = simulate("fisher_kpp", seed=0)
    >>> field.u.dims, int(field.u.notnull().any("time").sum())
    (('time', 'x'), 8)
    """
    if isinstance(name, str) and name in FIELDS:
        return simulate_field(name, n_points=n_points, sensors=sensors, n_times=n_times,
                              t_end=t_end, noise=noise, params=params, seed=seed, truth=truth)
    sys = get_system(name, caller="simulate")
    opts = check_options(sys, times=times, t_end=t_end, dt=dt, n_trajectories=n_trajectories,
                         x0=x0, params=params, noise=noise, observed=observed, missing=missing,
                         irregular=irregular, seed=seed, truth=truth)
    rng_x0, rng_t, rng_u, rng_miss, rng_noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence(opts.seed).spawn(5))
    n_traj, n_x = opts.n_trajectories, len(sys.states)
    if opts.x0 is not None:
        x0s = opts.x0
    elif n_traj == 1:
        x0s = np.array([sys.x0], dtype=np.float64)
    else:
        x0s = np.asarray(sys.random_x0(rng_x0, n_traj), dtype=np.float64)
    own_times = _sample_times(opts, rng_t)
    grid = np.unique(np.concatenate(own_times))
    own = np.stack([np.isin(grid, t) for t in own_times])  # (n_traj, n_grid)

    f, pvals = _rhs_function(sys), [opts.params[k] for k in sys.parameters]
    states = np.empty((n_traj, n_x, grid.size))
    inputs = np.empty((n_traj, len(sys.inputs), grid.size))
    for k in range(n_traj):
        inp = _Input(sys, opts, rng_u)
        states[k] = _integrate(sys, f, pvals, x0s[k], grid, inp)
        inputs[k] = inp.values(grid)

    kept = own.copy()
    for k in range(n_traj):
        idx = np.flatnonzero(own[k])
        n_drop = min(int(round(opts.missing * idx.size)), idx.size - 1)
        kept[k, rng_miss.choice(idx[1:], size=n_drop, replace=False)] = False
    scale = np.array([np.mean(np.abs(states[:, j][own])) for j in range(n_x)])
    std = opts.noise * scale
    noisy = states + std[None, :, None] * rng_noise.standard_normal(states.shape)
    noisy[~np.broadcast_to(kept[:, None, :], noisy.shape)] = np.nan

    if n_traj == 1:  # one trajectory: drop the unsampled times instead of NaN
        cols = kept[0]
        grid, states, inputs, noisy = grid[cols], states[..., cols], inputs[..., cols], noisy[..., cols]
        states, inputs, noisy = states[0], inputs[0], noisy[0]
        dims: tuple = ("time",)
    else:
        dims = ("trajectory", "time")
    coords = _coords(sys, grid, n_traj)
    pick = (lambda a, j: a[j]) if n_traj == 1 else (lambda a, j: a[:, j])

    data_vars = {s: _variable(sys, s, pick(noisy, sys.states.index(s)), dims, role="state",
                              true_noise_std=float(std[sys.states.index(s)]))
                 for s in opts.observed}
    input_vars = {u: _variable(sys, u, pick(inputs, j), dims, role="input", true_noise_std=0.0)
                  for j, u in enumerate(sys.inputs)}
    data = xr.Dataset({**data_vars, **input_vars}, coords=coords,
                      attrs=_attrs(sys, opts, "synthetic, noisy"))
    if not opts.truth:
        return data
    truth_vars = {s: _variable(sys, s, pick(states, j), dims, role="state")
                  for j, s in enumerate(sys.states)}
    truth_vars.update({u: _variable(sys, u, pick(inputs, j), dims, role="input")
                       for j, u in enumerate(sys.inputs)})
    truth_ds = xr.Dataset(truth_vars, coords=_coords(sys, grid, n_traj),
                          attrs=_attrs(sys, opts, "noise-free truth"))
    return data, truth_ds
