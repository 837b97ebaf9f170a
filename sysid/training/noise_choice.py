"""``noise="auto"``: additive or relative errors, chosen by the data's likelihood.

Counts and concentrations often carry errors that grow with the level (a census misses a
share of the animals, not a fixed number); an additive Gaussian model then weighs the
peaks' large errors as if they were as unlikely as the troughs'. With ``noise="auto"``
the model is fitted under Gaussian and log-normal errors (where every measurement is
positive), and negative-binomial counts where every measurement is a nonnegative integer
(counts, not counts in thousands), and the one under which the data are the more likely
is kept: the likelihoods are compared on the measurements themselves, the log-normal's
with the Jacobian of the log (``sum(log y)``), the count model's as the probability of
each count (a density over a unit-wide bin), each channel's noise parameter at its
maximum-likelihood value (one per channel in each model). ``result.stats["noise"]``
says what was compared; ``result.options.noise`` is the model kept.
"""

from __future__ import annotations

import math

import numpy as np

from ..problem.noise import log_likelihood
from ..solve.integrate import SolverFailure

__all__ = ["CANDIDATES", "candidates", "data_log_likelihood", "choose"]

#: The error models ``noise="auto"`` compares where the data allow each (:func:`candidates`).
CANDIDATES = ("gaussian", "lognormal", "negative_binomial")
#: The count model among them: the negative binomial, which has one noise parameter per
#: channel as the Gaussian and log-normal models have, so that their likelihoods compare
#: without a penalty (Poisson, without one, is its limit of a large size).
COUNT_CANDIDATE = "negative_binomial"


def data_log_likelihood(problem) -> float:
    """The log-likelihood of the measurements themselves (not of their logarithm) under
    the fitted model and its noise model, over whole trajectories, each channel's noise
    level at its maximum-likelihood value (:func:`sysid.problem.noise.log_likelihood`,
    the one ``result.loglik`` reports); -inf where the model cannot be integrated."""
    try:
        value = log_likelihood(problem)
    except SolverFailure:
        return -math.inf
    return value if np.isfinite(value) else -math.inf


def candidates(bundle) -> tuple[tuple[str, ...], str]:
    """The error models ``noise="auto"`` compares on ``bundle``'s measurements, and why
    the others are left out: Gaussian always; log-normal where every measurement is
    positive; negative binomial (:data:`COUNT_CANDIDATE`) where every measurement is a
    nonnegative integer and no channel gives ``attrs['noise_std']``."""
    y = bundle.y[bundle.mask]
    names, why = ["gaussian"], []
    if y.size and np.all(y > 0):
        names.append("lognormal")
    else:
        why.append("some measurements are not positive, so errors relative to the level "
                   "cannot be told from them")
    integers = y.size and np.all(y >= 0) and np.all(
        np.abs(y - np.round(y)) <= 1e-9 * np.maximum(1.0, np.abs(y)))
    if integers and all(k is None for k in bundle.noise_std):
        names.append(COUNT_CANDIDATE)
    return tuple(names), "; ".join(why)


def choose(fit_once, bundle) -> tuple[object, str]:
    """Fit with each candidate error model (:func:`candidates`; ``fit_once(noise)``
    returns a trained fit) and keep the one whose data are the more likely. Returns the
    fit kept and a note."""
    names, why = candidates(bundle)
    if len(names) == 1:
        return fit_once(names[0]), f"noise='auto': {names[0]} ({why})"
    fits = {name: fit_once(name) for name in names}
    scores = {name: (data_log_likelihood(t.problem) if t.status.success else -math.inf)
              for name, t in fits.items()}
    best = max(names, key=lambda name: scores[name])
    compared = ", ".join(f"{name} {scores[name]:.1f}" for name in names)
    return fits[best], (f"noise='auto': {best} (log-likelihood of the measurements: "
                        f"{compared}{'; ' + why if why else ''})")
