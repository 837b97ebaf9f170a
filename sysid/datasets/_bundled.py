"""Measured datasets shipped with sysid: locating the files and loading them."""

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

__all__ = ["BUNDLED", "load", "available", "data_locations"]

ENV_VAR = "SYSID_DATA_DIR"


@dataclass(frozen=True)
class _Bundled:
    folder: str
    filename: str
    reader: Callable[[str], xr.Dataset]
    splits: dict[str, tuple[float, float]]  # split name -> closed time interval


def data_locations() -> list[tuple[str, Any]]:
    """Return the ``(description, folder)`` pairs searched for bundled data, in order.

    ``$SYSID_DATA_DIR`` alone when it is set; otherwise the installed package
    data ``sysid._bundled`` and the repository's top-level ``datasets/`` folder.

    Examples
    --------
    >>> from sysid.datasets._bundled import data_locations
    >>> len(data_locations()) >= 1
    True
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return [(f"${ENV_VAR}", Path(env).expanduser())]
    found: list[tuple[str, Any]] = []
    try:
        found.append(("package data sysid._bundled", importlib.resources.files("sysid._bundled")))
    except (ModuleNotFoundError, TypeError, ValueError):
        pass
    found.append(("repository folder", Path(__file__).resolve().parents[2] / "datasets"))
    return found


def _read_text(name: str, spec: _Bundled) -> str:
    looked = []
    for where, folder in data_locations():
        candidate = folder.joinpath(spec.folder).joinpath(spec.filename)
        looked.append(f"{where}: {candidate}")
        try:
            if candidate.is_file():
                return candidate.read_text(encoding="utf-8")
        except OSError:
            continue
    raise DataError(
        f"load({name!r}): data file '{spec.folder}/{spec.filename}' not found. Looked in: "
        + "; ".join(looked)
        + f". Fix: reinstall sysid (the file is package data), or set the environment "
        f"variable {ENV_VAR} to a folder that contains '{spec.folder}/{spec.filename}'.")


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


BUNDLED: dict[str, _Bundled] = {
    "lynx_hare": _Bundled("lynx_hare", "hudson-bay-lynx-hare.csv", _read_lynx_hare,
                          splits={"train": (0.0, 15.0), "test": (16.0, 20.0)}),
}


def load(name: str, *, split: str | None = None) -> xr.Dataset:
    """Load a measured dataset bundled with sysid.

    Parameters
    ----------
    name : str
        Dataset name; see ``available("load")``. Currently ``"lynx_hare"``.
    split : {None, "train", "test"}, optional
        ``None`` returns all samples.  For ``"lynx_hare"``, ``"train"`` is
        1900-1915 (16 years, time 0-15) and ``"test"`` is 1916-1920 (time
        16-20), for forecasting checks.

    Returns
    -------
    xarray.Dataset
        Dimension ``time``; one variable per measured channel; ``units`` and
        ``long_name`` on everything; ``title``, ``source``, ``citation``,
        ``license`` and ``description`` in ``attrs``.

    Raises
    ------
    DataError
        Unknown name or split, or the data file cannot be found or parsed.
        Files are searched in ``$SYSID_DATA_DIR`` if set, else in the package
        data and the repository's ``datasets/`` folder.

    Examples
    --------
    >>> from sysid.datasets import load
    >>> ds = load("lynx_hare")
    >>> float(ds.hare[0]), float(ds.lynx[0]), ds.sizes["time"]
    (30.0, 4.0, 21)
    >>> load("lynx_hare", split="test").sizes["time"]
    5
    """
    spec = BUNDLED.get(name) if isinstance(name, str) else None
    if spec is None:
        from ._systems import SYSTEMS

        if isinstance(name, str) and name in SYSTEMS:
            raise DataError(f"load(): {name!r} is a synthetic system, not a bundled file. "
                            f"Use sysid.datasets.simulate({name!r}) instead.")
        hint = suggest(str(name), list(BUNDLED) + list(SYSTEMS)) if isinstance(name, str) else ""
        raise DataError(f"load(): unknown dataset {name!r}.{hint} Bundled datasets: "
                        f"{', '.join(BUNDLED)}; synthetic systems (use simulate()): "
                        f"{', '.join(SYSTEMS)}.")
    if split is not None and split not in spec.splits:
        hint = suggest(str(split), spec.splits) if isinstance(split, str) else ""
        raise DataError(f"load({name!r}): unknown split {split!r}.{hint} Use one of "
                        f"{', '.join(map(repr, spec.splits))}, or None for all samples.")
    ds = spec.reader(_read_text(name, spec))
    if split is not None:
        lo, hi = spec.splits[split]
        ds = ds.sel(time=slice(lo, hi))
        ds.attrs["split"] = split
    return ds


def available(kind: str | None = None) -> list[str]:
    """Return the dataset names: bundled (``load``) and synthetic (``simulate``).

    Parameters
    ----------
    kind : {None, "load", "simulate"}, optional
        Restrict to bundled measured data (``"load"``) or to synthetic systems
        (``"simulate"``); ``None`` lists both, bundled first.

    Examples
    --------
    >>> from sysid.datasets import available
    >>> available("load")
    ['lynx_hare']
    >>> "lotka_volterra" in available()
    True
    """
    from ._systems import SYSTEMS

    if kind not in (None, "load", "simulate"):
        raise DataError(f"available(): kind must be None, 'load' or 'simulate'; received "
                        f"{kind!r}.{suggest(str(kind), ['load', 'simulate'])}")
    names: list[str] = []
    if kind in (None, "load"):
        names += list(BUNDLED)
    if kind in (None, "simulate"):
        names += list(SYSTEMS)
    return names
