"""``solver="auto"``: the integrator chosen from the model's own stiffness on the data.

The stiffness of a vector field at a state is the spectral radius ``rho`` of its
Jacobian: an explicit method is stable only for steps below about ``3 / rho``. Measured
by power iteration (central-difference Jacobian-vector products, batched over the
states) at the guessed states of the fit -- each trajectory's initial state and each
shooting window's start, i.e. states spread over the whole record -- ``rho`` times the
largest sample interval says how many explicit steps one interval needs:

* an ODE takes ``dopri5`` (the adaptive explicit pair, in C where it applies) unless
  an interval needs more than ``STIFF_STEPS`` stable steps, where it takes
  ``rosenbrock23`` (L-stable, implicit in its linear solves);
* a field (:class:`~sysid.HybridPDE`, whose diffusion makes ``rho`` grow as
  ``1 / dx^2``) takes ``rk4`` with steps no longer than keep ``h rho`` within rk4's
  stability interval (with a margin): each sample interval takes as few as that allows,
  as cheap as a solve of its accuracy gets, unless the longest interval would need more
  than ``STIFF_STEPS`` (``rosenbrock23`` then).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

__all__ = ["choose_solver", "spectral_radius", "STIFF_STEPS"]

#: Explicit steps per sample interval beyond which a problem counts as stiff.
STIFF_STEPS = 64
#: rk4's step times rho: its stability interval on the negative axis ends at 2.785.
RK4_REACH = 2.0
#: dopri5's stability interval on the negative axis ends near 3.3.
DOPRI5_REACH = 3.3


def spectral_radius(field, t: torch.Tensor, x: torch.Tensor, u: torch.Tensor,
                    iterations: int = 30) -> np.ndarray:
    """Per row of ``x`` (B, n), an estimate of the largest |eigenvalue| of the physics'
    Jacobian (power iteration; 0 where it cannot tell)."""
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        v = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        size = x.abs().amax(dim=-1, keepdim=True).clamp_min(1.0)
        eps = 1e-6 * size
        rho = torch.zeros(x.shape[0], dtype=x.dtype)
        for _ in range(iterations):
            w = (field.physics(t, x + eps * v, u) - field.physics(t, x - eps * v, u)) / (2 * eps)
            norm = w.norm(dim=-1)
            ok = torch.isfinite(norm) & (norm > 0)
            if not bool(ok.any()):
                break
            rho = torch.where(ok, norm, rho)
            v = torch.where(ok.unsqueeze(-1), w / norm.clamp_min(1e-300).unsqueeze(-1), v)
    return rho.numpy()


def choose_solver(field, starts: np.ndarray, times: np.ndarray, rows_t: np.ndarray,
                  u: np.ndarray, solver, pde: bool):
    """The concrete :class:`SolverOptions` for ``solver.method == "auto"``. ``starts`` (S, n): guessed states at times ``rows_t`` (S,), inputs ``u``
    (S, m) there; ``times``: the record's sample times."""
    steps = np.diff(np.unique(np.asarray(times, float)))
    dt = float(steps.max()) if steps.size else 1.0
    x = torch.as_tensor(np.nan_to_num(starts), dtype=torch.float64)
    rho = spectral_radius(field, torch.as_tensor(rows_t, dtype=torch.float64), x,
                          torch.as_tensor(np.nan_to_num(u), dtype=torch.float64))
    rho = float(np.max(rho)) * 1.2 if rho.size and np.isfinite(rho).any() else 0.0
    if pde:
        substeps = max(1, math.ceil(rho * dt / RK4_REACH))
        if substeps <= STIFF_STEPS:       # rk4 steps within its stability limit
            return dataclasses.replace(solver, method="rk4", substeps=1,
                                       max_step=RK4_REACH / rho if rho > 0 else None)
    elif rho * dt / DOPRI5_REACH <= STIFF_STEPS:
        return dataclasses.replace(solver, method="dopri5")
    return dataclasses.replace(solver, method="rosenbrock23")
