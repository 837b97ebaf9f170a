"""How a candidate support is scored in data space: the distilled model (physics plus
coefficients times terms, no network), its noise levels and information criteria, the
held-out error, and the rule that picks the sparsest of the equally supported.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch

from ..model.entries import ParameterGuesses
from ..model.hybrid import HybridODE
from .library import _name, _tied
from .rational import bind


#: The criterion that ranks candidates: BIC extended by the size of the search space
#: (EBIC with gamma = 1, Chen & Chen 2008, Biometrika 95:759). Plain BIC ignores how many
#: supports were tried; with a library of ten terms per state, a search then adds a
#: spurious term to a noisy orbit segment far more often than BIC's nominal rate.
SCORE = "EBIC"
#: Candidates within this many BIC units of the lowest are treated as equally supported;
#: the sparsest of them is selected (a Bayes factor below e is not evidence for more terms).
BIC_TIE = 2.0


def _support_text(terms, support) -> str:
    return ", ".join(str(terms[i]) for i in support) or "-"


def _support_sets(row, states) -> str:
    """``x: {x*y}, y: {}`` from a path row."""
    def braces(text):
        return "{" + ("" if text == "-" else text) + "}"
    return ", ".join(f"{s.name}: {braces(row[f'support_{s.name}'])}" for s in states)


def _distill(model, states, terms, supports, values) -> HybridODE:
    """Known physics plus learnable coefficients times the selected terms, no network.

    A rational term brings its own positive half-saturation constant (``K_<state>_<j>``,
    :mod:`.rational`); those come after every coefficient in the parameters (the search's
    linearisation counts on that order). Where the network writes one shared rate into
    several states, the terms go into each of them times its coefficient ratio."""
    physics = dict(model.physics)
    parameters = {p: values[p.name] for p in model.parameters}
    shapes = {}
    for s in states:
        added = []
        for j, col in enumerate(supports[s]):
            c = sp.Symbol(_name(s, j, model), real=True)
            parameters[c] = values[c.name]
            term, shape = bind(terms[col], s, j, model)
            shapes.update({K: values[K.name] for K in shape})
            added.append(c * term)
        if added:
            for target, factor in _tied(model, s):
                physics[target] = physics.get(target, sp.Integer(0)) + factor * sp.Add(*added)
    parameters.update(shapes)
    # the physical parameters keep their bounds (a fraction stays in (0, 1) in the refits)
    parameters = ParameterGuesses(parameters, getattr(model.parameters, "bounds", {}))
    return HybridODE(states=model.states, physics=physics, parameters=parameters,
                     residual=None, inputs=model.inputs, observations=model.observations,
                     fixed=model.fixed)


def _channel_rss(fitted) -> tuple[np.ndarray, np.ndarray] | None:
    """(RSS, count) per observed channel from a single-shooting simulation of a fit over
    its whole trajectories (residuals in log space for ``noise="lognormal"``), or None
    where the solver fails."""
    p = fitted._problem
    try:
        with torch.no_grad():
            xs = p.states(p.single)
            pred = p.field.observe(p.single.tau, xs, p.single.u_grid)
            r = p.noise.residuals(pred, p.y, p.mask).numpy()
    except RuntimeError:     # the solver failed (SolverFailure is a RuntimeError)
        return None
    mask = p.mask.numpy()
    r = np.where(mask, r, 0.0).reshape(-1, mask.shape[-1])
    return (r ** 2).sum(0), mask.reshape(-1, mask.shape[-1]).sum(0)


def noise_levels(result) -> tuple[np.ndarray, np.ndarray]:
    """(lowest squared noise level per channel, whether it is the given one) for scoring
    candidates: the given level (``noise_std``), else the hybrid fit's mean squared
    residual over whole trajectories.

    The hybrid fit is the most flexible model of the comparison; a candidate that fits a
    channel more closely than it does is not credited for it (see :func:`_criteria`).
    Profiling the level per candidate without that floor (``n_c log(RSS_c / n_c)``) lets
    a dense candidate interpolate a sparsely measured channel and gain without bound
    (measured: predator at 7 of 31 samples, a 7-term residual scored 200 EBIC units below
    the true single term, its mean squared error half the hybrid fit's)."""
    p = result._problem
    counts = np.asarray(p.noise.counts, dtype=float)
    found = _channel_rss(result)
    est = (found[0] / np.maximum(found[1], 1) if found is not None
           else np.full(len(counts), np.nan))
    y = np.where(p.mask.numpy(), p.y.numpy(), np.nan).reshape(-1, len(counts))
    out, given = np.empty(len(counts)), np.array([k is not None for k in p.noise.known])
    for c, known in enumerate(p.noise.known):
        spread = np.nanvar(y[:, c]) if counts[c] > 1 else 1.0
        tiny = 1e-12 * (spread if np.isfinite(spread) and spread > 0 else 1.0)
        if known is not None:
            out[c] = float(known) ** 2
        elif np.isfinite(est[c]) and est[c] > tiny:
            out[c] = est[c]
        else:      # a hybrid fit that failed or interpolates: the data's own estimate
            out[c] = max(float(p.noise.reference[c]) ** 2, tiny)
    return out, given


def _fit_term(rss: np.ndarray, n_c: np.ndarray, levels) -> float:
    """``sum_c (n_c log v_c + RSS_c / v_c - n_c)`` over channels with samples, ``v_c`` the
    given variance or ``max(RSS_c / n_c, floor_c)`` (``levels`` = (floor or given, given)).

    >>> import math
    >>> import numpy as np
    >>> n, floor = np.array([10.0]), (np.array([1.0]), np.array([False]))
    >>> round(_fit_term(np.array([40.0]), n, floor), 4), round(10 * math.log(4.0), 4)
    (13.8629, 13.8629)
    >>> _fit_term(np.array([0.0]), n, floor)       # an exact fit gains at most n_c units
    -10.0
    """
    low, given = levels
    ok = n_c > 0
    v = np.where(given, low, np.maximum(rss / np.maximum(n_c, 1), low))[ok]
    return float(np.sum(n_c[ok] * np.log(v) + rss[ok] / v - n_c[ok]))


def _criteria(refit, k: int, levels: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """``(BIC, AICc)`` from a single-shooting simulation of the refit model:
    ``sum_c (n_c log v_c + RSS_c / v_c - n_c) + k log(n)`` and
    ``... + 2k + 2k(k+1)/(n-k-1)``: minus twice the Gaussian log-likelihood at the noise
    variance ``v_c`` of each channel, the given one, else the candidate's own
    ``RSS_c / n_c`` but at least the hybrid fit's (:func:`noise_levels`). Above that
    floor the fit term is ``n_c log(RSS_c / n_c)``, the profiled likelihood; below it a
    closer fit gains at most ``n_c`` units."""
    found = _channel_rss(refit)
    if found is None:
        return np.inf, np.inf
    rss, n_c = found
    if not np.all(np.isfinite(rss)):
        return np.inf, np.inf
    fit_term = _fit_term(rss, n_c, levels)
    n = float(n_c.sum())
    aicc = fit_term + 2 * k + (2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else np.inf)
    return fit_term + k * np.log(n), aicc


def _holdout_error(refit) -> float:
    """Standardised mean squared error on the held-out samples, simulating each whole
    trajectory from its fitted initial state (about 1 when predicted to within noise)."""
    p = refit._problem
    with torch.no_grad():
        xs = p.states(p.single)
        pred = p.field.observe(p.single.tau, xs, p.single.u_grid)
        return float(p.validation_score(pred, p.single))


def _sparsest_close(rows, score) -> int:
    """Among the candidates within BIC_TIE of the lowest score, the one with the fewest
    parameters; between equals, the lower error on held-out windows where every one of
    them has been scored there (``holdout``), else the simplest terms (fewest operations:
    x*y before x**2*y), then the lower score. Within BIC_TIE the in-sample scores do not
    tell them apart; data the refits did not see can."""
    close = np.flatnonzero(score <= float(np.min(score)) + BIC_TIE)
    k = min(rows[i]["k"] for i in close)
    equal = [int(i) for i in close if rows[i]["k"] == k]
    held = [rows[i].get("holdout", np.nan) for i in equal]
    if len(equal) > 1 and all(np.isfinite(h) for h in held):
        return equal[int(np.argmin(held))]
    return int(min(equal, key=lambda i: (rows[i]["complexity"], score[i])))
