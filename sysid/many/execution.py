"""How the members of ``fit_many``, ``sweep`` and ``fit_ensemble`` run: serially or on Dask.

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

import os
import sys
import traceback
import uuid
from contextlib import contextmanager

import numpy as np
import xarray as xr

from ..data.bundle import prepare
from ..errors import ModelError
from ..model.hybrid import HybridODE
from ..model.spec import model_from_spec, model_to_spec
from ..problem.options import FitOptions, FitStatus
from ..problem.problem import build_problem
from ..results.result import FitResult
from ..runtime.progress import progress_bar
from ..results.fitting import fit

#: Fit options a collection refuses: per-member files would overwrite each other.
_REFUSED = ("checkpoint", "resume")


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
            # a failed fit is a failed member (reported in .failed), unless throw=False
            result = fit(model, data, **{"throw": True, **options})
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
