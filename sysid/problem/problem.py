"""A fitting problem: the hybrid field, learnable initial states and the data it must match.

:func:`build_problem` is deterministic given (model, data, options); ``fit`` trains the
problem it returns, and ``load`` rebuilds the same problem before restoring the trained
tensors, which is why scaling and initial guesses live in this folder and nowhere else.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import sympy as sp
import torch
from torch import nn

from ..data.bundle import DataBundle
from ..errors import ModelWarning
from ..model.field import HybridField
from ..model.pde import HybridPDE, local_mlp_inputs
from ..model.pde_field import LocalResidualNet, PDEField
from ..solve.integrate import SolverFailure, SolverOptions, solve_segments
from .field_prior import FieldPrior
from .solver_choice import choose_solver
from .noise import noise_model
from ..model.parameters import transform_for
from ..model.limits import check_network
from ..model.residual import ResidualNet
from .segments import (Segments, holdout_windows, later_starts, segment_grid, shooting_windows,
                       window_length)
from .timescale import residual_time_unit, time_unit_note
from .starts import (_physics_preview, _robust_std, _scale_zero_guesses, initial_states,
                     input_signal, state_signs)

__all__ = ["Problem", "build_problem"]


class Problem(nn.Module):
    """Everything the loss needs, as tensors. ``x0 = loc + scale * z`` per trajectory.

    With shooting windows, each window after a trajectory's first starts from its own
    learnable state, and a continuity penalty ties it to the end of the previous window;
    ``use_windows(False)`` switches to single shooting from x0 over whole trajectories.
    """

    def __init__(self, field: HybridField, z0: torch.Tensor, loc, scale, bundle: DataBundle,
                 solver: SolverOptions, noise: str, interpolation: str,
                 windows=None, zw: torch.Tensor | None = None, continuity: float = 0.01,
                 holdout: np.ndarray | None = None, unpinned=None, signs=None):
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
        self.prior = None                # a field's smoothness prior (FieldPrior) or None
        self.window_starts: list = []
        self.continuity = continuity
        # States that no observation involves: their units are not fixed by the data
        unpinned = np.zeros(len(loc), bool) if unpinned is None else np.asarray(unpinned, bool)
        self.register_buffer("unpinned", torch.as_tensor(unpinned), persistent=False)
        n = len(loc)
        # +1 (-1) for a state declared positive or nonnegative (negative or nonpositive):
        # its start stays on that side of 0 (to_x); None where no state is signed
        signs = np.zeros(n) if signs is None else np.asarray(signs, float)
        self.register_buffer("signs", torch.as_tensor(signs, dtype=torch.float64)
                             if signs.any() else None, persistent=False)
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
        return self.to_x(self.z0)

    def to_x(self, z: torch.Tensor) -> torch.Tensor:
        """States from scaled start variables: ``loc + scale * z``."""
        return self.loc + self.scale * z

    def to_z(self, x) -> torch.Tensor:
        """The inverse of :meth:`to_x`; a signed state's start on the wrong side of 0 is
        moved to 0 (see :meth:`project_`)."""
        x = torch.as_tensor(x, dtype=torch.float64)
        if self.signs is not None:
            x = torch.where(self.signs * x < 0, torch.zeros_like(x), x)
        return (x - self.loc) / self.scale

    def start_bounds(self, z: torch.Tensor) -> torch.Tensor:
        """Per element of the scaled starts ``z`` (..., n): the state's sign (+1 for a
        state declared positive or nonnegative, -1 for negative or nonpositive) where it
        sits at 0, its bound, else 0."""
        if self.signs is None:
            return torch.zeros_like(z)
        x = self.to_x(z)
        at = (self.signs != 0) & (self.signs * x <= 1e-12 * self.scale)
        return torch.where(at, self.signs.expand_as(z), torch.zeros_like(z))

    def project_(self) -> None:
        """Move every signed state's start (initial and window starts) that a step took
        past 0 back to 0: the optimisers take their steps in the plain scaled starts
        (no transform whose slope vanishes at 0 and traps a start there) and project."""
        if self.signs is None:
            return
        with torch.no_grad():
            for z in (self.z0, self.zw):
                if z.numel():
                    wrong = self.signs * self.to_x(z) < 0
                    if bool(wrong.any()):
                        z.copy_(torch.where(wrong, -self.loc / self.scale, z))

    def states(self, seg: Segments | None = None, starts=None) -> torch.Tensor:
        """States on each segment's own sample grid, (S, K, n)."""
        seg = seg or self.single
        starts = self.x0() if starts is None else starts
        return solve_segments(self.field, starts, seg.tau, seg.inputs, self.solver)

    def loss(self, residual_penalty: float, weight_decay: float):
        seg, parts = (self.windows if self.active else self.single), {}
        starts = None
        if self.active:
            starts = torch.cat([self.x0(), self.to_x(self.zw)])[self.source]
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
        if self.prior is not None:
            parts["prior"] = 0.5 * (self.prior.rows(self.x0()) ** 2).sum() / self.noise.total
            total = total + parts["prior"]
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
    transform = transform_for(syms, guesses, getattr(model, "bounds", None))
    raw = transform.inverse(guesses) if syms else torch.zeros(0, dtype=torch.float64)
    field_model = isinstance(model, HybridPDE)
    kind = PDEField if field_model else HybridField
    field = kind(model, bundle.channels, transform, raw, None)
    n = len(model.states)
    if like is not None and tuple(like.z0.shape) != (bundle.n_trajectories, n):
        like = None                      # not the same states on the same data
    length = window_length(bundle, options.shooting, field_model)
    windows = shooting_windows(bundle, length) if length is not None else None
    later = later_starts(windows) if windows is not None else []
    if windows is not None and not later:
        windows = None
    reuse = bool(later) and like is not None and like.window_starts == later
    if like is not None:
        loc, scale = like.loc.numpy().copy(), like.scale.numpy().copy()
        x0 = like.x0().detach().numpy()
        xw = like.to_x(like.zw).detach().numpy() if reuse else None
    else:
        x0, observed = initial_states(model, field, bundle)
        xw = None
        note = None if field_model else time_unit_note(model, field, bundle, x0)
        if note:                         # guesses written for another time unit?
            warnings.warn(note, ModelWarning, stacklevel=4)
    if later and xw is None:
        xw, _ = initial_states(model, field, bundle, later)
    options = _resolve_solver(options, model, field, bundle, x0, xw, later)
    if like is None:
        loc, scale = np.zeros(n), np.ones(n)
        sim = _physics_preview(field, x0, bundle, options)
        for i, c in enumerate(observed):
            series = bundle.y[..., c] if c is not None and bundle.mask[..., c].any() \
                else sim[..., i]
            loc[i] = float(np.nanmean(series)) if np.isfinite(series).any() else 0.0
            scale[i] = _robust_std(series)
        if field_model:                      # a field is one quantity: one unit for it
            loc, scale, spreads = _field_units(model, bundle)
        _scale_zero_guesses(field, guesses, bundle, sim, observed, scale)
    if field_model and like is not None:          # the same data: the same spreads
        spreads = _field_units(model, bundle)[2]
    if model.residual is not None and field_model and model.residual.local:
        field.residual = _build_local_residual(model, bundle, gen,
                                               sim if like is None else x0[:, None, :], spreads)
    elif model.residual is not None:
        field.residual = _build_residual(model, bundle, loc, scale, gen)
    holdout = None
    if options.validation > 0:
        if windows is None or len(windows[1]) < 4:
            raise ValueError(
                f"fit option validation={options.validation} holds out shooting windows, "
                f"but this data gives {0 if windows is None else len(windows[1])} window(s) "
                f"(at least 4 are needed: records longer than 10 samples, shooting='auto' or "
                f"a window length). Use validation=0 for this data.")
        holdout = holdout_windows(windows, bundle.mask.shape[:2], options.validation)
    problem = Problem(field, torch.zeros(len(x0), n, dtype=torch.float64), loc, scale, bundle,
                      options.solver_options(), options.noise,
                      options.interpolation, windows=windows,
                      zw=torch.zeros(len(xw), n, dtype=torch.float64) if later else None,
                      continuity=options.continuity, holdout=holdout,
                      unpinned=_unpinned(model, bundle),
                      signs=None if field_model else state_signs(model))
    with torch.no_grad():
        problem.z0.copy_(problem.to_z(x0))
        if later:
            problem.zw.copy_(like.zw.detach() if reuse else problem.to_z(xw))
    if field_model:
        problem.prior = FieldPrior(model.lattice, spreads,
                                   max(1, len(bundle.channels) // len(model.field_names)))
    problem.options = options            # solver="auto" made concrete
    return problem


def _unpinned(model, bundle) -> list[bool]:
    """States whose units nothing pins: no observation involves them, and no network
    reads them through a fixed input scaling (ResidualNet's shift and spread)."""
    involved = set().union(*(sp.sympify(model.channels[c]).free_symbols
                             for j, c in enumerate(bundle.channels) if bundle.mask[..., j].any()))
    if model.residual is not None:
        involved |= {s for s in model.states if s.name in model.residual_inputs}
    return [s not in involved for s in model.states]


def _resolve_solver(options, model, field, bundle, x0, xw, later):
    """``solver="auto"`` made concrete (see :mod:`sysid.problem.solver_choice`) from the
    guessed states at the trajectories' starts and the shooting windows' starts; other
    choices are kept."""
    if options.solver != "auto":
        return options
    starts = list(enumerate(bundle.t_first)) + list(later)
    states = np.concatenate([x0] + ([xw] if later else []))
    b = np.array([i for i, _ in starts])
    k = np.array([j for _, j in starts])
    chosen = choose_solver(field, states, bundle.times, bundle.times[k], bundle.u[b, k],
                           options.solver_options(), isinstance(model, HybridPDE))
    return dataclasses.replace(options, solver=chosen.method, substeps=chosen.substeps,
                               max_step=chosen.max_step)


def _build_residual(model, bundle, loc, scale, gen) -> ResidualNet:
    names = model.state_names + model.input_names
    u_loc = [float(np.nanmean(bundle.u[..., j])) for j in range(bundle.u.shape[-1])]
    u_scale = [_robust_std(bundle.u[..., j]) for j in range(bundle.u.shape[-1])]
    shift = np.concatenate([loc, u_loc])
    spread = np.concatenate([scale, u_scale])
    read = [names.index(r) for r in model.residual_inputs]
    write = [model.state_names.index(s) for s in model.residual_states]
    check_network(model.residual.width, model.residual.depth, len(read), len(write),
                  "sysid.MLP: ")          # before anything of its size is allocated
    tau = residual_time_unit(bundle)
    out_scale = [scale[i] / tau for i in write]
    out_index = None
    coefficients = getattr(model, "residual_coefficients", None)
    if coefficients is not None:    # one rate: its unit the fastest state's rate per unit c
        unit = max(u / abs(c) for u, c in zip(out_scale, coefficients))
        out_scale = [c * unit for c in coefficients]
        out_index = [0] * len(write)
    spec = model.residual
    return ResidualNet(len(model.states), read, write, shift[read], spread[read], out_scale,
                       width=spec.width, depth=spec.depth, activation=spec.activation,
                       generator=gen, out_index=out_index)


def _field_units(model, bundle) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Location and scale of every grid state, and each field's spread: the field's mean
    and spread over all its sensors' measurements (the data alone, the same for every
    point of the field, so that the prior and the network's unit do not depend on the
    parameters' guesses)."""
    n = len(model.lattice.points)
    loc, scale = np.zeros(model.lattice.n_states), np.ones(model.lattice.n_states)
    spreads = []
    for k in range(len(model.field_names)):
        mine = set(model.state_names[k * n:(k + 1) * n])
        cols = [j for j, c in enumerate(bundle.channels) if c in mine]
        values = bundle.y[..., cols][bundle.mask[..., cols]] if cols else np.zeros(0)
        spreads.append(_robust_std(values) if values.size > 1 else 1.0)
        loc[k * n:(k + 1) * n] = float(np.mean(values)) if values.size else 0.0
        scale[k * n:(k + 1) * n] = spreads[-1]
    return loc, scale, spreads


def _build_local_residual(model, bundle, gen, states, spreads) -> LocalResidualNet:
    """A :class:`LocalResidualNet` whose features are standardised over ``states``
    ((B, T, n): the untrained physics from the guessed initial field) and whose output
    unit is each field's spread (``spreads``) per :func:`residual_time_unit`."""
    spec, lattice = model.residual, model.lattice
    wanted = tuple(local_mlp_inputs(model))
    with torch.no_grad():
        x = torch.as_tensor(np.nan_to_num(np.asarray(states, dtype=np.float64)))
        values = lattice.features(lattice.to_grid(x), wanted)     # (B, T, F, *shape)
        values = values.movedim(-1 - len(lattice.shape), -1).reshape(-1, len(wanted))
    shift = values.mean(0)
    deviation = values.std(0)
    deviation = torch.where(deviation > 0, deviation, torch.ones_like(deviation))
    unit = residual_time_unit(bundle)
    return LocalResidualNet(model, shift, deviation, [s / unit for s in spreads],
                            width=spec.width, depth=spec.depth, activation=spec.activation,
                            generator=gen)
