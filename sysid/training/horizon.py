"""Growing the horizon: fit the start of each record first, then extend it.

A record whose model can put an event at the wrong time (a relaxation oscillation's jump,
a long oscillation whose phase drifts) has an objective with a local minimum wherever an
event of the model sits between other samples than the data's: moving a parameter toward
the truth first moves the event across more mismatched samples, so the slope there points
away from the truth. Van der Pol with mu = 1000 measured on x only, 60 samples over two
periods, mu guessed 800: every local optimiser stays 20-25 % off
(``benchmarks/results/stiff.md`` has the objective against mu: a staircase).

The start of a record has no such trap: before the first event, the data see only the
smooth dynamics that lead to it (Van der Pol's slow branch, whose decay rate is 1/mu).
:func:`grow` fits the first eighth of the record's span, then the first quarter and half,
each from the previous stage's parameters and initial states, and finally the whole
record: each stage's events then land near the data's before they enter the objective
(the same Van der Pol data: mu 1007, 0.7 % off).

``grow_horizon="auto"`` (the default of :func:`sysid.fit`) grows the horizon only where
the whole-record fit misses the data by far: some channel's whole-trajectory residuals
are over :data:`MISFIT` times its noise level estimated from the data alone
(``noise.reference``, from second differences), for a model without a network (a
network absorbs misfit, and its fits cost too much to repeat). The grown fit is kept only
where its objective over whole trajectories is the better one, so growing never makes a
fit worse; ``result.stats["grow_horizon"]`` says what was done.
"""

from __future__ import annotations

import numpy as np
import torch

from ..problem.segments import observed_rows
from ..solve.integrate import SolverFailure

__all__ = ["grow", "rescue", "miss", "misfit_ratio", "residual_autocorrelation", "STAGES",
           "MISFIT", "WHITENESS"]

#: Fractions of each record's span fitted before the whole record.
STAGES = (0.125, 0.25, 0.5)
#: Residuals over whole trajectories this many times the data's own noise level (on some
#: channel) call for growing the horizon under ``grow_horizon="auto"``.
MISFIT = 3.0
#: Lag-1 autocorrelation of the whole-record residuals, in standard errors under white
#: noise (``rho_1 sqrt(n)``), above which they are systematic and call for growing the
#: horizon under ``grow_horizon="auto"``. Measured on FitzHugh-Nagumo (3 trajectories of
#: 20 irregular samples, 100 noise draws; ``benchmarks/calibration.py``): fits at the
#: data's optimum at most 2.25, fits at a wrong optimum that the misfit ratio missed (the
#: second-difference noise level of sparse samples of an oscillation is 5-10x the true
#: one) at least 3.68.
WHITENESS = 3.0
#: Fewest observed samples per trajectory in a stage.
MIN_STAGE_SAMPLES = 5


def whole_predictions(problem):
    """Predicted channels (B, T, C) of a simulation over whole trajectories from the
    fitted initial states, with the data and their mask."""
    with torch.no_grad():
        seg = problem.single
        xs = problem.states(seg)
        return problem.field.observe(seg.tau, xs, seg.u_grid), seg.y, seg.mask


def _whole_residuals(problem):
    """Residuals (B, T, C) of a simulation over whole trajectories from the fitted initial
    states, zero where nothing was observed, and the mask."""
    pred, y, mask = whole_predictions(problem)
    with torch.no_grad():
        res = problem.noise.residuals(pred, y, mask)
    return torch.where(mask, res, torch.zeros((), dtype=res.dtype)), mask


def misfit_ratios(problem) -> np.ndarray:
    """Per channel, the RMS residual over whole trajectories over the channel's noise
    level from the data alone (NaN for a channel without observations; inf everywhere
    where the model cannot be integrated over whole trajectories)."""
    n = len(problem.bundle.channels)
    try:
        res, mask = _whole_residuals(problem)
    except SolverFailure:
        return np.full(n, np.inf)
    count = mask.sum(dim=(0, 1)).clamp_min(1)
    rms = torch.sqrt((res ** 2).sum(dim=(0, 1)) / count)
    ratio = (rms / problem.noise.reference.clamp_min(1e-300)).numpy()
    return np.where(mask.any(dim=1).any(dim=0).numpy(), ratio, np.nan)


def misfit_ratio(problem) -> float:
    """The largest of :func:`misfit_ratios` (0 without observations)."""
    ratio = misfit_ratios(problem)
    ratio = ratio[~np.isnan(ratio)]
    return float(ratio.max()) if ratio.size else 0.0


def misfit_note(problem) -> str:
    """Words for the status of a fit that misses some channel by more than
    :data:`MISFIT` times its noise level, or ""."""
    ratio = misfit_ratios(problem)
    bad = [(c, r) for c, r in zip(problem.bundle.channels, ratio) if np.isfinite(r) and r > MISFIT]
    if not bad:
        return ""
    worst = ", ".join(f"{c} by {r:.1f}x" for c, r in bad)
    return (f"the fitted model misses the data ({worst} the noise level estimated from the "
            f"data alone, RMS over whole trajectories): the model lacks something or the "
            f"fit stopped in a local optimum, and its parameters may be biased (a network "
            f"can take over part of a physical term). Look at result.plot(); try other "
            f"guesses, a residual network, result.symbolic() or other physics.")


def residual_autocorrelation(problem) -> float:
    """The largest, over channels, lag-1 autocorrelation of the whole-record residuals
    (consecutive observed samples, pooled over trajectories) times sqrt(n): about
    standard normal for white residuals. Raises SolverFailure where the model cannot be
    integrated over whole trajectories."""
    res, mask = _whole_residuals(problem)
    res, mask = res.numpy(), mask.numpy()
    out = 0.0
    for c in range(res.shape[-1]):
        num = den = 0.0
        n = 0
        for b in range(res.shape[0]):
            v = res[b, mask[b, :, c], c]
            if v.size >= 3:
                num += float(np.sum(v[1:] * v[:-1]))
                den += float(np.sum(v * v))
                n += v.size - 1
        if den > 0:
            out = max(out, num / den * float(np.sqrt(n)))
    return out


def miss(problem) -> str | None:
    """Why a whole-record fit calls for growing the horizon, in words, or None: its
    residuals over whole trajectories over :data:`MISFIT` times the data's own noise
    level on some channel, or systematic (:func:`residual_autocorrelation` over
    :data:`WHITENESS`), or the model cannot be integrated over whole trajectories."""
    ratio = misfit_ratio(problem)
    if ratio > MISFIT:
        return (f"the whole-record fit missed the data by {ratio:.1f}x their noise level"
                if np.isfinite(ratio) else
                "the whole-record fit cannot be integrated over whole trajectories")
    try:
        z = residual_autocorrelation(problem)
    except SolverFailure:
        return "the whole-record fit cannot be integrated over whole trajectories"
    if z > WHITENESS:
        return (f"the whole-record fit's residuals are systematic (lag-1 autocorrelation "
                f"{z:.1f} standard errors from white noise)")
    return None


def whole_objective(problem) -> float:
    """The negative log-likelihood of the data over whole trajectories (log-likelihood
    units; inf where the model cannot be integrated over them)."""
    objective = problem.objective()
    problem.use_windows(False)
    try:
        with torch.no_grad():
            _, parts = problem.loss(0.0, 0.0)
        value = float(parts["nll"]) * problem.noise.total
    except SolverFailure:
        value = float("inf")
    finally:
        problem.use_objective(objective)
    return value if np.isfinite(value) else float("inf")


def _stage_lengths(bundle, n_unknowns: int) -> list[int]:
    """For each fraction of :data:`STAGES`, the number of leading time samples that
    holds it (the samples within that fraction of each trajectory's span from its
    start), where every trajectory keeps at least :data:`MIN_STAGE_SAMPLES` observed
    samples and the stage twice as many observations as unknowns; increasing."""
    times = np.asarray(bundle.times, float)
    rows = observed_rows(bundle)
    lengths = []
    for fraction in STAGES:
        ends = []
        for r in rows:
            t = times[r]
            ends.append(t[0] + fraction * (t[-1] - t[0]))
        end = int(np.searchsorted(times, max(ends), side="right"))
        kept = bundle.mask[:, :end].sum()
        per = [int(bundle.mask[b, r[r < end]].any(axis=-1).sum()) for b, r in enumerate(rows)]
        if min(per) >= MIN_STAGE_SAMPLES and kept >= 2 * n_unknowns and \
                end < len(times) and (not lengths or end > lengths[-1]):
            lengths.append(end)
    return lengths


def rescue(fit_once, model, data, bundle, options: dict, x0=None):
    """:func:`grow` with the fit's own shooting windows and, unless it fits whole
    trajectories or few windows already, with 3 windows (short windows keep a wrong
    optimum of the early stages from carrying over); returns the grown fit with the
    lower objective over whole trajectories (None where none succeeded) and what
    happened, in words."""
    tries = [dict(options)]
    if options.get("shooting", "auto") not in ("single", 2, 3):
        tries.append(dict(options, shooting=3))
    best, value, said = None, float("inf"), []
    for opts in tries:
        grown, why = grow(fit_once, model, data, bundle, opts, x0)
        if grown is None:
            said.append(why)
            continue
        v = whole_objective(grown.problem)
        if v < value:
            best, value = grown, v
    return best, value, "; ".join(dict.fromkeys(said))


def grow(fit_once, model, data, bundle, options: dict, x0=None):
    """Fit ``model`` on growing leading parts of ``data`` and then on all of it, each fit
    starting from the previous one's parameters and initial states (the first from
    ``x0``, None: estimated from the data). ``fit_once(model, data, x0, **options)`` is
    one fit (a :class:`~sysid.training.Trained`); returns ``(the last, "")``, or
    ``(None, why)`` where no stage has enough data or a stage fails."""
    n_unknowns = len(model.parameters) + bundle.n_trajectories * len(model.states)
    lengths = _stage_lengths(bundle, n_unknowns)
    if not lengths:
        return None, "no part of the record holds enough samples"
    current = model
    for end in lengths + [None]:
        part = data if end is None else data.isel(time=slice(0, end))
        trained = fit_once(current, part, x0, **options)
        if not trained.status.success:
            where = "the whole record" if end is None else f"the first {end} samples"
            return None, f"the stage on {where} failed ({trained.status.code})"
        with torch.no_grad():
            values = trained.problem.field.parameter_values().tolist()
        current = model.with_parameters(dict(zip(model.parameter_names, values)))
        with torch.no_grad():
            x0 = trained.problem.x0().detach().clone()
    return trained, ""

