"""Issue 6's benchmark: are sysid's 90 % intervals calibrated?

    python benchmarks/uncertainty.py                 # the record (50 repeats per case)
    python benchmarks/uncertainty.py --quick         # 10 repeats per case
    python benchmarks/uncertainty.py --only pendulum lynx_hare --repeats 20

Each case simulates N noisy data sets from a known system (seeds 0..N-1), fits the
correct-structure physics-only model and counts how often the nominal 90 % interval of
``result.parameter_table(level=0.9)`` holds the true parameter, and how often the 90 %
confidence band of ``result.impute(level=0.9)`` holds the true never-measured state at the
sample times (pooled over times and repeats). A calibrated interval covers about 90 % of
the time: the table gives the central 95 % binomial range of the coverage count of N
calibrated intervals. The band's pooled coverage mixes correlated time points (a repeat
tends to be inside or outside the band over long stretches), so its spread is wider than
that range. ``se / sd`` is the median reported standard error over the spread of the
estimates across repeats (1.4826 times their median absolute deviation, a standard
deviation robust to the odd wild fit): about 1 when the errors have the right size.

The fits start from the true parameter values and use single shooting (``epochs=0,
shooting="single"``): the benchmark tests the intervals at the optimum, not the optimiser.
Every timing runs on one thread (``torch.set_num_threads(1)``).

Cases
-----
lv         Lotka-Volterra (Rackauckas et al. 2020 setting: t in [0, 3], dt 0.1), 5 % noise,
           prey and predator measured, all four parameters a, b, c, d free.
lv_prey    The same system with only the prey measured, over a longer record (t in [0, 10],
           dt 0.2, about 2.5 cycles; on [0, 3] the prey alone barely informs c): b is known
           (fixed at 0.9; with the prey alone, b and the predator's scale cannot be
           separated), a, c, d free; the band of the never-measured predator.
pendulum   APHYNITY's damped pendulum, angle only (dt 0.5, 20 s), 5 % noise: omega0 and
           alpha free; the band of the never-measured angular velocity.
hybrid     The README's hybrid pendulum (angle only, 3 irregular trajectories with 30 %
           missing, friction left to an MLP of width 32): one fit, the omega0 interval with
           the network's weights integrated out beside the one with the network held fixed,
           and the time the curvature and the band take.
lynx_hare  Hudson's Bay lynx-hare (Carpenter 2018), default hybrid-free fit with log-normal
           noise: our standard errors next to the Stan posterior standard deviations
           (estimated from its 80 % intervals as width / 2.563).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings

import numpy as np
import sympy as sp
import torch
from scipy.stats import binom

import sysid
from sysid.errors import IdentifiabilityWarning

torch.set_num_threads(1)

SECTIONS = ("lv", "lv_prey", "pendulum", "hybrid", "lynx_hare")
LEVEL = 0.9
FIT = dict(epochs=0, lbfgs_iterations=100, shooting="single", progress=False, throw=False)

# Carpenter (2018), posterior means and 80 % intervals (BENCHMARKS.md section 6)
STAN = {"alpha": (0.55, 0.47, 0.63), "beta": (0.028, 0.023, 0.033),
        "gamma": (0.80, 0.69, 0.91), "delta": (0.024, 0.020, 0.029)}
Z80 = 1.2816


def calibrated_range(n: int, level: float = LEVEL) -> tuple[float, float]:
    """Central 95 % range of the coverage of ``n`` calibrated ``level`` intervals."""
    lo, hi = binom.ppf(0.025, n, level), binom.ppf(0.975, n, level)
    return lo / n, hi / n


def lotka_volterra(prey_only: bool):
    x, y = sp.symbols("x y")
    a, b, c, d = sp.symbols("a b c d", positive=True)
    truth = {"a": 1.3, "b": 0.9, "c": 0.8, "d": 1.8}
    params = {a: 1.3, c: 0.8, d: 1.8} if prey_only else {a: 1.3, b: 0.9, c: 0.8, d: 1.8}
    model = sysid.HybridODE(states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
                            parameters=params, fixed={b: 0.9} if prey_only else {})
    observed = ["x"] if prey_only else None

    span = dict(t_end=10.0, dt=0.2) if prey_only else {}

    def data(seed):
        return sysid.datasets.simulate("lotka_volterra", noise=0.05, seed=seed,
                                       observed=observed, truth=True, **span)

    truth = {k: v for k, v in truth.items() if not (prey_only and k == "b")}
    return model, data, truth, ("y" if prey_only else None)


def pendulum():
    th, om = sp.symbols("theta omega")
    w0, al = sp.symbols("omega0 alpha", positive=True)
    truth = {"omega0": 2 * math.pi / 6, "alpha": 0.2}
    model = sysid.HybridODE(states=[th, om],
                            physics={th: om, om: -w0 ** 2 * sp.sin(th) - al * om},
                            parameters={w0: truth["omega0"], al: truth["alpha"]})

    def data(seed):
        return sysid.datasets.simulate("pendulum", observed=["theta"], noise=0.05, seed=seed,
                                       truth=True)

    return model, data, truth, "omega"


def coverage(case, repeats: int):
    """Coverage rows of one case over ``repeats`` noise draws."""
    model, make, truth, hidden = case
    inside = {k: [] for k in truth}
    est, se = {k: [] for k in truth}, {k: [] for k in truth}
    band, flagged, failed, wall = [], 0, 0, 0.0
    for seed in range(repeats):
        data, true = make(seed)
        start = time.perf_counter()
        result = sysid.fit(model, data, seed=0, **FIT)
        if not result.status.success:
            failed += 1
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IdentifiabilityWarning)
            table = result.parameter_table(level=LEVEL)
        flagged += any(issubclass(w.category, IdentifiabilityWarning) for w in caught)
        for k, v in truth.items():
            row = table.loc[k]
            inside[k].append(row["lower"] <= v <= row["upper"])
            est[k].append(row["value"])
            se[k].append(row["std_error"])
        if hidden is not None:
            imp = result.impute(level=LEVEL)
            t = true[hidden].values
            band.append((imp[f"{hidden}_lower"].values <= t) & (t <= imp[f"{hidden}_upper"].values))
        wall += time.perf_counter() - start
    rows = []
    for k in truth:
        n = len(inside[k])
        spread = 1.4826 * np.median(np.abs(np.asarray(est[k]) - np.median(est[k])))
        ratio = float(np.median(se[k]) / spread) if n > 2 and spread > 0 else float("nan")
        rows.append((k, n, float(np.mean(inside[k])), ratio))
    if hidden is not None and band:
        rows.append((f"{hidden} (band, {band[0].size} times)", len(band),
                     float(np.mean(np.concatenate(band))), float("nan")))
    return rows, {"flagged": flagged, "failed": failed, "wall": wall}


def coverage_table(rows, info) -> str:
    out = ["| quantity | repeats | coverage of nominal 90 % | calibrated range (95 %) | "
           "verdict | issue target 85-95 % | se / sd |", "|---|---|---|---|---|---|---|"]
    for name, n, cov, ratio in rows:
        lo, hi = calibrated_range(n)
        verdict = "calibrated" if lo <= cov <= hi else ("too narrow" if cov < lo else "too wide")
        target = "met" if 0.85 <= cov <= 0.95 else "not met"
        out.append(f"| {name} | {n} | {100 * cov:.1f} % | {100 * lo:.1f}-{100 * hi:.1f} % | "
                   f"{verdict} | {target} | "
                   f"{'-' if not np.isfinite(ratio) else f'{ratio:.2f}'} |")
    out.append("")
    out.append(f"Identifiability warnings: {info['flagged']} of the fits; failed fits "
               f"(left out): {info['failed']}; fit + table + band time {info['wall']:.0f} s.")
    return "\n".join(out)


def lynx_hare() -> str:
    data = sysid.datasets.load("lynx_hare")
    hare, lynx = sp.symbols("hare lynx")
    al, be, ga, de = sp.symbols("alpha beta gamma delta", positive=True)
    model = sysid.HybridODE(
        states=[hare, lynx],
        physics={hare: (al - be * lynx) * hare, lynx: (-ga + de * hare) * lynx},
        parameters={al: 1.0, be: 0.05, ga: 1.0, de: 0.05})
    start = time.perf_counter()
    result = sysid.fit(model, data, seed=0, noise="lognormal", progress=False)
    table = result.parameter_table(level=0.8)
    wall = time.perf_counter() - start
    rows = ["| parameter | sysid value | sysid std error | sysid 80 % interval | "
            "Stan mean | Stan sd (80 % width / 2.563) | Stan 80 % interval | se / Stan sd |",
            "|---|---|---|---|---|---|---|---|"]
    for name, (mean, lo, hi) in STAN.items():
        r = table.loc[name]
        sd = (hi - lo) / (2 * Z80)
        rows.append(f"| {name} | {r['value']:.4g} | {r['std_error']:.3g} | "
                    f"[{r['lower']:.3g}, {r['upper']:.3g}] | {mean} | {sd:.3g} | "
                    f"[{lo}, {hi}] | {r['std_error'] / sd:.2f} |")
    return "\n".join(rows + ["", f"Default options, noise='lognormal', seed 0; fit and table "
                             f"{wall:.0f} s. Stan: Carpenter (2018), weakly informative "
                             f"priors, so its posterior can be a little narrower or wider."])


def hybrid() -> str:
    data, truth = sysid.datasets.simulate("pendulum", observed=["theta"], noise=0.05,
                                          irregular=True, missing=0.3, n_trajectories=3,
                                          dt=0.25, truth=True)
    theta, omega = sp.symbols("theta omega")
    omega0 = sp.Symbol("omega0", positive=True)
    model = sysid.HybridODE(
        states=[theta, omega], physics={theta: omega, omega: -omega0 ** 2 * sp.sin(theta)},
        parameters={omega0: 1.5}, residual=sysid.MLP(width=32, depth=2, states=[omega]))
    start = time.perf_counter()
    result = sysid.fit(model, data, seed=0, progress=False)
    fit_wall = time.perf_counter() - start
    true = 2 * math.pi / 6
    rows = ["| omega0 (truth 1.0472) | value | std error | 90 % interval | holds the truth | "
            "table time (s) |", "|---|---|---|---|---|---|"]
    for label, network in (("network held fixed", False), ("network integrated out", True)):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IdentifiabilityWarning)
            r = result.parameter_table(level=LEVEL, network=network).loc["omega0"]
        wall = time.perf_counter() - start
        rows.append(f"| {label} | {r['value']:.4f} | {r['std_error']:.4f} | "
                    f"[{r['lower']:.4f}, {r['upper']:.4f}] | "
                    f"{'yes' if r['lower'] <= true <= r['upper'] else 'no'} | {wall:.0f} |")
    start = time.perf_counter()
    band = result.impute(level=LEVEL)
    band_wall = time.perf_counter() - start
    t = truth["omega"].values
    ok = np.isfinite(t)
    inside = (band["omega_lower"].values <= t) & (t <= band["omega_upper"].values)
    return "\n".join(rows + [
        "", f"Fit {fit_wall:.0f} s (default options, seed 0; "
        f"{result.stats['n_observations']} observations, "
        f"{result.stats['n_network_weights']} network weights). The 90 % band of the "
        f"never-measured omega holds the truth at {100 * inside[ok].mean():.0f} % of the "
        f"{int(ok.sum())} (trajectory, time) points of the data's time grid; the band took "
        f"{band_wall:.0f} s."])


TITLES = {"lv": "Lotka-Volterra, 5 % noise, both species measured, a b c d free",
          "lv_prey": "Lotka-Volterra, 5 % noise, prey only (t <= 10), b known, a c d free",
          "pendulum": "Damped pendulum, angle only, 5 % noise, omega0 and alpha free",
          "hybrid": "Hybrid pendulum (README): the network's share of the uncertainty",
          "lynx_hare": "Lynx-hare: standard errors beside the Stan posterior"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 repeats per case")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per case")
    parser.add_argument("--only", nargs="*", default=None, choices=SECTIONS,
                        help="sections to run: " + " ".join(SECTIONS))
    args = parser.parse_args(argv)
    repeats = args.repeats or (10 if args.quick else 50)
    sections = [s for s in SECTIONS if s in set(args.only or SECTIONS)]
    print(f"# sysid uncertainty benchmark ({'quick' if args.quick else 'full'}, {repeats} "
          f"repeats), torch {torch.__version__}, sysid {getattr(sysid, '__version__', '?')}, "
          f"1 thread\n")
    walls = {}
    for name in sections:
        start = time.perf_counter()
        print(f"## {TITLES[name]}\n")
        if name in ("lynx_hare", "hybrid"):
            text = lynx_hare() if name == "lynx_hare" else hybrid()
        else:
            case = {"lv": lambda: lotka_volterra(False), "lv_prey": lambda: lotka_volterra(True),
                    "pendulum": pendulum}[name]()
            text = coverage_table(*coverage(case, repeats))
        walls[name] = time.perf_counter() - start
        print(text + f"\n\nSection wall time: {walls[name]:.0f} s.\n", flush=True)
    print("Wall time per section: " + ", ".join(f"{k} {v:.0f} s" for k, v in walls.items())
          + f"; total {sum(walls.values()):.0f} s.")


if __name__ == "__main__":
    sys.exit(main())
