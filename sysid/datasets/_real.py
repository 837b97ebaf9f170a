"""Real benchmark datasets that sysid does not ship: pinned sources, download, checks, readers.

The licences of these data sets are unclear, so their files are not part of
sysid.  :func:`download` fetches them from pinned commits on
raw.githubusercontent.com, checks their SHA-256 against
``datasets/<name>/PROVENANCE.txt`` and writes them into the cache folder
(:func:`cache_dir`).  The readers never execute code from a file: ``.mat``
files go through :func:`scipy.io.loadmat`, CSV files through pandas.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DataError, suggest

__all__ = ["REMOTE", "SPLITS", "CACHE_ENV", "cache_dir", "download", "check_sha256", "READERS"]

CACHE_ENV = "SYSID_CACHE_DIR"
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its name, pinned URL, SHA-256 and size in bytes."""

    filename: str
    url: str
    sha256: str
    size: int


_CONTINUOUS = ("https://raw.githubusercontent.com/forgi86/sysid-neural-continuous/"
               "956aa7ecd73061b0321c6f6098d74c9e4a7ce67a/examples")
_IDENT = ("https://raw.githubusercontent.com/forgi86/pytorch-ident/"
          "f00d79ff8c6cb96d094d9ea1c079d4dcbf9a67e0/examples/statespace/silverbox/SilverboxFiles")

REMOTE: dict[str, tuple[RemoteFile, ...]] = {
    "cascaded_tanks": (
        RemoteFile("dataBenchmark.csv", f"{_CONTINUOUS}/CTS/data/dataBenchmark.csv",
                   "ef2388ed822f3aef4aa80d6b0f2b466dd80b361786b3eafc7a2957c31ea323a7", 30014),),
    "emps": (
        RemoteFile("DATA_EMPS.mat", f"{_CONTINUOUS}/EMPS/data/DATA_EMPS.mat",
                   "6cf6814ae14618795da0101aae2bb97ff0c6351b0501b5492751b02b07facf7e", 626039),
        RemoteFile("DATA_EMPS_PULSES.mat", f"{_CONTINUOUS}/EMPS/data/DATA_EMPS_PULSES.mat",
                   "0eab75bb1f6b16228ee78791343a88bf9bfd9a51036ac9807d7b5fc11c0e1704", 630990)),
    "silverbox": (
        RemoteFile("SNLS80mV.csv", f"{_IDENT}/SNLS80mV.csv",
                   "ae62d5a91230c10f76e6dd02c8a4fac3c9d4d8a95fbf50e87cb0c4885003e0f1", 2649634),),
}

SPLITS: dict[str, tuple[str, ...]] = {
    "cascaded_tanks": ("train", "test"),
    "emps": ("train", "test"),
    "silverbox": ("train", "test", "multisine", "arrow", "arrow_no_extrapolation"),
}


def cache_dir() -> Path:
    """Return the folder where :func:`download` stores files: ``$SYSID_CACHE_DIR`` or ``~/.cache/sysid``.

    Examples
    --------
    >>> from sysid.datasets._real import cache_dir
    >>> cache_dir().is_absolute()
    True
    """
    env = os.environ.get(CACHE_ENV)
    return (Path(env) if env else Path("~/.cache/sysid")).expanduser().resolve()


def _remote(name: str, filename: str) -> RemoteFile:
    return next(f for f in REMOTE[name] if f.filename == filename)


def check_sha256(name: str, filename: str, data: bytes, where: str) -> None:
    """Raise :class:`DataError` when ``data`` is not the published ``filename`` of ``name``.

    Examples
    --------
    >>> from sysid.datasets._real import check_sha256
    >>> check_sha256("emps", "DATA_EMPS.mat", b"not a mat file", "/tmp/x")
    Traceback (most recent call last):
    ...
    sysid.errors.DataError: load('emps'): the file /tmp/x differs from the published DATA_EMPS.mat ...
    """
    spec = _remote(name, filename)
    mismatch = _mismatch(spec, data)
    if mismatch:
        raise DataError(
            f"load({name!r}): the file {where} differs from the published {filename} "
            f"{mismatch}: it is damaged, edited or another version. Fix: delete it and "
            f"run sysid.datasets.download({name!r}) (or load({name!r}, download=True)), or "
            f"replace it with the original from {spec.url}.")


def _mismatch(spec: RemoteFile, data: bytes) -> str:
    """'' when ``data`` is the published file, else its digest and size beside the expected."""
    got = hashlib.sha256(data).hexdigest()
    if got == spec.sha256:
        return ""
    return (f"(sha256 {got[:16]}..., {len(data)} bytes; expected {spec.sha256[:16]}..., "
            f"{spec.size} bytes)")


def _check_name(name: object, caller: str) -> str:
    if isinstance(name, str) and name in REMOTE:
        return name
    if name == "lynx_hare":
        raise DataError(f"{caller}('lynx_hare'): this dataset ships with sysid; there is "
                        f"nothing to download. Use sysid.datasets.load('lynx_hare').")
    hint = suggest(str(name), REMOTE) if isinstance(name, str) else ""
    raise DataError(f"{caller}(): unknown downloadable dataset {name!r}.{hint} "
                    f"Downloadable datasets: {', '.join(REMOTE)}.")


def _fetch(name: str, filename: str, folder: Path) -> Path:
    """Download one file into ``folder/name/filename`` (checked, atomic); return its path."""
    spec = _remote(name, filename)
    target = folder / name / filename
    manual = (f"Fix: check the network connection and retry, or download {spec.url} by hand "
              f"and save it as {target} (or in a folder '<dir>/{name}/' with "
              f"SYSID_DATA_DIR=<dir>, or pass load(..., path=<dir>)).")
    try:
        with urllib.request.urlopen(spec.url, timeout=_TIMEOUT_S) as response:
            data = response.read(spec.size + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"download({name!r}): could not fetch {spec.url} ({exc}). "
                        + manual) from exc
    mismatch = _mismatch(spec, data)
    if mismatch:
        raise DataError(
            f"download({name!r}): the file fetched from {spec.url} differs from the published "
            f"{filename} {mismatch}; it was refused and not saved. "
            f"Fix: retry later (the transfer may have been cut or altered); if it persists, "
            f"get the file by hand from the original benchmark (see "
            f"datasets/{name}/PROVENANCE.txt) and copy it to {target}.")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{filename}.",
                                             suffix=".part", delete=False)
    except OSError as exc:
        raise DataError(f"download({name!r}): cannot write into {target.parent} ({exc}). "
                        f"Fix: pass folder= a writable folder, or set {CACHE_ENV}.") from exc
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, target)
    except OSError as exc:
        Path(handle.name).unlink(missing_ok=True)
        raise DataError(f"download({name!r}): writing {target} failed ({exc}). Fix: free "
                        f"disk space or pass folder= a writable folder.") from exc
    return target


def download(name: str, *, folder: str | os.PathLike | None = None) -> Path:
    """Download the files of a benchmark dataset that sysid does not ship.

    The files come from pinned commits on raw.githubusercontent.com (see
    ``datasets/<name>/PROVENANCE.txt``); each download is checked against its
    published SHA-256 and refused, leaving nothing behind, when it differs.
    Files already present with the right checksum are not fetched again.

    Parameters
    ----------
    name : {"cascaded_tanks", "emps", "silverbox"}
        Dataset name.
    folder : str or path-like, optional
        Where to store the files, as ``<folder>/<name>/<file>``. Default: the
        cache folder ``$SYSID_CACHE_DIR`` or ``~/.cache/sysid``, which
        :func:`sysid.datasets.load` searches last.

    Returns
    -------
    pathlib.Path
        The folder ``<folder>/<name>`` holding the files.

    Raises
    ------
    DataError
        Unknown name, no network (the message gives the URL and the manual
        fix), a download that differs from the published file, or an
        existing file with the wrong checksum.

    Examples
    --------
    >>> import sysid
    >>> where = sysid.datasets.download("silverbox")  # doctest: +SKIP
    >>> sorted(p.name for p in where.iterdir())  # doctest: +SKIP
    ['SNLS80mV.csv']

    The shipped dataset needs no download:

    >>> sysid.datasets.download("lynx_hare")
    Traceback (most recent call last):
        ...
    sysid.errors.DataError: download('lynx_hare'): this dataset ships with sysid; there is nothing to download. Use sysid.datasets.load('lynx_hare').
    """
    name = _check_name(name, "download")
    if folder is not None and not isinstance(folder, (str, os.PathLike)):
        raise DataError(f"download({name!r}): folder must be a path; received "
                        f"{type(folder).__name__}. Fix: pass a str or pathlib.Path, or omit it.")
    root = Path(folder).expanduser().resolve() if folder is not None else cache_dir()
    for spec in REMOTE[name]:
        target = root / name / spec.filename
        if target.is_file():
            check_sha256(name, spec.filename, target.read_bytes(), str(target))
            continue
        _fetch(name, spec.filename, root)
    return root / name


# --------------------------------------------------------------------- readers
Getter = Callable[[str], bytes]

_TIME_ATTRS = {"units": "s", "long_name": "time since the start of the record"}


def _read_csv(name: str, filename: str, data: bytes, columns: list[str]) -> pd.DataFrame:
    try:
        table = pd.read_csv(io.BytesIO(data))
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"load({name!r}): {filename} could not be parsed as CSV ({exc}). "
                        f"Fix: run sysid.datasets.download({name!r}) again.") from exc
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"load({name!r}): columns {missing} missing from {filename}; received "
                        f"{list(table.columns)}. Fix: run sysid.datasets.download({name!r}) again.")
    return table


def _stack(name: str, records: dict[str, xr.Dataset], attrs: dict) -> xr.Dataset:
    lengths = {key: ds.sizes["time"] for key, ds in records.items()}
    if len(set(lengths.values())) != 1 or not all(
            np.array_equal(ds.time.values, records["train"].time.values) for ds in records.values()):
        raise DataError(f"load({name!r}): the records have different time axes (lengths "
                        f"{lengths}), so they cannot share one 'trajectory' dimension. Fix: pick "
                        f"one record: split='train' or split='test'.")
    ds = xr.concat(list(records.values()), dim="trajectory", combine_attrs="override")
    ds = ds.assign_coords(trajectory=("trajectory", list(records), {
        "units": "1", "long_name": "record of the official protocol (train = estimation)"}))
    ds.attrs = attrs
    return ds


# ---------------------------------------------------------------- cascaded tanks
_TANKS_ATTRS = {
    "title": "Cascaded tanks with overflow (nonlinear system identification benchmark)",
    "source": ("dataBenchmark.csv from github.com/forgi86/sysid-neural-continuous "
               "(examples/CTS/data, commit 956aa7ecd73061b0321c6f6098d74c9e4a7ce67a), the CSV "
               "version of CascadedTanksFiles/dataBenchmark.mat of the benchmark at "
               "nonlinearbenchmark.org / 4TU.ResearchData doi:10.4121/12960104. Not shipped "
               "with sysid; see datasets/cascaded_tanks/PROVENANCE.txt."),
    "citation": ("M. Schoukens, P. Mattsson, T. Wigren, J.P. Noel, 'Cascaded tanks benchmark "
                 "combining soft and hard nonlinearities', 4TU.ResearchData, "
                 "doi:10.4121/12960104. M. Schoukens, J.P. Noel, 'Three benchmarks addressing "
                 "open challenges in nonlinear system identification', IFAC World Congress "
                 "2017, pp. 448-453, doi:10.1016/j.ifacol.2017.08.071."),
    "license": ("No licence stated in the file or the benchmark document; the 4TU.ResearchData "
                "record is authoritative. The file is not redistributed by sysid; cite the DOI."),
    "description": (
        "Two cascaded water tanks: a pump (input u, V) fills the upper tank, which drains into "
        "the lower tank; y is the water level sensor of the LOWER tank (V). The upper tank "
        "level is never measured. The sensor saturates at 10 V and the upper tank can "
        "overflow, partly into the lower tank. Both records are multisines (0-0.0144 Hz, zero-"
        "order hold) with the same spectrum; 1024 samples each at Ts = 4 s. The initial state "
        "is unknown but the same in both records. Known physics (no overflow): "
        "dx1/dt = -k1*sqrt(x1) + k4*u + w1, dx2/dt = k2*sqrt(x1) - k3*sqrt(x2) + w2, "
        "y = x2 + e."),
    "sampling_time": 4.0,
    "init_window": 5,
    "saturation": 10.0,
    "metric": ("Simulation RMSE of y in V on the test record (train data only for estimation): "
               "sqrt(mean((y_model - y)^2)); nonlinear_benchmarks convention: the first "
               "init_window = 5 test outputs may be used to estimate the initial state and the "
               "RMSE is taken over y[5:] (state which n you used, and whether the model ran "
               "as a simulation or a prediction)."),
}


def read_cascaded_tanks(get: Getter, split: str | None) -> xr.Dataset:
    """Return the cascaded tanks record(s) for ``split`` (see ``load``)."""
    table = _read_csv("cascaded_tanks", "dataBenchmark.csv", get("dataBenchmark.csv"),
                      ["uEst", "uVal", "yEst", "yVal", "Ts"])
    ts = float(table["Ts"].iloc[0])
    if ts != 4.0:
        raise DataError(f"load('cascaded_tanks'): Ts in dataBenchmark.csv is {ts}, expected 4. "
                        f"Fix: run sysid.datasets.download('cascaded_tanks') again.")
    time = np.arange(len(table), dtype=np.float64) * ts

    def record(u_col: str, y_col: str) -> xr.Dataset:
        return xr.Dataset(
            {"u": ("time", table[u_col].to_numpy(np.float64),
                   {"units": "V", "long_name": f"pump input voltage ({u_col})"}),
             "y": ("time", table[y_col].to_numpy(np.float64),
                   {"units": "V", "long_name": f"lower-tank water level sensor ({y_col})",
                    "saturation": 10.0})},
            coords={"time": ("time", time, dict(_TIME_ATTRS))},
            attrs=dict(_TANKS_ATTRS))

    records = {"train": record("uEst", "yEst"), "test": record("uVal", "yVal")}
    if split is None:
        return _stack("cascaded_tanks", records, dict(_TANKS_ATTRS))
    return records[split]


# ------------------------------------------------------------------------ EMPS
_EMPS_REFERENCE = {"M": 95.1089, "Fv": 203.5034, "Fc": 20.3935, "offset": -3.1648}
_EMPS_ATTRS = {
    "title": "EMPS: electro-mechanical positioning system (nonlinear system identification "
             "benchmark)",
    "source": ("DATA_EMPS.mat (train) and DATA_EMPS_PULSES.mat (test) from "
               "github.com/forgi86/sysid-neural-continuous (examples/EMPS/data, commit "
               "956aa7ecd73061b0321c6f6098d74c9e4a7ce67a), the files of the benchmark at "
               "nonlinearbenchmark.org/benchmarks/emps. Not shipped with sysid; see "
               "datasets/emps/PROVENANCE.txt."),
    "citation": ("A. Janot, M. Gautier, M. Brunot, 'Data Set and Reference Models of EMPS', "
                 "2019 Workshop on Nonlinear System Identification Benchmarks, Eindhoven, "
                 "April 10-12, 2019; nonlinearbenchmark.org/benchmarks/emps."),
    "license": ("No licence stated in the original zip; check nonlinearbenchmark.org or the "
                "authors. The files are not redistributed by sysid; cite the paper."),
    "description": (
        "Prismatic joint driven by a DC motor, in closed loop under a PD cascade controller "
        "vir = kp*kv*(q_ref - q) - kv*dq/dt. Benchmark input vir (V), output q (m); motor "
        "force tau = gtau*vir. The test record adds external force pulses (variable pulses, "
        "N), an unmeasured disturbance under the protocol. q_ref is NOT a legal model input "
        "(the loop tracks it to ~0.6 mm). Known physics: M*q'' = tau - Fv*q' - Fc*sign(q') - "
        "offset; IDIM-LS reference estimates (attrs reference_*): M = 95.1089 kg, "
        "Fv = 203.5034 N s/m, Fc = 20.3935 N, offset = -3.1648 N. Units of attrs: gtau N/V, "
        "kp 1/s, kv V/(m/s). The loop is closed and the plant has a pure integrator, so an "
        "open-loop simulation from vir drifts unless the model is accurate. Time: the files' "
        "t on the 1 ms grid (the stored t deviates from it by < 1e-6 s)."),
    "sampling_time": 0.001,
    "init_window": 20,
    "metric": ("Simulation (free run from vir) RMSE of q on the test record in mm: "
               "1000*sqrt(mean((q_model[20:] - q[20:])^2)); the model may use vir and the "
               "first init_window = 20 test outputs. Mean predictor ~82.6 mm."),
    **{f"reference_{key}": value for key, value in _EMPS_REFERENCE.items()},
}


def _loadmat(name: str, filename: str, data: bytes, keys: list[str]) -> dict[str, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(io.BytesIO(data))
    except (ValueError, TypeError, OSError, NotImplementedError) as exc:
        raise DataError(f"load({name!r}): {filename} could not be read as a MATLAB file "
                        f"({exc}). Fix: run sysid.datasets.download({name!r}) again.") from exc
    missing = [k for k in keys if k not in mat]
    if missing:
        raise DataError(f"load({name!r}): variables {missing} missing from {filename}; received "
                        f"{sorted(k for k in mat if not k.startswith('__'))}. Fix: run "
                        f"sysid.datasets.download({name!r}) again.")
    return {k: np.asarray(mat[k], dtype=np.float64).ravel() for k in keys}


def _emps_record(get: Getter, filename: str, test: bool) -> xr.Dataset:
    keys = ["t", "qm", "qg", "vir", "gtau", "kp", "kv"] + (["pulses_N"] if test else [])
    mat = _loadmat("emps", filename, get(filename), keys)
    t, ts = mat["t"], 0.001
    grid = np.arange(t.size, dtype=np.float64) * ts
    if t.size < 2 or np.max(np.abs(t - grid)) > 1e-6:
        raise DataError(f"load('emps'): the time t in {filename} is not on a 1 ms grid starting "
                        f"at 0 (t[:3] = {t[:3].tolist()}). Fix: run "
                        f"sysid.datasets.download('emps') again.")
    data_vars = {
        "q": ("time", mat["qm"], {"units": "m", "long_name": "measured motor position (qm)"}),
        "vir": ("time", mat["vir"], {"units": "V", "long_name": "motor force command (vir); "
                                     "force = gtau*vir"}),
        "q_ref": ("time", mat["qg"], {
            "units": "m", "long_name": "reference position (qg)",
            "note": "not a legal model input under the benchmark protocol"}),
    }
    if test:
        data_vars["pulses"] = ("time", mat["pulses_N"], {
            "units": "N", "long_name": "external force pulses (pulses_N)",
            "note": ("test record only (NaN in the train record of split=None, whose file has "
                     "no such channel); an unmeasured disturbance under the benchmark protocol")})
    attrs = dict(_EMPS_ATTRS, gtau=float(mat["gtau"][0]), kp=float(mat["kp"][0]),
                 kv=float(mat["kv"][0]))
    return xr.Dataset(data_vars, coords={"time": ("time", grid, dict(_TIME_ATTRS))}, attrs=attrs)


def read_emps(get: Getter, split: str | None) -> xr.Dataset:
    """Return the EMPS record(s) for ``split`` (see ``load``)."""
    if split == "train":
        return _emps_record(get, "DATA_EMPS.mat", test=False)
    if split == "test":
        return _emps_record(get, "DATA_EMPS_PULSES.mat", test=True)
    train = _emps_record(get, "DATA_EMPS.mat", test=False)
    test = _emps_record(get, "DATA_EMPS_PULSES.mat", test=True)
    train["pulses"] = ("time", np.full(train.sizes["time"], np.nan), test["pulses"].attrs)
    return _stack("emps", {"train": train, "test": test}, dict(train.attrs))


# ------------------------------------------------------------------- silverbox
_SILVERBOX_FS = 1e7 / 2**14
_SILVERBOX_ATTRS = {
    "title": "Silverbox: electronic Duffing oscillator (nonlinear system identification "
             "benchmark)",
    "source": ("SNLS80mV.csv from github.com/forgi86/pytorch-ident (examples/statespace/"
               "silverbox/SilverboxFiles, commit f00d79ff8c6cb96d094d9ea1c079d4dcbf9a67e0), "
               "the CSV version shipped in the official SilverboxFiles.zip "
               "(nonlinearbenchmark.org). Not shipped with sysid; see "
               "datasets/silverbox/PROVENANCE.txt."),
    "citation": ("T. Wigren, J. Schoukens, 'Three free data sets for development and "
                 "benchmarking in nonlinear system identification', European Control "
                 "Conference 2013, pp. 2933-2938."),
    "license": ("No explicit licence ('available for free download'); check "
                "nonlinearbenchmark.org before redistributing. Not redistributed by sysid; "
                "cite the paper."),
    "description": (
        "Electronic circuit mimicking a mass-spring-damper with a cubic spring: "
        "m*y'' + d*y' + k1*y + k3*y^3 = u. Input u and output y are voltages; fs = 1e7/2^14 "
        "Hz (610.35 Hz), 131072 samples. Time is sample index / fs over the whole record, so "
        "a split keeps its place. Splits (0-based python slices of the record): arrow = "
        "[100:40575] (amplitude grows past the training range), arrow_no_extrapolation = "
        "arrow[:32000], multisine = [40650:127400], train = multisine[:65062], test = "
        "multisine[65062:]."),
    "sampling_time": 2**14 / 1e7,
    "init_window": 50,
    "metric": ("Simulation RMSE of y in mV on y[50:] of each test set: test (multisine), arrow "
               "and arrow_no_extrapolation; the model may use u and the first init_window = 50 "
               "outputs of each test set."),
}


def _silverbox_slices(n: int) -> dict[str, slice]:
    multisine = slice(40650, min(127400, n))
    m = len(range(*multisine.indices(n)))
    cut = multisine.start + int(0.75 * m)
    return {"arrow": slice(100, 40575), "arrow_no_extrapolation": slice(100, 100 + 32000),
            "multisine": multisine, "train": slice(multisine.start, cut),
            "test": slice(cut, multisine.stop)}


def read_silverbox(get: Getter, split: str | None) -> xr.Dataset:
    """Return the Silverbox record, or one split of it (see ``load``)."""
    table = _read_csv("silverbox", "SNLS80mV.csv", get("SNLS80mV.csv"), ["V1", "V2"])
    n = len(table)
    ds = xr.Dataset(
        {"u": ("time", table["V1"].to_numpy(np.float64),
               {"units": "V", "long_name": "input voltage (V1)"}),
         "y": ("time", table["V2"].to_numpy(np.float64),
               {"units": "V", "long_name": "output voltage (V2)"})},
        coords={"time": ("time", np.arange(n, dtype=np.float64) / _SILVERBOX_FS, {
            "units": "s", "long_name": "time since the start of SNLS80mV (sample index / fs)"})},
        attrs=dict(_SILVERBOX_ATTRS))
    if split is not None:
        part = _silverbox_slices(n)[split]
        ds = ds.isel(time=part)
        ds.attrs["samples"] = f"SNLS80mV.csv rows {part.start}:{part.stop} (0-based)"
    return ds


READERS: dict[str, Callable[[Getter, str | None], xr.Dataset]] = {
    "cascaded_tanks": read_cascaded_tanks,
    "emps": read_emps,
    "silverbox": read_silverbox,
}
