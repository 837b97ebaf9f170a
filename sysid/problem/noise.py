"""Measurement noise models: the data term of the loss, on observed entries only.

Each model returns the negative log-likelihood per observed value (constants dropped),
so losses are comparable across datasets of different sizes.

- :class:`Gaussian`: per channel; a channel with ``attrs['noise_std']`` uses that known
  level, the others have their level estimated (profiled out: the maximum-likelihood
  level of a channel is its root-mean-square residual, which turns the channel's term
  into ``(N_c / 2) log(mean squared residual)``; no extra parameters, scale-free).
- :class:`LogNormal`: Gaussian on ``log(y)``, for positive quantities such as counts.
- :class:`StudentT`: heavy-tailed (Student-t, 4 degrees of freedom) for data with outliers;
  its scale per channel is a learnable parameter (no closed-form profile exists), fitted
  with the model unless ``attrs['noise_std']`` gives it.
- :class:`Poisson` and :class:`NegativeBinomial`: for counts (nonnegative integers), the
  prediction is the expected count; the negative binomial's variance ``mu + mu^2 / r``
  has a learnable size ``r`` per channel (overdispersion; ``r -> inf`` is Poisson). Their
  spread is set by the count itself, so the data must be actual counts (see
  :func:`check_counts`) and ``attrs['noise_std']`` does not apply.

Each model also gives the full log-likelihood of the measurements (constants included,
as a density or a probability of the measured values themselves):
``log_likelihood(pred, y, mask)``, and ``n_parameters``, how many noise parameters it
estimated. Its ``residuals`` are on the scale where the noise is about homogeneous (the
log for log-normal noise; the variance-stabilised ``2 (sqrt(mu) - sqrt(y))`` for counts,
whose variance is about 1 and whose Jacobian gives the Fisher information): Levenberg-
Marquardt, the Laplace curvature, the held-out scores and the symbolic scores read them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import DataError

__all__ = ["NoiseModel", "Gaussian", "LogNormal", "StudentT", "Poisson", "NegativeBinomial",
           "noise_model", "check_counts", "log_likelihood", "COUNT_MODELS"]

_LOG_2PI = math.log(2.0 * math.pi)


class NoiseModel(nn.Module):
    """Base class: ``nll(pred, y, mask)`` and the fitted noise levels."""

    name = "base"

    def __init__(self, y: np.ndarray, mask: np.ndarray, known: list[float | None]):
        super().__init__()
        self.known = list(known)
        self.counts = [int(n) for n in mask.reshape(-1, mask.shape[-1]).sum(0)]
        self.total = float(sum(self.counts))
        self._sse = torch.full((mask.shape[-1],), float("nan"), dtype=torch.float64)
        #: Fixed noise scale per channel for scoring held-out data: the given level, else
        #: an estimate from the data alone (:func:`difference_scale`). Unlike ``sigma`` it
        #: does not follow the fit, so held-out scores compare across steps and models.
        est = difference_scale(np.log(np.where(y > 0, y, np.nan)) if self.name == "lognormal"
                               else y)
        self.reference = torch.tensor([k if k is not None else e
                                       for k, e in zip(self.known, est)], dtype=torch.float64)

    def residuals(self, pred, y, mask):
        raise NotImplementedError

    def nll(self, pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        r = torch.where(mask, self.residuals(pred, y, mask), torch.zeros((), dtype=pred.dtype))
        sse = (r ** 2).reshape(-1, r.shape[-1]).sum(0)
        self._sse = sse.detach()
        terms = []
        for c, (n_c, known) in enumerate(zip(self.counts, self.known)):
            if n_c == 0:
                continue
            if known is not None:
                terms.append(0.5 * sse[c] / known ** 2 + n_c * math.log(known))
            else:
                terms.append(0.5 * n_c * torch.log(sse[c] / n_c + self.floor[c]))
        return torch.stack(terms).sum() / self.total

    @property
    def n_parameters(self) -> int:
        """Noise parameters the fit estimated: one level per observed channel whose level
        is not given (a profiled level is estimated all the same)."""
        return sum(1 for n_c, k in zip(self.counts, self.known) if n_c > 0 and k is None)

    def log_likelihood(self, pred, y, mask) -> float:
        """Log-density of the observed ``y`` given ``pred``, each estimated level at its
        maximum-likelihood value (the RMS residual), constants included."""
        r = torch.where(mask, self.residuals(pred, y, mask), torch.zeros((), dtype=pred.dtype))
        sse = (r ** 2).reshape(-1, r.shape[-1]).sum(0)
        value = 0.0
        for c, (n_c, known) in enumerate(zip(self.counts, self.known)):
            if n_c == 0:
                continue
            if known is not None:
                value -= 0.5 * float(sse[c]) / known ** 2 + n_c * (math.log(known)
                                                                  + 0.5 * _LOG_2PI)
            else:
                var = float(sse[c]) / n_c + float(self.floor[c])
                value -= 0.5 * n_c * (math.log(var) + _LOG_2PI + 1.0)
        return value

    @property
    def sigma(self) -> torch.Tensor:
        """Noise level per channel: the given one, else the RMS residual of the last ``nll``."""
        counts = torch.tensor(self.counts, dtype=torch.float64, device=self._sse.device)
        est = torch.sqrt(self._sse / counts.clamp_min(1))
        return torch.tensor([k if k is not None else float(e) for k, e in zip(self.known, est)],
                            dtype=torch.float64)


def difference_scale(y: np.ndarray) -> list[float]:
    """Noise level of each channel of ``y`` (B, T, C; NaN = not measured) from the data
    alone: the median absolute second difference of successive measurements of each
    trajectory, ``MAD / 0.6745 / sqrt(6)`` (exact for white noise on a signal that is
    locally linear between samples; the first differences where a trajectory has fewer
    than 3 measurements). A tenth of the channel's spread (or 1) when nothing is left."""
    out = []
    for c in range(y.shape[-1]):
        d2, d1 = [], []
        for row in y[..., c].reshape(-1, y.shape[-2]):
            v = row[np.isfinite(row)]
            d2.append(v[2:] - 2.0 * v[1:-1] + v[:-2])
            d1.append(np.diff(v))
        d2, d1 = np.concatenate(d2), np.concatenate(d1)
        level = 0.0
        if d2.size:
            level = float(np.median(np.abs(d2 - np.median(d2)))) / 0.6745 / np.sqrt(6.0)
        elif d1.size:
            level = float(np.median(np.abs(d1 - np.median(d1)))) / 0.6745 / np.sqrt(2.0)
        if not level > 0:
            finite = y[..., c][np.isfinite(y[..., c])]
            level = 0.1 * float(np.std(finite)) if finite.size > 1 else 0.0
        out.append(level if level > 0 else 1.0)
    return out


class Gaussian(NoiseModel):
    """Additive Gaussian noise with a level per channel (known or estimated)."""

    name = "gaussian"

    def __init__(self, y, mask, known):
        super().__init__(y, mask, known)
        scale = np.array([np.nanstd(y[..., c]) if mask[..., c].sum() > 1 else 1.0
                          for c in range(y.shape[-1])])
        scale = np.where(scale > 0, scale, 1.0)
        self.floor = torch.as_tensor((1e-6 * scale) ** 2, dtype=torch.float64)

    def residuals(self, pred, y, mask):
        return pred - y


class LogNormal(NoiseModel):
    """Multiplicative noise: ``log y = log(prediction) + e``, ``e ~ N(0, sigma_c)``.

    ``attrs['noise_std']`` is then read as the standard deviation of ``log y``.
    """

    name = "lognormal"

    def __init__(self, y, mask, known):
        super().__init__(y, mask, known)
        bad = mask & ~(y > 0)
        if bad.any():
            raise DataError(
                f"The log-normal noise model needs positive measurements; received "
                f"{int(bad.sum())} value(s) <= 0 (smallest {np.nanmin(y[bad])!r}). Use "
                f"noise='gaussian', or shift the data.")
        self.floor = torch.full((y.shape[-1],), 1e-12, dtype=torch.float64)

    def residuals(self, pred, y, mask):
        safe_y = torch.where(mask, y, torch.ones((), dtype=y.dtype))
        return torch.log(pred.clamp_min(1e-12)) - torch.log(safe_y)

    def log_likelihood(self, pred, y, mask) -> float:
        """The density of ``y`` itself: that of ``log y`` times the Jacobian ``1 / y``."""
        safe_y = torch.where(mask, y, torch.ones((), dtype=y.dtype))
        return super().log_likelihood(pred, y, mask) - float(torch.log(safe_y)[mask].sum())


class StudentT(NoiseModel):
    """Additive Student-t noise (``dof`` = 4): outliers cost only logarithmically.

    The negative log-likelihood per value is ``log s + (dof + 1)/2 log(1 + r^2/(dof s^2))``
    (constants dropped). Unknown scales ``s`` are learnable (``log_scale``), initialised
    from the data alone (:func:`difference_scale`); the reported ``sigma`` is
    the standard deviation of the fitted t distribution, ``s sqrt(dof/(dof-2))``.
    """

    name = "student_t"
    dof = 4.0

    def __init__(self, y, mask, known):
        super().__init__(y, mask, known)
        guess = difference_scale(y)
        self.log_scale = nn.Parameter(torch.log(torch.as_tensor(guess, dtype=torch.float64)))
        fixed = torch.tensor([k / np.sqrt(self.dof / (self.dof - 2)) if k is not None else 1.0
                              for k in self.known], dtype=torch.float64)
        self.register_buffer("fixed_scale", fixed)
        self.register_buffer("is_known", torch.tensor([k is not None for k in self.known]))

    def scales(self) -> torch.Tensor:
        return torch.where(self.is_known, self.fixed_scale, torch.exp(self.log_scale))

    def residuals(self, pred, y, mask):
        return pred - y

    def nll(self, pred, y, mask):
        r = torch.where(mask, self.residuals(pred, y, mask), torch.zeros((), dtype=pred.dtype))
        s = self.scales()
        terms = torch.log(s) + 0.5 * (self.dof + 1) * torch.log1p((r / s) ** 2 / self.dof)
        return (terms * mask).sum() / self.total

    def log_likelihood(self, pred, y, mask) -> float:
        r = torch.where(mask, self.residuals(pred, y, mask), torch.zeros((), dtype=pred.dtype))
        s, v = self.scales().detach(), self.dof
        const = math.lgamma((v + 1) / 2) - math.lgamma(v / 2) - 0.5 * math.log(v * math.pi)
        terms = const - torch.log(s) - 0.5 * (v + 1) * torch.log1p((r / s) ** 2 / v)
        return float(terms.expand(mask.shape)[mask].sum())

    @property
    def sigma(self) -> torch.Tensor:
        return self.scales().detach() * float(np.sqrt(self.dof / (self.dof - 2)))


def check_counts(y: np.ndarray, mask: np.ndarray, noise: str, known) -> None:
    """Raise DataError unless every observed value of ``y`` is a nonnegative integer and
    no channel gives ``attrs['noise_std']`` (a count's spread is the count model's)."""
    obs = y[mask]
    if not np.all(np.isfinite(obs)):
        raise DataError(f"noise={noise!r} needs finite measurements (NaN means not "
                        f"measured); received {int((~np.isfinite(obs)).sum())} inf value(s).")
    bad = obs < 0
    if bad.any():
        raise DataError(
            f"noise={noise!r} is for counts, which cannot be negative; received "
            f"{int(bad.sum())} negative value(s) (smallest {float(obs[bad].min())!r}). "
            f"Use noise='gaussian' for data that can be negative.")
    frac = np.abs(obs - np.round(obs)) > 1e-9 * np.maximum(1.0, np.abs(obs))
    if frac.any():
        raise DataError(
            f"noise={noise!r} needs actual counts (nonnegative integers); received "
            f"{int(frac.sum())} non-integer value(s), e.g. {float(obs[frac][0])!r}. A "
            f"count's spread is set by the count itself (Poisson: variance = mean, in "
            f"counts), so the data's unit matters: counts in thousands must be multiplied "
            f"by 1000 (data['hare'] * 1000). Measurements that are not counts: use "
            f"noise='gaussian' or 'lognormal'.")
    given = [k for k in known if k is not None]
    if given:
        raise DataError(f"noise={noise!r} sets each count's spread from the count itself; "
                        f"attrs['noise_std'] ({given[0]!r}) does not apply. Remove it, or "
                        f"use noise='gaussian'.")


#: Smallest expected count the count models evaluate (a prediction at or below zero is
#: read as this).
MIN_RATE = 1e-10


class Poisson(NoiseModel):
    """Poisson counts: ``y ~ Poisson(mu)`` with ``mu`` the prediction (the expected count).

    The negative log-likelihood per value is ``mu - y log mu`` (``log y!`` dropped). No
    noise parameter: the variance is the mean. ``sigma`` (``result.noise_std``) is NaN,
    as the spread differs from count to count.
    """

    name = "poisson"

    def __init__(self, y, mask, known):
        check_counts(y, mask, self.name, known)
        super().__init__(y, mask, [1.0] * y.shape[-1])   # residuals are standardised
        safe = np.where(mask, y, 0.0)
        self.register_buffer("log_factorial", torch.lgamma(
            torch.as_tensor(safe, dtype=torch.float64) + 1.0), persistent=False)

    @property
    def n_parameters(self) -> int:
        return 0

    def rate(self, pred):
        return pred.clamp_min(MIN_RATE)

    def residuals(self, pred, y, mask):
        """Variance-stabilised: ``2 (sqrt(mu) - sqrt(y))``, variance about 1."""
        safe_y = torch.where(mask, y, torch.zeros((), dtype=y.dtype))
        return 2.0 * (torch.sqrt(self.rate(pred)) - torch.sqrt(safe_y))

    def _terms(self, pred, y, mask):
        """Log-probability of each value, ``log y!`` excluded."""
        mu = self.rate(pred)
        safe_y = torch.where(mask, y, torch.zeros((), dtype=y.dtype))
        return safe_y * torch.log(mu) - mu

    def nll(self, pred, y, mask):
        terms = self._terms(pred, y, mask)
        return -torch.where(mask, terms, torch.zeros((), dtype=terms.dtype)).sum() / self.total

    def log_likelihood(self, pred, y, mask) -> float:
        terms = self._terms(pred, y, mask) - self.log_factorial.expand(mask.shape)
        return float(terms[mask].sum())

    def variance(self, c: int, mean: np.ndarray) -> np.ndarray:
        """Variance of a count of channel ``c`` with expectation ``mean``."""
        return np.clip(mean, 0.0, None)

    @property
    def sigma(self) -> torch.Tensor:
        return torch.full((len(self.counts),), float("nan"), dtype=torch.float64)


class NegativeBinomial(Poisson):
    """Overdispersed counts: negative binomial with mean ``mu`` (the prediction) and
    variance ``mu + mu^2 / r``, the size ``r`` per channel learnable (``log_size``).

    Log-probability per value: ``lgamma(y + r) - lgamma(r) - log y! + r log(r / (r + mu))
    + y log(mu / (r + mu))``. Large ``r`` is Poisson; ``1 / sqrt(r)`` is the relative
    spread of large counts, so the model is a count analogue of log-normal errors. ``r``
    starts from the data's own spread (second differences, :func:`difference_scale`):
    ``mean^2 / (variance - mean)`` where that variance exceeds the mean, else 1000.
    """

    name = "negative_binomial"

    def __init__(self, y, mask, known):
        super().__init__(y, mask, known)
        guess = []
        for c, level in enumerate(difference_scale(y)):
            values = y[..., c][mask[..., c]]
            m = float(values.mean()) if values.size else 1.0
            excess = level ** 2 - m
            guess.append(float(np.clip(m ** 2 / excess, 0.5, 1e3)) if excess > 0 else 1e3)
        self.log_size = nn.Parameter(torch.log(torch.as_tensor(guess, dtype=torch.float64)))

    @property
    def n_parameters(self) -> int:
        return sum(1 for n_c in self.counts if n_c > 0)

    @property
    def size(self) -> torch.Tensor:
        """The size ``r`` per channel (variance ``mu + mu^2 / r``)."""
        return torch.exp(self.log_size.clamp(-10.0, 25.0))

    def residuals(self, pred, y, mask):
        """Variance-stabilised: ``g(mu) - g(y)``, ``g(x) = 2 sqrt(r) asinh(sqrt(x / r))``
        (``r`` held at its value), variance about 1."""
        r = self.size.detach()
        safe_y = torch.where(mask, y, torch.zeros((), dtype=y.dtype))
        g = lambda x: 2.0 * torch.sqrt(r) * torch.asinh(torch.sqrt(x / r))   # noqa: E731
        return g(self.rate(pred)) - g(safe_y)

    @staticmethod
    def _log_probability(y, mu, r):
        """Log-probability of counts ``y`` with means ``mu`` and size ``r``, less ``log y!``."""
        log_total = torch.log(r + mu)
        return (torch.lgamma(y + r) - torch.lgamma(r) + r * (torch.log(r) - log_total)
                + y * (torch.log(mu) - log_total))

    def _terms(self, pred, y, mask):
        safe_y = torch.where(mask, y, torch.zeros((), dtype=y.dtype))
        return self._log_probability(safe_y, self.rate(pred), self.size)

    def variance(self, c: int, mean: np.ndarray) -> np.ndarray:
        mean = np.clip(mean, 0.0, None)
        return mean + mean ** 2 / float(self.size[c])

    def profile(self, pred, y, mask) -> None:
        """Set each channel's size to its maximum-likelihood value at the predictions
        ``pred`` (a one-dimensional search in ``log r``). The optimiser's gradient in
        ``r`` vanishes as the counts approach Poisson, and a channel with few values
        (a survey every two weeks) barely moves it: a size stuck at 11 left Poisson data
        30 log-likelihood units worse off than Poisson, which it contains."""
        from scipy.optimize import minimize_scalar

        with torch.no_grad():
            for c in range(len(self.counts)):
                m = mask[..., c]
                if not bool(m.any()):
                    continue
                mu = self.rate(pred[..., c][m])
                obs = y[..., c][m]

                def nll(log_r, mu=mu, obs=obs):
                    r = torch.exp(torch.as_tensor(log_r, dtype=torch.float64))
                    return -float(torch.sum(self._log_probability(obs, mu, r)))
                best = minimize_scalar(nll, bounds=(-10.0, 25.0), method="bounded",
                                       options={"xatol": 1e-6})
                if best.success and best.fun <= nll(float(self.log_size[c])):
                    self.log_size[c] = float(best.x)


_MODELS = {"gaussian": Gaussian, "lognormal": LogNormal, "student_t": StudentT,
           "poisson": Poisson, "negative_binomial": NegativeBinomial}

#: The noise models for counts (nonnegative integers).
COUNT_MODELS = ("poisson", "negative_binomial")


def noise_model(name: str, y, mask, known) -> NoiseModel:
    if name not in _MODELS:
        raise DataError(f"noise must be one of {list(_MODELS)}; received {name!r}.")
    return _MODELS[name](y, mask, known)


def log_likelihood(problem) -> float:
    """The log-likelihood of ``problem``'s training measurements under its fitted model
    and noise model: a simulation over each whole trajectory from its fitted initial
    state, the noise model's :meth:`~NoiseModel.log_likelihood` (constants included).
    Raises SolverFailure where the model cannot be integrated."""
    with torch.no_grad():
        seg = problem.single
        pred = problem.field.observe(seg.tau, problem.states(seg), seg.u_grid)
        return problem.noise.log_likelihood(pred, seg.y, seg.mask)
