"""Measurement noise models: the data term of the loss, on observed entries only.

Each model returns the negative log-likelihood per observed value (constants dropped),
so losses are comparable across datasets of different sizes.

- :class:`Gaussian`: per channel; a channel with ``attrs['noise_std']`` uses that known
  level, the others have their level estimated (profiled out: the maximum-likelihood
  level of a channel is its root-mean-square residual, which turns the channel's term
  into ``(N_c / 2) log(mean squared residual)``; no extra parameters, scale-free).
- :class:`LogNormal`: Gaussian on ``log(y)``, for positive quantities such as counts.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import DataError

__all__ = ["NoiseModel", "Gaussian", "LogNormal", "noise_model"]


class NoiseModel:
    """Base class: ``nll(pred, y, mask)`` and the fitted noise levels."""

    name = "base"

    def __init__(self, y: np.ndarray, mask: np.ndarray, known: list[float | None]):
        self.known = list(known)
        self.counts = [int(n) for n in mask.reshape(-1, mask.shape[-1]).sum(0)]
        self.total = float(sum(self.counts))
        self._sse = torch.full((mask.shape[-1],), float("nan"), dtype=torch.float64)

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
        est = torch.sqrt(self._sse / torch.tensor(self.counts, dtype=torch.float64).clamp_min(1))
        return torch.tensor([k if k is not None else float(e) for k, e in zip(self.known, est)],
                            dtype=torch.float64)


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


_MODELS = {"gaussian": Gaussian, "lognormal": LogNormal}


def noise_model(name: str, y, mask, known) -> NoiseModel:
    if name not in _MODELS:
        raise DataError(f"noise must be one of {list(_MODELS)}; received {name!r}.")
    return _MODELS[name](y, mask, known)
