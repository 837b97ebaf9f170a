"""Data in, one place: validate an ``xarray.Dataset`` and turn it into arrays and masks.

Everything sysid learns from passes through :func:`prepare`. The contract (API.md §1):
dimension ``time`` (float or datetime64, sorted, unique, irregular spacing allowed),
optional dimension ``trajectory``, one data variable per measured channel with NaN
meaning "not measured", inputs as data variables, ``attrs['units']``, ``attrs['long_name']``
and optional ``attrs['noise_std']`` per variable.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..errors import DataError, DataWarning, suggest

__all__ = ["DataBundle", "prepare", "time_to_float"]

#: integers up to this size convert to float64 exactly
_EXACT_INT = 2 ** 53

_TIME_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "D": 86400.0}
#: largest |value| of a channel or input: the likelihood squares scaled values
MAX_ABS_VALUE = 1e150


@dataclass
class DataBundle:
    """A validated dataset as dense arrays (trajectory, time, channel)."""

    times: np.ndarray                 # (T,) float, model time unit
    y: np.ndarray                     # (B, T, C) observations, NaN where missing
    mask: np.ndarray                  # (B, T, C) bool, True where observed
    u: np.ndarray                     # (B, T, m) inputs (NaN outside the integration span)
    channels: list[str]               # names of the observed channels present in the data
    inputs: list[str]
    noise_std: list[float | None]     # known noise level per channel (attrs), else None
    t_first: np.ndarray               # (B,) index of each trajectory's first observation
    t_last: np.ndarray                # (B,) index of its last observation
    trajectory: np.ndarray | None     # trajectory coordinate values, None without the dim
    time_attrs: dict = field(default_factory=dict)
    datetime: bool = False            # the data's time coordinate was datetime64
    var_attrs: dict = field(default_factory=dict)   # name -> attrs of every variable
    attrs: dict = field(default_factory=dict)       # dataset attrs

    @property
    def n_trajectories(self) -> int:
        return self.y.shape[0]

    @property
    def n_observed(self) -> int:
        return int(self.mask.sum())


def _fail(msg: str):
    raise DataError(msg)


def _plain(value):
    """A numpy scalar as a plain Python value, for readable messages."""
    return value.item() if hasattr(value, "item") else value


def _in_ns_range(stamps) -> bool:
    """Whether datetime64 values survive a round trip through nanoseconds (1678-2262)."""
    ns = stamps.astype("datetime64[ns]")
    return bool(np.all(ns.astype(stamps.dtype) == stamps))


def _seconds_since(stamps, origin):
    """Float seconds from ``origin`` to each of ``stamps`` (any datetime64 unit), and the
    origin to record. Spans over 292 years would overflow int64 nanoseconds, and dates
    outside 1678-2262 wrap around when cast to nanoseconds: those use whole seconds plus
    the sub-second remainder instead of one nanosecond difference."""
    whole, o_whole = stamps.astype("datetime64[s]"), origin.astype("datetime64[s]")
    seconds = (whole - o_whole) / np.timedelta64(1, "s")
    if _in_ns_range(stamps) and _in_ns_range(np.atleast_1d(origin)) and \
            np.all(np.abs(seconds) < 9e9):
        ns, o_ns = stamps.astype("datetime64[ns]"), origin.astype("datetime64[ns]")
        return (ns - o_ns).astype("timedelta64[ns]").astype(np.float64) / 1e9, o_ns
    frac = (stamps - whole) / np.timedelta64(1, "s") - (origin - o_whole) / np.timedelta64(1, "s")
    return seconds + frac, origin


def time_to_float(time: xr.DataArray, time_unit: str | None = None, origin=None):
    """Convert a time coordinate to float; return (values, attrs describing the conversion)."""
    values = time.values
    attrs = dict(time.attrs)
    if np.issubdtype(values.dtype, np.datetime64):
        stamps = values
        if np.isnat(stamps).any():
            _fail(f"The 'time' coordinate has {int(np.isnat(stamps).sum())} missing value(s) "
                  f"(NaT), first at position {int(np.argmax(np.isnat(stamps)))}; every sample "
                  f"needs a time. Drop them: ds = ds.sel(time=ds['time'].notnull()).")
        origin = stamps[0] if origin is None else np.datetime64(origin)
        seconds, origin = _seconds_since(stamps, origin)
        if time_unit is None:
            step = np.median(np.diff(seconds)) if len(seconds) > 1 else 1.0
            time_unit = next((u for u in ("D", "h", "min") if step >= _TIME_UNITS[u]), "s")
        if time_unit not in _TIME_UNITS:
            _fail(f"time_unit must be one of {list(_TIME_UNITS)}; received {time_unit!r}.")
        attrs.update(time_origin=str(origin), time_unit=time_unit,
                     units=f"{time_unit} since {np.datetime_as_string(origin, unit='s')}")
        return seconds / _TIME_UNITS[time_unit], attrs
    if values.dtype.kind not in "iuf":
        _fail(f"The 'time' coordinate must be float or datetime64 (integers are converted); "
              f"received dtype {values.dtype}. Convert it, e.g. "
              f"ds['time'] = ds['time'].astype(float).")
    return values.astype(np.float64), attrs


def _integer_note(what: str, values, fix: str) -> str:
    """The note for integer values converted to float64 (with the rounding, if any)."""
    big = values.size and np.abs(values.astype(np.float64)).max() > _EXACT_INT
    return (f"{what} holds integers ({values.dtype}); sysid fits in float64 and converted "
            f"them" + (f" (values beyond 2**53 = {_EXACT_INT:,} were rounded to the nearest "
                       f"float64)" if big else " exactly") + f". To have no note, give "
            f"floats: {fix}.")


def _check_time(ds: xr.Dataset, time_unit, notes: list):
    if "time" not in ds.dims:
        close = difflib.get_close_matches("time", [str(d) for d in ds.dims], n=1, cutoff=0.3)
        hint = f" ds = ds.rename({{'{close[0]}': 'time'}})" if close else \
            " Add one with ds.expand_dims(time=[0.0]) or rename your time dimension."
        _fail(f"The dataset has no 'time' dimension; received dims {tuple(ds.dims)}. "
              f"sysid needs the sampling times as a dimension named 'time'. Fix:{hint}")
    if "time" not in ds.coords:
        _fail("The 'time' dimension has no coordinate values; received an index-only "
              "dimension. Assign the sampling times: ds = ds.assign_coords(time=times).")
    if ds.sizes["time"] == 0:
        _fail("The 'time' dimension is empty (0 samples); sysid needs at least one "
              "measurement. Check the selection that produced the dataset.")
    times, attrs = time_to_float(ds["time"], time_unit)
    if ds["time"].dtype.kind in "iu":
        notes.append(_integer_note("The 'time' coordinate", ds["time"].values,
                                   "ds['time'] = ds['time'].astype(float)"))
    if not np.all(np.isfinite(times)):
        _fail("The 'time' coordinate contains NaN or inf; every sample needs a finite time.")
    steps = np.diff(times)
    if np.any(steps == 0):
        dup = _plain(times[1:][steps == 0][0])
        _fail(f"The 'time' coordinate has duplicate values (e.g. {dup!r}); times must be "
              f"unique. Fix: ds = ds.drop_duplicates('time') or average them with "
              f"ds.groupby('time').mean().")
    if np.any(steps < 0):
        i = int(np.argmax(steps < 0))
        _fail(f"The 'time' coordinate is not sorted: {_plain(times[i])!r} is followed by "
              f"{_plain(times[i + 1])!r}. Fix: ds = ds.sortby('time').")
    return times, attrs


def _check_dtype(var: xr.DataArray, name: str, is_input: bool, notes: list) -> None:
    """Refuse what is not a number; note the numbers that are converted (integers, and
    the on/off values of a boolean input)."""
    kind = var.dtype.kind
    fix = f"ds[{name!r}] = ds[{name!r}].astype(float)"
    if kind == "b" and is_input:
        notes.append(f"Input {name!r} is boolean (on/off); it is read as 1.0 (True) and 0.0 "
                     f"(False), interpolated like any input (interpolation='zoh' holds each "
                     f"value until the next sample). To have no note, give floats: {fix}.")
    elif kind == "b":
        _fail(f"Data variable {name!r} is boolean; a measured channel must hold numbers "
              f"(NaN where not measured), and True/False cannot say 'not measured' nor be "
              f"a noisy measurement of a state. If the values really are the levels 0 and 1 "
              f"of the observed quantity, convert them: {fix}; an on/off signal that drives "
              f"the model is an input (inputs=[...]), where booleans are accepted.")
    elif kind in "iu":
        notes.append(_integer_note(f"Data variable {name!r}", var.values, fix))
    elif kind != "f":
        what = " (Python objects)" if kind == "O" else ""
        _fail(f"Data variable {name!r} is not numeric; received dtype {var.dtype}{what}. "
              f"sysid needs "
              f"float values (NaN where not measured). Convert it with {fix} (non-numbers "
              f"become NaN via pandas.to_numeric(..., errors='coerce')).")


def _variable_array(ds: xr.Dataset, name: str, has_traj: bool, is_input=False,
                    notes: list | None = None) -> np.ndarray:
    var = ds[name]
    extra = [d for d in var.dims if d not in ("time", "trajectory")]
    if extra:
        _fail(f"Data variable {name!r} has dimension(s) {extra} besides 'time' and "
              f"'trajectory'; received dims {var.dims}. Rename the experiment dimension to "
              f"'trajectory' (ds.rename({{'{extra[0]}': 'trajectory'}})) or select one value "
              f"(ds.isel({extra[0]}=0)).")
    if "time" not in var.dims:
        _fail(f"Data variable {name!r} has no 'time' dimension (dims {var.dims}); every "
              f"channel and input must be a time series. Store constants in attrs or in the "
              f"model's fixed={{...}} instead.")
    _check_dtype(var, name, is_input, [] if notes is None else notes)
    var = var.transpose(*(("trajectory",) if "trajectory" in var.dims else ()), "time")
    arr = np.asarray(var.values, dtype=np.float64)
    if not has_traj:
        arr = arr[None, :]
    elif "trajectory" not in var.dims:
        arr = np.broadcast_to(arr, (ds.sizes["trajectory"], arr.shape[-1])).copy()
    if np.isinf(arr).any():
        b, k = np.argwhere(np.isinf(arr))[0]
        where = f"time={_plain(ds['time'].values[k])}" + (f", trajectory {b}" if has_traj else "")
        _fail(f"Data variable {name!r} contains {int(np.isinf(arr).sum())} infinite value(s), "
              f"first at {where}. Use NaN for a missing or invalid sample: "
              f"ds[{name!r}] = ds[{name!r}].where(np.isfinite(ds[{name!r}])).")
    big = np.abs(np.nan_to_num(arr)) > MAX_ABS_VALUE
    if big.any():
        b, k = np.argwhere(big)[0]
        where = f"time={_plain(ds['time'].values[k])}" + (f", trajectory {b}" if has_traj else "")
        _fail(f"Data variable {name!r} holds values too large for the fit's float64 "
              f"arithmetic (|value| must be <= {MAX_ABS_VALUE:g}, squares must not overflow); "
              f"received {_plain(arr[b, k])!r} at {where}. Fix: rescale it to other units, "
              f"e.g. ds[{name!r}] = ds[{name!r}] / 1e100.")
    if np.isnan(arr).all() and is_input:
        _fail(f"Input {name!r} is all NaN: the model needs its values wherever it integrates. "
              f"Fill in the input signal (ds[{name!r}] = ...).")
    if np.isnan(arr).all():
        _fail(f"Data variable {name!r} is all NaN: it holds no measurement. Drop it "
              f"(ds = ds.drop_vars({name!r})) if the quantity is not measured; the model then "
              f"treats it as unobserved.")
    return arr


def _classify_variables(ds: xr.Dataset, channels: list[str], inputs: list[str]):
    known = channels + inputs
    for name in ds.data_vars:
        if name not in known:
            hint = suggest(name, known)
            _fail(f"Data variable {name!r} matches no state, observation or input of the "
                  f"model.{hint} Model channels: {channels}; inputs: {inputs}. Rename it, add "
                  f"it to the model's observations={{...}} or inputs=[...], or drop it with "
                  f"ds.drop_vars({name!r}).")
    for name in inputs:
        if name not in ds.data_vars:
            _fail(f"The model reads the input {name!r}, but the dataset has no such variable "
                  f"(variables: {list(ds.data_vars)}).{suggest(name, list(ds.data_vars))} Add "
                  f"the input signal as a data variable named {name!r}.")
    present = [c for c in channels if c in ds.data_vars]
    if not present:
        _fail(f"No data variable measures the model: none of {channels} is in the dataset "
              f"(variables: {list(ds.data_vars)}). Name each measured variable like a state "
              f"or declare observations={{name: expression}}.")
    return present


def _check_inputs(u, names, times, t_first, t_last, has_traj):
    for j, name in enumerate(names):
        for b in range(u.shape[0]):
            span = u[b, t_first[b]:t_last[b] + 1, j]
            if np.isnan(span).any():
                k = t_first[b] + int(np.argmax(np.isnan(span)))
                where = f" of trajectory {b}" if has_traj else ""
                _fail(f"Input {name!r} is missing (NaN) at time {_plain(times[k])}{where}, "
                      f"inside the span where the model must integrate "
                      f"({_plain(times[t_first[b]])} to {_plain(times[t_last[b]])}). Fill it "
                      f"(e.g. ds[{name!r}] = "
                      f"ds[{name!r}].interpolate_na('time')) or trim the data.")


def _noise_level(name: str, value, notes: list) -> float | None:
    """``attrs['noise_std']`` of a channel as a positive float (None where absent). A
    number given as text ("0.01", as some netCDF writers store attributes) is read as
    that number, with a note; anything else that is not a positive number is refused."""
    if value is None:
        return None
    level, text = float("nan"), isinstance(value, (str, np.str_))
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        value = value.reshape(()).item()       # a one-element attribute array
    if text:
        try:
            level = float(str(value).strip())
        except ValueError:
            pass
    elif isinstance(value, (int, float, np.integer, np.floating)) and \
            not isinstance(value, (bool, np.bool_)):
        level = float(value) if abs(value) < 1e308 else float("inf")    # no OverflowError
    if not (np.isfinite(level) and level > 0):
        _fail(f"attrs['noise_std'] of {name!r} must be a positive number (the measurement "
              f"noise standard deviation in the variable's units); received {value!r} "
              f"(type {type(value).__name__}). Fix it, e.g. ds[{name!r}].attrs['noise_std'] "
              f"= 0.01, or delete the attribute to have the level estimated.")
    if text:
        notes.append(f"attrs['noise_std'] of {name!r} is text ({value!r}); it is read as the "
                     f"number {level!r}. To have no note, store a number: "
                     f"ds[{name!r}].attrs['noise_std'] = {level!r}.")
    return level


def prepare(model, ds, *, time_unit: str | None = None, n_fitted: int | None = None) -> DataBundle:
    """Validate ``ds`` against ``model`` and return a :class:`DataBundle`.

    ``n_fitted`` is the number of physical parameters and initial states to be
    estimated; the data must hold at least that many observed values.
    """
    if isinstance(ds, xr.DataArray):
        _fail(f"sysid needs an xarray.Dataset; received a DataArray named {ds.name!r}. "
              f"Convert it with da.to_dataset(name='...') using the state's name.")
    if not isinstance(ds, xr.Dataset):
        _fail(f"sysid needs an xarray.Dataset; received {type(ds).__name__}. Build one with "
              f"xr.Dataset({{'x': ('time', values)}}, coords={{'time': times}}).")
    notes: list[str] = []      # what was converted, said once in a DataWarning
    times, time_attrs = _check_time(ds, time_unit, notes)
    has_traj = "trajectory" in ds.dims
    channel_exprs = model.channels
    present = _classify_variables(ds, list(channel_exprs), list(model.input_names))
    y = np.stack([_variable_array(ds, c, has_traj, notes=notes) for c in present], axis=-1)
    mask = ~np.isnan(y)
    any_obs = mask.any(axis=-1)                              # (B, T)
    for b in np.flatnonzero(~any_obs.any(axis=1)):
        label = _plain(ds["trajectory"].values[b]) if "trajectory" in ds.coords else int(b)
        _fail(f"Trajectory {label!r} has no measurement at all; drop it with "
              f"ds.drop_sel(trajectory={label!r}).")
    t_first = np.argmax(any_obs, axis=1)
    t_last = any_obs.shape[1] - 1 - np.argmax(any_obs[:, ::-1], axis=1)
    if model.inputs:
        u = np.stack([_variable_array(ds, n, has_traj, is_input=True, notes=notes)
                      for n in model.input_names], axis=-1)
        _check_inputs(u, model.input_names, times, t_first, t_last, has_traj)
    else:
        u = np.zeros(y.shape[:2] + (0,))
    if n_fitted is not None and mask.sum() < n_fitted:
        _fail(f"The data hold {int(mask.sum())} observed values but the model has {n_fitted} "
              f"unknowns to fit (physical parameters and initial states). Provide more "
              f"samples, observe more states, or fix some parameters with fixed={{...}}.")
    noise = [_noise_level(c, ds[c].attrs.get("noise_std"), notes) for c in present]
    if notes:
        warnings.warn(" ".join(notes), DataWarning, stacklevel=3)
    var_attrs = {name: dict(ds[name].attrs) for name in ds.data_vars}
    return DataBundle(
        times=times, y=y, mask=mask, u=u, channels=present, inputs=list(model.input_names),
        noise_std=noise, t_first=t_first, t_last=t_last,
        trajectory=ds["trajectory"].values if has_traj and "trajectory" in ds.coords
        else (np.arange(ds.sizes["trajectory"]) if has_traj else None),
        time_attrs=time_attrs, var_attrs=var_attrs, attrs=dict(ds.attrs),
        datetime=bool(np.issubdtype(ds["time"].dtype, np.datetime64)))
