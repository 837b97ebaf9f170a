"""Many independent fits at once: ``fit_many``, ``sweep`` and ``fit_ensemble``, on Dask.

Every member of a collection is one call of :func:`sysid.fit` with its own data, options
and seed, run by :func:`_run_member`. With ``scheduler="dask"`` the members are tasks on a
``dask.distributed`` cluster (a ``LocalCluster`` with one single-threaded worker process
per core unless a ``Client`` is passed); with ``scheduler="serial"`` they run one after the
other in this process. Both run the same function on the same inputs, so they give the
same numbers.

What travels is plain data. To a worker: the model as the text spec that
:meth:`FitResult.save` writes (:func:`sysid.results.files.model_to_spec`; the worker rebuilds the
model with the whitelist parser; no SymPy object or compiled torch code is pickled), the
member's ``xarray.Dataset`` and its options. Back: what a saved file holds apart from
the model and the data, which the client already has: the trained tensors, options,
status, statistics and the training history (``_payload``), plus a small summary
(parameters, noise levels) that the collection reads without building the result. The
client rebuilds a member's :class:`FitResult` from it on first use, exactly as
:func:`sysid.load` rebuilds a saved one, so its predictions are bit-identical to the
worker's. (The saved-file bytes themselves would encode data and history as netCDF:
about 90 ms per member, 10-20 % of a small fit, measured on the 2-core machine.)
A member that raises is caught on the worker; its error text comes back in place of a
result and the other members go on.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import traceback
import uuid
from contextlib import contextmanager

import numpy as np
import xarray as xr

from ..data.bundle import prepare
from ..errors import DataError, FitError, ModelError, suggest
from ..model.hybrid import HybridODE
from ..model.spec import model_from_spec, model_to_spec
from ..problem.options import FitOptions, FitStatus
from ..problem.problem import build_problem
from ..results.result import FitResult
from ..runtime.progress import progress_bar
from ..results.fitting import fit

__all__ = ["fit_many", "sweep", "fit_ensemble", "FitCollection", "Ensemble"]

#: Fit options a collection refuses: per-member files would overwrite each other.
_REFUSED = ("checkpoint", "resume")
_SCHEMES = ("seeds", "windows", "trajectories")


# -- worker side --------------------------------------------------------------------------------
def _run_member(spec: dict, data: xr.Dataset, options: dict, serialise: bool = True) -> dict:
    """Fit one member (on a Dask worker or in this process) and never raise.

    Returns a dict: ``ok``, and either ``result`` (:func:`_payload`, or the
    :class:`FitResult` itself when ``serialise`` is False) with ``summary``, or ``error``
    and ``traceback``. Torch runs on one thread inside the task (restored afterwards).
    """
    import torch


    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # inside a task, Dask-aware code (xarray's netCDF write locks, a lazily loaded
        # member Dataset) would otherwise use the worker's cluster-wide scheduler: a
        # netCDF write to memory then asks the scheduler for a lock named after a BytesIO
        # object and fails ("Semaphore or Lock ... not known"); the member runs locally
        with _local_dask():
            model = model_from_spec(spec)
            result = fit(model, data, **options)
            return {"ok": True, "summary": _summary(result),
                    "result": _payload(result) if serialise else result}
    except Exception as err:                  # reported in .failed, never fatal
        return {"ok": False, "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc()}
    finally:
        torch.set_num_threads(before)


@contextmanager
def _local_dask():
    try:
        import dask
    except ImportError:                       # serial use without dask installed
        yield
        return
    with dask.config.set(scheduler="synchronous"):
        yield


def _summary(result) -> dict:
    """What a collection shows without loading the result: plain numbers and text."""
    out = {"parameters": dict(result.parameters), "status": result.status.code,
           "message": result.status.message, "noise_std": dict(result.noise_std),
           "stats": {k: v for k, v in result.stats.items() if isinstance(v, (int, float))}}
    if "validation" in result.history:
        scores = result.history["validation"].values
        scores = scores[np.isfinite(scores)]
        out["validation"] = float(scores.min()) if scores.size else float("nan")
    return out


def _payload(result) -> dict:
    """The fitted state as plain data: the entries of a saved file (``_io.save_result``)
    other than the model spec and the training data, the history as a Dataset."""
    return {"state": {k: v.detach().clone() for k, v in result._problem.state_dict().items()},
            "options": result.options.to_dict(), "history": result.history,
            "stats": dict(result.stats),
            "status": {"code": result.status.code, "detail": result.status.detail},
            "objective": result._problem.objective()}


def _rebuild(spec: dict, data: xr.Dataset, payload: dict):
    """A member's :class:`FitResult` from its payload, the way :func:`sysid.load` builds
    a saved result (same model spec, same data, same tensors: same predictions)."""

    model = model_from_spec(spec)
    options = FitOptions.from_kwargs(**payload["options"])
    bundle = prepare(model, data, time_unit=options.time_unit)
    problem = build_problem(model, bundle, options)
    problem.load_state_dict(payload["state"], strict=True)
    problem.use_objective(payload["objective"])
    return FitResult(model, data, bundle, problem, options, FitStatus(**payload["status"]),
                     payload["history"], dict(payload["stats"]))


# -- running tasks ------------------------------------------------------------------------------
def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                    # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def _local_client(workers: int | None):
    """A ``LocalCluster`` of single-threaded worker processes, closed on exit."""
    import logging

    from distributed import Client, LocalCluster

    import dask

    n = int(workers) if workers else _default_workers()
    try:
        # the workers' statistical profiler samples every task's stack every 10 ms, under
        # the GIL: off, the members' CPU time drops by about 5 % (measured, 60 small fits)
        with dask.config.set({"distributed.worker.profile.enabled": False}):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
    except RuntimeError as err:
        raise RuntimeError(
            f"The Dask LocalCluster did not start ({err}). In a script, call fit_many / "
            f"sweep / fit_ensemble under `if __name__ == \"__main__\":` (worker processes "
            f"import the main module), or use scheduler='serial'.") from err
    with cluster, Client(cluster) as client:
        yield client


def _show_progress(progress) -> bool:
    if progress is None:
        return not os.environ.get("CI") and (sys.stderr.isatty() or "ipykernel" in sys.modules)
    return bool(progress)


def _execute(tasks: list[tuple], *, client, scheduler: str, progress, workers, desc: str) -> dict:
    """Run ``tasks`` = [(label, spec, data, options)]; return {label: outcome}."""

    if scheduler not in ("dask", "serial"):
        raise ValueError(f"scheduler must be 'dask' or 'serial'; received {scheduler!r}.")
    if scheduler == "serial" and client is not None:
        raise ValueError("A client was passed with scheduler='serial'; drop one of them.")
    bar = progress_bar(total=len(tasks), desc=desc, disable=not _show_progress(progress),
                       leave=False)
    outcomes: dict = {}
    try:
        if scheduler == "serial":
            for label, spec, data, options in tasks:
                outcomes[label] = _run_member(spec, data, options, serialise=False)
                _tick(bar, outcomes)
        elif client is None:
            with _local_client(workers) as own:
                _on_dask(own, tasks, outcomes, bar)
        else:
            _on_dask(client, tasks, outcomes, bar)
    finally:
        bar.close()
    return {label: outcomes[label] for label, *_ in tasks}


def _tick(bar, outcomes) -> None:
    bar.update(1)
    failed = sum(not o["ok"] for o in outcomes.values())
    if failed:
        bar.set_postfix(failed=failed)


def _on_dask(client, tasks, outcomes, bar) -> None:
    from distributed import as_completed

    token = uuid.uuid4().hex[:12]
    labels = {}
    futures = []
    for i, (label, spec, data, options) in enumerate(tasks):
        fut = client.submit(_run_member, spec, data, options, key=f"sysid-fit-{token}-{i}",
                            pure=False)
        labels[fut.key] = label
        futures.append(fut)
    try:
        for fut in as_completed(futures):
            label = labels[fut.key]
            try:
                outcomes[label] = fut.result()
            except Exception as err:          # the worker died, or the task never ran
                outcomes[label] = {"ok": False, "error": f"{type(err).__name__}: {err}",
                                   "traceback": "".join(traceback.format_exception(err))}
            fut.release()
            _tick(bar, outcomes)
    finally:
        client.cancel([f for f in futures if not f.done()])


def _inputs(tasks) -> dict:
    """label -> (model spec, data) of each task, to rebuild its result."""
    return {label: (spec, data) for label, spec, data, _ in tasks}


def _check_options(options: dict) -> dict:
    """Validate fit options here, before any worker starts; progress bars stay off."""

    for key in _REFUSED:
        if options.get(key) is not None:
            raise ValueError(f"fit option {key}= is not available for collections of fits "
                             f"(the members would share one file); fit members one at a "
                             f"time with sysid.fit to use checkpoints.")
    options = dict(options, progress=False)
    FitOptions.from_kwargs(**options)
    return options


def _model_spec(model) -> dict:

    if not isinstance(model, HybridODE):
        raise ModelError(f"expected a sysid.HybridODE as model; received {type(model).__name__}.")
    return model_to_spec(model)


# -- the collection -----------------------------------------------------------------------------
class FitCollection:
    """Independent fits, one per label along the dimension :attr:`dim`.

    Returned by :func:`sysid.fit_many` (one member per dataset or site) and
    :func:`sysid.sweep` (one member per option setting). A member that failed never
    stops the others: it is listed in :attr:`failed` with its error message.

    Attributes
    ----------
    dim : str
        Name of the member dimension ("site", "config", ...).
    labels : list
        Member labels, in the order given.
    configs : dict
        Label -> the options that differ between members (sweeps), else empty dicts.

    Examples
    --------
    Three sites of exponential decay, one with a misnamed variable. The examples run the
    members one after the other (``scheduler="serial"``) to stay quick; the default runs
    them on a Dask ``LocalCluster`` with identical results.

    >>> import numpy as np, sympy as sp, sysid, xarray as xr
    >>> t = np.linspace(0.0, 5.0, 26)
    >>> rng = np.random.default_rng(0)
    >>> def decay(rate):          # one site: x(t) = 2 exp(-rate t), 1 % noise
    ...     x = 2.0 * np.exp(-rate * t) + 0.01 * rng.standard_normal(t.size)
    ...     return xr.Dataset({"x": ("time", x)}, coords={"time": t})
    >>> x = sp.Symbol("x")
    >>> k = sp.Symbol("k", positive=True)
    >>> model = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 1.0})
    >>> sites = {"north": decay(0.3), "south": decay(0.6), "east": decay(0.5).rename(x="y")}
    >>> fits = sysid.fit_many(model, sites, scheduler="serial", progress=False)
    >>> fits
    FitCollection(3 members along 'site': 2 fitted, 1 failed)
      status: converged 2, failed 1
      k: median 0.4467, range [0.3007, 0.5927]
      failed 'east': DataError: Data variable 'y' matches no state, observation or input ...
    >>> fits.parameters["k"].values.round(2)          # NaN where the fit failed
    array([0.3 , 0.59,  nan])
    >>> fits["south"].parameters                      # each member is a FitResult
    {'k': 0.593}
    >>> fits.impute()["x"].dims                       # stacked along the member dimension
    ('site', 'time')
    """

    def __init__(self, model, dim: str, outcomes: dict, configs: dict | None = None,
                 inputs: dict | None = None):
        self.model = model
        self._inputs = inputs or {}           # label -> (spec, data) to rebuild results
        self.dim = dim
        self.labels = list(outcomes)
        self.configs = configs or {label: {} for label in self.labels}
        self._outcomes = outcomes
        self._loaded: dict = {}

    # -- members -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):
        return iter(self.labels)

    def __contains__(self, label) -> bool:
        return label in self._outcomes

    def __getitem__(self, label):
        """The :class:`FitResult` of member ``label`` (rebuilt on first use)."""
        if label not in self._outcomes:
            raise KeyError(f"No member {label!r}.{suggest(str(label), map(str, self.labels))} "
                           f"Members: {self.labels[:10]}{'...' if len(self) > 10 else ''}.")
        outcome = self._outcomes[label]
        if not outcome["ok"]:
            raise FitError(f"Member {label!r} failed: {outcome['error']}")
        if label not in self._loaded:
            raw = outcome["result"]
            self._loaded[label] = _rebuild(*self._inputs[label], raw) \
                if isinstance(raw, dict) else raw
        return self._loaded[label]

    @property
    def succeeded(self) -> list:
        """Labels of the members that were fitted."""
        return [k for k in self.labels if self._outcomes[k]["ok"]]

    @property
    def results(self) -> dict:
        """{label: FitResult} of every member that was fitted."""
        return {k: self[k] for k in self.succeeded}

    @property
    def failed(self) -> dict:
        """{label: error message} of every member that raised."""
        return {k: o["error"] for k, o in self._outcomes.items() if not o["ok"]}

    @property
    def tracebacks(self) -> dict:
        """{label: full traceback text} of every member that raised."""
        return {k: o["traceback"] for k, o in self._outcomes.items() if not o["ok"]}

    # -- tables --------------------------------------------------------------------------------
    def _coords(self) -> dict:
        coords = {self.dim: _index_values(self.labels)}
        keys = list(dict.fromkeys(k for c in self.configs.values() for k in c))
        for key in keys:
            coords[key] = (self.dim, _index_values([self.configs[lab].get(key) for lab
                                                    in self.labels]))
        return coords

    @property
    def parameters(self) -> xr.Dataset:
        """Fitted parameters over the member dimension (NaN where a member failed)."""
        data = {}
        for name in self.model.parameter_names:
            values = [self._outcomes[k]["summary"]["parameters"][name]
                      if self._outcomes[k]["ok"] else np.nan for k in self.labels]
            data[name] = (self.dim, np.asarray(values, dtype=float))
        return xr.Dataset(data, coords=self._coords())

    def parameter_table(self):
        """Parameters as a ``pandas.DataFrame``: one row per member, NaN where it failed."""
        return self.parameters.to_dataframe()

    @property
    def status(self):
        """Status code per member (``pandas.Series``): the fit's code, or "failed"."""
        import pandas as pd
        return pd.Series([self._outcomes[k]["summary"]["status"] if self._outcomes[k]["ok"]
                          else "failed" for k in self.labels],
                         index=pd.Index(self.labels, name=self.dim), name="status")

    def summary(self):
        """One row per member: options that vary, status, final loss, held-out score
        (when ``validation`` was set), wall time, observations, error."""
        import pandas as pd
        rows = []
        for k in self.labels:
            o = self._outcomes[k]
            row = dict(self.configs[k])
            if o["ok"]:
                s = o["summary"]
                row.update(status=s["status"], loss=s["stats"].get("loss", np.nan),
                           validation=s.get("validation", np.nan),
                           wall_time_s=s["stats"].get("wall_time_s", np.nan),
                           n_observations=s["stats"].get("n_observations", np.nan), error="")
            else:
                row.update(status="failed", loss=np.nan, validation=np.nan,
                           wall_time_s=np.nan, n_observations=np.nan, error=o["error"])
            rows.append(row)
        return pd.DataFrame(rows, index=pd.Index(self.labels, name=self.dim))

    def best(self, by: str = "validation"):
        """Label of the member with the lowest ``by`` ("validation": held-out score, needs
        the fit option ``validation``; or "loss"). Losses compare only members whose
        options weigh the loss alike (same penalties)."""
        table = self.summary()
        if by not in ("validation", "loss"):
            raise ValueError(f"best(by=...) takes 'validation' or 'loss'; received {by!r}.")
        scores = table[by].astype(float)
        if not np.isfinite(scores).any():
            hint = " Set the fit option validation=0.2 (a fraction of windows held out)." \
                if by == "validation" else ""
            raise ValueError(f"No member has a finite {by} score.{hint}")
        return scores.idxmin()

    # -- trajectories ------------------------------------------------------------------------
    def impute(self, times=None, **kwargs) -> xr.Dataset:
        """Every fitted member's :meth:`FitResult.impute`, stacked along :attr:`dim`."""
        return self._stack([self[k].impute(times, **kwargs) for k in self.succeeded])

    def forecast(self, times=None, **kwargs) -> xr.Dataset:
        """Every fitted member's :meth:`FitResult.forecast`, stacked along :attr:`dim`."""
        return self._stack([self[k].forecast(times, **kwargs) for k in self.succeeded])

    def _stack(self, parts):
        if not parts:
            raise FitError(f"No member was fitted; see .failed: {self.failed}")
        out = xr.concat(parts, dim=self.dim, join="outer", combine_attrs="drop_conflicts")
        return out.assign_coords({self.dim: _index_values(self.succeeded)})

    def __repr__(self) -> str:
        n_ok = len(self.succeeded)
        lines = [f"FitCollection({len(self)} members along {self.dim!r}: {n_ok} fitted, "
                 f"{len(self) - n_ok} failed)"]
        codes = self.status.value_counts()
        lines.append("  status: " + ", ".join(f"{k} {v}" for k, v in codes.items()))
        params = self.parameters
        for name in self.model.parameter_names:
            v = params[name].values
            v = v[np.isfinite(v)]
            if v.size:
                lines.append(f"  {name}: median {np.median(v):.4g}, range "
                             f"[{v.min():.4g}, {v.max():.4g}]")
        for label, err in list(self.failed.items())[:5]:
            lines.append(f"  failed {label!r}: {err.splitlines()[0][:120]}")
        if len(self.failed) > 5:
            lines.append(f"  ... {len(self.failed) - 5} more failures in .failed")
        return "\n".join(lines)


def _index_values(values) -> np.ndarray:
    """Labels as a numpy array: numbers stay numbers, anything mixed becomes text."""
    vals = list(values)
    if all(isinstance(v, (bool, np.bool_)) for v in vals):
        return np.asarray(vals, dtype=bool)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
        return np.asarray(vals, dtype=np.int64)
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in vals):
        return np.asarray(vals, dtype=float)
    return np.asarray([v if isinstance(v, str) else str(v) for v in vals])


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


# -- ensembles ----------------------------------------------------------------------------------
def _channels(model, data) -> list[str]:
    return [name for name in model.channels if name in data.data_vars]


def _observed(model, data) -> tuple[np.ndarray, list[str]]:
    """(B, T) True where any channel is measured, and the channel names."""
    names = _channels(model, data)
    if not names:
        raise DataError(f"The data have no measured channel of the model (channels: "
                        f"{list(model.channels)}; variables: {list(data.data_vars)}).")
    order = ("trajectory", "time") if "trajectory" in data.dims else ("time",)
    grid = xr.DataArray(np.zeros([data.sizes[d] for d in order], dtype=bool), dims=order)
    obs = grid
    for name in names:
        extra = [d for d in data[name].dims if d not in order]
        if extra:
            raise DataError(f"{name!r} has dimensions {data[name].dims}; expected {order}.")
        obs = obs | data[name].notnull()
    obs = xr.broadcast(obs, grid)[0].transpose(*order).values
    return np.asarray(obs, dtype=bool).reshape(-1, data.sizes["time"]), names


def _blocks(idx: np.ndarray, block: int) -> list[np.ndarray]:
    """Consecutive runs of ``block`` observed samples (the last one may be shorter)."""
    return [idx[i:i + block] for i in range(0, len(idx), block)]


def _auto_block(obs: np.ndarray, block) -> int:
    if block not in (None, "auto"):
        if not isinstance(block, (int, np.integer)) or block < 1:
            raise ValueError(f"block must be 'auto' or a number of samples >= 1; received "
                             f"{block!r}.")
        return int(block)
    shortest = int(obs.sum(axis=1).min())
    return max(2, math.ceil(shortest / 10))


def _resample_mask(obs: np.ndarray, scheme: str, block: int, rng) -> np.ndarray:
    """Samples a member keeps, (B, T). "windows": a random half of the blocks of each
    trajectory (a trajectory whose first block is dropped is imputed backwards from its
    first kept sample). "trajectories": a random half of the trajectories whole, the
    others only their first block (for their initial states)."""
    keep = obs.copy()
    B = obs.shape[0]
    if scheme == "windows":
        for b in range(B):
            blocks = _blocks(np.flatnonzero(obs[b]), block)
            if len(blocks) < 4:
                raise DataError(f"resample='windows' needs at least 4 blocks of {block} "
                                f"observed samples per trajectory; trajectory {b} has "
                                f"{int(obs[b].sum())} samples. Use a smaller block=... .")
            for j in rng.permutation(len(blocks))[:len(blocks) // 2]:
                keep[b, blocks[j]] = False
    elif scheme == "trajectories":
        if B < 2:
            raise DataError("resample='trajectories' needs at least 2 trajectories; the data "
                            "have 1. Use resample='windows' (blocks of time) instead.")
        for b in rng.permutation(B)[:B // 2]:
            idx = np.flatnonzero(obs[b])
            keep[b, idx[block:]] = False
    return keep


def _masked(data: xr.Dataset, names: list[str], keep: np.ndarray) -> xr.Dataset:
    """``data`` with the channels ``names`` set to NaN where ``keep`` is False."""
    has_traj = "trajectory" in data.dims
    keep_da = xr.DataArray(keep if has_traj else keep[0],
                           dims=("trajectory", "time") if has_traj else ("time",))
    out = data.copy()
    for name in names:
        masked = data[name].where(keep_da).transpose(*data[name].dims, ...)
        masked.attrs = dict(data[name].attrs)
        out[name] = masked
    return out


class Ensemble:
    """An ensemble of fits of one model to (resampled) data, for intervals.

    Returned by :func:`sysid.fit_ensemble`. Its intervals combine the spread of the
    members (scaled for the half-sampling of ``resample="windows"`` or
    ``"trajectories"``) with, on request, the fitted measurement noise.

    Attributes
    ----------
    members : list[FitResult]
        The member fits that succeeded.
    reference : FitResult or None
        The fit to the full data (resampling schemes): the centre of the intervals.
    failed : dict
        {member: error message} of members that raised (left out of the intervals).
    scale : float
        Factor applied to the members' deviations: 1 for ``"seeds"``, ``sqrt(f/(1-f))``
        for half-sampling with kept fraction ``f`` of the observed values (the spread of
        estimates from a fraction ``f`` of the data is ``(1-f)/f`` times the variance of
        the full-data estimate).
    resample : str
    collection : FitCollection
        Every fit (labels 0..n-1, and "reference").

    Examples
    --------
    >>> import numpy as np, sympy as sp, sysid, xarray as xr
    >>> t = np.linspace(0.0, 5.0, 26)
    >>> rng = np.random.default_rng(0)
    >>> def decay(rate):          # one site: x(t) = 2 exp(-rate t), 1 % noise
    ...     x = 2.0 * np.exp(-rate * t) + 0.01 * rng.standard_normal(t.size)
    ...     return xr.Dataset({"x": ("time", x)}, coords={"time": t})
    >>> x = sp.Symbol("x")
    >>> k = sp.Symbol("k", positive=True)
    >>> model = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 1.0})
    >>> ens = sysid.fit_ensemble(model, decay(0.5), n=8, scheduler="serial", progress=False,
    ...                          epochs=0, lbfgs_iterations=15, shooting="single")
    >>> ens
    Ensemble(8 members, resample='windows'; 90 % intervals: k=0.502 [0.4927, 0.5113])
    >>> len(ens.members), ens.reference.parameters              # truth: k = 0.5
    (8, {'k': 0.502})
    >>> ens.parameters["k"].dims
    ('member',)
    """

    def __init__(self, model, collection: FitCollection, resample: str, kept: list[float]):
        self.model = model
        self.collection = collection
        self.resample = resample
        labels = [k for k in collection.labels if k != "reference"]
        self._labels = [k for k in labels if collection._outcomes[k]["ok"]]
        self.failed = {k: v for k, v in collection.failed.items()}
        if len(self._labels) < 2:
            raise FitError(f"Fewer than 2 ensemble members were fitted; failures: {self.failed}")
        if resample == "seeds":
            self.scale = 1.0
        else:
            f = float(np.mean([kept[k] for k in self._labels]))
            self.scale = math.sqrt(f / (1.0 - f)) if f < 1 else 1.0
        self.kept_fraction = float(np.mean([kept[k] for k in self._labels]))

    @property
    def members(self) -> list:
        return [self.collection[k] for k in self._labels]

    @property
    def reference(self):
        if "reference" in self.collection and self.collection._outcomes["reference"]["ok"]:
            return self.collection["reference"]
        return None

    @property
    def parameters(self) -> xr.Dataset:
        """Every fitted member's parameters over the dimension ``member``."""
        values = {n: ("member", np.array([self.collection._outcomes[k]["summary"]
                                          ["parameters"][n] for k in self._labels]))
                  for n in self.model.parameter_names}
        return xr.Dataset(values, coords={"member": np.asarray(self._labels)})

    def __len__(self) -> int:
        return len(self._labels)

    def parameter_table(self, level: float = 0.9):
        """Per parameter: ``value`` (the full-data fit, or the members' median for
        ``"seeds"``), the members' ``mean``, ``std`` (their spread, scaled: see
        :attr:`scale`), the ``level`` interval ``lower``/``upper`` = ``value`` -/+ t * std
        (t: Student-t quantile with members - 1 degrees of freedom, which allows for a
        spread estimated from few members), and ``q_lower``/``q_upper``: the (scaled)
        quantiles of the members' deviations from their median, around ``value`` (no
        normal assumption; needs 20+ members to mean much). ``DataFrame.attrs["level"]``."""
        import pandas as pd
        q_lo, q_hi = _quantiles(level)
        names = self.model.parameter_names
        values = np.array([[self.collection._outcomes[k]["summary"]["parameters"][n]
                            for n in names] for k in self._labels],
                          dtype=float).reshape(len(self._labels), len(names))
        ref = self._reference_summary()
        centre = np.array([ref["parameters"][n] for n in names]) if ref is not None \
            else np.median(values, axis=0)
        dev = values - np.median(values, axis=0)
        std = self.scale * values.std(axis=0, ddof=1)
        half = self._multiplier(level) * std
        table = pd.DataFrame({
            "value": centre, "mean": values.mean(axis=0), "std": std,
            "lower": centre - half, "upper": centre + half,
            "q_lower": centre + self.scale * np.quantile(dev, q_lo, axis=0),
            "q_upper": centre + self.scale * np.quantile(dev, q_hi, axis=0),
        }, index=pd.Index(names, name="parameter"))
        table.attrs.update(level=level, members=len(self), resample=self.resample)
        return table

    def _reference_summary(self):
        if self.resample == "seeds" or "reference" not in self.collection:
            return None
        o = self.collection._outcomes["reference"]
        return o["summary"] if o["ok"] else None

    # -- intervals on trajectories -------------------------------------------------------
    def impute(self, times=None, *, level: float = 0.9, interval: str = "confidence") -> xr.Dataset:
        """:meth:`FitResult.impute` with intervals: each state and channel ``name`` at
        ``times`` (the centre: the full-data fit, or the members' median for "seeds")
        plus ``name_lower`` and ``name_upper``.

        ``interval="confidence"``: the model's uncertainty (the members' spread);
        ``interval="prediction"``: for measured channels also the measurement noise (where a
        new measurement would fall). ``attrs["sysid_level"]`` and ``attrs["sysid_interval"]`` record them.
        """
        return self._with_bands(lambda r: r.impute(times), level, interval)

    def forecast(self, times=None, *, horizon=None, n: int = 200, inputs=None,
                 level: float = 0.9, interval: str = "confidence") -> xr.Dataset:
        """:meth:`FitResult.forecast` with intervals (see :meth:`impute`)."""
        return self._with_bands(lambda r: r.forecast(times, horizon=horizon, n=n, inputs=inputs),
                                level, interval)

    def _multiplier(self, level: float) -> float:
        """Student-t quantile for a ``level`` interval from a spread of len(self) members."""
        from scipy.stats import t as student
        _quantiles(level)
        return float(student.ppf(0.5 + level / 2, df=len(self) - 1))

    def _with_bands(self, run, level, interval) -> xr.Dataset:
        if interval not in ("confidence", "prediction"):
            raise ValueError(f"interval must be 'confidence' or 'prediction'; received {interval!r}.")
        if not 0 < level < 1:
            raise ValueError(f"level must be between 0 and 1 (e.g. 0.9); received {level!r}.")
        members = [run(r) for r in self.members]
        ref = self.reference if self.resample != "seeds" else None
        centre_ds = run(ref) if ref is not None else members[0].copy()
        z = self._multiplier(level)
        noise_kind = (ref or self.members[0]).options.noise
        channels = set((ref or self.members[0])._bundle.channels)
        sigma = self._noise_levels()
        out = centre_ds.copy()
        skip = set(self.model.input_names)
        for name in list(centre_ds.data_vars):
            if name in skip:
                continue
            stack = np.stack([m[name].values for m in members])
            centre = centre_ds[name].values if ref is not None else np.median(stack, axis=0)
            log = interval == "prediction" and name in channels and noise_kind == "lognormal"
            if log:
                spread = self.scale * np.log(np.clip(stack, 1e-300, None)).std(axis=0, ddof=1)
            else:
                spread = self.scale * stack.std(axis=0, ddof=1)
            if interval == "prediction" and name in channels:
                spread = np.sqrt(spread ** 2 + sigma.get(name, 0.0) ** 2)
            if log:
                lc = np.log(np.clip(centre, 1e-300, None))
                lower, upper = np.exp(lc - z * spread), np.exp(lc + z * spread)
            else:
                lower, upper = centre - z * spread, centre + z * spread
            attrs = dict(centre_ds[name].attrs)
            label = attrs.get("long_name", name)
            out[name] = (centre_ds[name].dims, centre, attrs)
            pct = f"{100 * level:g} %"
            out[f"{name}_lower"] = (centre_ds[name].dims, lower,
                                    dict(attrs, long_name=f"{label}, lower {pct} {interval} bound"))
            out[f"{name}_upper"] = (centre_ds[name].dims, upper,
                                    dict(attrs, long_name=f"{label}, upper {pct} {interval} bound"))
        out.attrs.update(sysid_level=level, sysid_interval=interval, interval_method=(
            f"ensemble of {len(self)} fits (resample={self.resample!r}, spread x "
            f"{self.scale:.3g}), centre -/+ Student-t quantile x spread"))
        return out

    def _noise_levels(self) -> dict:
        """Measurement noise per channel: the full-data fit's, or the members' RMS level."""
        ref = self.reference if self.resample != "seeds" else None
        if ref is not None:
            return {k: float(v) for k, v in ref.noise_std.items() if np.isfinite(v)}
        levels = {}
        for k in self._labels:
            for c, v in self.collection._outcomes[k]["summary"]["noise_std"].items():
                if np.isfinite(v):
                    levels.setdefault(c, []).append(v ** 2)
        return {c: float(np.sqrt(np.mean(v))) for c, v in levels.items()}

    def __repr__(self) -> str:
        table = self.parameter_table()
        rows = ", ".join(f"{n}={r.value:.4g} [{r.lower:.4g}, {r.upper:.4g}]"
                         for n, r in table.iterrows())
        extra = f", {len(self.failed)} failed" if self.failed else ""
        return (f"Ensemble({len(self)} members, resample={self.resample!r}{extra}; 90 % "
                f"intervals: {rows or 'no physical parameters'})")


def _quantiles(level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.9); received {level!r}.")
    return 0.5 - level / 2, 0.5 + level / 2


def fit_ensemble(model, data: xr.Dataset, *, n: int = 8, resample: str = "windows",
                 seed: int = 0, block="auto", client=None, scheduler: str = "dask",
                 progress=None, workers: int | None = None, **fit_options) -> Ensemble:
    """Fit an ensemble of ``n`` models for intervals on parameters, imputations, forecasts.

    Parameters
    ----------
    model : HybridODE
    data : xarray.Dataset
    n : int, default 8
        Members (at least 2; 20 or more for steady 90 % intervals).
    resample : {"windows", "trajectories", "seeds"}
        How members differ. Every member ``i`` is fitted with seed ``seed + i`` (the
        network's initialisation), and:

        - ``"seeds"``: on the full data; the spread is that of the training alone (zero
          for a model without network).
        - ``"windows"``: a block half-sample of each trajectory: its observed samples are
          cut into blocks of ``block`` samples and half of the blocks, drawn at random,
          are set to NaN (a member whose first block is dropped starts its trajectory at
          its first kept sample and imputes the earlier times backwards).
        - ``"trajectories"``: half of the trajectories are kept whole; the others keep
          only their first block (for their initial states, so that every member can
          impute every trajectory).

        The resampling schemes add a fit to the full data (``seed``), the centre of the
        intervals; the members' deviations are scaled by ``sqrt(f / (1 - f))`` (``f``:
        kept fraction of the values), the half-sampling estimate of the full-data
        estimate's spread.
    seed : int
        Seeds the resampling and the member fits; the same seed gives the same ensemble.
    block : "auto" or int
        Samples per block ("auto": a tenth of the shortest trajectory, at least 2).
    client, scheduler, progress, workers
        As in :func:`fit_many`.
    **fit_options
        Options of :func:`sysid.fit` for every member.

    Returns
    -------
    Ensemble
        ``.parameter_table(level)``, ``.impute(times, level=, interval=)``,
        ``.forecast(..., level=, interval=)`` (the same Dataset as the FitResult's plus
        ``<name>_lower``/``<name>_upper``), ``.members``, ``.failed``.

    Examples
    --------
    Eight block half-samples of a decay record (serially and with a small budget, to stay
    quick; 20 or more members give steadier intervals):

    >>> import numpy as np, sympy as sp, sysid, xarray as xr
    >>> t = np.linspace(0.0, 5.0, 26)
    >>> rng = np.random.default_rng(0)
    >>> def decay(rate):          # one site: x(t) = 2 exp(-rate t), 1 % noise
    ...     x = 2.0 * np.exp(-rate * t) + 0.01 * rng.standard_normal(t.size)
    ...     return xr.Dataset({"x": ("time", x)}, coords={"time": t})
    >>> x = sp.Symbol("x")
    >>> k = sp.Symbol("k", positive=True)
    >>> model = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 1.0})
    >>> ens = sysid.fit_ensemble(model, decay(0.5), n=8, scheduler="serial", progress=False,
    ...                          epochs=0, lbfgs_iterations=15, shooting="single")
    >>> ens.parameter_table(level=0.9)[["value", "std", "lower", "upper"]].round(3)
               value    std  lower  upper
    parameter
    k          0.502  0.005  0.493  0.511
    >>> bands = ens.impute(level=0.9, interval="prediction")
    >>> sorted(bands.data_vars)
    ['x', 'x_lower', 'x_upper']
    >>> bool((bands["x_lower"] < bands["x"]).all() and (bands["x"] < bands["x_upper"]).all())
    True
    """
    if not isinstance(data, xr.Dataset):
        raise DataError(f"fit_ensemble fits one xarray.Dataset; received {type(data).__name__}.")
    if resample not in _SCHEMES:
        raise ValueError(f"resample must be one of {_SCHEMES}; received {resample!r}."
                         f"{suggest(str(resample), _SCHEMES)}")
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (ensemble members); received {n!r}.")
    spec = _model_spec(model)
    if "seed" in fit_options:
        raise TypeError("fit_ensemble takes seed= for the whole ensemble (member i is fitted "
                        "with seed + i); pass it once.")
    options = _check_options(fit_options)
    tasks, kept = [], {}
    if resample == "seeds":
        for i in range(n):
            tasks.append((i, spec, data, dict(options, seed=int(seed) + i)))
            kept[i] = 1.0
    else:
        obs, names = _observed(model, data)
        size = _auto_block(obs, block)
        counts = _channel_counts(data, names)
        tasks.append(("reference", spec, data, dict(options, seed=int(seed))))
        for i in range(n):
            rng = np.random.default_rng([int(seed), i])
            keep = _resample_mask(obs, resample, size, rng)
            member = _masked(data, names, keep)
            kept[i] = _channel_counts(member, names) / counts
            tasks.append((i, spec, member, dict(options, seed=int(seed) + i)))
    outcomes = _execute(tasks, client=client, scheduler=scheduler, progress=progress,
                        workers=workers, desc="sysid.fit_ensemble")
    collection = FitCollection(model, "member", outcomes, inputs=_inputs(tasks))
    return Ensemble(model, collection, resample, kept)


def _channel_counts(data, names) -> int:
    return int(sum(int(data[name].notnull().sum()) for name in names))
