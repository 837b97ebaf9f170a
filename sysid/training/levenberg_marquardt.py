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

from dataclasses import dataclass

import numpy as np
import torch

from ..runtime.blas import blas_threads
from ..problem.jacobian import linearise
from ..solve.integrate import SolverFailure

__all__ = ["levenberg_marquardt", "supports_gauss_newton", "MAX_JACOBIAN_BYTES"]

#: Stop when an accepted step improves ``f`` (log-likelihood units) by less than this.
F_TOLERANCE = 1e-6
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


#: Most states per trajectory for Levenberg-Marquardt: its central-difference Jacobian
#: solves ``2 (P + n) + 1`` copies of the problem, which grows with the square of the
#: state size; a field on a 32 x 32 grid (1,024 states) would solve 2,055 copies of 1,024
#: states per iteration, where L-BFGS's gradient costs about three solves.
MAX_GAUSS_NEWTON_STATES = 256


def supports_gauss_newton(problem) -> bool:
    """True when ``problem`` has no network, a least-squares noise model and at most
    ``MAX_GAUSS_NEWTON_STATES`` states."""
    return (problem.field.residual is None
            and problem.noise.name in ("gaussian", "lognormal")
            and problem.z0.shape[-1] <= MAX_GAUSS_NEWTON_STATES
            and not any(p.requires_grad for p in problem.noise.parameters()))


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
        # a signed state's start at 0 whose gradient pushes it past 0 is held there: its
        # column leaves the step (the step is projected, Problem.project_)
        A, g = _hold(_held(problem, blocks, offsets, columns, g), A, g)
        d = np.clip(np.diag(A), 1e-12 * max(float(np.max(np.diag(A))), 1e-300), None)
        accepted = False
        while lam < LAMBDA_MAX:
            try:
                step = np.linalg.solve(A + lam * np.diag(d), -g)
            except np.linalg.LinAlgError:
                lam, nu = lam * nu, nu * 2
                continue
            step = np.clip(step, -MAX_STEP, MAX_STEP)
            step = _project_step(problem, params, saved, sizes, step)
            predicted = -float(g @ step) - 0.5 * float(step @ A @ step)
            if not predicted > 0:
                _assign(params, saved, sizes, None)
                break
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
        threshold = max(F_TOLERANCE * max(1.0, abs(f)), tolerance)
        free = ~_held(problem, blocks, offsets, columns, J[:, columns].T @ r)
        if gain < threshold and _remaining(J[:, columns][:, free], r) < threshold:
            return LMReport(True, it, evaluations, f, f"converged in {it} iterations")
    return LMReport(False, int(iterations), evaluations, f,
                    f"stopped after {int(iterations)} iterations")


def _remaining(J: np.ndarray, r: np.ndarray) -> float:
    """The decrease the undamped Gauss-Newton model still predicts from here,
    ``1/2 g^T (J^T J)^+ g`` with ``g = J^T r`` (log-likelihood units).

    A small accepted step alone does not mean a minimum: in a curved valley of two
    correlated parameters (Robertson's k2 and k3 seen through y1 and y3 only) the damped
    steps can gain little each while the valley floor still falls a long way. The fit
    has converged when the step gained little *and* the model sees little left to gain.
    """
    if not (np.all(np.isfinite(J)) and np.all(np.isfinite(r))):
        return float("inf")
    step, *_ = np.linalg.lstsq(J, -r, rcond=None)
    return 0.5 * float(np.sum((J @ step) ** 2))


def _held(problem, blocks, offsets, columns, g) -> np.ndarray:
    """Per fitted column: True for a signed state's start that sits at 0 while the
    gradient ``g`` (of the columns) points the step past 0."""
    sign = np.zeros(int(offsets[-1]))
    for j, block in enumerate(blocks):
        if j and block.numel():                 # the starts (z0, zw) follow the raw ones
            with torch.no_grad():
                sign[offsets[j]:offsets[j + 1]] = problem.start_bounds(block).reshape(-1).numpy()
    sign = sign[columns]
    return (sign != 0) & (sign * g > 0)


def _hold(held, A, g):
    """The normal equations with the ``held`` columns out of the step (identity rows)."""
    if held.any():
        A[held, :], A[:, held], g = 0.0, 0.0, np.where(held, 0.0, g)
        A[held, held] = 1.0
    return A, g


def _project_step(problem, params, saved, sizes, step) -> np.ndarray:
    """Move to ``saved + step``, project the signed states' starts onto their side of 0
    (:meth:`Problem.project_`) and return the step actually taken."""
    _assign(params, saved, sizes, step)
    problem.project_()
    return np.concatenate([(p.detach() - q).reshape(-1).numpy() for p, q in zip(params, saved)])


def _assign(params, saved, sizes, step) -> None:
    with torch.no_grad():
        offset = 0
        for p, s, k in zip(params, saved, sizes):
            if step is None:
                p.copy_(s)
            else:
                p.copy_(s + torch.as_tensor(step[offset:offset + k]).reshape(s.shape))
            offset += k
