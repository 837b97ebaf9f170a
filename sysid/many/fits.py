"""``fit_many`` (one fit per data set) and ``sweep`` (one fit per option value), run by
:mod:`sysid.many.execution`.
"""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from ..errors import DataError, suggest
from .collection import FitCollection
from .execution import _check_options, _execute, _inputs, _model_spec

__all__ = ["fit_many", "sweep"]


# -- fit_many -----------------------------------------------------------------------------------
def _members(data, dim):
    """(dimension name, {label: Dataset}) from a list, a dict or one Dataset with ``dim``."""
    if isinstance(data, xr.Dataset):
        if dim is None:
            raise DataError("fit_many received one Dataset; name its member dimension, e.g. "
                            "fit_many(model, ds, dim='site'), or pass a list of Datasets "
                            "(use sysid.fit for a single fit).")
        if dim not in data.dims:
            raise DataError(f"The Dataset has no dimension {dim!r}.{suggest(dim, data.dims)} "
                            f"Dimensions: {list(data.dims)}.")
        if dim in ("time", "trajectory"):
            raise DataError(f"dim={dim!r} is part of each fit's data; name another dimension "
                            f"(one fit per label along it).")
        labels = data[dim].values.tolist() if dim in data.coords else list(range(data.sizes[dim]))
        if len(set(labels)) != len(labels):
            raise DataError(f"The labels along {dim!r} must be unique; received {labels[:10]}.")
        members = {}
        for i, label in enumerate(labels):
            member = data.isel({dim: i})
            members[label] = member.drop_vars(dim) if dim in member.coords else member
        return dim, members
    dim = dim or "site"
    if isinstance(data, dict):
        members = dict(data)
    elif isinstance(data, (list, tuple)):
        members = dict(enumerate(data))
    else:
        raise DataError(f"fit_many needs a list or dict of xarray.Datasets, or one Dataset "
                        f"with dim=...; received {type(data).__name__}.")
    if not members:
        raise DataError("fit_many received no datasets.")
    return dim, members


def _per_member(value, labels, what):
    """An int for every member, or one value per member (sequence or mapping)."""
    if isinstance(value, dict):
        missing = [k for k in labels if k not in value]
        if missing:
            raise ValueError(f"{what} has no entry for members {missing[:5]}.")
        return {k: value[k] for k in labels}
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != len(labels):
            raise ValueError(f"{what} has {len(value)} entries for {len(labels)} members.")
        return dict(zip(labels, value))
    return {k: value for k in labels}


def fit_many(model, data, *, dim: str | None = None, client=None, scheduler: str = "dask",
             seed=0, progress=None, workers: int | None = None, **fit_options) -> FitCollection:
    """Fit one model independently to many datasets (sites, sensors, units), in parallel.

    Each member is ``sysid.fit(model, member_data, seed=..., **fit_options)`` with its own
    parameters and initial states; the members run as tasks on ``dask.distributed``.

    Parameters
    ----------
    model : HybridODE
    data : list or dict of xarray.Dataset, or one xarray.Dataset
        One dataset per member (labels: list positions or dict keys), or one Dataset with
        a member dimension named by ``dim`` (labels: its coordinate), each slice of which
        is a complete dataset of the data contract (``time``, optional ``trajectory``).
    dim : str, optional
        The member dimension: required for one Dataset; the name of the label dimension
        in the outputs otherwise (default "site").
    client : distributed.Client, optional
        A cluster to run on, used as is (not closed). Default: a ``LocalCluster`` with one
        single-threaded worker process per core (``workers``), started and closed here.
        The workers need sysid installed.
    scheduler : {"dask", "serial"}
        "serial" fits the members one after the other in this process (no Dask), with the
        same results.
    seed : int, or a sequence or mapping with one seed per member
        Seeds of the member fits (default: 0 for every member, as ``sysid.fit``).
    progress : bool, optional
        Progress bar over finished members (default: on in terminals and notebooks, off
        when ``CI`` is set). The member fits' own bars are always off.
    workers : int, optional
        Worker processes of the default LocalCluster (default: the usable cores).
    **fit_options
        Options of :func:`sysid.fit` shared by every member (``checkpoint`` and ``resume``
        are refused: the members would share one file).

    Returns
    -------
    FitCollection
        ``fits[label]`` (FitResult), ``fits.parameters`` (xarray over ``dim``, NaN where a
        member failed), ``fits.failed`` ({label: error}), ``fits.status``,
        ``fits.summary()``, ``fits.impute()``.

    Notes
    -----
    Each member runs with torch on one thread, whichever the scheduler, so the serial and
    the Dask runs give bit-identical results. A member that raises (bad data, a failed
    fit: ``FitError`` unless ``throw=False``) is reported in ``.failed``; the others go
    on. The model travels to the workers as its text spec (as in a saved file) and each
    result comes back as its trained tensors and history, rebuilt here on first use
    (``fits[label]``) the way :func:`sysid.load` rebuilds a saved result.

    Examples
    --------
    One model, one dataset per site (here serially, to stay quick; without
    ``scheduler="serial"`` the fits run on a Dask ``LocalCluster`` with the same results):

    >>> import numpy as np, sympy as sp, sysid, xarray as xr
    >>> t = np.linspace(0.0, 5.0, 26)
    >>> rng = np.random.default_rng(0)
    >>> def decay(rate):          # one site: x(t) = 2 exp(-rate t), 1 % noise
    ...     x = 2.0 * np.exp(-rate * t) + 0.01 * rng.standard_normal(t.size)
    ...     return xr.Dataset({"x": ("time", x)}, coords={"time": t})
    >>> x = sp.Symbol("x")
    >>> k = sp.Symbol("k", positive=True)
    >>> model = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 1.0})
    >>> fits = sysid.fit_many(model, {"north": decay(0.3), "south": decay(0.6)},
    ...                       scheduler="serial", progress=False)
    >>> fits.parameters["k"].to_series().round(2).to_dict()
    {'north': 0.3, 'south': 0.59}
    >>> fits.status.to_dict()
    {'north': 'converged', 'south': 'converged'}

    One Dataset with a member dimension works too:

    >>> stacked = xr.concat([decay(0.3), decay(0.6)], dim="site").assign_coords(site=["n", "s"])
    >>> sysid.fit_many(model, stacked, dim="site", scheduler="serial",
    ...                progress=False).parameters["k"].values.round(2)
    array([0.3, 0.6])
    """
    dim, members = _members(data, dim)
    spec = _model_spec(model)
    options = _check_options(fit_options)
    seeds = _per_member(seed, list(members), "seed")
    for label, s in seeds.items():
        _check_options(dict(options, seed=s))
    tasks = [(label, spec, ds, dict(options, seed=seeds[label])) for label, ds in members.items()]
    outcomes = _execute(tasks, client=client, scheduler=scheduler, progress=progress,
                        workers=workers, desc="sysid.fit_many")
    return FitCollection(model, dim, outcomes, inputs=_inputs(tasks))


# -- sweeps -------------------------------------------------------------------------------------
def sweep(model, data, grid, *, client=None, scheduler: str = "dask", progress=None,
          workers: int | None = None, **fit_options) -> FitCollection:
    """Fit one model to one dataset under many option settings (a hyperparameter sweep).

    Parameters
    ----------
    model : HybridODE
    data : xarray.Dataset
    grid : dict {option: list of values} or list of dicts
        A dict is expanded to every combination (keys in the given order); a list gives the
        settings one by one. Keys are options of :func:`sysid.fit` (``seed`` included).
    client, scheduler, progress, workers
        As in :func:`fit_many`.
    **fit_options
        Options shared by every setting (a grid entry overrides them).

    Returns
    -------
    FitCollection
        Members along "config" (0, 1, ...); the options of each are coordinates of
        ``.parameters`` and columns of ``.summary()``; ``.best("validation")`` names the
        setting with the lowest held-out error when ``validation`` is set.

    Examples
    --------
    Two iteration budgets of a single-shooting fit (serially, to stay quick):

    >>> import numpy as np, sympy as sp, sysid, xarray as xr
    >>> t = np.linspace(0.0, 5.0, 26)
    >>> rng = np.random.default_rng(0)
    >>> def decay(rate):          # one site: x(t) = 2 exp(-rate t), 1 % noise
    ...     x = 2.0 * np.exp(-rate * t) + 0.01 * rng.standard_normal(t.size)
    ...     return xr.Dataset({"x": ("time", x)}, coords={"time": t})
    >>> x = sp.Symbol("x")
    >>> k = sp.Symbol("k", positive=True)
    >>> model = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 1.0})
    >>> runs = sysid.sweep(model, decay(0.5), {"lbfgs_iterations": [1, 20]},
    ...                    scheduler="serial", progress=False, epochs=0, shooting="single")
    >>> runs.summary()[["lbfgs_iterations", "status"]]
            lbfgs_iterations          status
    config
    0                      1  max_iterations
    1                     20       converged
    >>> best = int(runs.best("loss"))
    >>> best
    1
    >>> runs[best].parameters                                  # truth: 0.5
    {'k': 0.502}

    The options of each setting are coordinates of the parameters:

    >>> runs.parameters["lbfgs_iterations"].values.tolist()
    [1, 20]
    """
    if not isinstance(data, xr.Dataset):
        raise DataError(f"sweep fits one xarray.Dataset; received {type(data).__name__}. "
                        f"Use fit_many for many datasets.")
    if isinstance(grid, dict):
        keys = list(grid)
        values = [v if isinstance(v, (list, tuple)) else [v] for v in grid.values()]
        settings = [dict(zip(keys, combo)) for combo in itertools.product(*values)]
    elif isinstance(grid, (list, tuple)) and all(isinstance(g, dict) for g in grid):
        settings = [dict(g) for g in grid]
    else:
        raise ValueError("grid must be a dict {option: [values]} or a list of option dicts; "
                         f"received {type(grid).__name__}.")
    if not settings:
        raise ValueError("grid gives no settings.")
    spec = _model_spec(model)
    base = _check_options(fit_options)
    tasks, configs = [], {}
    for i, setting in enumerate(settings):
        options = _check_options(dict(base, **setting))
        tasks.append((i, spec, data, options))
        configs[i] = setting
    outcomes = _execute(tasks, client=client, scheduler=scheduler, progress=progress,
                        workers=workers, desc="sysid.sweep")
    return FitCollection(model, "config", outcomes, configs=configs, inputs=_inputs(tasks))
