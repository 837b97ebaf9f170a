"""Does a distilled model stay bounded when it runs past its data?

A sparse model can explain the measured stretch and still blow up right after it (a
wrong term that only matters away from the data: Lotka-Volterra's partial-observation
seed 2 once selected ``dy/dt = 0.215 y``, whose forecast reached 1e25 by t = 50). The
summary runs its selected model from the fitted initial states over the data and
:data:`SPANS` times their span past their end, and says so where a state leaves the
range it had over the data by more than :data:`BLOW_UP` times or the model cannot be
integrated; then it runs each alternative too.
"""

from __future__ import annotations

import numpy as np

from ..errors import SysidError

__all__ = ["BLOW_UP", "SPANS", "run_past_data"]

#: How far past its range over the data a state may go before the model is said to blow
#: up (a factor of that range, measured from the range's middle).
BLOW_UP = 100.0

#: How far past the data the model is run, in spans of the data.
SPANS = 3.0


def run_past_data(result) -> dict | None:
    """Run ``result`` (a fitted model without inputs) over the data and :data:`SPANS`
    times their span past their end; ``{"bounded": bool, "horizon": float, "detail": str}``, where
    ``detail`` says which state leaves its range first, where and by how much (or where
    the solve failed); None where this cannot be judged (a model with inputs needs its
    future inputs, which the summary does not have)."""
    if result.model.inputs:
        return None
    times = np.asarray(result._bundle.times, dtype=float)
    span = float(times[-1] - times[0])
    if not span > 0:
        return None
    names = list(result.model.state_names)
    try:
        seen = result.impute()
        low = np.array([float(np.nanmin(seen[n].values)) for n in names])
        high = np.array([float(np.nanmax(seen[n].values)) for n in names])
    except (SysidError, RuntimeError, ValueError) as err:
        return {"bounded": False, "horizon": SPANS * span,
                "detail": f"it cannot be integrated over the data ({err})"}
    try:
        ahead = result.forecast(horizon=SPANS * span, n=300)
    except (SysidError, RuntimeError, ValueError) as err:
        return {"bounded": False, "horizon": SPANS * span,
                "detail": f"it cannot be integrated past the data ({err})"}
    middle, width = (high + low) / 2, np.maximum(high - low, 1e-12 * (np.abs(high) + 1e-300))
    when = np.asarray(ahead["time"].values)
    worst = None
    for j, name in enumerate(names):
        values = np.asarray(ahead[name].values, dtype=float).reshape(-1, len(when))
        factor = np.abs(values - middle[j]) / width[j]
        factor = np.where(np.isfinite(factor), factor, np.inf)
        beyond = np.flatnonzero((factor > BLOW_UP).any(axis=0))
        if len(beyond) and (worst is None or beyond[0] < worst[1]):
            k = beyond[0]
            peak = values[:, k][np.argmax(np.abs(values[:, k] - middle[j]))]
            worst = (name, k, float(peak))
    if worst is None:
        return {"bounded": True, "horizon": SPANS * span,
                "detail": f"every state stays within {BLOW_UP:g}x its range over the data "
                          f"for {SPANS:g} spans of the data past their end"}
    name, k, peak = worst
    at = when[k]
    at = f"{float(at):.4g}" if np.issubdtype(np.asarray(at).dtype, np.number) else str(at)
    return {"bounded": False, "horizon": SPANS * span,
            "detail": f"{name} reaches {peak:.3g} at time {at}, more than {BLOW_UP:g}x its "
                      f"range over the data ({low[names.index(name)]:.3g} to "
                      f"{high[names.index(name)]:.3g})"}
