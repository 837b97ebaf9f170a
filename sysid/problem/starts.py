"""Initial guesses of a problem, computed from the data before training: initial states
(measured, interpolated or solved for by least squares), and the scales of parameters
whose initial guess is zero.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..data.bundle import DataBundle
from ..model.field import HybridField
from ..solve.integrate import InputSignal, SolverFailure, SolverOptions, solve_segments
from .segments import segment_grid
from ..model.pde import HybridPDE
from .timescale import _robust_std, dynamics_time_scale


def input_signal(times, u, kind) -> InputSignal:
    """Inputs on the data grid, with values outside each trajectory's span held constant."""
    vals = u.copy()
    for b in range(vals.shape[0]):
        for j in range(vals.shape[2]):
            col = vals[b, :, j]
            ok = np.flatnonzero(~np.isnan(col))
            if len(ok):
                col[:] = np.interp(np.arange(len(col)), ok, col[ok])
    return InputSignal(torch.as_tensor(times, dtype=torch.float64),
                       torch.as_tensor(np.nan_to_num(vals), dtype=torch.float64), kind)


def _local_start(times, values):
    """Value and slope at the first sample from a straight line through the first few
    samples (kept within their range, so a steep start cannot extrapolate far)."""
    n = min(len(times), 4)
    if n == 1:
        return float(values[0]), 0.0
    slope, value = np.polyfit(times[:n] - times[0], values[:n], 1)
    lo, hi = float(np.min(values[:n])), float(np.max(values[:n]))
    return float(np.clip(value, lo, hi)), float(slope)


def _direct_channel(model, bundle, state):
    """Index of a channel that measures ``state`` directly (its observation is the state
    itself, under any name; the state's own name first), or None."""
    names = [c for c in bundle.channels if model.channels.get(c) == state]
    names.sort(key=lambda c: c != state.name)
    return bundle.channels.index(names[0]) if names else None


def _typical_level(bundle) -> float:
    """The median size of the measured values (1 where there is none)."""
    typical = np.nanmedian(np.abs(bundle.y[bundle.mask])) if bundle.mask.any() else 1.0
    return float(typical) if np.isfinite(typical) and typical > 0 else 1.0


def state_signs(model) -> np.ndarray:
    """+1 for each state declared positive or nonnegative, -1 for negative or nonpositive,
    0 for the others: the side of 0 its start guess and its fitted starts keep."""
    return np.array([1.0 if (s.is_positive or s.is_nonnegative) else
                     -1.0 if (s.is_negative or s.is_nonpositive) else 0.0
                     for s in model.states])


def _sign_constrained_start(model, free, bundle):
    """Start and bounds of the search for unobserved states: 0 and unbounded, except for a
    state declared ``positive=True`` (``negative=True``), which starts at the typical size of
    the measured channels with that sign and stays on its side of 0 (a tank level under a
    square root, a concentration)."""
    typical = _typical_level(bundle)
    sign = state_signs(model)[list(free)]
    start = sign * typical
    low = np.where(sign > 0, 1e-9 * typical, -np.inf)
    high = np.where(sign < 0, -1e-9 * typical, np.inf)
    return start, (low, high)


def _other_signs(mismatch, found, ok, start, bounds, n_known, bundle) -> None:
    """Unobserved states without a sign constraint start their search at 0; where the
    physics is singular there (``sqrt(Abs(x))``, ``log(Abs(x))``: an infinite or undefined
    slope, so the search cannot leave 0), or a start at +-(the typical size of the
    measured channels) matches the observed slopes better, that start's result replaces
    it, row by row, in place (``found``, ``ok``). Where no start matches better, the guess
    stays as found from 0."""
    open_ = np.isinf(bounds[0]) & np.isinf(bounds[1])
    if not open_.any():
        return
    typical = _typical_level(bundle)

    def slope_cost(v):
        with np.errstate(all="ignore"):
            c = np.sum(mismatch(v)[:, :n_known] ** 2, axis=1)
        return np.where(np.isfinite(c), c, np.inf)

    cost = np.where(ok, slope_cost(found), np.inf)
    for sign in (1.0, -1.0):
        anchor = np.where(open_, start + sign * typical, start)
        other, good = _batched_least_squares(
            lambda v, sub=None, anchor=anchor: mismatch(v, sub, anchor=anchor),
            np.tile(anchor, (len(found), 1)), bounds)
        c = np.where(good, slope_cost(other), np.inf)
        better = c < 0.5 * cost
        found[better], ok[better], cost[better] = other[better], True, c[better]


#: The pull of an unobserved state's start guess towards its anchor (0, or the typical
#: measured level for a signed state), per typical measured level: it settles what the
#: observed slopes leave open and yields to anything they say. At 1e-3 it held a
#: susceptible share at half the slope match (SIR, the calibration benchmark's sir_i,
#: whose fits then left the data's basin in 2 of 20 draws).
PULL = 1e-5


def _channel_levels(bundle, starts, observed):
    """The channels that measure a function of several states (an absorbance, R = N - S -
    I), their local value at each start where they are measured there (NaN elsewhere),
    and their spreads: the start guesses match these values too."""
    direct = {c for c in observed if c is not None}
    indirect = [c for c in range(len(bundle.channels)) if c not in direct]
    level = np.full((len(starts), len(bundle.channels)), np.nan)
    for j, (b, k) in enumerate(starts):
        for c in indirect:
            m = np.flatnonzero(bundle.mask[b, k:, c]) + k
            if len(m) and bundle.times[m[0]] == bundle.times[k]:     # measured at the start
                level[j, c] = _local_start(bundle.times[m], bundle.y[b, m, c])[0]
    spread = np.array([_robust_std(bundle.y[..., c]) for c in range(len(bundle.channels))])
    return indirect, level, spread


def initial_states(model, field: HybridField, bundle: DataBundle, starts=None):
    """Guess the state at each start (trajectory b, time index k), default each
    trajectory's first sample: observed states from a local fit of the next few samples,
    unobserved states so that the physics matches the observed states' local slopes."""
    from scipy.optimize import least_squares

    if starts is None:
        starts = list(enumerate(bundle.t_first))
    n = len(model.states)
    x0 = np.zeros((len(starts), n))
    slopes = np.full((len(starts), n), np.nan)
    observed = [_direct_channel(model, bundle, s) for s in model.states]
    for j, (b, k) in enumerate(starts):
        for i, c in enumerate(observed):
            m = np.flatnonzero(bundle.mask[b, k:, c]) + k if c is not None else []
            if len(m):
                x0[j, i], slopes[j, i] = _local_start(bundle.times[m], bundle.y[b, m, c])
    free = [i for i, c in enumerate(observed) if c is None or not bundle.mask[:, :, c].any()]
    if not free:
        return x0, observed
    if isinstance(model, HybridPDE):        # a field between its sensors: interpolated
        return model.fill_unobserved(x0, np.isfinite(slopes)), observed
    scale = np.array([_robust_std(bundle.y[..., c]) if c is not None else 1.0 for c in observed])
    start, bounds = _sign_constrained_start(model, free, bundle)
    x0[:, free] = start        # kept where nothing else informs the guess
    # the pull towards the start is relative to the measured channels' typical level: a
    # pull in absolute units held a susceptible pool of 10 000 people at the start guess
    unit = _typical_level(bundle)
    indirect, level, c_scale = _channel_levels(bundle, starts, observed)
    groups: dict = {}          # starts with the same observed slopes are solved together
    for j in range(len(starts)):
        known = tuple(i for i in range(n) if i not in free and np.isfinite(slopes[j, i]))
        seen = tuple(c for c in indirect if np.isfinite(level[j, c]))
        if known or seen:
            groups.setdefault((known, seen), []).append(j)
    for (known, seen), rows in groups.items():
        rows = np.array(rows)
        b = np.array([starts[j][0] for j in rows])
        k = np.array([starts[j][1] for j in rows])
        t0 = torch.as_tensor(bundle.times[k])
        u = torch.as_tensor(np.nan_to_num(bundle.u[b, k]))
        known = list(known)

        seen = list(seen)

        def mismatch(v, sub=None, rows=rows, known=known, seen=seen, t0=t0, u=u,
                     anchor=start):
            """Mismatch (G, len(known) + len(seen) + len(free)) of the starts ``rows[sub]``
            (all rows for None) with their unobserved states at ``v``: the observed
            slopes, the channels of several states and a weak pull towards the start."""
            if sub is not None:
                rows, t0, u = rows[sub], t0[sub], u[sub]
            x = torch.as_tensor(x0[rows])
            x[:, free] = torch.as_tensor(v)
            with torch.no_grad():
                f = field.physics(t0, x, u).numpy()
                y = field.observe(t0, x, u).numpy()[:, seen] if seen else np.zeros((len(rows), 0))
            return np.concatenate([(f[:, known] - slopes[rows][:, known]) / scale[known],
                                   (y - level[rows][:, seen]) / c_scale[seen],
                                   PULL * (v - anchor) / unit], axis=1)

        found, ok = _batched_least_squares(mismatch, np.tile(start, (len(rows), 1)), bounds)
        _other_signs(mismatch, found, ok, start, bounds, len(known) + len(seen), bundle)
        x0[rows[ok][:, None], free] = found[ok]
        for r in np.flatnonzero(~ok):         # the few a batched step could not settle
            j = rows[r]
            try:
                sol = least_squares(lambda v, r=r: mismatch(v[None], np.array([r]))[0],
                                    start, bounds=bounds, max_nfev=200)
                if np.all(np.isfinite(sol.x)):
                    x0[j, free] = sol.x
            except (ValueError, RuntimeError, FloatingPointError):
                pass
    return x0, observed


def _batched_least_squares(residuals, v, bounds, iterations: int = 100):
    """Minimise ``|residuals(v)[g]|^2`` for every row ``g`` of ``v`` (G, p) at once
    (``residuals(w, sub)``: the rows ``sub`` of G, all for None, at their values ``w``):
    Levenberg-Marquardt with a damping per row, central-difference Jacobians (2 p
    evaluations of all rows per iteration) and steps projected into ``bounds``.

    One guess per shooting window, each a separate SciPy call, took most of the time of
    setting up a fit of many short windows (Duffing, 4 trajectories of 100 samples:
    1,100 calls, 5 s of a 41 s symbolic summary). The rows are independent, so this finds
    the minimum each call found, in a few batched evaluations. Returns ``(v, ok)``:
    ``ok`` is False for rows that did not converge or are not finite (the caller falls
    back to SciPy there)."""
    low, high = (np.broadcast_to(np.asarray(a, dtype=float), v.shape[1:]) for a in bounds)
    v = np.clip(np.array(v, dtype=float), low, high)
    G, p = v.shape
    with np.errstate(all="ignore"):
        r = residuals(v)
        cost = np.sum(r ** 2, axis=1)
        lam = np.full(G, 1e-3)
        done = ~np.isfinite(cost)
        bad = done.copy()
        for _ in range(iterations):
            active = np.flatnonzero(~done)
            if not len(active):
                break
            va = v[active]
            sub = None if len(active) == G else active
            h = 1e-6 * np.maximum(1.0, np.abs(va))
            J = np.empty((len(active), r.shape[1], p))
            for i in range(p):
                up, down = va.copy(), va.copy()
                up[:, i] += h[:, i]
                down[:, i] -= h[:, i]
                J[:, :, i] = (residuals(up, sub) - residuals(down, sub)) / (2 * h[:, i, None])
            ra = r[active]
            A = np.einsum("gki,gkj->gij", J, J)
            g = np.einsum("gki,gk->gi", J, ra)
            diag = np.maximum(np.einsum("gii->gi", A), 1e-12)
            # a value at its bound that the gradient pushes outwards stays there: the step
            # is taken in the other values only (else the clipped step stalls)
            held = ((va <= low) & (g > 0)) | ((va >= high) & (g < 0))
            free = (~held).astype(float)
            M = (A + lam[active, None, None] * diag[:, :, None] * np.eye(p)) \
                * free[:, :, None] * free[:, None, :] + held[:, :, None] * np.eye(p)
            step = -np.linalg.solve(M, (g * free)[:, :, None])[:, :, 0]
            trial = np.clip(va + step, low, high)
            r_new = residuals(trial, sub)
            c_new = np.sum(r_new ** 2, axis=1)
            better = np.isfinite(c_new) & (c_new < cost[active])
            moved = np.abs(trial - va) <= 1e-10 * (1.0 + np.abs(va))
            small = better & (cost[active] - c_new <= 1e-12 * cost[active] + 1e-300)
            acc = active[better]
            v[acc], r[acc], cost[acc] = trial[better], r_new[better], c_new[better]
            lam[acc] = np.maximum(lam[acc] / 3.0, 1e-12)
            lam[active[~better]] *= 4.0
            # converged: no change of the step or of the cost, or damping that took over
            done[active[moved.all(axis=1) | small | (lam[active] > 1e12)]] = True
        ok = done & ~bad & np.all(np.isfinite(v), axis=1)
    return v, ok


def _scale_zero_guesses(field, guesses, bundle, sim, observed, scale) -> None:
    """Give each unconstrained parameter guessed as 0 the size of its term.

    An unconstrained parameter's raw value is its value over the size of its guess, so
    that every raw value is of order one; a guess of 0 has no size, and a scale of 1 left
    a coefficient whose size is 1e5 (Silverbox's cubic stiffness, in volts and seconds)
    crawling a few units per iteration. Its scale becomes the value at which its term is
    as large as the rest of its equation along the data: the RMS of the known physics'
    right-hand side over the RMS of the right-hand side's derivative in the parameter
    (median over the equations it appears in; where the rest of an equation is 0, the
    state's spread per the data's time scale, :func:`dynamics_time_scale`). States are the data where a channel
    measures them directly, else the preview of the physics from the guessed start.
    """
    transform = field.transform
    zero = [j for j, (kind, g) in enumerate(zip(transform.kinds, guesses))
            if kind == "linear" and float(g) == 0.0]
    if not zero:
        return
    idx = segment_grid(bundle)
    xs = np.array(sim, dtype=float)                                   # (B, K, n)
    # where the preview failed, a state sits at its mean (0 if unknown)
    finite = np.isfinite(xs)
    count = finite.sum(axis=(0, 1))
    mean = np.where(finite, xs, 0.0).sum(axis=(0, 1)) / np.maximum(count, 1)
    xs = np.where(finite, xs, mean)
    b = np.arange(bundle.n_trajectories)[:, None]
    for i, c in enumerate(observed):
        if c is not None:
            data = bundle.y[b, idx, c]
            xs[..., i] = np.where(np.isfinite(data), data, xs[..., i])
    u = bundle.u[b, idx]                                               # (B, K, m)
    t = np.broadcast_to(bundle.times[idx], idx.shape)
    rows = np.isfinite(xs).all(-1) & np.isfinite(u).all(-1)
    if not rows.any():
        return
    tt, xt, ut = (torch.as_tensor(np.ascontiguousarray(a[rows]), dtype=torch.float64)
                  for a in (t, xs, u))
    eps = 1e-6
    with torch.no_grad():
        rhs = field.physics(tt, xt, ut)
        rms = torch.sqrt(torch.mean(rhs ** 2, dim=0)).numpy()
        rate = np.where(rms > 0, rms, scale / dynamics_time_scale(bundle))
        for j in zero:
            saved = field.raw[j].clone()
            field.raw[j] += eps              # scale 1 and raw 0: the value moves by eps
            slope = (field.physics(tt, xt, ut) - rhs) / eps
            field.raw[j] = saved
            size = torch.sqrt(torch.mean(slope ** 2, dim=0)).numpy()
            ratios = [rate[i] / size[i] for i in range(len(size))
                      if size[i] > 0 and np.isfinite(size[i]) and np.isfinite(rate[i])]
            value = float(np.median(ratios)) if ratios else 0.0
            if np.isfinite(value) and value > 0:
                transform.rescale(j, value)


def _physics_preview(field, x0, bundle, options) -> np.ndarray:
    """The untrained physics from the guessed x0 (for scales of unobserved states)."""
    idx = segment_grid(bundle)
    tau = torch.as_tensor(bundle.times[idx])
    inputs = input_signal(bundle.times, bundle.u, options.interpolation)
    # dopri5 with at most 2,000 steps (beyond one per sample), else the fit's own solver:
    # a long record sampled fast (Silverbox: 4,000 samples of a 69 Hz resonance) took
    # dopri5 past the limit, and a failed preview left the never-measured velocity with a
    # unit scale -- the network's output for it was then 1e4 times too small to learn the
    # cubic stiffness, and the hybrid fit equalled the linear physics
    for solver in (SolverOptions(max_steps=2000),
                   dataclasses.replace(options.solver_options(), adjoint=False)):
        try:
            with torch.no_grad():
                xs = solve_segments(field, torch.as_tensor(x0), tau, inputs, solver).numpy()
        except (SolverFailure, RuntimeError):
            continue
        xs[~np.isfinite(xs)] = np.nan
        return xs
    return np.full(idx.shape + (x0.shape[1],), np.nan)
