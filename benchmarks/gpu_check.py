"""A fit on a CUDA GPU beside the same fit on the CPU: the device check of issue 23.

    python benchmarks/gpu_check.py          # prints a markdown table

It runs where torch sees a CUDA GPU (else it says so and exits 0). Rows: the UDE
Lotka-Volterra fit (one trajectory: dispatch-bound, the CPU's C solver wins) and a fit of
200 trajectories with a 2 x 64 network (batch-bound, where a GPU can pay off), each on the
CPU (C solver, then PyTorch solver) and on the GPU, with the wall time, the largest
relative difference of the fitted parameters against the CPU's PyTorch fit and the status.
"""

from __future__ import annotations

import time

import numpy as np
import sympy as sp
import torch

import sysid


def _lv(width):
    x, y = sp.symbols("x y")
    a, d = sp.symbols("a d", positive=True)
    return sysid.HybridODE(states=[x, y], physics={x: a * x, y: -d * y},
                           parameters={a: 1.2, d: 1.7}, residual=sysid.MLP(width=width))


def _case(name, model, data, budget):
    rows, reference = [], None
    for label, options in (("cpu, PyTorch solver", dict(compiled=False)),
                           ("cpu, C solver", dict(compiled=True)),
                           ("cuda", dict(device="cuda"))):
        start = time.perf_counter()
        result = sysid.fit(model, data, seed=0, progress=False, throw=False, **options,
                           **budget)
        wall = time.perf_counter() - start
        reference = reference or result.parameters
        diff = max(abs(result.parameters[k] - v) / abs(v) for k, v in reference.items())
        rows.append(f"| {name} | {label} | {wall:.2f} | {diff:.1e} | {result.status.code} |")
    return rows


def main():
    if not torch.cuda.is_available():
        print(f"no CUDA GPU visible to torch {torch.__version__}: nothing to check")
        return
    print(f"# sysid on {torch.cuda.get_device_name(0)} (torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}) against the CPU ({torch.get_num_threads()} threads)\n")
    print("| problem | where | wall s | max rel. parameter difference | status |")
    print("|---|---|---|---|---|")
    budget = dict(epochs=60, lbfgs_iterations=60, polish_iterations=5)
    one = sysid.datasets.simulate("lotka_volterra", noise=0.05, seed=0)
    many = sysid.datasets.simulate("lotka_volterra", noise=0.05, seed=0, n_trajectories=200)
    for line in _case("UDE LV, 1 trajectory, MLP(32)", _lv(32), one, budget) + \
            _case("LV, 200 trajectories, MLP(64)", _lv(64), many, budget):
        print(line, flush=True)
    print(f"\nmax GPU memory {torch.cuda.max_memory_allocated() / 2 ** 20:.0f} MiB; "
          f"numpy {np.__version__}")


if __name__ == "__main__":
    main()
