"""Process noise: a stochastic state-space fit by the extended Kalman filter likelihood.

``sysid.fit(model, data, process_noise=...)`` treats the model as the drift of an SDE,

    dx = f(t, x, u; p) dt + diag(q) dW,        y_k = h(t_k, x(t_k)) + N(0, diag(sigma^2)),

and fits ``p``, each trajectory's initial state and the learned noise levels by maximising
the marginal likelihood of the data that an extended Kalman filter gives along each
trajectory. Between samples, the mean ``m`` and covariance ``P`` follow the linearised
moment equations ``m' = f(m)``, ``P' = F P + P F^T + diag(q^2)`` (``F``: the Jacobian of
the field in the states, compiled from the same SymPy physics as the field), integrated by
RK4 steps, as many per interval as the field's fastest rate needs (or ``substeps``); at
each sample the observed channels update them (NaN: not measured).
:meth:`StateSpace.smooth` runs the Rauch-Tung-Striebel smoother after the filter, with the
transition matrix ``Phi' = F Phi`` integrated alongside. :mod:`~sysid.training.kalman_fit`
fits it.

The initial state is a parameter (its covariance starts at 0), as in the deterministic
fit, which also gives the starting point: parameters, initial states and measurement
noise levels. Models with a residual network are refused.
"""

from __future__ import annotations

import math

import numpy as np
import sympy as sp
import torch
from torch import nn

from ..errors import ModelError
from ..model.field import _FLOOR, _with_time
from ..model.compiler import CompiledExprs
from ..model.hybrid import HybridODE, t as TIME
from ..model.pde import HybridPDE

__all__ = ["StateSpace", "Grid", "process_noise_levels", "check_model"]

LEARN = "learn"
#: RK4 step times the field's largest rate when ``substeps`` is not given (local error of
#: a linear mode about 0.25**5 / 120 = 8e-6 of its size per step)
STEP_RATE = 0.25
_LOG_2PI = math.log(2.0 * math.pi)


def check_model(model, options: dict) -> None:
    """Refuse what the Kalman fit does not do, with what to do instead."""
    if isinstance(model, HybridPDE):
        raise ModelError("process_noise= is for a HybridODE; a HybridPDE (a field over space) "
                         "is fitted deterministically. Drop process_noise.")
    if not isinstance(model, HybridODE):
        raise ModelError(f"fit expects a sysid.HybridODE as model; received "
                         f"{type(model).__name__}.")
    if model.residual is not None:
        raise ModelError("process_noise= fits physics-only models: with a residual network "
                         "the disturbance and the network would explain the same misfit. "
                         "Fit the hybrid model deterministically, distil it with "
                         "result.symbolic(), and fit summary.refit(...)'s model (or the "
                         "physics alone) with process_noise.")
    if options.get("validation", 0):
        raise ModelError("process_noise= fits every measurement (the filter runs through "
                         "the whole record); validation= does not apply. Drop it.")
    noise = options.get("noise", "gaussian")
    if noise != "gaussian":
        raise ModelError(f"process_noise= uses Gaussian measurement errors (the Kalman "
                         f"filter's); received noise={noise!r}. Use noise='gaussian', or "
                         f"transform the data (e.g. log counts) first.")


def process_noise_levels(value, model) -> tuple[np.ndarray, np.ndarray]:
    """``(levels, learned)`` per state from the ``process_noise`` option: a float (every
    state), ``"learn"`` (every state), or a dict {state: float or "learn"} (states left out
    get 0). ``levels`` holds NaN where a level is learned."""
    names = model.state_names
    n = len(names)
    if isinstance(value, str) and value != LEARN:
        value = None                                   # refused below
    if isinstance(value, str) or _is_number(value):
        value = {name: value for name in names}
    if not isinstance(value, dict):
        raise ValueError(f"fit option process_noise must be a number, 'learn' or a dict "
                         f"{{state: number or 'learn'}}; received {value!r}.")
    levels, learned = np.zeros(n), np.zeros(n, bool)
    for key, v in value.items():
        name = str(key)
        if name not in names:
            raise ValueError(f"process_noise names {name!r}, which is not a state of the "
                             f"model (states: {names}).")
        i = names.index(name)
        if isinstance(v, str) and v == LEARN:
            levels[i], learned[i] = np.nan, True
        elif _is_number(v) and math.isfinite(float(v)) and float(v) >= 0:
            levels[i] = float(v)
        else:
            raise ValueError(f"process_noise[{name!r}] must be a standard deviation >= 0 "
                             f"(state units per sqrt(time unit)) or 'learn'; received {v!r}.")
    if not learned.any() and not (levels > 0).any():
        raise ValueError("process_noise gives every state a level of 0: that is the "
                         "deterministic fit; drop process_noise, or give a level or 'learn'.")
    return levels, learned


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


class StateSpace(nn.Module):
    """The model as a state-space model over a fitted deterministic ``problem``: its
    field's raw parameters and its initial states (``problem.z0``) are shared, plus the
    log process noise levels and log measurement noise levels that are learned."""

    def __init__(self, problem, q_levels, q_learned, q_start, sigma_known, sigma_start):
        super().__init__()
        self.problem = problem
        field, model = problem.field, problem.field.model
        self.n = len(model.states)
        self.register_buffer("q_fixed", torch.as_tensor(np.nan_to_num(q_levels)))
        self.register_buffer("q_learned", torch.as_tensor(q_learned))
        self.log_q = nn.Parameter(torch.log(torch.as_tensor(q_start, dtype=torch.float64)))
        known = np.array([np.nan if s is None else s for s in sigma_known], dtype=float)
        self.register_buffer("sigma_fixed", torch.as_tensor(np.nan_to_num(known)))
        self.register_buffer("sigma_learned", torch.as_tensor(np.isnan(known)))
        self.log_sigma = nn.Parameter(torch.log(torch.as_tensor(sigma_start,
                                                                dtype=torch.float64)))
        variables = list(model.states) + list(model.inputs) + [TIME] + list(model.parameters)
        rhs = list(model.rhs())
        jac = [sp.diff(e, s) for e in rhs for s in model.states]
        pv = _with_time(variables, rhs)
        n_batch = len(model.states) + len(model.inputs) + 1
        self._dynamics = CompiledExprs(rhs + jac, pv, batch=pv[:n_batch])
        obs = [sp.sympify(model.channels[c]).subs(model.fixed) for c in field.channels]
        ojac = [sp.diff(e, s) for e in obs for s in model.states]
        ov = _with_time(variables, obs)
        self._observation = CompiledExprs(obs + ojac, ov, batch=ov[:n_batch])
        self.C = len(obs)
        self.substeps: int | None = None     # RK4 steps per interval; None: from the rate
        self.max_step: float | None = None
        self.rate = 0.0                      # the field's largest |eigenvalue| seen
        signed = [bool(s.is_positive or s.is_nonnegative) for s in model.states]
        self.register_buffer("floored", torch.tensor(signed), persistent=False)
        self.any_floored = any(signed)

    def forward(self, grid: "Grid") -> torch.Tensor:
        """The filter's negative log-likelihood of the data on ``grid`` (see :meth:`run`)."""
        return self.run(grid)[0]

    def steps_for(self, dt: float) -> int:
        """RK4 steps across an interval ``dt``: ``substeps`` if given, else enough that
        each step times the field's largest rate :attr:`rate` is at most
        :data:`STEP_RATE`; at least one, and none longer than ``max_step``."""
        if self.substeps is not None:
            k = self.substeps
        else:
            k = max(1, math.ceil(dt * self.rate / STEP_RATE - 1e-9))
        if self.max_step is not None and dt > 0:
            k = max(k, math.ceil(dt / self.max_step - 1e-9))
        return int(k)

    def measure_rate(self, grid: "Grid") -> float:
        """The largest |eigenvalue| of the field's Jacobian along the filtered means of
        ``grid`` (run with 4 steps per interval), kept as :attr:`rate`."""
        keep, self.substeps = self.substeps, 4
        try:
            with torch.no_grad():
                _, s = self.run(grid, keep=True)
                p = self.problem.field.transform.forward(self.problem.field.raw).unbind(0)
                m = torch.cat(s["mf"], 0)
                t = grid.times.repeat_interleave(grid.B)
                u = self.problem.inputs(t.reshape(grid.T, grid.B).T).transpose(0, 1)
                _, F = self._field(t, m, u.reshape(grid.T * grid.B, -1), p)
                eig = torch.linalg.eigvals(F).abs()
            self.rate = float(torch.nan_to_num(eig, nan=0.0, posinf=0.0).max())
        finally:
            self.substeps = keep
        return self.rate

    # -- the learned quantities ----------------------------------------------------------
    def tensors(self) -> list[nn.Parameter]:
        """What the likelihood is maximised over: raw parameters, scaled initial states,
        log process and log measurement noise levels (where learned)."""
        return [self.problem.field.raw, self.problem.z0, self.log_q, self.log_sigma]

    def q(self) -> torch.Tensor:
        return self.q_fixed.masked_scatter(self.q_learned, torch.exp(self.log_q))

    def sigma(self) -> torch.Tensor:
        return self.sigma_fixed.masked_scatter(self.sigma_learned, torch.exp(self.log_sigma))

    def _values(self, t, x, u, p):
        if self.any_floored:
            x = torch.where(self.floored, x.clamp_min(_FLOOR), x)
        return [*x.unbind(-1), *u.unbind(-1), t, *p]

    def _field(self, t, x, u, p):
        out = self._dynamics.stack(self._values(t, x, u, p), -1)
        B, n = x.shape
        return out[:, :n], out[:, n:].reshape(B, n, n)

    def _observe(self, t, x, u, p):
        out = self._observation.stack(self._values(t, x, u, p), -1)
        B, n = x.shape
        return out[:, :self.C], out[:, self.C:].reshape(B, self.C, n)

    # -- prediction between samples ------------------------------------------------------
    def _moments(self, t, z, p, Q, u):
        """d/dt of the flat moments ``z = [m, vec P, vec Phi?]`` (B, n + n^2 (+ n^2))."""
        n = self.n
        B = z.shape[0]
        m = z[:, :n]
        f, F = self._field(t, m, self.problem.inputs(t) if u is None else u, p)
        FP = F @ z[:, n:n + n * n].view(B, n, n)
        parts = [f, (FP + FP.transpose(1, 2) + Q).view(B, n * n)]
        if z.shape[1] > n + n * n:
            parts.append((F @ z[:, n + n * n:].view(B, n, n)).view(B, n * n))
        return torch.cat(parts, 1)

    def predict(self, t0, dt, m, P, p, Q, steps: int, transition: bool = False):
        """Mean and covariance moved from ``t0`` by ``dt`` (B,) in ``steps`` RK4 steps;
        with ``transition``, also the linearised transition matrix ``Phi``."""
        B, n = m.shape
        parts = [m, P.reshape(B, n * n)]
        if transition:
            parts.append(torch.eye(n, dtype=m.dtype).reshape(1, n * n).expand(B, n * n))
        z = torch.cat(parts, 1)
        u = None if self.problem.inputs.m else m.new_zeros(B, 0)
        h = dt / steps
        hv = h[:, None]
        half, sixth = 0.5 * hv, hv / 6
        t = t0
        for _ in range(steps):
            k1 = self._moments(t, z, p, Q, u)
            k2 = self._moments(t + 0.5 * h, z + half * k1, p, Q, u)
            k3 = self._moments(t + 0.5 * h, z + half * k2, p, Q, u)
            k4 = self._moments(t + h, z + hv * k3, p, Q, u)
            z = z + sixth * (k1 + 2 * (k2 + k3) + k4)
            t = t + h
        P = z[:, n:n + n * n].reshape(B, n, n)
        Phi = z[:, n + n * n:].reshape(B, n, n) if transition else None
        return z[:, :n], 0.5 * (P + P.transpose(1, 2)), Phi

    # -- measurement update ----------------------------------------------------------------
    def update(self, t, m, P, y, seen, p, sigma2):
        """The observed channels ``seen`` (B, C) of ``y`` update ``m`` and ``P``; returns
        them and the negative log-likelihood of the observations (B,). A channel not
        seen gets a zero row of ``H`` and unit variance, so it changes nothing."""
        u = self.problem.inputs(t)
        h, H = self._observe(t, m, u, p)
        r = torch.where(seen, torch.nan_to_num(y) - h, torch.zeros_like(h))
        Hm = H * seen[..., None]
        R = torch.where(seen, sigma2.expand_as(h), torch.ones_like(h))
        S = Hm @ P @ Hm.transpose(1, 2) + torch.diag_embed(R)
        L = torch.linalg.cholesky(0.5 * (S + S.transpose(1, 2)))
        w = torch.cholesky_solve(r[..., None], L)[..., 0]
        K = torch.cholesky_solve(Hm @ P, L).transpose(1, 2)         # P H^T S^-1
        nll = 0.5 * ((r * w).sum(-1) + 2 * torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(-1)
                     + seen.sum(-1).to(r.dtype) * _LOG_2PI)
        m = m + (K @ r[..., None])[..., 0]
        A = torch.eye(self.n, dtype=m.dtype) - K @ Hm                # Joseph form
        P = A @ P @ A.transpose(1, 2) + K @ torch.diag_embed(R * seen) @ K.transpose(1, 2)
        return m, 0.5 * (P + P.transpose(1, 2)), nll

    # -- along the record --------------------------------------------------------------------
    def run(self, grid: "Grid", keep: bool = False):
        """The filter over ``grid``: total negative log-likelihood, and with ``keep`` the
        lists the smoother needs (predicted and filtered moments, transitions)."""
        problem = self.problem
        p = problem.field.transform.forward(problem.field.raw).unbind(0)
        Q = torch.diag_embed(self.q() ** 2).expand(grid.B, self.n, self.n)
        sigma2 = self.sigma() ** 2
        m = problem.x0()
        P = torch.zeros(grid.B, self.n, self.n, dtype=torch.float64)
        total = torch.zeros((), dtype=torch.float64)
        store = {"mp": [], "Pp": [], "Phi": [], "mf": [], "Pf": []}
        Phi = None
        for k in range(grid.T):
            t = grid.times[k].expand(grid.B)
            if k > 0:
                dt = grid.steps[k - 1] * grid.running[:, k - 1]
                n_sub = self.steps_for(float(grid.steps[k - 1]))
                m, P, Phi = self.predict(grid.times[k - 1].expand(grid.B), dt, m, P, p, Q,
                                         n_sub, transition=keep)
            if keep:
                store["mp"].append(m), store["Pp"].append(P), store["Phi"].append(Phi)
            if grid.any_seen[k]:
                m, P, nll = self.update(t, m, P, grid.y[:, k], grid.seen[:, k], p, sigma2)
                total = total + nll.sum()
            if keep:
                store["mf"].append(m), store["Pf"].append(P)
        return total, store

    def smooth(self, grid: "Grid"):
        """Rauch-Tung-Striebel smoothed means (B, T, n) and covariances (B, T, n, n) on
        ``grid``; NaN before each trajectory's first sample."""
        with torch.no_grad():
            _, s = self.run(grid, keep=True)
            ms, Ps = s["mf"][-1], s["Pf"][-1]
            means, covs = [ms], [Ps]
            for k in range(grid.T - 2, -1, -1):
                Pp = s["Pp"][k + 1]
                G = s["Pf"][k] @ s["Phi"][k + 1].transpose(1, 2) @ torch.linalg.pinv(
                    Pp, hermitian=True)
                ms = s["mf"][k] + (G @ (ms - s["mp"][k + 1])[..., None])[..., 0]
                Ps = s["Pf"][k] + G @ (Ps - Pp) @ G.transpose(1, 2)
                Ps = 0.5 * (Ps + Ps.transpose(1, 2))
                means.append(ms), covs.append(Ps)
            mean = torch.stack(means[::-1], 1).numpy().copy()
            cov = torch.stack(covs[::-1], 1).numpy().copy()
        before = np.arange(grid.T)[None, :] < grid.first[:, None]
        mean[before], cov[before] = np.nan, np.nan
        return mean, cov


class Grid:
    """Times (T,), observations (B, T, C) and their mask, and each trajectory's first
    index, as the filter reads them; ``running[b, k]``: row ``b`` moves on from
    ``times[k]`` (it has started)."""

    def __init__(self, times, y, seen, first):
        self.times = torch.as_tensor(times, dtype=torch.float64)
        self.y = torch.as_tensor(y, dtype=torch.float64)
        self.seen = torch.as_tensor(seen, dtype=torch.bool)
        self.B, self.T = self.y.shape[:2]
        self.first = np.asarray(first, dtype=int)
        self.steps = self.times[1:] - self.times[:-1]
        self.running = torch.as_tensor(np.arange(self.T)[None, :] >= self.first[:, None],
                                       dtype=torch.float64)
        self.any_seen = self.seen.any(-1).any(0).tolist()

    @classmethod
    def from_bundle(cls, bundle, extra_times=None) -> tuple["Grid", np.ndarray]:
        """The data's grid, with ``extra_times`` merged in (not measured there); returns
        it and the index of each extra time in it."""
        times = bundle.times
        y, seen, first = bundle.y, bundle.mask, bundle.t_first
        if extra_times is None:
            return cls(times, y, seen, first), np.arange(len(times))
        merged = np.union1d(times, np.asarray(extra_times, dtype=float))
        where = np.searchsorted(merged, times)
        B, C = y.shape[0], y.shape[2]
        ym = np.full((B, len(merged), C), np.nan)
        sm = np.zeros((B, len(merged), C), bool)
        ym[:, where], sm[:, where] = y, seen
        return cls(merged, ym, sm, where[first]), np.searchsorted(merged, extra_times)
