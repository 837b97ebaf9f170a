"""Issue 2's acceptance numbers, printed as a markdown table.

    python benchmarks/acceptance.py

Each row fits synthetic data with known truth (``sysid.datasets.simulate``) using the
default options and reports the number that matters against its target, with wall time.
"""

from __future__ import annotations

import time

import numpy as np
import sympy as sp

import sysid


def lotka_volterra():
    x, y = sp.symbols("x y")
    a, b, c, d = sp.symbols("a b c d", positive=True)
    model = sysid.HybridODE(states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
                            parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
    data = sysid.datasets.simulate("lotka_volterra", noise=0.05, t_end=10.0, dt=0.1, seed=0)
    start = time.perf_counter()
    result = sysid.fit(model, data, seed=0, progress=False)
    wall = time.perf_counter() - start
    truth = sysid.datasets.system("lotka_volterra").parameters
    worst = max(abs(result.parameters[k] / truth[k] - 1) for k in truth)
    return [("Lotka-Volterra, physics only, 5 % noise, t in [0, 10]",
             "worst parameter error", f"{100 * worst:.2f} %", "< 5 %", wall)]


def pendulum():
    data, truth = sysid.datasets.simulate(
        "pendulum", noise=0.05, observed=["theta"], irregular=True, missing=0.3,
        n_trajectories=3, dt=0.25, t_end=20.0, seed=0, truth=True)
    th, om = sp.symbols("theta omega")
    w0 = sp.Symbol("omega0", positive=True)
    model = sysid.HybridODE(states=[th, om], physics={th: om, om: -w0 ** 2 * sp.sin(th)},
                            parameters={w0: 1.5}, residual=sysid.MLP(32, 2, states=[om]))
    start = time.perf_counter()
    result = sysid.fit(model, data, seed=0, progress=False)
    wall = time.perf_counter() - start
    imp = result.impute()
    ok = np.isfinite(truth["omega"].values)
    err = (imp["omega"].values - truth["omega"].values)[ok]
    imp_rel = np.sqrt(np.mean(err ** 2)) / np.std(truth["omega"].values[ok])
    future = np.linspace(20.0, 25.0, 21)[1:]
    x0 = np.stack([truth[v].isel(time=0).values for v in ("theta", "omega")], axis=-1)
    _, later = sysid.datasets.simulate("pendulum", times=np.concatenate([[0.0], future]),
                                       n_trajectories=3, x0=x0, noise=0.0, truth=True)
    fc = result.forecast(future)["theta"].values - later["theta"].sel(time=future).values
    fc_rel = np.sqrt(np.mean(fc ** 2)) / np.nanstd(truth["theta"].values)
    w_err = abs(result.parameters["omega0"] / (2 * np.pi / 6) - 1)
    name = "Pendulum, angle only, 5 % noise, irregular, 30 % dropped, 3 trajectories"
    return [(name, "omega imputation RMSE / std", f"{imp_rel:.3f}", "< 0.10", wall),
            (name, "theta forecast RMSE / std (next 5 s)", f"{fc_rel:.3f}", "< 0.10", 0.0),
            (name, "omega0 error (friction left to the residual)", f"{100 * w_err:.1f} %",
             "(issue 3: < 2 %)", 0.0)]


def main():
    rows = lotka_volterra() + pendulum()
    print("| case | metric | sysid | target | fit time (s) |")
    print("|---|---|---|---|---|")
    for case, metric, value, target, wall in rows:
        print(f"| {case} | {metric} | {value} | {target} | {wall:.1f} |" if wall else
              f"| | {metric} | {value} | {target} | |")


if __name__ == "__main__":
    main()
