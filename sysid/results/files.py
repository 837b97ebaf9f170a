"""Saving and loading results without executing code from the file.

A saved result is one ``torch.save`` file holding only plain data: the model spec with
equations as text (parsed back by the whitelist parser of :mod:`sysid.model.parser`), the
trained tensors, the training data and history as netCDF bytes, and the options.
It is read with ``torch.load(..., weights_only=True)``, which refuses pickled objects.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ..data.bundle import prepare
from ..model.pde import local_mlp_inputs
from ..model.limits import check_torch_file
from ..model.spec import model_from_spec, model_to_spec
from ..problem.options import FitOptions, FitStatus
from ..problem.problem import build_problem
from ..errors import DataWarning, FileFormatError, SysidError

__all__ = ["read_result", "save_result"]

FORMAT = "sysid.FitResult"
VERSION = 1
_MAX_EXPANSION = 16     # declared netCDF values may be at most this many times its bytes


def _netcdf(raw: bytes, **options) -> xr.Dataset:
    """A dataset read whole from netCDF bytes, its file closed (an open HDF5 handle left to
    the garbage collector at interpreter exit can crash it)."""
    with xr.open_dataset(io.BytesIO(raw), engine="h5netcdf", **options) as ds:
        return ds.load()


def _netcdf_bytes(ds: xr.Dataset) -> torch.Tensor:
    def clean(attrs):
        out = {}
        for k, v in attrs.items():
            if isinstance(v, (bool, np.bool_)) or (isinstance(v, np.ndarray)
                                                   and v.dtype.kind == "b"):
                out[k] = np.asarray(v).astype(np.int8) if isinstance(v, np.ndarray) else int(v)
            elif isinstance(v, (float, np.number)) or (
                    isinstance(v, int) and -2**63 <= v < 2**63) or (
                    isinstance(v, np.ndarray) and v.dtype.kind in "iufc"):
                out[k] = v
            elif v is not None:     # text, and what HDF5 cannot store natively, as text
                # HDF5 refuses NUL characters and lone surrogates in text: escape them
                out[k] = str(v).replace("\x00", "\\x00").encode(
                    "utf-8", "backslashreplace").decode("utf-8")
        return out
    ds = ds.copy()
    ds.attrs = clean(ds.attrs)
    for name in ds.variables:
        ds[name].attrs = clean(ds[name].attrs)
    raw = _to_netcdf_in_memory(ds)
    return torch.frombuffer(bytearray(bytes(raw)), dtype=torch.uint8).clone()


def _to_netcdf_in_memory(ds: xr.Dataset):
    """netCDF bytes of ``ds``. With a dask.distributed Client active, xarray would take its
    write lock from the scheduler, by the name of an in-memory buffer it does not know;
    the write is local, so it runs under dask's synchronous scheduler instead."""
    try:
        import dask
    except ImportError:
        return ds.to_netcdf(engine="h5netcdf")
    with dask.config.set(scheduler="synchronous"):
        return ds.to_netcdf(engine="h5netcdf")


def _open_netcdf(tensor, what, path) -> xr.Dataset:
    if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.uint8 or tensor.dim() != 1:
        got = type(tensor).__name__ + (f" of dtype {tensor.dtype}, shape {tuple(tensor.shape)}"
                                       if isinstance(tensor, torch.Tensor) else "")
        raise FileFormatError(f"{path}: the saved {what} must be netCDF bytes (a 1-d uint8 "
                              f"tensor); received {got}. The file was damaged or not written "
                              "by sysid.")
    raw = tensor.numpy().tobytes()
    try:
        import h5netcdf

        # save_result writes uncompressed netCDF: values far larger than its bytes were
        # declared (unwritten HDF5 chunks read as fill values) and would exhaust memory
        # when read, so their size is checked before xarray reads anything
        with h5netcdf.File(io.BytesIO(raw), "r") as f:
            declared = sum(int(np.prod(v.shape, dtype=np.float64)) * v.dtype.itemsize
                           for v in f.variables.values())
        if declared > _MAX_EXPANSION * len(raw) + 2**20:
            raise FileFormatError(f"{path}: the saved {what} declares {declared:,} bytes of "
                                  f"values in {len(raw):,} bytes of netCDF; sysid writes "
                                  "them uncompressed, so the file was crafted or damaged. "
                                  "Refusing to load it.")
        try:
            ds = _netcdf(raw)
        except ValueError as err:       # no cftime: dates outside 1678-2262 do not decode
            if not hasattr(xr, "coders"):
                raise
            ds, first_error = None, err
        if ds is None or ("time" in ds.variables and ds["time"].dtype == object):
            # dates outside 1678-2262 do not fit datetime64[ns] (with cftime installed they
            # come back as cftime objects, without it they fail): decode them at the
            # coarser resolution the data were saved with
            try:
                ds = _netcdf(raw, decode_times=xr.coders.CFDatetimeCoder(time_unit="s"))
            except ValueError:
                if ds is None:
                    raise first_error from None
                raise
        return ds
    except FileFormatError:
        raise
    except Exception as err:  # any decoding failure means a damaged file
        raise FileFormatError(f"{path}: the saved {what} cannot be read as netCDF ({err}).") \
            from None


def _check_residual_size(model, state, path) -> None:
    """Refuse a residual network larger than the saved tensors before allocating it (a
    tampered width or depth could otherwise ask for terabytes)."""
    spec = model.residual
    if spec is None:
        return
    n_in, n_out = len(model.residual_inputs), len(model.residual_states)
    if getattr(spec, "local", False):           # one network per grid point
        n_in, n_out = len(local_mlp_inputs(model)), len(model.field_names)
    w, d = spec.width, spec.depth
    n_weights = (n_in + 1) * w + (d - 1) * (w + 1) * w + (w + 1) * n_out
    saved = sum(int(v.numel()) for v in state.values())
    if n_weights > saved:
        raise FileFormatError(f"{path}: the saved network (width {w}, depth {d}) needs "
                              f"{n_weights:,} weights but the file holds {saved:,} numbers "
                              "in all; the spec was tampered with or the file is damaged.")


def save_result(result, path) -> None:
    payload = {
        "format": FORMAT, "version": VERSION,
        "spec": model_to_spec(result.model),
        "options": result.options.to_dict(),
        "state": {k: v.detach().clone() for k, v in result._problem.state_dict().items()},
        "data": _netcdf_bytes(result.data),
        "history": _netcdf_bytes(result.history),
        "stats": dict(result.stats),
        "status": {"code": result.status.code, "detail": result.status.detail,
                   "note": result.status.note},
        "objective": result._problem.objective(),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)          # never leave a half-written file under the real name


def read_result(path) -> tuple:
    """The parts of a result written by :func:`save_result` (model, data, bundle, problem,
    options, status, history, stats), checked; :func:`sysid.load` makes them a
    :class:`~sysid.FitResult`. Raises :class:`~sysid.errors.FileFormatError` for a file
    that is not one."""

    check_torch_file(path, "result file")     # declared sizes before anything is read
    if hasattr(path, "seek"):
        path.seek(0)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise FileFormatError(
            f"{path} is not a sysid result file, or it contains objects that sysid refuses to "
            f"load (only plain data and tensors are accepted): {err}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FileFormatError(f"{path} is not a sysid result file (format marker missing).")
    if payload.get("version") != VERSION:
        raise FileFormatError(f"{path} has format version {payload.get('version')!r}; this "
                              f"sysid reads version {VERSION}. Upgrade sysid.")
    try:
        model = model_from_spec(payload.get("spec"))
    except SysidError as err:      # same class (an equation stays an ExpressionError), + path
        raise type(err)(f"{path}: the saved model spec is invalid: {err}") from None
    try:
        options = FitOptions.from_kwargs(**payload["options"])
        status = FitStatus(**payload["status"])
        status.message                          # an unknown status code is a KeyError
        if not isinstance(status.detail, str) or not isinstance(status.note, str):
            raise TypeError(f"status detail and note must be text, received "
                            f"{status.detail!r}, {status.note!r}")
    except (KeyError, TypeError, ValueError) as err:
        raise FileFormatError(f"{path} has invalid fit options or status ({err!r}).") from None
    state = payload.get("state")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FileFormatError(f"{path} has no valid tensor state (expected a mapping of "
                              f"names to tensors; received {type(state).__name__}).")
    _check_residual_size(model, state, path)
    data = _open_netcdf(payload.get("data"), "training data", path)
    history = _open_netcdf(payload.get("history"), "training history", path)
    try:
        with warnings.catch_warnings():      # its notes were given when it was fitted
            warnings.simplefilter("ignore", DataWarning)
            bundle = prepare(model, data, time_unit=options.time_unit)
        problem = build_problem(model, bundle, options)
    except SysidError as err:
        raise FileFormatError(f"{path}: the saved training data do not fit the saved model "
                              f"({err})") from None
    try:
        problem.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise FileFormatError(f"{path}: the saved tensors do not fit the saved model "
                              f"({str(err).splitlines()[0]}).") from None
    objective = payload.get("objective", {})     # absent in files of earlier versions
    windows, continuity = None, None
    if isinstance(objective, dict):
        windows = objective.get("windows", problem.active)
        continuity = objective.get("continuity", problem.continuity)
    if not isinstance(windows, bool) or isinstance(continuity, bool) or not isinstance(
            continuity, (int, float)) or not continuity > 0 or not math.isfinite(continuity):
        raise FileFormatError(f"{path} has an invalid training objective entry: "
                              f"{objective!r}.")
    problem.use_objective({"windows": windows, "continuity": continuity})
    stats = payload.get("stats") if isinstance(payload.get("stats"), dict) else {}
    return model, data, bundle, problem, options, status, history, stats
