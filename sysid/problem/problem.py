"""A fitting problem: the hybrid field, learnable initial states and the data it must match.

:func:`build_problem` is deterministic given (model, data, options); ``fit`` trains the
problem it returns, and ``load`` rebuilds the same problem before restoring the trained
tensors, which is why scaling and initial guesses live here and nowhere else.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import sympy as sp
import torch
from torch import nn

from ..data.bundle import DataBundle
from ..model.field import HybridField
from ..solve.integrate import InputSignal, SolverFailure, SolverOptions, solve_segments
from .noise import noise_model
from ..model.parameters import transform_for
from ..model.residual import ResidualNet

__all__ = ["Problem", "build_problem", "segment_grid", "segment_tensors"]


def observed_rows(bundle: DataBundle) -> list[np.ndarray]:
    """Per trajectory, the time indices where it has at least one observation."""
    any_obs = bundle.mask.any(axis=-1)
    return [np.flatnonzero(any_obs[b]) for b in range(bundle.n_trajectories)]


def sample_interval(bundle: DataBundle) -> float | None:
    """The median interval between a trajectory's consecutive observed samples: the
    interval the fit integrated across (with ``rk4``, in ``substeps`` steps). Each
    trajectory counts its own samples: the shared time grid of several irregular
    trajectories is finer than any of them. None without two samples."""
    gaps = np.concatenate([np.diff(bundle.times[r]) for r in observed_rows(bundle)])
    gaps = gaps[np.isfinite(gaps) & (gaps > 0)]
    return float(np.median(gaps)) if gaps.size else None


def _pad_rows(rows) -> np.ndarray:
    K = max(len(r) for r in rows)
    return np.stack([np.concatenate([r, np.full(K - len(r), r[-1])]) for r in rows])


def segment_grid(bundle: DataBundle) -> np.ndarray:
    """Per trajectory, the indices of its observed times, padded by repeating the last."""
    return _pad_rows(observed_rows(bundle))


def _padding(idx) -> np.ndarray:
    pad = np.zeros(idx.shape, dtype=bool)
    pad[:, 1:] = idx[:, 1:] == idx[:, :-1]
    return pad


def segment_tensors(bundle: DataBundle, idx, traj=None):
    """Times, observations, mask and inputs on the segment grid ``idx`` (S, K)."""
    b = (np.arange(bundle.n_trajectories) if traj is None else np.asarray(traj))[:, None]
    mask = bundle.mask[b, idx] & ~_padding(idx)[..., None]
    return (torch.as_tensor(bundle.times[idx], dtype=torch.float64),
            torch.as_tensor(np.nan_to_num(bundle.y[b, idx]), dtype=torch.float64),
            torch.as_tensor(mask),
            torch.as_tensor(np.nan_to_num(bundle.u[b, idx]), dtype=torch.float64))


def shooting_windows(bundle: DataBundle, length: int):
    """Split each trajectory's samples into windows of ``length`` samples that share
    their end points; return (indices (S, W), trajectory of each window, first-window flag)."""
    rows, traj, first = [], [], []
    for b, r in enumerate(observed_rows(bundle)):
        p = 0
        while True:
            stop = p + length
            if len(r) - stop < max(2, length // 3):   # fold a short tail into this window
                stop = len(r)
            rows.append(r[p:stop])
            traj.append(b)
            first.append(p == 0)
            if stop >= len(r):
                break
            p = stop - 1
    return _pad_rows(rows), np.array(traj), np.array(first)


class Segments:
    """Tensors of a batch of segments (trajectories or shooting windows).

    ``mask`` marks the observations that train the model; ``val`` those held out
    (``holdout``, a (trajectory, time index) boolean array) to score it.
    """

    def __init__(self, bundle, idx, traj, inputs: InputSignal, skip_first=None, holdout=None):
        self.idx = idx
        self.traj = torch.as_tensor(traj, dtype=torch.long)
        self.tau, self.y, self.mask, self.u_grid = segment_tensors(bundle, idx, traj)
        if skip_first is not None:           # a shared end point is counted once
            self.mask[torch.as_tensor(skip_first), 0] = False
        self.val = None
        if holdout is not None:
            held = torch.as_tensor(holdout[np.asarray(traj)[:, None], idx])[..., None]
            self.val = self.mask & held
            self.mask = self.mask & ~held
        self.valid = torch.as_tensor(~_padding(idx))
        self.last = self.valid.long().sum(1) - 1
        self.inputs = inputs.select(self.traj)


class Problem(nn.Module):
    """Everything the loss needs, as tensors. ``x0 = loc + scale * z`` per trajectory.

    With shooting windows, each window after a trajectory's first starts from its own
    learnable state, and a continuity penalty ties it to the end of the previous window;
    ``use_windows(False)`` switches to single shooting from x0 over whole trajectories.
    """

    def __init__(self, field: HybridField, z0: torch.Tensor, loc, scale, bundle: DataBundle,
                 solver: SolverOptions, noise: str, interpolation: str,
                 windows=None, zw: torch.Tensor | None = None, continuity: float = 0.01,
                 holdout: np.ndarray | None = None, unpinned=None):
        super().__init__()
        self.field = field
        self.z0 = nn.Parameter(z0)
        self.register_buffer("loc", torch.as_tensor(loc, dtype=torch.float64))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float64))
        self.bundle = bundle
        self.solver = solver
        self.inputs = input_signal(bundle.times, bundle.u, interpolation)
        self.holdout = holdout
        self.single = Segments(bundle, segment_grid(bundle), np.arange(bundle.n_trajectories),
                               self.inputs, holdout=holdout)
        self.tau, self.y, self.mask = self.single.tau, self.single.y, self.single.mask
        mask = self.mask.numpy()         # the training observations
        self.noise = noise_model(noise, np.where(mask, self.y.numpy(), np.nan), mask,
                                 bundle.noise_std)
        self.windows = None
        self.window_starts: list = []
        self.continuity = continuity
        # States that no observation involves: their units are not fixed by the data
        unpinned = np.zeros(len(loc), bool) if unpinned is None else np.asarray(unpinned, bool)
        self.register_buffer("unpinned", torch.as_tensor(unpinned), persistent=False)
        n = len(loc)
        self.zw = nn.Parameter(zw if zw is not None else torch.zeros(0, n, dtype=torch.float64))
        if windows is not None:
            idx, traj, first = windows
            self.windows = Segments(bundle, idx, traj, self.inputs, skip_first=~first,
                                    holdout=holdout)
            self.window_starts = later_starts(windows)
            # starts = cat([x0, xw])[source]: first windows read x0, the others xw
            src = np.where(first, traj, 0)
            src[~first] = bundle.n_trajectories + np.arange((~first).sum())
            self.source = torch.as_tensor(src)
            nxt = np.flatnonzero(~first)
            self.pairs = (torch.as_tensor(nxt - 1), torch.as_tensor(nxt))
        self.use_windows(self.windows is not None)

    def use_windows(self, on: bool) -> None:
        self.active = bool(on) and self.windows is not None
        self.zw.requires_grad_(self.active)

    def objective(self) -> dict:
        """The objective the problem is on (shooting windows or whole trajectories, and
        the continuity tolerance), as plain data: a saved fit is rebuilt on the objective
        its training ended on, whose fitted noise levels and curvature it reports."""
        return {"windows": bool(self.active), "continuity": float(self.continuity)}

    def use_objective(self, objective: dict) -> None:
        """Switch to an objective given by :meth:`objective`."""
        self.use_windows(objective["windows"])
        self.continuity = float(objective["continuity"])

    def x0(self) -> torch.Tensor:
        return self.loc + self.scale * self.z0

    def states(self, seg: Segments | None = None, starts=None) -> torch.Tensor:
        """States on each segment's own sample grid, (S, K, n)."""
        seg = seg or self.single
        starts = self.x0() if starts is None else starts
        return solve_segments(self.field, starts, seg.tau, seg.inputs, self.solver)

    def loss(self, residual_penalty: float, weight_decay: float):
        seg, parts = (self.windows if self.active else self.single), {}
        starts = None
        if self.active:
            starts = torch.cat([self.x0(), self.loc + self.scale * self.zw])[self.source]
        xs = self.states(seg, starts)
        pred = self.field.observe(seg.tau, xs, seg.u_grid)
        total = parts["nll"] = self.noise.nll(pred, seg.y, seg.mask)
        if seg.val is not None:
            parts["validation"] = (self._window_validation(xs.detach()) if self.active
                                   else self.validation_score(pred.detach(), seg))
        if self.active:
            a, b = self.pairs
            ends = xs[a, seg.last[a]]
            gap = ((ends - starts[b]) / (self.continuity * self.gap_unit(starts))) ** 2
            parts["continuity"] = 0.5 * gap.sum() / self.noise.total
            total = total + parts["continuity"]
        net = self.field.residual
        if net is not None:
            r = net.scaled(torch.cat([xs, seg.u_grid], dim=-1))
            w = seg.valid.unsqueeze(-1).to(r.dtype)
            parts["residual"] = (r ** 2 * w).sum() / (w.sum() * r.shape[-1])
            total = total + residual_penalty * parts["residual"] \
                + weight_decay * net.weight_norm2()
        if not torch.isfinite(total):
            raise SolverFailure("the loss is not finite (NaN or inf)")
        return total, parts


    def gap_unit(self, starts: torch.Tensor) -> torch.Tensor:
        """The unit in which continuity gaps are measured, per state: the state's scale,
        or, for a state that neither an observation nor the residual network reads, the
        current spread of its window starts. The units of such a state are free (a
        never-measured tank level under a square root can be rescaled with its parameters
        without changing any prediction), and in fixed units a fit could shrink the state
        until its gaps cost nothing, decoupling the windows (measured: Cascaded Tanks
        without a residual, pump gain k4 -> 1e-6 and the upper level at 1e-4 V, test RMSE
        0.80 V against 0.67 V). A network reads its inputs through a fixed scaling, which
        pins their units (measured, the Tanks hybrid: the spread unit gave 0.56 V, the
        fixed one 0.48 V)."""
        if not bool(self.unpinned.any()):
            return self.scale
        if starts.shape[0] < 2:
            return self.scale
        dev = starts - starts.mean(dim=0)
        spread = torch.sqrt((dev ** 2).sum(dim=0) / (starts.shape[0] - 1)
                            + (1e-6 * self.scale) ** 2)
        return torch.where(self.unpinned, spread, self.scale)

    def validation_score(self, pred, seg: Segments, rows=None) -> torch.Tensor:
        """Mean squared standardised error on the held-out observations: residuals over a
        fixed noise scale per channel (``noise.reference``: the known level, else an
        estimate from the data alone), about 1 when the model predicts them to within the
        noise; ``pred`` holds the segments ``rows`` of ``seg`` (all of them by default)."""
        y, val = (seg.y, seg.val) if rows is None else (seg.y[rows], seg.val[rows])
        r = self.noise.residuals(pred, y, val) / self.noise.reference
        r = torch.where(val, r, torch.zeros((), dtype=r.dtype))
        return (r ** 2).sum() / val.sum().clamp_min(1)

    def _window_validation(self, xs: torch.Tensor) -> torch.Tensor:
        """The held-out score on shooting windows: each held-out window is predicted from
        the end of the window before it, as a forecast across the gap. (Its own start
        state is learned only through the continuity penalty, and early in training it
        still sits on the data at the window's start, which would make a barely fitted
        model look good on the held-out samples.)"""
        seg = self.windows
        a, b = self.pairs
        held = seg.val.flatten(1).any(1)[b]
        before, rows = a[held], b[held]
        with torch.no_grad():
            sub = solve_segments(self.field, xs[before, seg.last[before]], seg.tau[rows],
                                 seg.inputs.select(rows), self.solver)
            pred = self.field.observe(seg.tau[rows], sub, seg.u_grid[rows])
        return self.validation_score(pred, seg, rows)


def holdout_windows(windows, n_samples: tuple, fraction: float, seed: int) -> np.ndarray:
    """Hold out about ``fraction`` of the shooting windows: never a trajectory's first
    or last window, never two in a row; the rest of the data trains the model. Returns
    a (trajectory, time index) boolean array of held-out observations."""
    idx, traj, first = windows
    last = np.r_[traj[1:] != traj[:-1], True]
    inner = np.flatnonzero(~first & ~last)
    k = max(2, int(round(1.0 / fraction)))
    offset = int(np.random.default_rng(seed).integers(k))
    chosen = inner[(np.arange(len(inner)) + offset) % k == 0]
    held = np.zeros(n_samples, dtype=bool)
    for j in chosen:
        held[traj[j], idx[j, 1:]] = True        # its first sample ends the window before
    return held


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


def _robust_std(a) -> float:
    a = np.asarray(a, dtype=float)
    a = a[np.isfinite(a)]
    s = float(np.std(a)) if a.size > 1 else 0.0
    if s > 0:
        return s
    m = float(np.max(np.abs(a))) if a.size else 0.0
    return m if m > 0 else 1.0


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


def _sign_constrained_start(model, free, bundle):
    """Start and bounds of the search for unobserved states: 0 and unbounded, except for a
    state declared ``positive=True`` (``negative=True``), which starts at the typical size of
    the measured channels with that sign and stays on its side of 0 (a tank level under a
    square root, a concentration)."""
    typical = np.nanmedian(np.abs(bundle.y[bundle.mask])) if bundle.mask.any() else 1.0
    typical = float(typical) if np.isfinite(typical) and typical > 0 else 1.0
    start, low, high = np.zeros(len(free)), np.full(len(free), -np.inf), np.full(len(free), np.inf)
    for j, i in enumerate(free):
        sym = model.states[i]
        if sym.is_positive or sym.is_nonnegative:
            start[j], low[j] = typical, 1e-9 * typical
        elif sym.is_negative or sym.is_nonpositive:
            start[j], high[j] = -typical, -1e-9 * typical
    return start, (low, high)


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
    scale = np.array([_robust_std(bundle.y[..., c]) if c is not None else 1.0 for c in observed])
    start, bounds = _sign_constrained_start(model, free, bundle)
    x0[:, free] = start        # kept where nothing else informs the guess
    groups: dict = {}          # starts with the same observed slopes are solved together
    for j in range(len(starts)):
        known = tuple(i for i in range(n) if i not in free and np.isfinite(slopes[j, i]))
        if known:
            groups.setdefault(known, []).append(j)
    for known, rows in groups.items():
        rows = np.array(rows)
        b = np.array([starts[j][0] for j in rows])
        k = np.array([starts[j][1] for j in rows])
        t0 = torch.as_tensor(bundle.times[k])
        u = torch.as_tensor(np.nan_to_num(bundle.u[b, k]))
        known = list(known)

        def mismatch(v, sub=None, rows=rows, known=known, t0=t0, u=u):
            """Mismatch (G, len(known) + len(free)) of the starts ``rows[sub]`` (all rows
            for None) with their unobserved states at ``v``."""
            if sub is not None:
                rows, t0, u = rows[sub], t0[sub], u[sub]
            x = torch.as_tensor(x0[rows])
            x[:, free] = torch.as_tensor(v)
            with torch.no_grad():
                f = field.physics(t0, x, u).numpy()
            return np.concatenate([(f[:, known] - slopes[rows][:, known]) / scale[known],
                                   1e-3 * (v - start)], axis=1)

        found, ok = _batched_least_squares(mismatch, np.tile(start, (len(rows), 1)), bounds)
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


def build_problem(model, bundle: DataBundle, options, like: Problem | None = None) -> Problem:
    """Set up the field, scalings and initial guesses for ``model`` on ``bundle``.

    ``like``: a problem of a model with the same states on the same data (a symbolic
    candidate's previous, shorter refit). Its units (``loc``, ``scale``) and its fitted
    initial states and window starts are taken over instead of being guessed from the
    data: the refit continues in the same frame (the same continuity units) from
    trajectories that already fit the data, and skips the guesses' cost (a least-squares
    fit per start and a preview solve).
    """
    gen = torch.Generator().manual_seed(int(options.seed))
    syms = list(model.parameters)
    guesses = [model.parameters[s] for s in syms]
    transform = transform_for(syms, guesses)
    raw = transform.inverse(guesses) if syms else torch.zeros(0, dtype=torch.float64)
    field = HybridField(model, bundle.channels, transform, raw, None)
    n = len(model.states)
    if like is not None and tuple(like.z0.shape) != (bundle.n_trajectories, n):
        like = None                      # not the same states on the same data
    if like is not None:
        loc, scale = like.loc.numpy().copy(), like.scale.numpy().copy()
        x0 = like.x0().detach().numpy()
    else:
        x0, observed = initial_states(model, field, bundle)
        loc, scale = np.zeros(n), np.ones(n)
        sim = _physics_preview(field, x0, bundle, options)
        for i, c in enumerate(observed):
            series = bundle.y[..., c] if c is not None and bundle.mask[..., c].any() \
                else sim[..., i]
            loc[i] = float(np.nanmean(series)) if np.isfinite(series).any() else 0.0
            scale[i] = _robust_std(series)
        _scale_zero_guesses(field, guesses, bundle, sim, observed, scale)
    if model.residual is not None:
        field.residual = _build_residual(model, bundle, loc, scale, gen)
    z0 = torch.as_tensor((x0 - loc) / scale, dtype=torch.float64)
    windows, zw, holdout = None, None, None
    length = window_length(bundle, options.shooting)
    if length is not None:
        windows = shooting_windows(bundle, length)
        later = later_starts(windows)
        if later and like is not None and like.window_starts == later:
            zw = like.zw.detach().clone()
        elif later:
            xw, _ = initial_states(model, field, bundle, later)
            zw = torch.as_tensor((xw - loc) / scale, dtype=torch.float64)
        else:
            windows = None
    if options.validation > 0:
        if windows is None or len(windows[1]) < 4:
            raise ValueError(
                f"fit option validation={options.validation} holds out shooting windows, "
                f"but this data gives {0 if windows is None else len(windows[1])} window(s) "
                f"(at least 4 are needed: records longer than 10 samples, shooting='auto' or "
                f"a window length). Use validation=0 for this data.")
        holdout = holdout_windows(windows, bundle.mask.shape[:2], options.validation,
                                  options.seed)
    # units are pinned by an observation of the state, or by a network that reads it
    # through a fixed input scaling (ResidualNet's shift and spread)
    involved = set().union(*(sp.sympify(model.channels[c]).free_symbols
                             for j, c in enumerate(bundle.channels) if bundle.mask[..., j].any()))
    if model.residual is not None:
        involved |= {s for s in model.states if s.name in model.residual_inputs}
    return Problem(field, z0, loc, scale, bundle, options.solver_options(), options.noise,
                   options.interpolation, windows=windows, zw=zw,
                   continuity=options.continuity, holdout=holdout,
                   unpinned=[s not in involved for s in model.states])


def later_starts(windows) -> list[tuple[int, int]]:
    """(trajectory, sample) where each shooting window after a trajectory's first starts:
    the windows with a learnable start state of their own."""
    idx, traj, first = windows
    return [(int(b), int(i[0])) for i, b, f in zip(idx, traj, first) if not f]


def window_length(bundle: DataBundle, shooting) -> int | None:
    """Samples per shooting window: ``shooting`` as given, or chosen from the data.

    "auto": trajectories of more than 10 samples are cut into windows of 5 samples, or
    fewer (down to 3) where 5 samples would span more than half an oscillation of the
    data (sparsely sampled oscillations; see :func:`samples_per_period`). Short windows
    keep the loss surface of long or oscillating records well-behaved (measured:
    Lotka-Volterra on the 21 lynx-hare samples lands in a local minimum with noise level
    0.57 by single shooting, and reaches the Stan reference, 0.22, with windows of 4 or 5
    samples) and batch the work across windows.
    """
    longest = max(len(r) for r in observed_rows(bundle))
    if shooting == "single":
        return None
    if shooting == "auto":
        if longest <= 10:
            return None
        spp = samples_per_period(bundle)
        return 5 if spp is None else int(np.clip(1 + spp // 2, 3, 5))
    return int(shooting) if int(shooting) < longest else None


def samples_per_period(bundle: DataBundle) -> float | None:
    """The fewest samples per oscillation among the observed channels (median over
    trajectories), or None where no channel oscillates (fewer than two full cycles).

    Cycles are counted as crossings of a band of +-0.25 standard deviations around the
    channel's mean (a crossing counts only once the series has left the band on the
    other side), so measurement noise around the mean does not add crossings.
    """
    rows = observed_rows(bundle)
    best = None
    for c in range(len(bundle.channels)):
        per = []
        for b, r in enumerate(rows):
            keep = r[bundle.mask[b, r, c]]
            v = bundle.y[b, keep, c]
            if len(v) < 8:
                continue
            z = (v - v.mean()) / (v.std() or 1.0)
            side, crossings = 0, 0
            for value in z:
                now = 1 if value > 0.25 else (-1 if value < -0.25 else 0)
                if now and side and now != side:
                    crossings += 1
                side = now or side
            if crossings >= 4:                  # two full cycles
                per.append(2 * len(v) / crossings)
        if per:
            spp = float(np.median(per))
            best = spp if best is None else min(best, spp)
    return best


def _scale_zero_guesses(field, guesses, bundle, sim, observed, scale) -> None:
    """Give each unconstrained parameter guessed as 0 the size of its term.

    An unconstrained parameter's raw value is its value over the size of its guess, so
    that every raw value is of order one; a guess of 0 has no size, and a scale of 1 left
    a coefficient whose size is 1e5 (Silverbox's cubic stiffness, in volts and seconds)
    crawling a few units per iteration. Its scale becomes the value at which its term is
    as large as the rest of its equation along the data: the RMS of the known physics'
    right-hand side over the RMS of the right-hand side's derivative in the parameter
    (median over the equations it appears in; where the rest of an equation is 0, the
    state's spread per tenth of the time span). States are the data where a channel
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
    span = float(bundle.times[-1] - bundle.times[0]) or 1.0
    eps = 1e-6
    with torch.no_grad():
        rhs = field.physics(tt, xt, ut)
        rms = torch.sqrt(torch.mean(rhs ** 2, dim=0)).numpy()
        rate = np.where(rms > 0, rms, scale / (span / 10.0))
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


def _build_residual(model, bundle, loc, scale, gen) -> ResidualNet:
    names = model.state_names + model.input_names
    u_loc = [float(np.nanmean(bundle.u[..., j])) for j in range(bundle.u.shape[-1])]
    u_scale = [_robust_std(bundle.u[..., j]) for j in range(bundle.u.shape[-1])]
    shift = np.concatenate([loc, u_loc])
    spread = np.concatenate([scale, u_scale])
    read = [names.index(r) for r in model.residual_inputs]
    write = [model.state_names.index(s) for s in model.residual_states]
    span = float(bundle.times[-1] - bundle.times[0]) or 1.0
    out_scale = [scale[i] / (span / 10.0) for i in write]
    spec = model.residual
    return ResidualNet(len(model.states), read, write, shift[read], spread[read], out_scale,
                       width=spec.width, depth=spec.depth, activation=spec.activation,
                       generator=gen)
