"""The Laplace approximation of a fit's uncertainty: the curvature at the optimum.

The curvature of the fit's objective at its optimum is approximated by Gauss-Newton. The
objective, in units of log-likelihood of the whole data set, is

    0.5 sum_i r_i^2  +  N rho mean(g^2)  +  N lambda |W|^2

with ``r`` the standardised residuals of a single-shooting simulation over each whole
trajectory, ``g`` the network's output on the simulated states (the minimal-norm residual
penalty, weight ``rho``), and ``W`` the network's weight matrices (weight decay
``lambda``); ``N`` is the number of observed values. Linearising ``r`` and ``g`` in
``theta = (raw parameters, initial states, network weights and biases)`` gives the
precision matrix

    H = c J_r^T J_r + J_g^T J_g + diag(prior)

where the prior precision is ``2 N lambda`` for every weight (the Gaussian prior that the
weight decay implies), and :data:`DEFAULT_PRIOR_PRECISION` for the biases (which the fit
does not penalise) and for the weights when ``lambda`` is 0. The noise levels are profiled
out (each channel's residuals are divided by its root-mean-square), and
``c = (N - p) / N`` corrects their bias, with ``p = tr(H^-1 J_r^T J_r)`` the effective
number of fitted quantities (for a model without a network: its number of parameters
plus initial states). ``Cov(theta) ~= H^-1``; the physical parameters' block of it is
their marginal covariance (the Schur complement of the precision, the initial states and
the network integrated out), mapped through the parameter transform by the delta method.

Without a network this is the classical Gauss-Newton (Laplace) covariance
``(J^T J)^-1 N / (N - p)``. With a network it is a linearised Laplace approximation: where
the network can trade off against a physical term, the physics' marginal interval widens.

It is too narrow when the model is strongly nonlinear in its parameters over their
uncertainty, when the optimum is not reached (``result.status``), when the noise is not
Gaussian or is correlated in time, or when the network's fit is a poor local optimum (the
approximation does not see other optima, nor the range of networks that different seeds
give: an ensemble of fits shows that).
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager
from dataclasses import dataclass, field as dc_field

import numpy as np
import torch

from ..problem.jacobian import linearise
from ..runtime.blas import blas_threads
from ..solve.integrate import solve_segments

__all__ = ["Curvature", "gauss_newton", "laplace", "residual_jacobian", "DEFAULT_PRIOR_PRECISION"]

#: Rows of the Jacobian computed per batched backward pass.
_CHUNK = 256

#: Prior precision of the network's biases, and of its weights when the fit used no weight
#: decay: a standard deviation of 10 in the network's own standardised units (its inputs and
#: outputs are scaled to order one), weak enough that the data dominate wherever they speak.
DEFAULT_PRIOR_PRECISION = 1e-2

#: Eigenvalues of the (diagonally scaled) precision below this fraction of the largest are
#: flat directions: they are raised to it, so their variance is huge but finite.
_FLAT = 1e-13


@dataclass
class Curvature:
    """Laplace covariance of a fit: the physical parameters' block and the whole of it.

    Attributes
    ----------
    names : list of str
        The free physical parameters.
    values : numpy.ndarray
        Their fitted values (physical units).
    covariance : numpy.ndarray
        (P, P) covariance of the physical parameters, physical units (delta method).
    condition : float
        Condition number of the scaled precision matrix (all fitted quantities).
    n_observations : int
        Number of standardised residuals (observed values).
    raw_values : numpy.ndarray
        The raw (unconstrained) parameter values: logs of the positive parameters.
    kinds : list of str
        ``"positive"``, ``"negative"``, ``"linear"``, ``"bounded"``, ``"above"`` or
        ``"below"`` per parameter (the transform, :mod:`sysid.model.parameters`).
    raw_covariance : numpy.ndarray
        (D, D) covariance of every fitted quantity in raw units, columns ordered as
        ``columns`` says: raw parameters, initial states (standardised), network tensors.
    columns : dict
        ``{"parameters": slice, "initial_states": slice, "network": slice}``.
    dof : float
        ``N - p``, the residual degrees of freedom (``p`` effective fitted quantities).
    network : bool
        Whether the network's weights are part of the approximation (False: held fixed).
    """

    names: list[str]
    values: np.ndarray
    covariance: np.ndarray      # (P, P), physical units
    condition: float            # of the scaled precision, initial states (and network) included
    n_observations: int
    raw_values: np.ndarray = dc_field(default_factory=lambda: np.zeros(0))
    kinds: list[str] = dc_field(default_factory=list)
    raw_covariance: np.ndarray = dc_field(default_factory=lambda: np.zeros((0, 0)))
    columns: dict = dc_field(default_factory=dict)
    dof: float = float("nan")
    network: bool = False
    transform: object = None    # the ParameterTransform (maps raw interval ends back)
    #: per physical parameter, how many times wider its raw standard error is without the
    #: residual penalty's rows (the data and the weights' prior alone); 1 without a network
    penalty_share: np.ndarray = dc_field(default_factory=lambda: np.zeros(0))

    @property
    def std_errors(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.covariance), 0.0, None))

    def std_error(self, name: str) -> float:
        return float(self.std_errors[self.names.index(name)])

    @property
    def raw_std_errors(self) -> np.ndarray:
        P = len(self.names)
        return np.sqrt(np.clip(np.diag(self.raw_covariance)[:P], 0.0, None))

    @property
    def correlation(self) -> np.ndarray:
        """Correlation of the physical parameters (from the raw covariance, which is the
        same to first order and stays finite for flat directions)."""
        P = len(self.names)
        c = self.raw_covariance[:P, :P]
        s = np.sqrt(np.clip(np.diag(c), 1e-300, None))
        return np.clip(c / s[:, None] / s[None, :], -1.0, 1.0)


# -- the covariance ------------------------------------------------------------------------
def gauss_newton(result) -> Curvature:
    """The Gauss-Newton covariance of ``result``'s physical parameters.

    Raises
    ------
    ValueError
        The model has a neural residual (use :func:`laplace`, which includes its weights).
    """
    if result._problem.field.residual is not None:
        raise ValueError("gauss_newton() needs a model without a neural residual; "
                         "laplace(result) includes the network's weights")
    return laplace(result)


def laplace(result, *, network: bool = True) -> Curvature:
    """The Laplace covariance of everything ``result`` fitted (see the module docstring).

    Parameters
    ----------
    result : FitResult
    network : bool, default True
        Include the network's weights (if the model has one). False holds them fixed at
        their fitted values (a narrower, conditional covariance, for comparison).
    """
    cache = result.__dict__.setdefault("_laplace_cache", {})
    key = bool(network)
    if key not in cache:
        cache[key] = _laplace(result, key)
    return cache[key]


def _laplace(result, network: bool) -> Curvature:
    problem = result._problem
    field = problem.field
    net = field.residual
    penalty = _penalty_weight(result) if net is not None else 0.0
    if net is None:      # few columns: central differences in one batched solve (fast)
        _, r_np, jac = linearise(problem)
        n = int(r_np.size)                  # the data rows come first, then the prior's
        if problem.prior is not None:
            n -= problem.z0.shape[0] * problem.prior.rows_per_trajectory
    else:
        with _plain_tensors(problem, network) as (tensors, kinds), torch.enable_grad():
            r_data, r_pen = _objective_rows(problem, penalty)
            jac = _jacobian(torch.cat([r_data, r_pen]), tensors)
        n = int(r_data.numel())
    jd, jp = jac[:n], jac[n:]
    P = field.raw.numel()
    n0 = problem.z0.numel()
    D = jac.shape[1]
    prior = np.zeros(D)
    if network and net is not None:
        n_obs = float(problem.noise.total)
        decay = float(result.options.weight_decay)
        k = P + n0
        for t, kind in zip(tensors[2:], kinds[2:]):
            m = t.numel()
            w = 2.0 * n_obs * decay if (kind == "weight" and decay > 0) \
                else DEFAULT_PRIOR_PRECISION
            prior[k:k + m] = w
            k += m
    with blas_threads(D):
        jtj = jd.T @ jd
        rest = jp.T @ jp + np.diag(prior)
        cov0, _ = _inverse(jtj + rest)
        p_eff = float(np.sum(cov0 * jtj))           # tr(H^-1 J^T J)
        dof = max(n - p_eff, 1.0) if n > 0 else float("nan")
        cov_raw, condition = _inverse(jtj * (dof / n) + rest) if n > 0 else (cov0, np.inf)
        share = np.ones(P)
        if network and net is not None and n > 0 and jp.shape[0] > 0:
            # what the data (and the weights' prior) alone say: where the network can take
            # over a physical term, only the minimal-norm penalty pins the parameter
            free, _ = _inverse(jtj * (dof / n) + np.diag(prior))
            share = np.sqrt(np.diag(free)[:P] / np.maximum(np.diag(cov_raw)[:P], 1e-300))
    raw = field.raw.detach()
    with torch.no_grad():
        values = field.transform.forward(raw).numpy()
    slope = _transform_slope(field.transform, raw)
    cov = slope[:, None] * cov_raw[:P, :P] * slope[None, :]
    names = [p.name for p in result.model.parameters]
    columns = {"parameters": slice(0, P), "initial_states": slice(P, P + n0),
               "network": slice(P + n0, D)}
    return Curvature(names, values, cov, condition, n, raw.numpy().copy(),
                     list(field.transform.kinds), cov_raw, columns, float(dof),
                     bool(network and net is not None), field.transform, share)


def _inverse(h: np.ndarray) -> tuple[np.ndarray, float]:
    """Inverse of a symmetric positive semi-definite matrix, scaled to unit diagonal first;
    eigenvalues below ``_FLAT`` times the largest are raised to it (flat directions get a
    huge, finite variance). Returns the inverse and the scaled matrix's condition number."""
    if h.size == 0:
        return np.zeros_like(h), 1.0
    diag = np.diag(h)
    d = np.sqrt(np.where(diag > 0, diag, 1.0))     # a quantity nothing depends on: unscaled
    hs = h / d[:, None] / d[None, :]
    lam, vec = np.linalg.eigh(0.5 * (hs + hs.T))
    top = max(float(lam[-1]), 1e-300)
    floor = _FLAT * top
    condition = top / float(lam[0]) if lam[0] > 0 else float("inf")
    inv = (vec / np.maximum(lam, floor)) @ vec.T
    return inv / d[:, None] / d[None, :], condition


def _penalty_weight(result) -> float:
    """The residual penalty's weight in the fit's final objective."""
    value = result.stats.get("residual_penalty") if isinstance(result.stats, dict) else None
    if value is None:
        value = result.options.penalty_levels()[0]
    return float(value)


@contextmanager
def _plain_tensors(problem, network: bool):
    """Put plain tensors that require grad in place of the fitted Parameters (raw, z0 and,
    with ``network``, every network tensor), restoring the Parameters afterwards. Yields
    the tensors and their kinds ("raw", "z0", "weight", "bias")."""
    field = problem.field
    slots = [(field, "raw", "raw"), (problem, "z0", "z0")]
    if field.residual is not None:       # without ``network``: held fixed, no gradients
        for mod in field.residual.modules():
            for name, p in mod._parameters.items():
                if p is not None:
                    slots.append((mod, name, ("weight" if name == "weight" else "bias")
                                  if network else "fixed"))
    saved = [mod._parameters[name] for mod, name, _ in slots]
    tensors = [p.detach().clone().requires_grad_(kind != "fixed")
               for p, (_, _, kind) in zip(saved, slots)]
    try:      # the registry accepts any tensor
        for (mod, name, _), t in zip(slots, tensors):
            mod._parameters[name] = t
        free = [(t, kind) for t, (_, _, kind) in zip(tensors, slots) if kind != "fixed"]
        yield [t for t, _ in free], [kind for _, kind in free]
    finally:
        for (mod, name, _), p in zip(slots, saved):
            mod._parameters[name] = p


def _solver(problem):
    """The fit's solver options, with plain (non-adjoint) gradients."""
    opts = problem.solver
    return dataclasses.replace(opts, adjoint=False)


def _objective_rows(problem, penalty: float):
    """Standardised data residuals (N,) and the residual penalty's rows (scaled so that
    half their sum of squares is the penalty in log-likelihood units; empty without a
    network or a penalty), from one single-shooting simulation."""

    seg = problem.single
    xs = solve_segments(problem.field, problem.x0(), seg.tau, seg.inputs, _solver(problem))
    r = _standardise(problem, problem.field.observe(seg.tau, xs, seg.u_grid), seg)
    net = problem.field.residual
    extra = r.new_zeros(0) if problem.prior is None else problem.prior.rows(problem.x0())
    if net is None or penalty <= 0:
        return r, extra
    g = net.scaled(torch.cat([xs, seg.u_grid], dim=-1))
    valid = seg.valid.reshape(-1)
    g = g.reshape(-1, g.shape[-1])[valid]
    weight = math.sqrt(2.0 * problem.noise.total * penalty / max(g.numel(), 1))
    return r, torch.cat([weight * g.reshape(-1), extra])


def residual_jacobian(problem) -> tuple[np.ndarray, np.ndarray, int]:
    """Standardised residuals ``r`` (N,) of a single-shooting simulation and their Jacobian
    (N, P + initial states) in the raw parameters (first P columns) and the initial states.

    Raises
    ------
    ValueError
        The model has a neural residual (its weights would be part of the curvature).
    """
    if problem.field.residual is not None:
        raise ValueError("gauss_newton() needs a model without a neural residual")
    with _plain_tensors(problem, False) as (tensors, _), torch.enable_grad():
        r = _standardised_residuals(problem)
        jac = _jacobian(r, tensors)
    return r.detach().numpy(), jac, problem.field.raw.numel()


def _standardised_residuals(problem) -> torch.Tensor:
    """Observed residuals of a single-shooting simulation divided by each channel's RMS."""

    seg = problem.single
    xs = solve_segments(problem.field, problem.x0(), seg.tau, seg.inputs, _solver(problem))
    return _standardise(problem, problem.field.observe(seg.tau, xs, seg.u_grid), seg)


def _standardise(problem, pred, seg) -> torch.Tensor:
    r = problem.noise.residuals(pred, seg.y, seg.mask)
    mask = seg.mask
    r = torch.where(mask, r, torch.zeros((), dtype=r.dtype))
    flat, m = r.reshape(-1, r.shape[-1]), mask.reshape(-1, mask.shape[-1])
    n_c = m.sum(0).clamp_min(1)
    sigma = torch.sqrt((flat.detach() ** 2).sum(0) / n_c).clamp_min(1e-300)
    return (flat / sigma)[m]


def _jacobian_blocks(r: torch.Tensor, inputs: list[torch.Tensor]):
    """Yield ``d r / d inputs`` in blocks of rows (k, sum of input sizes), reverse mode."""
    n = r.numel()
    if n == 0:
        return
    width = sum(x.numel() for x in inputs)

    def assemble(grads, k):
        return torch.cat([g.reshape(k, -1) if g is not None
                          else torch.zeros(k, x.numel(), dtype=r.dtype)
                          for g, x in zip(grads, inputs)], dim=1)

    for start in range(0, n, _CHUNK):
        k = min(_CHUNK, n - start)
        block = torch.zeros(k, n, dtype=r.dtype)
        block[torch.arange(k), torch.arange(start, start + k)] = 1.0
        try:
            grads = torch.autograd.grad(r, inputs, grad_outputs=block, retain_graph=True,
                                        is_grads_batched=True, allow_unused=True)
            yield assemble(grads, k).detach().numpy().reshape(k, width)
        except RuntimeError:     # an operation without a batching rule: one row at a time
            rows = []
            for v in block:
                grads = torch.autograd.grad(r, inputs, grad_outputs=v, retain_graph=True,
                                            allow_unused=True)
                rows.append(assemble(grads, 1))
            yield torch.cat(rows).detach().numpy()


def _jacobian(r: torch.Tensor, inputs: list[torch.Tensor]) -> np.ndarray:
    """``d r / d inputs`` (N, sum of input sizes) by reverse mode, rows in chunks."""
    blocks = list(_jacobian_blocks(r, inputs))
    if not blocks:
        return np.zeros((0, sum(x.numel() for x in inputs)))
    return np.concatenate(blocks)


def _transform_slope(transform, raw: torch.Tensor) -> np.ndarray:
    """d(physical value) / d(raw value) for each parameter."""
    if raw.numel() == 0:
        return np.zeros(0)
    x = raw.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(transform.forward(x).sum(), x)
    return grad.numpy()
