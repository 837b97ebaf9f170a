"""Issue 8, part 5 (load): long fits and many fits, with peak memory and lost results.

    nice python benchmarks/load.py             # the record (about 17 minutes on 2 cores)
    nice python benchmarks/load.py --quick     # smaller sizes (about 3 minutes)

Every case runs in its own Python process (``--case NAME``, started by this script) so
that its peak resident memory (``getrusage(RUSAGE_SELF).ru_maxrss``) is its own; torch,
OpenMP and BLAS run on one thread, and each process has an address-space limit
(``--memory-limit``, default 12 GiB) so that a case that asks for more fails with a
``MemoryError`` instead of pushing a shared machine into swap or the OOM killer.

Cases
-----
- ``fit_single``, ``fit_default``, ``fit_hybrid``: one fit over 100 trajectories x 100
  observation times each (10,000 in all; each trajectory on its own irregular times, so
  the dataset's union grid is 100 x 11,001 and 91 % NaN, plus 10 % of each trajectory's
  own samples dropped), damped pendulum with both states measured at 5 % noise.
  Physics only (Levenberg-Marquardt): single shooting, and the default options
  (multiple shooting windows); hybrid: a small MLP residual on omega, a few epochs.
- ``fit_long``: 100 trajectories x ``--long-points`` each (shared irregular times, 10 %
  dropped per trajectory), lightly damped pendulum (alpha = 0.02, so the record stays
  informative), physics only, single shooting with Levenberg-Marquardt.
- ``fit_long_default``: the same kind of record, 100 x 1,000, with the default options
  (multiple shooting windows; their Levenberg-Marquardt Jacobian would take 93 GiB,
  so the fit runs L-BFGS: ``sysid.training.levenberg_marquardt.MAX_JACOBIAN_BYTES``).
- ``many_serial``, ``many_dask``: ``fit_many`` over ``--members`` small datasets
  (logistic growth, 30 samples, 2 % noise, as benchmarks/scale.py), serially and on a
  2-worker Dask LocalCluster; every 50th dataset is broken on purpose (a misnamed
  variable, an all-NaN channel, unsorted times, a single sample, a NaN time), so the
  collection must return every member, those as recorded failures. The resident memory
  after member n/5 and after member n gives the growth per member (serial: this
  process; Dask: the driver and each worker, read with ``client.run``).

"lost" counts inputs that came back neither as a result nor as a recorded failure, and
failures that were not injected; it must be 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from load_report import report  # sibling scripts: run from benchmarks/
from machine import one_thread, peak_mb, rss_mb

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OMEGA0 = 2.0 * math.pi / 6.0          # the pendulum's true natural frequency
SINGLE = dict(shooting="single", epochs=0)
HYBRID = dict(epochs=5, lbfgs_iterations=5, polish_iterations=2)
MANY = dict(epochs=0, lbfgs_iterations=30, shooting="single")
FAULTS = ("misnamed variable", "all-NaN channel", "unsorted times", "single sample",
          "NaN time")


# -- data and models ----------------------------------------------------------------------
def pendulum_model(residual: bool = False):
    import sympy as sp

    import sysid
    theta, omega = sp.symbols("theta omega")
    omega0, alpha = sp.symbols("omega0 alpha", positive=True)
    return sysid.HybridODE(
        states=[theta, omega],
        physics={theta: omega, omega: -omega0 ** 2 * sp.sin(theta) - alpha * omega},
        parameters={omega0: 1.5, alpha: 0.5},
        residual=sysid.MLP(8, 1, states=[omega]) if residual else None)


def own_times_data(n_traj: int, points: int):
    """``n_traj`` trajectories on their own irregular times, ``points`` observed each."""
    import sysid
    n_sim = round(points / 0.9)         # 10 % of each trajectory's samples are dropped
    return sysid.datasets.simulate("pendulum", n_trajectories=n_traj, dt=0.2,
                                   t_end=0.2 * (n_sim - 1), irregular=True, missing=0.1,
                                   noise=0.05, seed=1)


def shared_times_data(n_traj: int, points: int, alpha: float = 0.02):
    """``n_traj`` trajectories on one irregular time grid (mean step 0.2 s), 10 % of each
    trajectory's samples dropped: ``points`` observed each."""
    import numpy as np

    import sysid
    n_sim = round(points / 0.9)
    rng = np.random.default_rng(5)
    times = np.concatenate([[0.0], np.sort(rng.uniform(0.0, 0.2 * n_sim, n_sim - 1))])
    return sysid.datasets.simulate("pendulum", n_trajectories=n_traj, times=times,
                                   missing=0.1, noise=0.05, seed=1, params={"alpha": alpha})


def logistic_model():
    import sympy as sp

    import sysid
    x = sp.Symbol("x", positive=True)
    r, K = sp.symbols("r K", positive=True)
    return sysid.HybridODE(states=[x], physics={x: r * x * (1 - x / K)},
                           parameters={r: 1.0, K: 5.0})


def broken(ds, kind: str):
    """``ds`` damaged in one of the ways of FAULTS (each refused by sysid.fit)."""
    import numpy as np
    if kind == "misnamed variable":
        return ds.rename(x="z")
    if kind == "all-NaN channel":
        return ds.copy(data={"x": np.full(ds.sizes["time"], np.nan)})
    if kind == "unsorted times":
        return ds.isel(time=np.r_[1, 0, 2:ds.sizes["time"]])
    if kind == "single sample":
        return ds.isel(time=[0])
    if kind == "NaN time":
        t = ds["time"].values.copy()
        t[5] = np.nan
        return ds.assign_coords(time=t)
    raise ValueError(kind)


def sites(n: int):
    """{label: Dataset}, truth {label: (r, K)} and {label: fault} of the broken ones:
    logistic growth from x0 = 0.5, r in [0.6, 1.4], K in [3, 8], 30 samples, 2 % noise;
    every 50th member (from the 25th) broken in one of the ways of FAULTS."""
    import numpy as np
    import xarray as xr
    rng = np.random.default_rng(2024)
    t = np.linspace(0.0, 10.0, 30)
    data, truth, faults = {}, {}, {}
    for i in range(n):
        r, K = rng.uniform(0.6, 1.4), rng.uniform(3.0, 8.0)
        x = K / (1 + (K / 0.5 - 1) * np.exp(-r * t))
        y = x * (1 + 0.02 * rng.standard_normal(t.size))
        label = f"site{i:04d}"
        ds = xr.Dataset({"x": ("time", y, {"units": "g"})}, coords={"time": t})
        if i % 50 == 24:
            faults[label] = FAULTS[(i // 50) % len(FAULTS)]
            ds = broken(ds, faults[label])
        data[label], truth[label] = ds, (r, K)
    return data, truth, faults


# -- cases (each in its own process) ------------------------------------------------------
def relative_errors(found: dict, truth: dict) -> dict:
    return {k: abs(found[k] / v - 1.0) for k, v in truth.items()}


def fit_case(name: str, args) -> dict:
    import sysid
    start = time.perf_counter()
    if name in ("fit_single", "fit_default", "fit_hybrid"):
        data, truth = own_times_data(100, 100), {"omega0": OMEGA0, "alpha": 0.2}
        layout = "own irregular times"
    elif name == "fit_long":
        data = shared_times_data(100, args.long_points)
        truth, layout = {"omega0": OMEGA0, "alpha": 0.02}, "shared irregular times"
    else:                                 # fit_long_default
        data = shared_times_data(100, 1000)
        truth, layout = {"omega0": OMEGA0, "alpha": 0.02}, "shared irregular times"
    options = {"fit_single": SINGLE, "fit_default": {}, "fit_hybrid": HYBRID,
               "fit_long": dict(SINGLE, max_steps=10 ** 7), "fit_long_default": {}}[name]
    model = pendulum_model(residual=name == "fit_hybrid")
    observed = int(data["theta"].notnull().sum())
    out = {"case": name, "data_s": time.perf_counter() - start, "layout": layout,
           "size": f"{data.sizes['trajectory']} x {observed // data.sizes['trajectory']}",
           "observed": observed, "grid": f"{data.sizes['trajectory']} x {data.sizes['time']}",
           "options": options, "rss_before": rss_mb(), "inputs": 1}
    start = time.perf_counter()
    try:
        result = sysid.fit(model, data, progress=False, throw=False, **options)
    except Exception as err:              # recorded, not hidden: the table shows it
        out.update(wall_s=time.perf_counter() - start, peak=peak_mb(), ok=False,
                   error=f"{type(err).__name__}: {str(err)[:200]}")
        return out
    windows = int(result.stats.get("shooting_windows", 0))
    out.update(wall_s=time.perf_counter() - start, peak=peak_mb(), ok=True,
               status=result.status.code, detail=result.status.detail,
               parameters=result.parameters,
               errors=relative_errors(result.parameters, truth), windows=windows,
               iterations=result.stats.get("lbfgs_iterations", 0))
    if model.residual is None:            # Levenberg-Marquardt's dense Jacobian (sysid/problem/jacobian.py)
        n, B, P = len(model.states), data.sizes["trajectory"], len(model.parameters)
        rows = result.stats["n_observations"] + (n * (windows - B) if windows else 0)
        cols = P + n * (windows or B)
        out["jacobian"] = [rows, cols]
        # Levenberg-Marquardt phases whose Jacobian exceeds this run L-BFGS (sysid/training/levenberg_marquardt.py)
        from sysid.training import levenberg_marquardt as _lm
        out["limit"] = getattr(_lm, "MAX_JACOBIAN_BYTES", None)
    return out


def many_case(name: str, args) -> dict:
    import numpy as np

    import sysid
    import sysid.many.execution as scale
    n = args.members
    data, truth, faults = sites(n)
    model = logistic_model()
    marks = sorted({max(1, n // 5), n})   # members 100 and 500 of 500
    trace: dict = {"driver": {}, "workers": {}}
    client = cluster = None
    if name == "many_dask":
        import logging

        import dask
        from distributed import Client, LocalCluster
        with dask.config.set({"distributed.worker.profile.enabled": False}):   # as fit_many's
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)

    if client is None:                    # serial: memory after each member, here
        run_member = scale._run_member
        count = {"n": 0}

        def counted(*a, **k):
            outcome = run_member(*a, **k)
            count["n"] += 1
            if count["n"] in marks:
                trace["driver"][count["n"]] = rss_mb()
            return outcome
        scale._run_member = counted
    else:                                 # Dask: the driver's and each worker's memory
        tick = scale._tick

        def counted(bar, outcomes):
            tick(bar, outcomes)
            if len(outcomes) in marks:
                trace["driver"][len(outcomes)] = rss_mb()
                trace["workers"][len(outcomes)] = sorted(client.run(rss_mb).values())
        scale._tick = counted
    before = rss_mb()
    start = time.perf_counter()
    if client is None:
        fits = sysid.fit_many(model, data, scheduler="serial", progress=False, **MANY)
    else:
        fits = sysid.fit_many(model, data, client=client, progress=False, **MANY)
    wall = time.perf_counter() - start
    worker_peaks = sorted(client.run(peak_mb).values()) if client is not None else []
    # every input must come back, in order, as a result or as a recorded failure
    labels = list(data)
    returned = [k for k in fits.labels if k in data]
    failed = fits.failed
    missing = [k for k in labels if k not in fits]
    unexpected = [k for k in failed if k not in faults]      # a sound dataset that failed
    not_refused = [k for k in faults if k not in failed]     # a broken one that "fitted"
    usable = 0
    for k in fits.succeeded:              # rebuilds each Dask member from its payload
        usable += all(np.isfinite(v) for v in fits[k].parameters.values())
    params = fits.parameters
    err_r = [abs(float(params["r"].sel(site=k)) / truth[k][0] - 1) for k in fits.succeeded]
    err_K = [abs(float(params["K"].sel(site=k)) / truth[k][1] - 1) for k in fits.succeeded]
    out = {"case": name, "size": f"{n} datasets x 30 samples", "inputs": n, "options": MANY,
           "faults": len(faults), "wall_s": wall, "rss_before": before, "peak": peak_mb(),
           "worker_peaks": worker_peaks, "trace": trace, "marks": marks,
           "returned": len(fits), "in_order": returned == labels and len(fits) == n,
           "succeeded": len(fits.succeeded), "failed": len(failed),
           "failed_as_injected": sorted(failed) == sorted(faults),
           "lost": len(missing) + len(unexpected) + len(not_refused),
           "usable": usable, "errors": {"r": [float(np.median(err_r)), float(np.max(err_r))],
                                        "K": [float(np.median(err_K)), float(np.max(err_K))]},
           "statuses": {str(k): int(v) for k, v in fits.status.value_counts().items()},
           "failure_kinds": sorted({e.split(":")[0] for e in failed.values()})}
    if client is not None:
        client.close()
        cluster.close()
    return out


CASES = {"fit_single": fit_case, "fit_default": fit_case, "fit_hybrid": fit_case,
         "fit_long": fit_case, "fit_long_default": fit_case,
         "many_serial": many_case, "many_dask": many_case}


def run_case(name: str, args) -> dict:
    """Run one case in a fresh process (with this script's options) and read its JSON."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", name,
           "--long-points", str(args.long_points), "--members", str(args.members),
           "--memory-limit", str(args.memory_limit)]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    print(f"[load] {name} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"case": name, "crashed": True, "returncode": proc.returncode,
                "error": " / ".join(tail)[-300:], "wall_s": time.perf_counter() - start,
                "inputs": 1}
    out = json.loads(lines[-1])
    print(f"[load] {name}: {out['wall_s']:.1f} s, peak {out['peak']:.0f} MB",
          file=sys.stderr, flush=True)
    return out


# -- entry point --------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes: no default-options fits, 100 x 500 long fit, "
                             "100 members")
    parser.add_argument("--long-points", type=int, default=None,
                        help="points per trajectory of fit_long (default 3000; quick 500)")
    parser.add_argument("--members", type=int, default=None,
                        help="fit_many members (default 500; quick 100)")
    parser.add_argument("--memory-limit", type=float, default=12.0,
                        help="address-space limit of each case's process, GiB")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask case")
    parser.add_argument("--out", default=None, help="where to write the markdown record")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.long_points = args.long_points or (500 if args.quick else 3000)
    args.members = args.members or (100 if args.quick else 500)

    if args.case:                         # a child process: one case, one JSON line
        limit = int(args.memory_limit * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        one_thread()
        print(json.dumps(CASES[args.case](args.case, args), default=float))
        return 0

    command = " ".join(["nice python" if os.nice(0) > 0 else "python", "benchmarks/load.py",
                        *(sys.argv[1:] if argv is None else argv)])
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    load_before = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    names = ["fit_single", "fit_hybrid", "fit_long"]
    if not args.quick:
        names[1:1] = ["fit_default"]
        names.append("fit_long_default")
    names.append("many_serial")
    if not args.no_dask:
        try:
            import distributed  # noqa: F401
            names.append("many_dask")
        except ImportError:
            print("[load] dask.distributed is not installed: no Dask case", file=sys.stderr)
    outs = [run_case(name, args) for name in names]
    text = report(outs, args, command, started, load_before)
    print(text)
    out = Path(args.out) if args.out else HERE / "results" / (
        "load-quick.md" if args.quick else "load.md")
    out.write_text(text)
    print(f"[load] written to {out}", file=sys.stderr)
    lost = sum(o.get("lost", 0) for o in outs)
    crashed = any(o.get("crashed") for o in outs)
    return 1 if lost or crashed else 0


if __name__ == "__main__":
    sys.exit(main())
