"""Measured datasets: shipped with sysid or found locally/downloaded; locating and loading them."""

from __future__ import annotations

import importlib.resources
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DataError, suggest
from . import _real
from ._fields import FIELDS
from ._systems import SYSTEMS

__all__ = ["BUNDLED", "load", "available", "data_locations"]

ENV_VAR = "SYSID_DATA_DIR"


@dataclass(frozen=True)
class _Bundled:
    folder: str
    files: tuple[str, ...]
    build: Callable[[Callable[[str], bytes], "str | None"], xr.Dataset]  # (get_bytes, split)
    splits: tuple[str, ...]
    shipped: bool  # True: the file is package data; False: found locally or downloaded


def data_locations() -> list[tuple[str, Any]]:
    """Return the ``(description, folder)`` pairs searched for shipped data, in order.

    ``$SYSID_DATA_DIR`` alone when it is set; otherwise the installed package
    data ``sysid._bundled`` and the repository's top-level ``datasets/`` folder.
    This is the search for ``lynx_hare`` (after an explicit ``path=``). The
    datasets that sysid does not ship search ``path=``, ``$SYSID_DATA_DIR``,
    these two folders and then the cache folder (see :func:`load`).

    Examples
    --------
    >>> from sysid.datasets._bundled import data_locations
    >>> len(data_locations()) >= 1
    True
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return [(f"${ENV_VAR}", Path(env).expanduser())]
    return _shipped_locations()


def _shipped_locations() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    try:
        found.append(("package data sysid._bundled", importlib.resources.files("sysid._bundled")))
    except (ModuleNotFoundError, TypeError, ValueError):
        pass
    found.append(("repository folder", Path(__file__).resolve().parents[2] / "datasets"))
    return found


def _search_folders(name: str, spec: _Bundled, path: Any) -> list[tuple[str, Any]]:
    """Return the ``(description, folder)`` pairs where the files of ``name`` may lie, in order."""
    folders: list[tuple[str, Any]] = []
    if path is not None:
        root = Path(path).expanduser()
        folders += [("path=", root / spec.folder), ("path=", root)]
    if spec.shipped:  # $SYSID_DATA_DIR replaces the shipped copy, as it always did
        return folders + [(where, folder.joinpath(spec.folder))
                          for where, folder in data_locations()]
    env = os.environ.get(ENV_VAR)
    if env:
        folders.append((f"${ENV_VAR}", Path(env).expanduser() / spec.folder))
    folders += [(where, folder.joinpath(spec.folder)) for where, folder in _shipped_locations()]
    folders.append((f"cache ${_real.CACHE_ENV} or ~/.cache/sysid", _real.cache_dir() / spec.folder))
    return folders


def _reader(name: str, spec: _Bundled, path: Any, download: bool) -> Callable[[str], bytes]:
    """Return ``get(filename) -> bytes`` that finds (and checks, or downloads) one file."""
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise DataError(f"load({name!r}): path must be a folder (str or pathlib.Path); "
                            f"received {type(path).__name__}. Fix: pass the folder that holds "
                            f"'{spec.folder}/<file>' or the files themselves, or omit path.")
        if not Path(path).expanduser().is_dir():
            raise DataError(f"load({name!r}): path={str(path)!r} is not an existing folder. "
                            f"Fix: pass the folder that holds '{spec.folder}/<file>' or the "
                            f"files themselves (not a file), or omit path.")

    def get(filename: str) -> bytes:
        looked = []
        for where, folder in _search_folders(name, spec, path):
            candidate = folder.joinpath(filename)
            looked.append(f"{where}: {candidate}")
            try:
                if not candidate.is_file():
                    continue
                data = candidate.read_bytes()
            except OSError:
                continue
            if not spec.shipped:
                _real.check_sha256(name, filename, data, str(candidate))
            return data
        if not spec.shipped and download:
            target = _real._fetch(name, filename, _real.cache_dir())
            return target.read_bytes()
        where = "; ".join(looked)
        if spec.shipped:
            raise DataError(
                f"load({name!r}): data file '{spec.folder}/{filename}' not found. Looked in: "
                + where
                + f". Fix: reinstall sysid (the file is package data), or set the environment "
                f"variable {ENV_VAR} to a folder that contains '{spec.folder}/{filename}'.")
        raise DataError(
            f"load({name!r}): data file '{spec.folder}/{filename}' not found. Looked in: "
            f"{where}. sysid does not ship this file (its licence is unclear; see "
            f"datasets/{spec.folder}/PROVENANCE.txt). Fix: call load({name!r}, download=True) "
            f"or sysid.datasets.download({name!r}) to fetch it (checked by SHA-256) into "
            f"{_real.cache_dir() / spec.folder}; or copy the file(s) "
            f"{', '.join(spec.files)} into one of the folders above, e.g. "
            f"'<dir>/{spec.folder}/', and set the environment variable {ENV_VAR}=<dir> or "
            f"pass path=<dir>.")

    return get


def _read_lynx_hare(text: str) -> xr.Dataset:
    try:
        table = pd.read_csv(io.StringIO(text), comment="#", skipinitialspace=True)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"load('lynx_hare'): the CSV file could not be parsed ({exc}). "
                        f"Fix: restore the original file.") from exc
    table.columns = [str(c).strip() for c in table.columns]
    missing = {"Year", "Lynx", "Hare"} - set(table.columns)
    if missing:
        raise DataError(f"load('lynx_hare'): columns {sorted(missing)} missing; received "
                        f"{list(table.columns)}. Fix: restore the original file.")
    try:
        year = table["Year"].to_numpy(dtype=np.float64)
        hare = table["Hare"].to_numpy(dtype=np.float64)
        lynx = table["Lynx"].to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise DataError(f"load('lynx_hare'): non-numeric values in the CSV file ({exc}). "
                        f"Fix: restore the original file.") from exc
    if year.size == 0 or np.any(np.diff(year) <= 0):
        raise DataError("load('lynx_hare'): the years must be present and strictly "
                        f"increasing; received {year.tolist()}. Fix: restore the original file.")
    time = xr.Variable("time", year - 1900.0, attrs={
        "units": "years", "long_name": "time since 1900", "time_origin": "1900"})
    pelts = "thousands of pelts"
    return xr.Dataset(
        {"hare": ("time", hare, {"units": pelts,
                                 "long_name": "snowshoe hare pelts traded (prey)"}),
         "lynx": ("time", lynx, {"units": pelts,
                                 "long_name": "Canada lynx pelts traded (predator)"})},
        coords={"time": time},
        attrs={
            "title": "Hudson's Bay Company lynx and hare pelts, 1900-1920",
            "source": ("hudson-bay-lynx-hare.csv from github.com/stan-dev/example-models "
                       "(knitr/lotka-volterra, commit 2847a61097354785ceda9fba40c7f761d6664491), "
                       "taken from P. Howard's lecture notes "
                       "http://www.math.tamu.edu/~phoward/m442/modbasics.pdf; historical "
                       "counts after Hewitt (1921) via Odum. See datasets/lynx_hare/PROVENANCE.txt."),
            "citation": ("Carpenter, B. (2018). Predator-Prey Population Dynamics: the "
                         "Lotka-Volterra model in Stan. Stan case study. "
                         "https://mc-stan.org/users/documentation/case-studies/"
                         "lotka-volterra-predator-prey.html. Howard, P. (2009). Modeling "
                         "basics. Lecture notes, Texas A&M University, "
                         "http://www.math.tamu.edu/~phoward/m442/modbasics.pdf."),
            "license": ("File from stan-dev/example-models (new BSD licence); the numbers are "
                        "historical counts. The Carpenter (2018) case-study text is CC-BY-NC 4.0."),
            "description": (
                "Annual pelts (thousands) of snowshoe hare and Canada lynx, 1900-1920; "
                "time is in years since 1900. Reference Lotka-Volterra fit "
                "du/dt = (alpha - beta*v)*u, dv/dt = (-gamma + delta*u)*v with u = hare, "
                "v = lynx: posterior means alpha=0.55, beta=0.028, gamma=0.80, delta=0.024 "
                "and lognormal noise sigma=0.25 (Carpenter 2018); least squares alpha=0.55, "
                "beta=0.028, gamma=0.84, delta=0.026 (Howard 2009)."),
        })


_LYNX_HARE_SPLITS = {"train": (0.0, 15.0), "test": (16.0, 20.0)}  # closed time intervals


def _build_lynx_hare(get: Callable[[str], bytes], split: str | None) -> xr.Dataset:
    try:
        text = get("hudson-bay-lynx-hare.csv").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"load('lynx_hare'): the CSV file is not UTF-8 text ({exc}). "
                        f"Fix: restore the original file.") from exc
    ds = _read_lynx_hare(text)
    if split is not None:
        lo, hi = _LYNX_HARE_SPLITS[split]
        ds = ds.sel(time=slice(lo, hi))
    return ds


BUNDLED: dict[str, _Bundled] = {
    "lynx_hare": _Bundled("lynx_hare", ("hudson-bay-lynx-hare.csv",), _build_lynx_hare,
                          splits=tuple(_LYNX_HARE_SPLITS), shipped=True),
    **{name: _Bundled(name, tuple(f.filename for f in files), _real.READERS[name],
                      splits=_real.SPLITS[name], shipped=False)
       for name, files in _real.REMOTE.items()},
}


def load(name: str, *, split: str | None = None, path: str | os.PathLike | None = None,
         download: bool = False) -> xr.Dataset:
    """Load a measured dataset: shipped with sysid, or a benchmark found locally or downloaded.

    Parameters
    ----------
    name : str
        Dataset name; see ``available("load")``: ``"lynx_hare"`` (shipped),
        ``"cascaded_tanks"``, ``"emps"``, ``"silverbox"`` (nonlinear system
        identification benchmarks; their files are not shipped, see
        :func:`sysid.datasets.download`).
    split : str, optional
        ``None`` returns all samples.

        * ``"lynx_hare"``: ``"train"`` is 1900-1915 (16 years, time 0-15),
          ``"test"`` is 1916-1920 (time 16-20), for forecasting checks.
        * ``"cascaded_tanks"``: ``"train"`` = uEst/yEst, ``"test"`` =
          uVal/yVal (1024 samples each); ``None``: both, with a
          ``trajectory`` dimension (coordinate ``["train", "test"]``).
        * ``"emps"``: ``"train"`` = DATA_EMPS.mat, ``"test"`` =
          DATA_EMPS_PULSES.mat (24841 samples each); ``None``: both, with a
          ``trajectory`` dimension (``pulses`` is NaN in the train record).
        * ``"silverbox"``: slices of the SNLS80mV record (131072 samples):
          ``"arrow"`` [100:40575], ``"arrow_no_extrapolation"`` (its first
          32000), ``"multisine"`` [40650:127400], ``"train"`` (its first
          75 %, 65062) and ``"test"`` (the rest, 21688). Times keep their
          place in the record.
    path : str or path-like, optional
        A folder searched first: it may hold ``<name>/<file>`` or the files
        directly.
    download : bool, default False
        When a benchmark file is not found, fetch it with
        :func:`sysid.datasets.download` into the cache folder.

    Returns
    -------
    xarray.Dataset
        Dimension ``time`` (and ``trajectory`` for a two-record benchmark with
        ``split=None``); one variable per measured channel; ``units`` and
        ``long_name`` on everything; ``title``, ``source``, ``citation``,
        ``license`` and ``description`` in ``attrs``. The benchmarks also have
        ``sampling_time`` (s), ``init_window`` (number of initial test outputs
        the official protocol allows for estimating the initial state) and
        ``metric``; times are in seconds from the start of the record.

    Raises
    ------
    DataError
        Unknown name or split; a data file not found (the message lists where
        it looked and how to fix it), differing from the published one
        (SHA-256), failing to download, or not parseable.

    Notes
    -----
    Search order for a benchmark file: ``path``, ``$SYSID_DATA_DIR``
    (``<name>/<file>``), the package data and the repository's ``datasets/``
    folder, then the cache folder ``$SYSID_CACHE_DIR`` (default
    ``~/.cache/sysid``). Every file found is checked against the SHA-256 in
    ``datasets/<name>/PROVENANCE.txt``. For ``lynx_hare``, which ships with
    sysid, ``$SYSID_DATA_DIR`` replaces the package data when set.

    Examples
    --------
    >>> from sysid.datasets import load
    >>> ds = load("lynx_hare")
    >>> float(ds.hare[0]), float(ds.lynx[0]), ds.sizes["time"]
    (30.0, 4.0, 21)
    >>> load("lynx_hare", split="test").sizes["time"]
    5

    The benchmarks need their files (``download=True`` fetches them once):

    >>> tanks = load("cascaded_tanks", split="train", download=True)  # doctest: +SKIP
    >>> tanks.sizes["time"], tanks.attrs["sampling_time"], float(tanks.y.max())  # doctest: +SKIP
    (1024, 4.0, 10.0)
    >>> load("silverbox", split="test").sizes["time"]  # doctest: +SKIP
    21688
    """
    spec = BUNDLED.get(name) if isinstance(name, str) else None
    if spec is None:
        if isinstance(name, str) and name in SYSTEMS:
            raise DataError(f"load(): {name!r} is a synthetic system, not a bundled file. "
                            f"Use sysid.datasets.simulate({name!r}) instead.")
        hint = suggest(str(name), list(BUNDLED) + list(SYSTEMS)) if isinstance(name, str) else ""
        raise DataError(f"load(): unknown dataset {name!r}.{hint} Measured datasets: "
                        f"{', '.join(BUNDLED)}; synthetic systems (use simulate()): "
                        f"{', '.join(SYSTEMS)}.")
    if split is not None and split not in spec.splits:
        hint = suggest(str(split), spec.splits) if isinstance(split, str) else ""
        raise DataError(f"load({name!r}): unknown split {split!r}.{hint} Use one of "
                        f"{', '.join(map(repr, spec.splits))}, or None for all samples.")
    if not isinstance(download, bool):
        raise DataError(f"load({name!r}): download must be True or False; received "
                        f"{download!r}.")
    ds = spec.build(_reader(name, spec, path, download), split)
    if split is not None:
        ds.attrs["split"] = split
    return ds


def available(kind: str | None = None) -> list[str]:
    """Return the dataset names: measured (``load``) and synthetic (``simulate``).

    Parameters
    ----------
    kind : {None, "load", "simulate"}, optional
        Restrict to measured data (``"load"``: shipped first, then the
        downloadable benchmarks) or to synthetic systems (``"simulate"``);
        ``None`` lists both, measured first.

    Examples
    --------
    >>> from sysid.datasets import available
    >>> available("load")
    ['lynx_hare', 'cascaded_tanks', 'emps', 'silverbox']
    >>> "lotka_volterra" in available()
    True
    """
    if kind not in (None, "load", "simulate"):
        raise DataError(f"available(): kind must be None, 'load' or 'simulate'; received "
                        f"{kind!r}.{suggest(str(kind), ['load', 'simulate'])}")
    names: list[str] = []
    if kind in (None, "load"):
        names += list(BUNDLED)
    if kind in (None, "simulate"):
        names += list(SYSTEMS) + list(FIELDS)
    return names
