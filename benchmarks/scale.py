"""Issue 6's scale-out benchmark: many independent small fits, serial vs a Dask LocalCluster.

    python benchmarks/scale.py                   # 200 fits (the record)
    python benchmarks/scale.py --quick           # 40 fits
    python benchmarks/scale.py --n 100 --workers 2

Each member is logistic growth ``dx/dt = r x (1 - x / K)`` with its own ``r`` and ``K``
(a site), 30 noisy samples, fitted with the physics alone (single shooting, L-BFGS).

- serial: a plain loop of ``sysid.fit`` in this process (torch on one thread), what one
  would write without ``fit_many``;
- Dask, cold: ``sysid.fit_many(..., workers=W)``: starts a LocalCluster of W single-threaded
  worker processes, fits, closes it (the start-up, 10-20 s here, is in the time);
- Dask, warm: ``sysid.fit_many(..., client=client)`` on a cluster already running (the
  workers have imported sysid), as in a session that fits several collections.

"identical" compares every member's parameters and imputed states with the serial loop's,
bit for bit (``np.array_equal``). The machines are shared: the load average (from
``os.getloadavg``, as ``uptime`` shows it) is printed beside the times; read the ratio.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import numpy as np
import sympy as sp
import torch
import xarray as xr

import sysid

OPTIONS = dict(epochs=0, lbfgs_iterations=30, shooting="single", seed=0)


def model():
    x = sp.Symbol("x", positive=True)
    r, K = sp.symbols("r K", positive=True)
    return sysid.HybridODE(states=[x], physics={x: r * x * (1 - x / K)},
                           parameters={r: 1.0, K: 5.0})


def sites(n: int, samples: int = 30) -> dict:
    """{label: Dataset}: logistic growth from x0 = 0.5 with r in [0.6, 1.4], K in [3, 8]."""
    rng = np.random.default_rng(2024)
    t = np.linspace(0.0, 10.0, samples)
    out, truth = {}, {}
    for i in range(n):
        r, K = rng.uniform(0.6, 1.4), rng.uniform(3.0, 8.0)
        x = K / (1 + (K / 0.5 - 1) * np.exp(-r * t))
        y = x * (1 + 0.02 * rng.standard_normal(samples))
        out[f"site{i:03d}"] = xr.Dataset({"x": ("time", y, {"units": "g"})},
                                         coords={"time": t})
        truth[f"site{i:03d}"] = (r, K)
    return out, truth


def load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def timed(fn):
    """(result, wall seconds, CPU seconds of this process, load average before -> after)."""
    before = load()
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return (out, time.perf_counter() - start, time.process_time() - cpu,
            f"{before} -> {load()}")


def identical(serial: dict, fits) -> str:
    """"yes" if every member's parameters and imputed states equal the serial loop's, bit
    for bit; else "no" and the first difference."""
    if fits.failed:
        label, err = next(iter(fits.failed.items()))
        return f"no ({len(fits.failed)} failed, e.g. {label}: {err[:80]})"
    for label, ref in serial.items():
        got = fits[label]
        if list(got.parameters.values()) != list(ref.parameters.values()):
            return f"no ({label}: parameters {got.parameters} != {ref.parameters})"
        a, b = got.impute(), ref.impute()
        for v in a.data_vars:
            if not np.array_equal(a[v].values, b[v].values):
                return f"no ({label}: imputed {v} differs)"
    return "yes"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 fits instead of 200")
    parser.add_argument("--n", type=int, default=None, help="number of fits (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    args = parser.parse_args(argv)
    n = args.n or (40 if args.quick else 200)
    torch.set_num_threads(1)
    hybrid = model()
    data, truth = sites(n)
    print(f"# sysid scale-out benchmark: {n} independent fits, torch {torch.__version__}, "
          f"sysid {sysid.__version__}, {os.cpu_count()} cores\n", flush=True)

    serial, t_serial, c_serial, l_serial = timed(lambda: {k: sysid.fit(hybrid, ds, progress=False,
                                                             **OPTIONS)
                                                for k, ds in data.items()})
    print(f"serial loop: {t_serial:.1f} s", flush=True)
    cold, t_cold, _, l_cold = timed(lambda: sysid.fit_many(hybrid, data, workers=args.workers,
                                                        progress=False, **OPTIONS))
    print(f"Dask cold: {t_cold:.1f} s", flush=True)

    import dask
    from distributed import Client, LocalCluster
    with dask.config.set({"distributed.worker.profile.enabled": False}):   # as fit_many's
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
    with cluster, Client(cluster) as client:
        first = dict(list(data.items())[:args.workers])      # the workers import sysid
        sysid.fit_many(hybrid, first, client=client, progress=False, **OPTIONS)
        cpu_before = client.run(time.process_time)
        warm, t_warm, c_driver, l_warm = timed(lambda: sysid.fit_many(
            hybrid, data, client=client, progress=False, **OPTIONS))
        cpu_after = client.run(time.process_time)
    c_workers = [cpu_after[k] - cpu_before[k] for k in cpu_after]
    print(f"Dask warm: {t_warm:.1f} s", flush=True)

    same_cold, same_warm = identical(serial, cold), identical(serial, warm)
    err_r = [abs(serial[k].parameters["r"] / truth[k][0] - 1) for k in data]
    err_K = [abs(serial[k].parameters["K"] / truth[k][1] - 1) for k in data]
    w = args.workers
    print(f"\n| run | wall time (s) | per fit (s) | speed-up vs serial | identical results "
          f"| load average before -> after |")
    print("|---|---|---|---|---|---|")
    print(f"| serial loop of sysid.fit | {t_serial:.1f} | {t_serial / n:.3f} | 1.00x | "
          f"(reference) | {l_serial} |")
    print(f"| fit_many, new {w}-worker LocalCluster (start-up included) | {t_cold:.1f} | "
          f"{t_cold / n:.3f} | {t_serial / t_cold:.2f}x | {same_cold} "
          f"| {l_cold} |")
    print(f"| fit_many on a running {w}-worker LocalCluster | {t_warm:.1f} | {t_warm / n:.3f} "
          f"| {t_serial / t_warm:.2f}x | {same_warm} | {l_warm} |")
    print(f"\nCPU time: serial loop {c_serial:.1f} s; running cluster: workers "
          f"{' + '.join(f'{c:.1f}' for c in c_workers)} s, driver {c_driver:.1f} s. The "
          f"machine is shared, so the wall times depend on the other jobs' load; the "
          f"speed-up that {w} free cores would give is about serial CPU / busiest worker's "
          f"CPU = {c_serial / max(c_workers):.2f}x.")
    print(f"\nTarget: >= 1.7x with identical results. Recovered parameters (serial = Dask): "
          f"median error r {100 * np.median(err_r):.2f} %, K {100 * np.median(err_K):.2f} %; "
          f"statuses: {dict(cold.status.value_counts())}.")
    return 0 if same_cold == same_warm == "yes" else 1


if __name__ == "__main__":
    sys.exit(main())
