"""Levenberg-Marquardt for models without a network.

A model with only physical parameters (a distilled symbolic model, or physics the user
wrote completely) has few unknowns: its raw parameters and the initial state of each
trajectory. Its negative log-likelihood over whole trajectories (single shooting) is a sum
of squares in disguise, and a Gauss-Newton method with a trust region converges in a
handful of solves where a quasi-Newton method with line searches needs hundreds.

Objective, for each observed channel ``c`` with ``n_c`` samples and residuals ``r_c``
(log-space residuals for log-normal noise)::

    known noise level s_c:     f_c = SSE_c / (2 s_c^2)
    estimated noise level:     f_c = n_c / 2 * log(SSE_c / n_c + floor_c)

Around the current point both are ``const + 1/2 || w_c r_c ||^2`` to first order in
``SSE_c``, with ``w_c = 1 / s_c`` or ``w_c = sqrt(n_c / (SSE_c + n_c floor_c))``. Each
iteration linearises the weighted residuals (batched reverse-mode Jacobian), solves the
damped normal equations ``(J^T J + lambda diag(J^T J)) step = -J^T r`` and accepts the step
when the actual decrease of ``f`` is a reasonable fraction of the predicted one (Nielsen's
update of ``lambda``). The weights are re-evaluated at every accepted point, so the fixed
point is the minimum of ``f`` itself, not of a weighted least-squares surrogate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ._blas import blas_threads
from ._integrate import SolverFailure

__all__ = ["levenberg_marquardt", "linearise", "supports_gauss_newton", "jacobian_bytes",
           "MAX_JACOBIAN_BYTES"]

#: Stop when an accepted step improves ``f`` (log-likelihood units) by less than this.
F_TOLERANCE = 1e-6
#: Central-difference step of the Jacobian, in raw parameter and scaled state units.
STEP = 1e-5
#: Longest step in any raw coordinate (a factor e^3 for a log-scale parameter); longer
#: Gauss-Newton steps are shortened along their direction.
MAX_STEP = 3.0
#: Give up when the damping has to grow past this (no descent step can be found).
LAMBDA_MAX = 1e12


@dataclass
class LMReport:
    """What a Levenberg-Marquardt run did."""

    converged: bool
    iterations: int
    evaluations: int
    objective: float
    message: str


#: Largest dense Jacobian (bytes) that Levenberg-Marquardt builds; a phase whose Jacobian
#: would be larger runs L-BFGS instead. The peak memory of an iteration is about four
#: times the Jacobian (measured: a 0.92 GiB Jacobian, 24,800 x 5,002 on 2,500 shooting
#: windows, peaked at 3.6 GB), and on shooting windows the Jacobian grows with the square
#: of the record (a column per window start): 100 trajectories of 1,000 samples would
#: need 74.5 GiB.
MAX_JACOBIAN_BYTES = 2 ** 30


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


def supports_gauss_newton(problem) -> bool:
    """True when ``problem`` has no network and a least-squares noise model."""
    return (problem.field.residual is None
            and problem.noise.name in ("gaussian", "lognormal")
            and not any(p.requires_grad for p in problem.noise.parameters()))


def _objective_and_weights(problem, flat: torch.Tensor):
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


def _evaluate(problem) -> float:
    """The objective ``f`` at the current point: the fit's own loss (data term, plus the
    continuity penalty on shooting windows) in log-likelihood units."""
    with torch.no_grad():
        loss, _ = problem.loss(0.0, 0.0)
    f = float(loss) * problem.noise.total
    return f if np.isfinite(f) else float("inf")


def levenberg_marquardt(problem, iterations: int, *, lam: float = 1e-3,
                        on_accept=None, tolerance: float = 0.0) -> LMReport:
    """Minimise the single-shooting negative log-likelihood of ``problem`` over its raw
    parameters and initial states, in place, by at most ``iterations`` Jacobians,
    starting with damping ``lam``.

    ``on_accept(f, lam)`` is called after every accepted step (``f`` in log-likelihood
    units, ``lam`` the damping the next iteration starts from); a true return value stops
    the iterations there (early stopping on held-out data). ``tolerance``: it has also
    converged when an accepted step gains less than this many log-likelihood units (the
    fit's ``tolerance``, for its final polish, as the L-BFGS polish does).
    """
    size = problem.field.raw.numel() + problem.z0.numel() + \
        (problem.zw.numel() if problem.active else 0)
    with blas_threads(size):            # the normal equations are small: one BLAS thread
        return _iterate(problem, iterations, lam, on_accept, tolerance)


def _iterate(problem, iterations: int, lam: float, on_accept, tolerance: float = 0.0
             ) -> LMReport:
    raw, z0, zw = problem.field.raw, problem.z0, problem.zw
    blocks = [raw, z0] + ([zw] if problem.active else [])
    offsets = np.cumsum([0] + [b.numel() for b in blocks])
    params = [p for p in blocks if p.requires_grad and p.numel() > 0]
    sizes = [p.numel() for p in params]
    columns = np.concatenate([np.arange(offsets[j], offsets[j + 1])
                              for j, b in enumerate(blocks)
                              if any(p is b for p in params)] + [np.zeros(0, dtype=int)])
    # Every point is evaluated with its Jacobian (one batched solve, ``linearise``): on the
    # small batches of a fit a solve costs its operations' dispatch more than its rows, so
    # a trial point's Jacobian costs little more than its objective alone, and an accepted
    # step (the common case) needs no second solve at the new point. (Measured on a
    # pendulum refit of 10 + 5 iterations: 0.55x the time of the objective-first version
    # with the solver's fused stages of the same change, about 0.75x with those alone.)
    if not params:
        try:
            f = _evaluate(problem)
        except SolverFailure as err:
            return LMReport(False, 0, 1, float("inf"),
                            f"the start cannot be integrated: {err}")
        return LMReport(True, 0, 1, f, "nothing to fit")
    try:
        f, r, J = linearise(problem)
    except SolverFailure as err:
        return LMReport(False, 0, 1, float("inf"), f"the start cannot be integrated: {err}")
    evaluations = 1
    nu = 2.0
    for it in range(1, int(iterations) + 1):
        saved = [p.detach().clone() for p in params]
        J = J[:, columns]
        if not (np.all(np.isfinite(J)) and np.all(np.isfinite(r))):
            return LMReport(False, it - 1, evaluations, f, "non-finite Jacobian")
        A, g = J.T @ J, J.T @ r
        d = np.clip(np.diag(A), 1e-12 * max(float(np.max(np.diag(A))), 1e-300), None)
        accepted = False
        while lam < LAMBDA_MAX:
            try:
                step = np.linalg.solve(A + lam * np.diag(d), -g)
            except np.linalg.LinAlgError:
                lam, nu = lam * nu, nu * 2
                continue
            longest = float(np.max(np.abs(step)))
            if longest > MAX_STEP:      # raw units are order one: a longer step is a leap
                step = step * (MAX_STEP / longest)
            predicted = -float(g @ step) - 0.5 * float(step @ A @ step)
            if not predicted > 0:
                break
            _assign(params, saved, sizes, step)
            try:
                f_new, r_new, J_new = linearise(problem)
            except SolverFailure:
                f_new = float("inf")
            evaluations += 1
            rho = (f - f_new) / predicted
            if rho > 1e-4:
                accepted = True
                lam *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
                nu = 2.0
                break
            _assign(params, saved, sizes, None)
            lam, nu = lam * nu, nu * 2
        if not accepted:
            _assign(params, saved, sizes, None)
            return LMReport(True, it, evaluations, f,
                            "no step decreases the objective further (a minimum)")
        gain, f, r, J = f - f_new, f_new, r_new, J_new
        if on_accept is not None and on_accept(f, lam):
            return LMReport(True, it, evaluations, f, f"stopped by the caller after {it} "
                            f"iterations")
        if gain < max(F_TOLERANCE * max(1.0, abs(f)), tolerance):
            return LMReport(True, it, evaluations, f, f"converged in {it} iterations")
    return LMReport(False, int(iterations), evaluations, f,
                    f"stopped after {int(iterations)} iterations")


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
    ``step ** 2``. Raw parameters and scaled states are of order one, which sets ``step``.
    (Forward-mode automatic differentiation gives the same columns to 1e-13 but ran 15x
    slower here: dual tensors go through Python-level decompositions.)
    """
    from ._integrate import solve_segments

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
    for k in range(P):
        raw[2 * k + 1, :, k] += step
        raw[2 * k + 2, :, k] -= step
    for i in range(n):
        starts[2 * (P + i) + 1, :, i] += step
        starts[2 * (P + i) + 2, :, i] -= step
    rows = torch.arange(S).repeat(copies)
    with torch.no_grad(), field.per_row_parameters(field.transform.forward(
            raw.reshape(copies * S, P))):
        xs = solve_segments(field, problem.loc + problem.scale * starts.reshape(copies * S, n),
                            seg.tau[rows], seg.inputs.select(rows),
                            dataclasses.replace(problem.solver, adjoint=False))
        pred = field.observe(seg.tau[rows], xs, seg.u_grid[rows])
        res = problem.noise.residuals(pred, seg.y[rows], seg.mask[rows])
    res = res.reshape(copies, S, *res.shape[1:])
    primal = res[0]
    tangent = (res[1::2] - res[2::2]) / (2.0 * step)
    mask = seg.mask
    primal = torch.where(mask, primal, torch.zeros((), dtype=primal.dtype))
    flat = primal.reshape(-1, primal.shape[-1])
    f, w = _objective_and_weights(problem, flat)
    r = (primal * w)[mask].numpy()
    tangent = torch.where(mask, tangent * w, torch.zeros((), dtype=tangent.dtype))
    J = np.zeros((r.size, P + M * n))
    for k in range(P):
        J[:, k] = tangent[k][mask].numpy()
    owner = source.view(S, *([1] * (mask.dim() - 1))).expand(mask.shape)[mask].numpy()
    rows_r = np.arange(r.size)
    for i in range(n):        # row j depends on the start of its own segment, owner[j]
        J[rows_r, P + owner * n + i] = tangent[P + i][mask].numpy()
    if not windows:
        return f, r, J
    # continuity rows: they depend on the end of window a (its parameters and start) and
    # on the start of window b (directly, slope -1 / continuity)
    a, b = problem.pairs
    xs = xs.reshape(copies, S, *xs.shape[1:])
    ends = xs[:, a, seg.last[a]]                                  # (copies, G, n)
    unit = problem.gap_unit(problem.loc + problem.scale * z)     # (n,)
    width = problem.continuity * unit
    gap = ((ends[0] - problem.loc - problem.scale * z[source[b]]) / width).numpy()
    d_end = ((ends[1::2] - ends[2::2]) / (2.0 * step) / width).numpy()   # (K, G, n)
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


def _unit_columns(problem, z, unit, gap, Jg, rows_g, P) -> None:
    """Add to the continuity rows the derivative of their unit: for a state that no
    observation involves, gaps are measured in the spread of all window starts
    (:meth:`Problem.gap_unit`), which moves with every start of that state."""
    M, n = z.shape
    if M < 2:
        return
    xz = (problem.loc + problem.scale * z).numpy()
    dev = xz - xz.mean(axis=0)
    unit = unit.numpy()
    for i in np.flatnonzero(problem.unpinned.numpy()):
        # d gap / d z[m, i] = -gap / unit * d unit / d z[m, i]
        d_unit = float(problem.scale[i]) * dev[:, i] / ((M - 1) * unit[i])     # (M,)
        Jg[rows_g[:, i][:, None], P + np.arange(M)[None, :] * n + i] -= \
            (gap[:, i] / unit[i])[:, None] * d_unit[None, :]


def _assign(params, saved, sizes, step) -> None:
    with torch.no_grad():
        offset = 0
        for p, s, k in zip(params, saved, sizes):
            if step is None:
                p.copy_(s)
            else:
                p.copy_(s + torch.as_tensor(step[offset:offset + k]).reshape(s.shape))
            offset += k
