"""Fitting a :class:`~sysid.training.kalman.StateSpace`: the deterministic fit as the
start, a scan of the learned process noise levels' start, then L-BFGS on the extended
Kalman filter's negative log-likelihood (``sysid.fit(..., process_noise=...)``)."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..problem.options import FitStatus
from .kalman import Grid, StateSpace, check_model, process_noise_levels

__all__ = ["train_process_noise", "fit_state_space", "scan_process_noise"]


#: factors of the learned process noise levels' start tried before L-BFGS
SCAN = 10.0 ** np.arange(-2.0, 1.5, 0.5)


def scan_process_noise(space: StateSpace, grid: Grid) -> str:
    """Start the learned process noise levels at the best of :data:`SCAN` times their
    first guess (the other quantities as they are): the likelihood is flat in log q where
    q is small against the measurement noise, where L-BFGS would stop. Returns a note."""
    if space.log_q.numel() == 0:
        return "no learned level"
    base = space.log_q.detach().clone()
    scores = []
    with torch.no_grad():
        for f in SCAN:
            space.log_q.copy_(base + math.log(f))
            try:
                scores.append(float(space(grid)))
            except torch.linalg.LinAlgError:
                scores.append(math.inf)
        values = np.where(np.isfinite(scores), scores, np.inf)
        best = int(np.argmin(values)) if np.isfinite(values).any() else int(np.argmin(
            np.abs(np.log(SCAN))))
        space.log_q.copy_(base + math.log(SCAN[best]))
    return f"start x{SCAN[best]:.3g} of the first guess (best of {len(SCAN)})"


def fit_state_space(space: StateSpace, grid: Grid, opts, progress=None):
    """Maximise the filter's likelihood over ``space.tensors()`` by L-BFGS (strong Wolfe
    line search) in rounds of 10 iterations, until a round gains less than
    ``opts.tolerance`` or ``opts.lbfgs_iterations`` are spent; keeps the best state.
    Returns (status, history rows)."""
    params = [q for q in space.tensors() if q.numel() > 0]
    for q in params:
        q.requires_grad_(True)
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=10, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                            tolerance_change=1e-14)
    best = {"loss": math.inf, "state": [q.detach().clone() for q in params]}
    rows, start = [], time.perf_counter()

    def closure():
        opt.zero_grad()
        try:
            loss, _ = space.run(grid)
        except torch.linalg.LinAlgError:
            loss = torch.tensor(math.inf, dtype=torch.float64)
        if not torch.isfinite(loss):
            for q in params:
                q.grad = torch.zeros_like(q)
            return torch.tensor(1e300, dtype=torch.float64)
        loss.backward()
        if float(loss.detach()) < best["loss"]:
            best.update(loss=float(loss.detach()), state=[q.detach().clone() for q in params])
        return loss

    closure()
    code, previous = "max_iterations", best["loss"]
    rounds = max(1, math.ceil(opts.lbfgs_iterations / 10)) if opts.lbfgs_iterations else 0
    for _ in range(rounds):
        opt.step(closure)
        rows.append({"phase": "kalman", "loss": best["loss"], "nll": best["loss"],
                     "time_s": time.perf_counter() - start})
        if progress is not None:
            progress.update(1)
        if not math.isfinite(best["loss"]):
            code = "diverged"
            break
        if previous - best["loss"] < opts.tolerance:
            code = "converged"
            break
        previous = best["loss"]
    with torch.no_grad():
        for q, v in zip(params, best["state"]):
            q.copy_(v)
    detail = (f"Kalman likelihood: negative log-likelihood {best['loss']:.3f} after "
              f"{len(rows)} rounds of 10 L-BFGS iterations")
    return FitStatus(code, detail), rows


def train_process_noise(model, data, process_noise, **options):
    """The deterministic fit (:func:`~sysid.training.trainer.train`, every option as in
    :func:`sysid.fit`) as the start, then the Kalman likelihood maximised from it. Returns
    the :class:`~sysid.training.trainer.Trained` parts (its problem holding the Kalman
    fit's parameters and initial means, its status and history those of both stages) and
    the :class:`StateSpace`."""
    from .trainer import train

    check_model(model, options)
    levels, learned = process_noise_levels(process_noise, model)
    start = time.perf_counter()
    trained = train(model, data, **options)
    problem, opts, bundle = trained.problem, trained.options, trained.bundle
    with torch.no_grad():
        problem.loss(0.0, opts.weight_decay)               # the noise levels of the fit
        sigma0 = problem.noise.sigma.detach().numpy().copy()
        deterministic = problem.field.parameter_values().tolist()
    restarted = _restart_collapsed(problem.field, model)
    sigma0 = np.where(np.isfinite(sigma0) & (sigma0 > 0), sigma0, 1.0)
    span = float(np.max(bundle.times[bundle.t_last] - bundle.times[bundle.t_first]))
    span = span if span > 0 else 1.0
    q0 = 0.1 * problem.scale.numpy() / math.sqrt(span)
    space = StateSpace(problem, levels, learned, q0[learned], bundle.noise_std,
                       sigma0[[s is None for s in bundle.noise_std]])
    space.substeps, space.max_step = options.get("substeps"), opts.max_step
    grid, _ = Grid.from_bundle(bundle)
    space.measure_rate(grid)
    scanned = scan_process_noise(space, grid)
    status, rows = fit_state_space(space, grid, opts)
    history = _joined_history(trained.history, rows, int(bundle.mask.sum()))
    longest = float(np.max(np.diff(bundle.times), initial=0.0))
    stats = dict(trained.stats)
    stats.update(wall_time_s=time.perf_counter() - start, process_noise={
        "deterministic_parameters": dict(zip(model.parameter_names, deterministic)),
        "deterministic_status": trained.status.code,
        "nll": float(rows[-1]["nll"]) if rows else math.nan,
        "kalman_rounds": len(rows), "start_scan": scanned, "restarted": restarted,
        "n_observations": int(bundle.mask.sum()),
        "learned": [n for n, f in zip(model.state_names, learned) if f],
        "substeps": space.substeps if space.substeps is not None else
        f"auto (rate {space.rate:.3g}: {space.steps_for(longest)} on the longest interval)"})
    if not trained.status.success and status.success:
        status = FitStatus(status.code, f"{status.detail}; the deterministic start "
                                        f"ended {trained.status.code}")
    return trained._replace(status=status, history=history, stats=stats), space


#: a log-scale parameter this far (in raw units, log(1000)) from its guess's raw value
COLLAPSED = math.log(1000.0)


def _restart_collapsed(field, model) -> list[str]:
    """Parameters on a log or logistic scale (signed, one-sided or bounded) that the
    deterministic fit moved more than :data:`COLLAPSED` in raw units from the user's
    guess (a damping driven 1000x towards 0 where the disturbance keeps a motion going):
    their gradient vanishes there, so the Kalman fit restarts them at the guess. Returns
    their names."""
    kinds = field.transform.kinds
    with torch.no_grad():
        guess = field.transform.inverse([float(v) for v in model.parameters.values()])
        far = (field.raw - guess).abs() > COLLAPSED
        far &= torch.tensor([k != "linear" for k in kinds], dtype=torch.bool)
        field.raw.copy_(torch.where(far, guess, field.raw))
    return [n for n, f in zip(model.parameter_names, far.tolist()) if f]


def _joined_history(history, rows, n_observed: int):
    """The deterministic fit's history with the Kalman rounds appended (phase 'kalman'):
    ``loss`` the Kalman negative log-likelihood per observed value, ``kalman_nll`` the
    total."""
    import xarray as xr

    if not rows:
        return history
    first = int(history["epoch"].values[-1]) + 1 if history.sizes.get("epoch") else 0
    epochs = np.arange(first, first + len(rows))
    total = np.array([r["nll"] for r in rows], dtype=float)
    data = {"loss": ("epoch", total / max(n_observed, 1)), "kalman_nll": ("epoch", total)}
    data["phase"] = ("epoch", np.array([r["phase"] for r in rows], dtype=str))
    extra = xr.Dataset(data, coords={"epoch": epochs})
    return xr.concat([history, extra], dim="epoch", data_vars="all", join="outer")
