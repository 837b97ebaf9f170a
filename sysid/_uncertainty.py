"""Parameter uncertainty from the curvature of the likelihood at the optimum (Gauss-Newton).

For a fit without a network, the residuals of a single-shooting simulation over each whole
trajectory, standardised by each channel's noise level, are linearised in the raw
parameters and the initial states: ``J = d r / d theta``. With the noise levels profiled
out, ``Cov(theta) ~= (J^T J)^-1 n / (n - p)`` (``n`` residuals, ``p`` parameters); the physical parameters' block is mapped through the
parameter transform (delta method). Initial states are nuisance parameters: they are part
of ``J`` (so their correlation with the physics widens its intervals) but not reported.

This is the Laplace approximation for a Gaussian (or log-normal) noise model; it is
accurate when the model is close to linear in its parameters over their uncertainty, and
too narrow otherwise (strongly nonlinear or nearly unidentifiable directions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Curvature", "gauss_newton", "residual_jacobian"]

#: Rows of the Jacobian computed per batched backward pass.
_CHUNK = 256


@dataclass
class Curvature:
    """Gauss-Newton covariance of the physical parameters."""

    names: list[str]
    values: np.ndarray
    covariance: np.ndarray      # (P, P), physical units
    condition: float            # of J^T J in raw units (initial states included)
    n_observations: int

    @property
    def std_errors(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.covariance), 0.0, None))

    def std_error(self, name: str) -> float:
        return float(self.std_errors[self.names.index(name)])


def gauss_newton(result) -> Curvature:
    """The Gauss-Newton covariance of ``result``'s physical parameters.

    Raises
    ------
    ValueError
        The model has a neural residual (its weights would be part of the curvature).
    """
    r, jac, P = residual_jacobian(result._problem)
    field = result._problem.field
    jtj = jac.T @ jac
    # the noise levels were estimated with the parameters: n / (n - p) corrects the bias
    n, p = jac.shape
    cov_raw = np.linalg.pinv(jtj, hermitian=True) * (n / (n - p) if n > p else np.inf)
    s = np.linalg.svd(jtj, compute_uv=False, hermitian=True) if jtj.size else np.ones(1)
    condition = float(s[0] / s[-1]) if s[-1] > 0 else float("inf")
    with torch.no_grad():
        values = field.transform.forward(field.raw.detach()).numpy()
    slope = _transform_slope(field.transform, field.raw.detach())
    cov = slope[:, None] * cov_raw[:P, :P] * slope[None, :]
    names = [p.name for p in result.model.parameters]
    return Curvature(names, values, cov, condition, int(r.size))


def residual_jacobian(problem) -> tuple[np.ndarray, np.ndarray, int]:
    """Standardised residuals ``r`` (N,) of a single-shooting simulation and their Jacobian
    (N, P + initial states) in the raw parameters (first P columns) and the initial states.

    Raises
    ------
    ValueError
        The model has a neural residual (its weights would be part of the curvature).
    """
    field = problem.field
    if field.residual is not None:
        raise ValueError("gauss_newton() needs a model without a neural residual")
    raw = field.raw.detach().clone().requires_grad_(True)
    z0 = problem.z0.detach().clone().requires_grad_(True)
    saved_raw, saved_z0 = field.raw, problem.z0
    try:    # plain tensors in place of the Parameters (the registry accepts any tensor)
        field._parameters["raw"], problem._parameters["z0"] = raw, z0
        r = _standardised_residuals(problem)
    finally:
        field._parameters["raw"], problem._parameters["z0"] = saved_raw, saved_z0
    return r.detach().numpy(), _jacobian(r, [raw, z0]), raw.numel()


def _standardised_residuals(problem) -> torch.Tensor:
    """Observed residuals of a single-shooting simulation divided by each channel's RMS."""
    seg = problem.single
    xs = problem.states(seg)
    pred = problem.field.observe(seg.tau, xs, seg.u_grid)
    r = problem.noise.residuals(pred, seg.y, seg.mask)
    mask = seg.mask
    r = torch.where(mask, r, torch.zeros((), dtype=r.dtype))
    flat, m = r.reshape(-1, r.shape[-1]), mask.reshape(-1, mask.shape[-1])
    n_c = m.sum(0).clamp_min(1)
    sigma = torch.sqrt((flat.detach() ** 2).sum(0) / n_c).clamp_min(1e-300)
    return (flat / sigma)[m]


def _jacobian(r: torch.Tensor, inputs: list[torch.Tensor]) -> np.ndarray:
    """``d r / d inputs`` (N, sum of input sizes) by reverse mode, rows in chunks."""
    n = r.numel()
    rows = []
    eye = torch.eye(n, dtype=r.dtype)
    for start in range(0, n, _CHUNK):
        block = eye[start:start + _CHUNK]
        try:
            grads = torch.autograd.grad(r, inputs, grad_outputs=block, retain_graph=True,
                                        is_grads_batched=True, allow_unused=True)
            parts = [g.reshape(len(block), -1) if g is not None
                     else torch.zeros(len(block), x.numel(), dtype=r.dtype)
                     for g, x in zip(grads, inputs)]
            rows.append(torch.cat(parts, dim=1))
        except RuntimeError:     # an operation without a batching rule: one row at a time
            for v in block:
                grads = torch.autograd.grad(r, inputs, grad_outputs=v, retain_graph=True,
                                            allow_unused=True)
                rows.append(torch.cat([g.reshape(1, -1) if g is not None
                                       else torch.zeros(1, x.numel(), dtype=r.dtype)
                                       for g, x in zip(grads, inputs)], dim=1))
    return torch.cat(rows).detach().numpy() if rows else np.zeros((0, 0))


def _transform_slope(transform, raw: torch.Tensor) -> np.ndarray:
    """d(physical value) / d(raw value) for each parameter."""
    if raw.numel() == 0:
        return np.zeros(0)
    x = raw.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(transform.forward(x).sum(), x)
    return grad.numpy()
