"""Uncertainty bands of trajectories: the delta method (the trajectory's Jacobian in
everything the fit estimated, times the Laplace covariance), as ``<var>_lower`` and
``<var>_upper`` variables of an imputation or forecast.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..errors import ModelError
from ..solve.integrate import solve_at_times
from .laplace import _jacobian_blocks, _plain_tensors, laplace
from .tables import _check_level, _quantile


# -- bands on trajectories -----------------------------------------------------------------
_INTERVALS = ("confidence", "prediction")


def add_bands(result, ds, tf, signal, level, interval: str = "confidence"):
    """Add ``<var>_lower`` and ``<var>_upper`` to ``ds`` (a states dataset of ``result`` at
    float times ``tf`` driven by ``signal``) for every state and channel, by the delta
    method: the Jacobian of the trajectory in every fitted quantity times their Laplace
    covariance. ``interval="prediction"`` adds the measurement noise to the channels (for
    count noise the variance of a count with the band's centre as its mean, the lower
    bound at least 0)."""
    level = _check_level(level)
    if interval not in _INTERVALS:
        raise ModelError(f"interval must be one of {list(_INTERVALS)}; received "
                         f"{interval!r}.")
    curv = laplace(result, network=True)
    z = _quantile(level, curv.dof)
    problem = result._problem
    model, bundle = result.model, result._bundle
    states = model.state_names
    extra = [c for c, name in enumerate(bundle.channels) if name not in states]
    names = states + [bundle.channels[c] for c in extra]
    tf = np.asarray(tf, dtype=float)
    B, T = bundle.n_trajectories, len(tf)
    with _plain_tensors(problem, True) as (tensors, _), torch.enable_grad():
        xs = _states_with_graph(result, problem.x0(), result._t0(), tf, signal)
        out = [xs]
        if extra:
            t = torch.as_tensor(np.broadcast_to(tf, (B, T)).copy(), dtype=torch.float64)
            u = signal(t) if signal is not None else t.new_zeros(t.shape + (0,))
            out.append(problem.field.observe(t, xs, u)[..., extra])
        y = torch.cat(out, dim=-1)                       # (B, T, V)
        mean = y.detach().numpy()
        var = np.concatenate([np.einsum("ij,jk,ik->i", blk, curv.raw_covariance, blk)
                              for blk in _jacobian_blocks(y.reshape(-1), tensors)] or
                             [np.zeros(0)])
    var = np.clip(var, 0.0, None).reshape(mean.shape)
    noise = dict(result.noise_std)
    lognormal = getattr(problem.noise, "name", "") == "lognormal"
    counts = getattr(problem.noise, "variance", None)    # a count's variance from its mean
    channel = {c: i for i, c in enumerate(bundle.channels)}
    squeeze = (lambda a: a) if "trajectory" in ds.dims else (lambda a: a[0])
    for v, name in enumerate(names):
        center = ds[name].values if name in ds else squeeze(mean[..., v])
        center = np.asarray(center, dtype=float)
        sd = np.sqrt(squeeze(var[..., v]))
        add_noise = interval == "prediction" and name in noise and np.isfinite(noise[name])
        if interval == "prediction" and counts is not None and name in channel:
            add_noise = True     # normal approximation to the count's distribution
            sd = np.sqrt(sd ** 2 + counts(channel[name], center))
            lo, hi = np.clip(center - z * sd, 0.0, None), center + z * sd
        elif add_noise and lognormal:
            with np.errstate(divide="ignore", invalid="ignore"):
                spread = np.sqrt((sd / np.abs(center)) ** 2 + noise[name] ** 2)
            lo, hi = center * np.exp(-z * spread), center * np.exp(z * spread)
        else:
            if add_noise:
                sd = np.sqrt(sd ** 2 + noise[name] ** 2)
            lo, hi = center - z * sd, center + z * sd
        kind = "prediction" if add_noise else "confidence"
        label = ds[name].attrs.get("long_name", name)
        for suffix, vals, word in (("lower", lo, "lower"), ("upper", hi, "upper")):
            attrs = {k: val for k, val in ds[name].attrs.items() if k == "units"}
            attrs["long_name"] = f"{label}, {word} {100 * level:g} % {kind} bound"
            ds[f"{name}_{suffix}"] = (ds[name].dims, vals, attrs)
    ds.attrs["sysid_level"] = level
    ds.attrs["sysid_interval"] = interval
    return ds


def _states_with_graph(result, x0, t0, times, signal) -> torch.Tensor:
    """States (B, T, n) at ``times`` as a differentiable tensor: the same integration as
    ``FitResult._integrate`` (forwards and backwards from x0 at t0), keeping the graph."""

    opts = dataclasses.replace(result.options.solver_options(), adjoint=False)
    return solve_at_times(result._problem.field, x0, t0, times, signal, opts,
                          max_interval=result._sample_interval())
