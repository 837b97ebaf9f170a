"""Physical parameters as unconstrained tensors that honour SymPy assumptions and bounds.

A parameter declared ``positive=True`` (or ``nonnegative``) is stored as its log,
``negative=True`` as the log of its magnitude; an unconstrained parameter is stored
divided by the magnitude of its initial guess, so that every raw value is of order one
and one learning rate suits all of them.

A parameter given with bounds, ``(guess, low, high)``, is stored through a scaled
logistic, ``value = low + (high - low) / (1 + exp(-raw))``, so every raw value maps
inside the open interval; with one side open (``None``), through a shifted log,
``value = low + exp(raw)`` or ``high - exp(raw)``. A SymPy sign assumption is a bound
too: ``positive=True`` with ``(guess, None, 1)`` is the interval (0, 1).
"""

from __future__ import annotations

import math

import sympy as sp
import torch

__all__ = ["ParameterTransform", "transform_for", "LOG_KINDS"]

#: Kinds stored as a log (of the value, its magnitude, or its distance to a bound).
LOG_KINDS = ("positive", "negative", "above", "below")


class ParameterTransform:
    """Maps raw (unconstrained) values to physical values, element-wise.

    ``kinds``: per parameter ``"linear"``, ``"positive"``, ``"negative"``, ``"above"``
    (``low + exp(raw)``), ``"below"`` (``high - exp(raw)``) or ``"bounded"`` (scaled
    logistic); ``bounds``: per parameter ``(low, high)`` (``-inf``/``inf`` for an open
    side), used by the last three kinds.
    """

    def __init__(self, kinds: list[str], scales: list[float], bounds=None):
        self.kinds = list(kinds)
        self.scales = [float(s) for s in scales]
        self.bounds = [(float(lo), float(hi)) for lo, hi in
                       (bounds or [(-math.inf, math.inf)] * len(self.kinds))]
        self._sign = torch.tensor([-1.0 if k in ("negative", "below") else 1.0 for k in kinds],
                                  dtype=torch.float64)
        self._log = torch.tensor([k in LOG_KINDS for k in kinds], dtype=torch.bool)
        self._scale = torch.tensor(self.scales, dtype=torch.float64)
        self._logistic = torch.tensor([k == "bounded" for k in kinds], dtype=torch.bool)
        self._any_bound = any(k in ("above", "below", "bounded") for k in self.kinds)
        # the offset (low for above/bounded, high for below) and the width of an interval
        self._offset = torch.tensor([hi if k == "below" else lo if k in ("above", "bounded")
                                     else 0.0 for k, (lo, hi) in zip(self.kinds, self.bounds)],
                                    dtype=torch.float64)
        self._width = torch.tensor([hi - lo if k == "bounded" else 1.0
                                    for k, (lo, hi) in zip(self.kinds, self.bounds)],
                                   dtype=torch.float64)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Physical values from raw values (last dimension indexes the parameters)."""
        if raw.shape[-1] == 0:
            return raw
        log = self._log.to(raw.device)
        if not self._any_bound:
            exp = self._sign.to(raw) * torch.exp(torch.where(log, raw, 0.0))
            return torch.where(log, exp, raw * self._scale.to(raw))
        offset = self._offset.to(raw)
        exp = offset + self._sign.to(raw) * torch.exp(torch.where(log, raw, 0.0))
        logistic = offset + self._width.to(raw) * torch.sigmoid(raw)
        out = torch.where(log, exp, raw * self._scale.to(raw))
        return torch.where(self._logistic.to(raw.device), logistic, out)

    def inverse(self, values) -> torch.Tensor:
        """Raw values from physical values (a value on or past a bound maps to the raw
        value of the nearest representable point inside)."""
        values = torch.as_tensor(values, dtype=torch.float64)
        out = values / self._scale
        logs = torch.log(torch.clamp((values - self._offset) * self._sign, min=1e-300))
        out = torch.where(self._log, logs, out)
        if self._logistic.any():
            eps = torch.finfo(torch.float64).eps
            q = torch.clamp((values - self._offset) / self._width, eps, 1.0 - eps)
            out = torch.where(self._logistic, torch.log(q) - torch.log1p(-q), out)
        return out

    def value(self, j: int, raw: float) -> float:
        """The physical value of parameter ``j`` at the raw value ``raw`` (e.g. an end of
        an interval computed in the raw space)."""
        full = torch.zeros(len(self.kinds), dtype=torch.float64)
        full[j] = float(raw)
        with torch.no_grad():
            return float(self.forward(full)[j])

    def rescale(self, j: int, scale: float) -> None:
        """Set the scale of the unconstrained parameter ``j`` (whose raw value is 0, so
        its physical value stays 0)."""
        self.scales[j] = float(scale)
        self._scale[j] = float(scale)

    def to_dict(self) -> dict:
        out = {"kinds": self.kinds, "scales": self.scales}
        if self._any_bound:
            out["bounds"] = [list(b) for b in self.bounds]
        return out


def effective_bounds(sym: sp.Symbol, bounds=None) -> tuple[float, float]:
    """The interval a parameter is kept in: its given ``(low, high)`` (None or +-inf for
    an open side) narrowed by its SymPy sign assumption."""
    low, high = bounds if bounds is not None else (None, None)
    low = -math.inf if low is None else float(low)
    high = math.inf if high is None else float(high)
    if sym.is_positive or sym.is_nonnegative:
        low = max(low, 0.0)
    elif sym.is_negative or sym.is_nonpositive:
        high = min(high, 0.0)
    return low, high


def transform_for(symbols: list[sp.Symbol], guesses: list[float],
                  bounds: dict | None = None) -> ParameterTransform:
    """The transform for each parameter, chosen from its SymPy assumptions and its
    bounds (``bounds``: Symbol -> (low, high), for the parameters that have them)."""
    kinds, scales, intervals = [], [], []
    for sym, guess in zip(symbols, guesses):
        low, high = effective_bounds(sym, (bounds or {}).get(sym))
        if math.isfinite(low) and math.isfinite(high):
            kinds.append("bounded")
        elif low == 0.0 and not math.isfinite(high):
            kinds.append("positive")
        elif high == 0.0 and not math.isfinite(low):
            kinds.append("negative")
        elif math.isfinite(low):
            kinds.append("above")
        elif math.isfinite(high):
            kinds.append("below")
        else:
            kinds.append("linear")
        intervals.append((low, high))
        scales.append(abs(guess) if guess != 0 and math.isfinite(guess) else 1.0)
    return ParameterTransform(kinds, scales, intervals)
