"""sysid's default fit of the UDE Lotka-Volterra problem (BENCHMARKS.md section 1), shared by
``training.py`` (beside the plain torchdiffeq recipe and the oracle) and ``peer.py`` (beside
the diffrax peer).
"""

from __future__ import annotations

import time

import numpy as np
import sympy as sp
import xarray as xr

import baselines  # a sibling script: run from benchmarks/
import sysid

__all__ = ["lv_sysid"]


def lv_sysid(times, Y, seed, **options):
    """sysid's default fit of the UDE problem: known a x and -d y, a residual for the rest."""
    x, y = sp.symbols("x y")
    model = sysid.HybridODE(states=[x, y], physics={x: 1.3 * x, y: -1.8 * y},
                            residual=sysid.MLP())
    data = xr.Dataset({"x": ("time", Y[:, 0]), "y": ("time", Y[:, 1])}, coords={"time": times})
    start = time.perf_counter()
    result = sysid.fit(model, data, seed=seed, progress=False, throw=False, **options)
    wall = time.perf_counter() - start
    fit = result.impute(times)
    pred = np.stack([fit["x"].values, fit["y"].values], axis=-1)
    try:
        far = result.forecast(baselines.EXTRAP_TIMES[1:])
        ext = np.concatenate([pred[:1], np.stack([far["x"].values, far["y"].values], -1)])
        truth = baselines.lv_truth(baselines.EXTRAP_TIMES)
        rel = float(np.linalg.norm(ext - truth) / np.linalg.norm(truth))
        rel = rel if np.isfinite(rel) else np.inf
    except Exception:           # noqa: BLE001 - a forecast that blows up counts as inf
        rel = np.inf
    return {"wall_s": wall, "pred": pred, "extrap_rel_l2": rel, "status": result.status.code,
            "nfe": result.stats["function_evaluations"]}
