"""``noise="auto"``: additive or relative errors, chosen by the data's likelihood.

Counts and concentrations often carry errors that grow with the level (a census misses a
share of the animals, not a fixed number); an additive Gaussian model then weighs the
peaks' large errors as if they were as unlikely as the troughs'. With ``noise="auto"``
the model is fitted under both Gaussian and log-normal errors (where every measurement is
positive) and the one under which the data are the more likely is kept: the two
likelihoods are compared on the measurements themselves, the log-normal's with the
Jacobian of the log (``sum(log y)``), each channel's noise level at its maximum-likelihood
value. ``result.stats["noise"]`` says what was compared; ``result.options.noise`` is the
model kept.
"""

from __future__ import annotations

import math

import numpy as np

from ..problem.noise import log_likelihood
from ..solve.integrate import SolverFailure

__all__ = ["CANDIDATES", "data_log_likelihood", "choose"]

#: The error models ``noise="auto"`` compares.
CANDIDATES = ("gaussian", "lognormal")


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


def choose(fit_once, bundle) -> tuple[object, str]:
    """Fit with each candidate error model (``fit_once(noise)`` returns a trained fit)
    and keep the one whose data are the more likely; the log-normal model only where
    every measurement is positive. Returns the fit kept and a note."""
    y = bundle.y[bundle.mask]
    if not (y.size and np.all(y > 0)):
        return fit_once("gaussian"), ("noise='auto': gaussian (some measurements are not "
                                      "positive, so errors relative to the level cannot "
                                      "be told from them)")
    fits = {name: fit_once(name) for name in CANDIDATES}
    scores = {name: (data_log_likelihood(t.problem) if t.status.success else -math.inf)
              for name, t in fits.items()}
    best = max(CANDIDATES, key=lambda name: scores[name])
    compared = ", ".join(f"{name} {scores[name]:.1f}" for name in CANDIDATES)
    return fits[best], (f"noise='auto': {best} (log-likelihood of the measurements: "
                        f"{compared})")
