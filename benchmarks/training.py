"""Issue 3's training benchmark: sysid's default fit beside its peers, in one process.

    python benchmarks/training.py            # the record (about 30-60 min on 2 cores)
    python benchmarks/training.py --quick    # CI-sized (a few minutes)

Every timing runs on one thread (``torch.set_num_threads(1)``) so that the peers are
compared on equal terms; the machines are shared, so read the ratios, not the seconds.

Rows
----
1. Lotka-Volterra of BENCHMARKS.md section 1 (Rackauckas et al. 2020, arXiv 2001.04385):
   31 samples on [0, 3], 5 % noise, a and d known, the interaction terms a neural residual.
   Peers: the plain torchdiffeq recipe (Adam then L-BFGS, dopri5; ``baselines.py``) and the
   least-squares oracle (correct structure, b, c and the initial state fitted).
2. Damped pendulum (Yin et al., ICLR 2021, APHYNITY): angle only, 5 % noise, irregular times,
   25 trajectories of 20 s; the friction is left to the residual. Peer: physics-only least
   squares with the complete (true) structure, the best any method can do on this data.
3. Van der Pol with 60 oscillations, one state observed: sysid's default (multiple
   shooting) against single shooting from the same start.
4. Cost against the number of trajectories and adjoint memory: ``speed.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import sympy as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import baselines  # noqa: E402
from ude import lv_sysid  # noqa: E402

import sysid  # noqa: E402

torch.set_num_threads(1)


# -- 1. Lotka-Volterra (UDE) -----------------------------------------------------------------
def lotka_volterra(seeds, recipe_seeds, recipe_limit):
    rows = {"sysid": [], "recipe": [], "oracle": []}
    for seed in seeds:
        times, Y, X = baselines.lv_data(seed)
        level = 0.05 * X.mean(axis=0)                  # the noise level of each state
        ours = lv_sysid(times, Y, seed)
        per_state = np.sqrt(np.mean((ours["pred"] - X) ** 2, axis=0))
        ours.update(fit_rmse=float(np.sqrt(np.mean((ours["pred"] - X) ** 2))),
                    below=bool(np.all(per_state < level)))
        rows["sysid"].append(ours)
        orc = baselines.oracle_least_squares(times, Y)
        rows["oracle"].append(orc)
        if seed in recipe_seeds:
            rec = baselines.plain_recipe(times, Y, seed, time_limit=recipe_limit)
            rows["recipe"].append(rec)
        print(f"  LV seed {seed}: sysid {ours['wall_s']:.1f} s rmse {ours['fit_rmse']:.4f} "
              f"(noise {level.round(4)}) extrap {ours['extrap_rel_l2']:.3g} {ours['status']}"
              + (f" | recipe {rows['recipe'][-1]['wall_s']:.0f} s "
                 f"rmse {rows['recipe'][-1]['fit_rmse']:.4f}" if seed in recipe_seeds else ""),
              file=sys.stderr, flush=True)
    return rows


def lv_table(rows, n_seeds, recipe_limit):
    def med(name, key):
        vals = [r[key] for r in rows[name]]
        return float(np.median(vals)) if vals else float("nan")
    t_ours, t_rec = med("sysid", "wall_s"), med("recipe", "wall_s")
    below = sum(r["below"] for r in rows["sysid"])
    capped = f" (L-BFGS capped at {recipe_limit:.0f} s)" if recipe_limit else ""
    out = [
        "| method | seeds | median time to fit (s) | median fit RMSE on [0, 3] | "
        "median extrapolation rel. L2 on [0, 50] | notes |",
        "|---|---|---|---|---|---|",
        f"| sysid default (hybrid, MLP residual) | {n_seeds} | {t_ours:.1f} | "
        f"{med('sysid', 'fit_rmse'):.4f} | {med('sysid', 'extrap_rel_l2'):.3g} | "
        f"fit RMSE below the noise level in {below}/{n_seeds} seeds |",
        f"| plain torchdiffeq recipe{capped} | {len(rows['recipe'])} | {t_rec:.1f} | "
        f"{med('recipe', 'fit_rmse'):.4f} | {med('recipe', 'extrap_rel_l2'):.3g} | "
        f"published port: 35-222 s, extrapolation diverged in 3/3 |",
        f"| least-squares oracle (true structure) | {n_seeds} | {med('oracle', 'wall_s'):.2f} | "
        f"{med('oracle', 'fit_rmse'):.4f} | {med('oracle', 'extrap_rel_l2'):.3g} | "
        f"published: extrapolation rel. L2 median 0.57 |",
        "",
        f"Speed-up of sysid over the plain recipe (median times): **{t_rec / t_ours:.1f}x**"
        f"{' (a lower bound: the recipe was capped)' if recipe_limit else ''}; "
        f"target: sysid median under 10 s and at least 10x faster.",
    ]
    return "\n".join(out)


# -- 2. Pendulum (APHYNITY) --------------------------------------------------------------------
def pendulum(n_traj):
    data = sysid.datasets.simulate("pendulum", noise=0.05, observed=["theta"], irregular=True,
                                   n_trajectories=n_traj, dt=0.5, t_end=20.0, seed=0)
    th, om = sp.symbols("theta omega")
    w0 = sp.Symbol("omega0", positive=True)
    model = sysid.HybridODE(states=[th, om], physics={th: om, om: -w0 ** 2 * sp.sin(th)},
                            parameters={w0: 1.5}, residual=sysid.MLP(32, 2, states=[om]))
    start = time.perf_counter()
    result = sysid.fit(model, data, seed=0, progress=False, throw=False)
    wall = time.perf_counter() - start
    true_w0 = 2 * np.pi / 6
    ours = abs(result.parameters["omega0"] / true_w0 - 1)
    ls = baselines.pendulum_least_squares(data)
    return "\n".join([
        "| method | trajectories | omega0 error | time (s) | notes |",
        "|---|---|---|---|---|",
        f"| sysid default (frictionless physics + residual) | {n_traj} | {100 * ours:.2f} % | "
        f"{wall:.1f} | angle only, 5 % noise, irregular; status {result.status.code} |",
        f"| least squares, complete physics (oracle) | {n_traj} | "
        f"{100 * abs(ls['omega0'] / true_w0 - 1):.2f} % | {ls['wall_s']:.1f} | "
        f"the friction term given, not learned |",
        "| APHYNITY (published, Yin et al. 2021) | 25 | 4.0 % | - | noise-free, fully "
        "observed, regular |",
        "",
        "Target: omega0 error below 2 %.",
    ])


# -- 3. A long oscillating record --------------------------------------------------------------
def long_oscillation(n_periods):
    period = 6.663                              # Van der Pol, mu = 1
    data, truth = sysid.datasets.simulate("van_der_pol", noise=0.05, observed=["x"], dt=0.5,
                                          t_end=period * n_periods, seed=0, truth=True)
    x, y = sp.symbols("x y")
    mu = sp.Symbol("mu", positive=True)
    model = sysid.HybridODE(states=[x, y], physics={x: y, y: mu * y * (1 - x ** 2) - x},
                            parameters={mu: 0.5})
    lines = ["| strategy | mu (true 1.0) | imputed y RMSE / std | time (s) | status |",
             "|---|---|---|---|---|"]
    for shooting in ("auto", "single"):
        start = time.perf_counter()
        result = sysid.fit(model, data, seed=0, progress=False, throw=False, shooting=shooting)
        wall = time.perf_counter() - start
        try:
            imp = result.impute()["y"].values
            err = float(np.sqrt(np.mean((imp - truth["y"].values) ** 2))
                        / np.std(truth["y"].values))
        except Exception:       # noqa: BLE001
            err = float("nan")
        label = "default (auto: multiple shooting)" if shooting == "auto" else "single shooting"
        lines.append(f"| {label} | {result.parameters['mu']:.4f} | {err:.3f} | {wall:.1f} | "
                     f"{result.status.code} |")
    lines += ["", f"Van der Pol, {n_periods} oscillations ({data.sizes['time']} samples), x "
              f"observed with 5 % noise, y never measured, mu started at 0.5."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    parser.add_argument("--only", nargs="*", default=None,
                        help="sections to run: lv pendulum oscillation speed")
    args = parser.parse_args(argv)
    quick = args.quick
    sections = set(args.only or ["lv", "pendulum", "oscillation", "speed"])
    print(f"# sysid training benchmark ({'quick' if quick else 'full'}), "
          f"torch {torch.__version__}, 1 thread\n")
    if "lv" in sections:
        seeds = range(3) if quick else range(10)
        recipe_seeds = [0] if quick else [0, 1, 2]
        limit = 60.0 if quick else None
        rows = lotka_volterra(list(seeds), recipe_seeds, limit)
        print("## Lotka-Volterra, 5 % noise, a and d known (BENCHMARKS.md section 1)\n")
        print(lv_table(rows, len(seeds), limit) + "\n", flush=True)
    if "pendulum" in sections:
        print("## Damped pendulum, angle only (BENCHMARKS.md section 2)\n")
        print(pendulum(5 if quick else 25) + "\n", flush=True)
    if "oscillation" in sections:
        print("## A long oscillating record\n")
        print(long_oscillation(10 if quick else 60) + "\n", flush=True)
    if "speed" in sections:
        import speed
        print("## Cost per training step against the number of trajectories\n")
        print(speed.markdown(speed.trajectory_scaling(quick)) + "\n", flush=True)
        print("## Peak memory of one gradient, adjoint against direct\n")
        print(speed.markdown(speed.adjoint_memory(quick)) + "\n", flush=True)
        print("## Compiled SymPy physics against hand-written torch\n")
        print(speed.markdown(speed.physics_ratio(quick)) + "\n", flush=True)


if __name__ == "__main__":
    main()
