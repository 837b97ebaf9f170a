"""sysid against its peers on the UDE Lotka-Volterra problem, in one run (``speed.py --only
peer``): sysid's default fit (its solves in C, ``compiled=True``), the same fit on the
PyTorch solver (``compiled=False``), the diffrax + equinox + optax recipe (``diffrax_peer.py``, with
its compilation) and the plain torchdiffeq recipe (``baselines.plain_recipe``, L-BFGS capped
in time), per seed and median; and one vector-field evaluation + vector-Jacobian product in
sysid (eager PyTorch) and in JAX (jitted).

BENCHMARKS.md section 1: 31 samples on [0, 3], 5 % noise, a and d known. "below noise": the
fit's RMSE against the noise-free truth is under the noise level in both states.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager

import numpy as np
import torch
import xarray as xr

import baselines  # sibling scripts: run from benchmarks/
import diffrax_peer
from ude import lv_sysid

__all__ = ["peer_fits", "field_evaluation"]

RECIPE_LIMIT = 60.0          # s: the plain recipe's L-BFGS is capped (uncapped: 35-222 s)


@contextmanager
def cold_cache():
    """An empty native-kernel cache, on disk and in memory, so that a sysid fit's wall time
    includes compiling its model with the C compiler, as the diffrax peer's includes jit."""
    from sysid.solve import native

    before, loaded = os.environ.get("SYSID_CACHE"), dict(native._LOADED)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["SYSID_CACHE"] = folder
        native._LOADED.clear()
        try:
            yield
        finally:
            native._LOADED.clear()
            native._LOADED.update(loaded)
            if before is None:
                os.environ.pop("SYSID_CACHE", None)
            else:
                os.environ["SYSID_CACHE"] = before


def _scores(pred, X, predict=None) -> dict:
    level = 0.05 * X.mean(axis=0)
    per_state = np.sqrt(np.mean((pred - X) ** 2, axis=0))
    out = {"fit RMSE": float(np.sqrt(np.mean((pred - X) ** 2))),
           "below noise": bool(np.all(per_state < level))}
    if predict is not None:
        far = predict(baselines.EXTRAP_TIMES)
        truth = baselines.lv_truth(baselines.EXTRAP_TIMES)
        out["extrap. rel. L2 [0, 50]"] = (float(np.linalg.norm(far - truth) / np.linalg.norm(truth))
                                          if far is not None else float("inf"))
    return out


def peer_fits(quick: bool) -> list[dict]:
    """One row per method and seed, then the medians and the time ratios."""
    seeds = [0] if quick else [0, 1, 2]
    why = diffrax_peer.available()
    rows, times = [], {"sysid": [], "sysid PyTorch solver": [], "diffrax": [], "torchdiffeq": []}
    for seed in seeds:
        t, Y, X = baselines.lv_data(seed)
        with cold_cache():                   # the C compiler's time counts
            ours = lv_sysid(t, Y, seed)
        rows.append({"method": "sysid default", "seed": seed, "wall s": ours["wall_s"],
                     **_scores(ours["pred"], X), "extrap. rel. L2 [0, 50]": ours["extrap_rel_l2"],
                     "work": f"{ours['nfe']} field evaluations, C compile incl.",
                     "status": ours["status"]})
        times["sysid"].append(ours["wall_s"])
        eager = lv_sysid(t, Y, seed, compiled=False)
        rows.append({"method": "sysid compiled=False (PyTorch solver)", "seed": seed,
                     "wall s": eager["wall_s"], **_scores(eager["pred"], X),
                     "extrap. rel. L2 [0, 50]": eager["extrap_rel_l2"],
                     "work": f"{eager['nfe']} field evaluations", "status": eager["status"]})
        times["sysid PyTorch solver"].append(eager["wall_s"])
        if why is None:
            peer = diffrax_peer.fit_lv(t, Y, baselines.LV_U0, seed)
            rows.append({"method": "diffrax + equinox + optax", "seed": seed,
                         "wall s": peer["wall_s"], **_scores(peer["pred"], X, peer["predict"]),
                         "work": f"Adam 500 + L-BFGS {peer['lbfgs_iters']} (compile incl.)",
                         "status": f"true x0 given; Adam phase {peer['adam_s']:.1f} s"})
            times["diffrax"].append(peer["wall_s"])
        recipe = baselines.plain_recipe(t, Y, seed, time_limit=RECIPE_LIMIT)
        rows.append({"method": "plain torchdiffeq recipe", "seed": seed,
                     "wall s": recipe["wall_s"], "fit RMSE": recipe["fit_rmse"],
                     "extrap. rel. L2 [0, 50]": recipe["extrap_rel_l2"],
                     "work": f"Adam {recipe['adam_iters']} + L-BFGS {recipe['lbfgs_iters']}",
                     "status": f"true x0 given; {recipe['status']}"})
        times["torchdiffeq"].append(recipe["wall_s"])
    for name, values in times.items():
        if values:
            rows.append({"method": f"median: {name}", "seed": "all",
                         "wall s": float(np.median(values))})
    if times["diffrax"]:
        for name in ("sysid", "sysid PyTorch solver"):
            ratio = np.median(times["diffrax"]) / np.median(times[name])
            rows.append({"method": f"diffrax / {name} (median times)", "seed": "all",
                         "wall s": float(ratio)})
    else:
        rows.append({"method": "diffrax peer skipped", "status": why})
    ratio = np.median(times["torchdiffeq"]) / np.median(times["sysid"])
    rows.append({"method": "torchdiffeq (capped) / sysid (median times)", "seed": "all",
                 "wall s": float(ratio)})
    return rows


def _sysid_field(batch: int):
    import sympy as sp

    import sysid
    from sysid.data.bundle import prepare
    from sysid.problem.options import FitOptions
    from sysid.problem.problem import build_problem

    x, y = sp.symbols("x y")
    model = sysid.HybridODE(states=[x, y], physics={x: 1.3 * x, y: -1.8 * y},
                            residual=sysid.MLP())
    t, Y, _ = baselines.lv_data(0)
    data = xr.Dataset({"x": ("time", Y[:, 0]), "y": ("time", Y[:, 1])}, coords={"time": t})
    field = build_problem(model, prepare(model, data), FitOptions(seed=0)).field
    z = torch.as_tensor(np.random.default_rng(0).random((batch, 2)) + 1.0).requires_grad_()
    return field, z


def _sysid_vjp_us(batch: int, repeats: int = 2000) -> float:
    field, z = _sysid_field(batch)
    params = [p for p in field.parameters() if p.requires_grad and p.numel()] + [z]
    tt = torch.zeros(batch, dtype=torch.float64)
    u = torch.zeros(batch, 0, dtype=torch.float64)
    best = np.inf
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats // 5):
            out = field(tt, z, u)
            torch.autograd.grad(out, params, torch.ones_like(out), allow_unused=True)
        best = min(best, (time.perf_counter() - start) / (repeats // 5) * 1e6)
    return best


def _native_vjp_us(batch: int, repeats: int = 2000) -> float | None:
    from sysid.solve import native

    field, z = _sysid_field(batch)
    kernel = native.kernel_for(field)
    if kernel is None:
        return None
    x = z.detach().numpy().copy()
    t, v = np.zeros(batch), np.ones_like(x)
    model, arrays = kernel.prepare(field.parameter_values(), kernel.weights())
    best = np.inf
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats // 5):
            kernel.eval_vjp_with(model, arrays, x, t, v)
        best = min(best, (time.perf_counter() - start) / (repeats // 5) * 1e6)
    return best


def field_evaluation(quick: bool) -> list[dict]:
    """Microseconds per field evaluation + VJP (weights, parameters and states; the best of
    5 repeats): sysid eager, sysid's native kernel (one ctypes call from Python, numpy
    buffers) and JAX jitted, and the ratios (target: within 3x of JAX)."""
    why = diffrax_peer.available()
    rows = []
    for batch in (1, 64):
        ours = _sysid_vjp_us(batch, 500 if quick else 2000)
        fast = _native_vjp_us(batch, 500 if quick else 2000)
        row = {"batch": batch, "sysid eager us": ours,
               "sysid native us (one ctypes call)": fast}
        if why is None:
            theirs = diffrax_peer.field_vjp_us(batch, 500 if quick else 2000)
            row.update({"JAX jit us": theirs, "eager / JAX": ours / theirs,
                        "native / JAX": fast / theirs if fast else None})
        else:
            row["JAX"] = f"skipped: {why}"
        rows.append(row)
    return rows
