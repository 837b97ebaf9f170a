"""Model trajectories as labelled ``xarray.Dataset``s carrying the data's dims and attrs."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

__all__ = ["states_dataset", "initial_states_dataset", "measured_by", "measurement_note"]


def measured_by(model, channels) -> dict[str, tuple[list[str], list[str]]]:
    """How the data's channels measure each state: ``{state: (as, through)}``.

    ``as``: channels whose observation is the state itself (the data variable named like
    the state, or e.g. ``observations={"y": x2}``); ``through``: channels whose observation
    depends on the state in another way (``y = x1 + x2``, ``y = 2.5 * x``). ``channels``:
    the channels present in the data.
    """
    exprs = model.channels
    out = {}
    for s in model.states:
        direct = [c for c in channels if exprs[c] == s]
        via = [c for c in channels if c not in direct and s in exprs[c].free_symbols]
        out[s.name] = (direct, via)
    return out


def measurement_note(name: str, how: tuple[list[str], list[str]]) -> str:
    """``""`` for a state measured under its own name, else e.g. ``" (measured as y)"``,
    ``" (measured through y)"`` or ``" (never measured)"``."""
    direct, via = how
    if name in direct:
        return ""
    if direct:
        return f" (measured as {', '.join(direct)})"
    if via:
        return f" (measured through {', '.join(via)})"
    return " (never measured)"


def _var_attrs(template, name, *, note: str = "") -> dict:
    attrs = {}
    if template is not None and name in template.variables:
        attrs = {k: v for k, v in template[name].attrs.items() if k in ("units", "long_name")}
    if note:
        attrs["long_name"] = attrs.get("long_name", name) + note
    return attrs


def states_dataset(result, x, signal, tf, *, kind, template=None, raw_times=None):
    """States ``x`` (B, T, n) at float times ``tf`` plus observed channels and inputs."""
    model, bundle, field = result.model, result._bundle, result._problem.field
    template = result.data if template is None else template
    has_traj = "trajectory" in template.dims
    B = x.shape[0]
    t = torch.as_tensor(np.broadcast_to(tf, (B, len(tf))).copy(), dtype=torch.float64)
    xt = torch.as_tensor(x, dtype=torch.float64)
    u = signal(t) if signal is not None else t.new_zeros(t.shape + (0,))
    with torch.no_grad():
        obs = field.observe(t, xt, u).numpy()
    dims = ("trajectory", "time") if has_traj else ("time",)
    squeeze = (lambda a: a) if has_traj else (lambda a: a[0])
    how = measured_by(model, bundle.channels)
    out = {}
    for i, name in enumerate(model.state_names):
        out[name] = (dims, squeeze(x[..., i]),
                     _var_attrs(template, name, note=measurement_note(name, how[name])))
    for c, name in enumerate(bundle.channels):
        if name not in out:
            out[name] = (dims, squeeze(obs[..., c]), _var_attrs(template, name))
    algebraic = [z.name for z in getattr(model, "algebraic", {})]
    if any(name not in out for name in algebraic):      # states given by an equation
        with torch.no_grad():
            values = field.algebraic(t, xt, u).numpy()
        for a, name in enumerate(algebraic):
            if name not in out:
                out[name] = (dims, squeeze(values[..., a]), _var_attrs(template, name))
    for j, name in enumerate(model.input_names):
        out[name] = (dims, squeeze(u[..., j].numpy()), _var_attrs(template, name))
    time_values = np.asarray(raw_times) if raw_times is not None else template["time"].values
    coords = {"time": ("time", np.atleast_1d(time_values), dict(template["time"].attrs))}
    if has_traj:
        coords["trajectory"] = template["trajectory"].values if "trajectory" in \
            template.coords else np.arange(B)
    ds = xr.Dataset(out, coords=coords)
    ds.attrs.update(template.attrs)
    ds.attrs["sysid_kind"] = kind
    ds.attrs["sysid_model"] = "; ".join(f"d{k}/dt = {v}" for k, v in result.equations.items())
    for key in ("time_unit", "time_origin"):
        if key in bundle.time_attrs:
            ds.attrs[key] = bundle.time_attrs[key]
    return ds


def initial_states_dataset(result, x0):
    """Fitted initial state per trajectory, with the time it refers to."""
    bundle = result._bundle
    has_traj = "trajectory" in result.data.dims
    dims = ("trajectory",) if has_traj else ()
    pick = (lambda a: a) if has_traj else (lambda a: a[0])
    how = measured_by(result.model, bundle.channels)
    data = {name: (dims, pick(x0[:, i]),
                   _var_attrs(result.data, name, note=measurement_note(name, how[name])))
            for i, name in enumerate(result.model.state_names)}
    data["time"] = (dims, pick(bundle.times[bundle.t_first]), {"long_name": "start time"})
    coords = {"trajectory": result.data["trajectory"].values} if has_traj else {}
    return xr.Dataset(data, coords=coords)
