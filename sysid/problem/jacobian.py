"""The weighted residuals of a :class:`~sysid.problem.Problem` and their Jacobian.

:func:`linearise` gives the objective, the residual vector (one row per observed value,
weighted by its channel's noise level, plus the continuity rows on shooting windows) and
its dense Jacobian in the raw parameters and the start states, by central differences in
one batched solve. Levenberg-Marquardt (:mod:`sysid.training.levenberg_marquardt`), the
Laplace curvature (:mod:`sysid.uncertainty`) and the symbolic summary's refits read it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..solve.integrate import solve_segments

__all__ = ["linearise", "jacobian_bytes", "objective_and_weights", "STEP"]

#: Central-difference step of the Jacobian, in raw parameter and scaled state units.
STEP = 1e-5

def jacobian_bytes(problem) -> int:
    """Bytes of the dense Jacobian that :func:`linearise` builds on the current objective:
    a row per observation (and per continuity gap and state, on shooting windows), a
    column per raw parameter and per start state."""
    n = int(problem.loc.numel())
    seg = problem.windows if problem.active else problem.single
    rows = int(seg.mask.sum())
    starts = int(problem.z0.shape[0])
    if problem.active:
        rows += int(problem.pairs[0].numel()) * n
        starts += int(problem.zw.shape[0])
    return 8 * rows * (int(problem.field.raw.numel()) + starts * n)


def objective_and_weights(problem, flat: torch.Tensor):
    """The objective ``f`` (log-likelihood units) of the masked residuals ``flat``
    (observations, channels) and the weight of each channel that makes it
    ``const + 1/2 |w r|^2`` to first order (see :mod:`sysid.training.levenberg_marquardt`)."""
    noise = problem.noise
    sse = (flat.detach() ** 2).sum(0)
    f, w = 0.0, torch.zeros(flat.shape[-1], dtype=flat.dtype)
    for c, (n_c, known) in enumerate(zip(noise.counts, noise.known)):
        if n_c == 0:
            continue
        if known is not None:
            f += 0.5 * float(sse[c]) / known ** 2 + n_c * float(np.log(known))
            w[c] = 1.0 / known
        else:
            level = float(sse[c]) / n_c + float(noise.floor[c])
            f += 0.5 * n_c * float(np.log(level))
            w[c] = float(np.sqrt(1.0 / level))
    return f, w


def _one_sided(problem, starts: torch.Tensor, h: torch.Tensor):
    """The steps up and down of each start component (n, S): ``h`` both ways, except for a
    signed state within one step of 0 (where it is held by :meth:`Problem.project_`),
    whose difference is one-sided into its own side: a step past 0 would read the physics
    at its floor and a measurement of the state below 0 (a log-normal one: its log)."""
    if problem.signs is None:
        return h, h
    signs = problem.signs.view(-1, 1)                             # (n, 1)
    near = signs * problem.to_x(starts).T < h * problem.scale.view(-1, 1)
    zero = torch.zeros_like(h)
    return (torch.where(near & (signs < 0), zero, h),
            torch.where(near & (signs > 0), zero, h))


def _steps(problem, starts: torch.Tensor, P: int, step: float) -> torch.Tensor:
    """Central-difference step of each column and segment, (P + n, S): ``step`` for the
    raw parameters; for a start state, ``step`` in scaled units, shortened where the
    state itself is much smaller than its scale (at most ``100 |x| / scale`` of it, at
    least ``1e-6``). A state observed over decades (Robertson's y3 starts at 1.6e-8
    with a scale of 0.36) would otherwise be moved by 3.6e-6, two hundred times its
    own size, and through a log-normal likelihood the difference is meaningless."""
    S, n = starts.shape
    size = problem.to_x(starts).abs() / problem.scale     # (S, n)
    state = step * torch.clamp(100.0 * size, 1e-6, 1.0)
    return torch.cat([torch.full((P, S), step, dtype=torch.float64), state.T])


def linearise(problem, step: float = STEP):
    """Objective ``f``, weighted residuals ``r`` (N,) and their Jacobian (N, P + M n) in
    the raw parameters and the (scaled) start states, row-major: the initial states
    ``z0`` (B, n) and, on shooting windows (``problem.active``), the window starts
    ``zw`` (W, n) after them (M = B + W). On windows, ``r`` ends with the continuity rows
    ``(end of window a - start of window b) / (continuity * scale)``.

    Central differences, in one batched solve: the S segments (trajectories or windows,
    each with its own start) are copied ``2 (P + n) + 1`` times; copies ``2k + 1`` and
    ``2k + 2`` move raw parameter ``k`` by ``+-step`` (each copy has its own parameter
    values, :meth:`HybridField.per_row_parameters`), the next ``2 n`` move the ``i``-th
    component of every segment's start at once (a segment's residuals depend on its own
    start only). All copies share the adaptive solver's steps, so the differences are
    those of one smooth discrete solution map (no step-size noise), accurate to about
    ``step ** 2``. Raw parameters and scaled states are of order one, which sets ``step``
(shorter for a start far smaller than its state's scale, :func:`_steps`).
    (Forward-mode automatic differentiation gives the same columns to 1e-13 but ran 15x
    slower here: dual tensors go through Python-level decompositions.)
    """
    field = problem.field
    windows = bool(problem.active)
    seg = problem.windows if windows else problem.single
    z = torch.cat([problem.z0, problem.zw]) if windows else problem.z0
    z = z.detach()
    source = problem.source if windows else torch.arange(z.shape[0])
    S, M, n = seg.tau.shape[0], z.shape[0], z.shape[1]
    P = field.raw.numel()
    K = P + n
    copies = 2 * K + 1
    raw = field.raw.detach().expand(copies, S, P).clone()
    starts = z[source].expand(copies, S, n).clone()
    h = _steps(problem, z[source], P, step)                        # (K, S)
    for k in range(P):
        raw[2 * k + 1, :, k] += h[k]
        raw[2 * k + 2, :, k] -= h[k]
    up, down = _one_sided(problem, z[source], h[P:])             # (n, S) each
    for i in range(n):
        starts[2 * (P + i) + 1, :, i] += up[i]
        starts[2 * (P + i) + 2, :, i] -= down[i]
    width = torch.cat([2.0 * h[:P], up + down])                    # (K, S)
    rows = torch.arange(S).repeat(copies)
    with torch.no_grad(), field.per_row_parameters(field.transform.forward(
            raw.reshape(copies * S, P))):
        xs = solve_segments(field, problem.to_x(starts.reshape(copies * S, n)),
                            seg.tau[rows], seg.inputs.select(rows),
                            dataclasses.replace(problem.solver, adjoint=False))
        pred = field.observe(seg.tau[rows], xs, seg.u_grid[rows])
        res = problem.noise.residuals(pred, seg.y[rows], seg.mask[rows])
    res = res.reshape(copies, S, *res.shape[1:])
    primal = res[0]
    tangent = (res[1::2] - res[2::2]) / width.view(K, S, *([1] * (res.dim() - 2)))
    mask = seg.mask
    primal = torch.where(mask, primal, torch.zeros((), dtype=primal.dtype))
    flat = primal.reshape(-1, primal.shape[-1])
    f, w = objective_and_weights(problem, flat)
    r = (primal * w)[mask].numpy()
    tangent = torch.where(mask, tangent * w, torch.zeros((), dtype=tangent.dtype))
    J = np.zeros((r.size, P + M * n))
    for k in range(P):
        J[:, k] = tangent[k][mask].numpy()
    owner = source.view(S, *([1] * (mask.dim() - 1))).expand(mask.shape)[mask].numpy()
    rows_r = np.arange(r.size)
    for i in range(n):        # row j depends on the start of its own segment, owner[j]
        J[rows_r, P + owner * n + i] = tangent[P + i][mask].numpy()
    f, r, J = _with_prior(problem, f, r, J, P)
    if not windows:
        return f, r, J
    # continuity rows: they depend on the end of window a (its parameters and start) and
    # on the start of window b (directly, slope -1 / continuity)
    a, b = problem.pairs
    xs = xs.reshape(copies, S, *xs.shape[1:])
    ends = xs[:, a, seg.last[a]]                                  # (copies, G, n)
    unit = problem.gap_unit(problem.to_x(z))     # (n,)
    width = problem.continuity * unit
    gap = ((ends[0] - problem.to_x(z[source[b]])) / width).numpy()
    d_end = ((ends[1::2] - ends[2::2]) / (2.0 * h[:, a, None]) / width).numpy()  # (K, G, n)
    G = gap.shape[0]
    Jg = np.zeros((G * n, P + M * n))
    rows_g = np.arange(G)[:, None] * n + np.arange(n)[None, :]   # (G, n) row of (g, i)
    for k in range(P):
        Jg[rows_g.ravel(), k] = d_end[k].ravel()
    src_a, src_b = source[a].numpy()[:, None], source[b].numpy()[:, None]
    for i in range(n):
        Jg[rows_g, P + src_a * n + i] = d_end[P + i]
        Jg[rows_g[:, i], P + src_b[:, 0] * n + i] -= (problem.scale[i] / width[i]).item()
    _unit_columns(problem, z, unit, gap, Jg, rows_g, P)
    f += 0.5 * float(np.sum(gap ** 2))
    return f, np.concatenate([r, gap.ravel()]), np.vstack([J, Jg])


def _with_prior(problem, f, r, J, P):
    """Append a field's smoothness-prior rows (:class:`FieldPrior`) on the initial states,
    and their Jacobian in the scaled initial states ``z0`` (the first columns after the
    parameters)."""
    prior = problem.prior
    if prior is None:
        return f, r, J
    with torch.no_grad():
        rows = prior.rows(problem.x0()).numpy()
    B, n = problem.z0.shape
    Jp = np.zeros((rows.size, J.shape[1]))
    Jp[:, P:P + B * n] = prior.jacobian(B) * np.tile(problem.scale.numpy(), B)[None, :]
    return f + 0.5 * float(np.sum(rows ** 2)), np.concatenate([r, rows]), np.vstack([J, Jp])


def _unit_columns(problem, z, unit, gap, Jg, rows_g, P) -> None:
    """Add to the continuity rows the derivative of their unit: for a state that no
    observation involves, gaps are measured in the spread of all window starts
    (:meth:`Problem.gap_unit`), which moves with every start of that state."""
    M, n = z.shape
    if M < 2:
        return
    xz = problem.to_x(z).numpy()
    dev = xz - xz.mean(axis=0)
    unit = unit.numpy()
    for i in np.flatnonzero(problem.unpinned.numpy()):
        # d gap / d z[m, i] = -gap / unit * d unit / d z[m, i]
        d_unit = float(problem.scale[i]) * dev[:, i] / ((M - 1) * unit[i])     # (M,)
        Jg[rows_g[:, i][:, None], P + np.arange(M)[None, :] * n + i] -= \
            (gap[:, i] / unit[i])[:, None] * d_unit[None, :]
