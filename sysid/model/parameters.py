"""Physical parameters as unconstrained tensors that honour SymPy assumptions.

A parameter declared ``positive=True`` (or ``nonnegative``) is stored as its log,
``negative=True`` as the log of its magnitude; an unconstrained parameter is stored
divided by the magnitude of its initial guess, so that every raw value is of order one
and one learning rate suits all of them.
"""

from __future__ import annotations

import math

import sympy as sp
import torch

__all__ = ["ParameterTransform", "transform_for"]


class ParameterTransform:
    """Maps raw (unconstrained) values to physical values, element-wise."""

    def __init__(self, kinds: list[str], scales: list[float]):
        self.kinds = list(kinds)
        self.scales = [float(s) for s in scales]
        self._sign = torch.tensor([-1.0 if k == "negative" else 1.0 for k in kinds],
                                  dtype=torch.float64)
        self._log = torch.tensor([k in ("positive", "negative") for k in kinds], dtype=torch.bool)
        self._scale = torch.tensor(self.scales, dtype=torch.float64)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Physical values from raw values (last dimension indexes the parameters)."""
        if raw.shape[-1] == 0:
            return raw
        exp = self._sign.to(raw) * torch.exp(raw)
        return torch.where(self._log.to(raw.device), exp, raw * self._scale.to(raw))

    def inverse(self, values) -> torch.Tensor:
        """Raw values from physical values."""
        values = torch.as_tensor(values, dtype=torch.float64)
        out = values / self._scale
        logs = torch.log(torch.clamp(values * self._sign, min=1e-300))
        return torch.where(self._log, logs, out)

    def rescale(self, j: int, scale: float) -> None:
        """Set the scale of the unconstrained parameter ``j`` (whose raw value is 0, so
        its physical value stays 0)."""
        self.scales[j] = float(scale)
        self._scale[j] = float(scale)

    def to_dict(self) -> dict:
        return {"kinds": self.kinds, "scales": self.scales}


def transform_for(symbols: list[sp.Symbol], guesses: list[float]) -> ParameterTransform:
    """The transform for each parameter, chosen from its SymPy assumptions."""
    kinds, scales = [], []
    for sym, guess in zip(symbols, guesses):
        if sym.is_positive or sym.is_nonnegative:
            kinds.append("positive")
        elif sym.is_negative or sym.is_nonpositive:
            kinds.append("negative")
        else:
            kinds.append("linear")
        scales.append(abs(guess) if guess != 0 and math.isfinite(guess) else 1.0)
    return ParameterTransform(kinds, scales)
