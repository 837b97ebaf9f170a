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
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import DataError

__all__ = ["NoiseModel", "Gaussian", "LogNormal", "noise_model"]


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

    @property
    def sigma(self) -> torch.Tensor:
        return self.scales().detach() * float(np.sqrt(self.dof / (self.dof - 2)))


_MODELS = {"gaussian": Gaussian, "lognormal": LogNormal, "student_t": StudentT}


def noise_model(name: str, y, mask, known) -> NoiseModel:
    if name not in _MODELS:
        raise DataError(f"noise must be one of {list(_MODELS)}; received {name!r}.")
    return _MODELS[name](y, mask, known)
