"""Issue 27's calibration benchmark: do sysid's default fits give intervals that cover?

    cd benchmarks && python calibration.py                  # the record (20 draws per case)
    cd benchmarks && python calibration.py --quick          # 3 draws per case, a smoke check
    cd benchmarks && python calibration.py --only fhn sir_i --draws 40

Unlike ``uncertainty.py`` (which starts at the truth with single shooting to test the
intervals at the optimum), every fit here is what a user gets: ``sysid.fit(model, data,
progress=False, throw=False, seed=0)`` with default options (plus what the data call for:
``interpolation="zoh"`` for the held pump voltage), from the guesses a user would write,
not the truth. Each case simulates ``--draws`` noisy data sets (noise seeds 0..N-1) with
``sysid.datasets.simulate(..., truth=True)``, fits, and records whether the intervals of
``result.parameter_table(level)`` at 68, 90 and 95 % hold the true parameters, and whether
the bands of ``result.impute(level=...)`` hold the true never-measured states at the
sample times (pooled over times and draws). Fits whose status is not a success are left
out and counted.

Per case and quantity the table gives the coverage at each level over the successful fits
(marked "(low)"/"(high)" outside the central 95 % binomial range of as many calibrated
intervals, ``calibrated_range`` of ``uncertainty.py``; for bands the range is only a
guide, neighbouring times are correlated). A successful fit can still sit at a wrong
local optimum: it "misses the data" where its fitted noise level of some channel is over
``MISSED`` (2) times the simulator's true one. "90 % w/o missed" is the 90 % coverage
without those fits ("=" where there are none), and over the same fits ``se / sd`` (mean
reported standard error over the standard deviation of the estimates across draws: about
1 when the errors have the right size), ``bias / sd`` and ``|t| max`` (the largest
``|estimate - truth| / se``). Issue 27's targets: nominal 90 % within 85-95 %, nominal
68 % within 60-76 %.

The fix this benchmark led to is in sysid since (``sysid.training.horizon.miss`` and
``rescue``): a physics-only fit whose residuals over whole records are systematic also
gets the grown-horizon rescue, which also tries 3 shooting windows.

Cases
-----
fhn              FitzHugh-Nagumo, v and w measured, 60 irregular samples on [0, 100], 5 %
                 noise; a, b, tau, I free.
fhn_3x20         The same with the 60 samples as 3 trajectories (random initial states)
                 of 20 irregular samples each.
sir_i            SIR, only I measured (dt 2 days, 51 samples, 5 %); beta, gamma free;
                 bands of the never-measured S (R does not act on I and is left out).
vdp_x            Van der Pol, only x measured (t in [0, 20], dt 0.25, 81 samples, 5 %); mu
                 free; band of the never-measured y.
duffing_x        Forced Duffing, only x measured (t in [0, 50], dt 0.5, 101 samples, 5 %;
                 the input u = 0.2 cos(1.2 t), sampled with the data, interpolated
                 linearly by the fit); delta, alpha, beta free; band of the never-measured v.
duffing_fine     The same with u given on a 0.1 grid (x still measured every 0.5).
two_tank         Two tanks, both levels measured (t in [0, 200], dt 2, 101 samples, 5 %,
                 the pump voltage known, held: interpolation="zoh"); k1, k2, k3, k4 free.
lv_hybrid        Lotka-Volterra (t in [0, 3], dt 0.1, both measured, 5 %), the interaction
                 terms left to sysid.MLP(width=16, depth=2); a and d free.
pendulum_hybrid  Damped pendulum, angle only (dt 0.5, 41 samples, 5 %), friction left to
                 sysid.MLP(width=16, depth=2, states=[omega]); omega0 free; band of omega.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
import warnings

import numpy as np
import sympy as sp
import torch
import xarray as xr

import sysid
from machine import markdown
from uncertainty import calibrated_range

torch.set_num_threads(1)

LEVELS = (0.68, 0.90, 0.95)
TARGETS = {0.68: (0.60, 0.76), 0.90: (0.85, 0.95)}
FIT = dict(progress=False, throw=False, seed=0)


class Case:
    """A model as a user writes it, its data and the truth."""

    def __init__(self, name, title, model, simulate, truth, hidden=(), kind="physics"):
        self.name, self.title, self.model = name, title, model
        self.simulate, self.truth, self.hidden, self.kind = simulate, truth, hidden, kind

    every = 1           # keep the states' measurements at every n-th time only
    fit = {}            # fit options besides the defaults (what the data call for)
    misspecified = ""   # why the model is not the data's, where it is not

    def data(self, seed):
        data, true = sysid.datasets.simulate(seed=seed, truth=True, **self.simulate)
        if self.every > 1:
            keep = np.arange(data.sizes["time"]) % self.every == 0
            for name in data.data_vars:
                if data[name].attrs.get("role") == "state":
                    data[name] = data[name].where(xr.DataArray(keep, dims="time"))
        return data, true


def fhn() -> Case:
    v, w = sp.symbols("v w")
    a, b, tau, cur = sp.symbols("a b tau I", positive=True)
    model = sysid.HybridODE(states=[v, w],
                            physics={v: v - v ** 3 / 3 - w + cur, w: (v + a - b * w) / tau},
                            parameters={a: 1.0, b: 1.0, tau: 10.0, cur: 1.0})
    return Case("fhn", "FitzHugh-Nagumo, v and w measured, 60 irregular samples, 5 % noise",
                model, dict(name="fitzhugh_nagumo", noise=0.05, irregular=True,
                            t_end=100.0, dt=100.0 / 59),
                {"a": 0.7, "b": 0.8, "tau": 12.5, "I": 0.5})


def fhn_3x20() -> Case:
    case = fhn()
    case.name, case.title = "fhn_3x20", ("FitzHugh-Nagumo, v and w measured, 3 trajectories x 20 "
                                         "irregular samples (60 in all), 5 % noise")
    case.simulate = dict(case.simulate, dt=100.0 / 19, n_trajectories=3)
    return case


def sir_i() -> Case:
    S, I = sp.symbols("S I")
    beta, gamma = sp.symbols("beta gamma", positive=True)
    model = sysid.HybridODE(states=[S, I],
                            physics={S: -beta * S * I, I: beta * S * I - gamma * I},
                            parameters={beta: 0.3, gamma: 0.2})
    return Case("sir_i", "SIR, only I measured (51 samples, dt 2 days), 5 % noise",
                model, dict(name="sir", noise=0.05, observed=["I"], dt=2.0),
                {"beta": 0.5, "gamma": 0.1}, hidden=("S",))


def vdp_x() -> Case:
    x, y = sp.symbols("x y")
    mu = sp.Symbol("mu", positive=True)
    model = sysid.HybridODE(states=[x, y], physics={x: y, y: mu * (1 - x ** 2) * y - x},
                            parameters={mu: 0.5})
    return Case("vdp_x", "Van der Pol, only x measured (81 samples), 5 % noise",
                model, dict(name="van_der_pol", noise=0.05, observed=["x"], dt=0.25),
                {"mu": 1.0}, hidden=("y",))


def duffing_x() -> Case:
    x, v, u = sp.symbols("x v u")
    delta = sp.Symbol("delta", positive=True)
    alpha, beta = sp.symbols("alpha beta")
    model = sysid.HybridODE(states=[x, v], inputs=[u],
                            physics={x: v, v: -delta * v - alpha * x - beta * x ** 3 + u},
                            parameters={delta: 0.5, alpha: -0.5, beta: 0.5})
    case = Case("duffing_x", "Forced Duffing, only x measured (101 samples), 5 % noise",
                model, dict(name="duffing", noise=0.05, observed=["x"], dt=0.5),
                {"delta": 0.3, "alpha": -1.0, "beta": 1.0}, hidden=("v",))
    case.misspecified = ("the input cos(1.2 t) is known at the samples only and interpolated "
                         "linearly between them (duffing_fine, the same with u on a finer "
                         "grid, is calibrated)")
    return case


def duffing_fine() -> Case:
    case = duffing_x()
    case.name, case.title = "duffing_fine", ("Forced Duffing as duffing_x, the input u given "
                                             "on a 0.1 grid (x still every 0.5)")
    case.simulate = dict(case.simulate, dt=0.1)
    case.every = 5
    case.misspecified = ""
    return case


def two_tank() -> Case:
    h1, h2, u = sp.symbols("h1 h2 u")
    k1, k2, k3, k4 = sp.symbols("k1 k2 k3 k4", positive=True)
    model = sysid.HybridODE(states=[h1, h2], inputs=[u],
                            physics={h1: -k1 * sp.sqrt(h1) + k4 * u,
                                     h2: k2 * sp.sqrt(h1) - k3 * sp.sqrt(h2)},
                            parameters={k1: 1.0, k2: 1.0, k3: 1.0, k4: 1.0})
    case = Case("two_tank", "Two tanks, both levels measured (101 samples), 5 % noise, "
                "the pump voltage held between samples (interpolation='zoh')",
                model, dict(name="two_tank", noise=0.05, dt=2.0),
                {"k1": 0.5, "k2": 0.5, "k3": 0.6, "k4": 1.0})
    case.fit = dict(interpolation="zoh")      # the simulator holds the staircase input
    return case


def lv_hybrid() -> Case:
    x, y = sp.symbols("x y")
    a, d = sp.symbols("a d", positive=True)
    model = sysid.HybridODE(states=[x, y], physics={x: a * x, y: -d * y},
                            parameters={a: 1.0, d: 1.0},
                            residual=sysid.MLP(width=16, depth=2))
    return Case("lv_hybrid", "Lotka-Volterra hybrid (interaction left to an MLP), a and d "
                "free, both measured (31 samples), 5 % noise",
                model, dict(name="lotka_volterra", noise=0.05),
                {"a": 1.3, "d": 1.8}, kind="hybrid")


def pendulum_hybrid() -> Case:
    th, om = sp.symbols("theta omega")
    w0 = sp.Symbol("omega0", positive=True)
    model = sysid.HybridODE(states=[th, om], physics={th: om, om: -w0 ** 2 * sp.sin(th)},
                            parameters={w0: 1.5},
                            residual=sysid.MLP(width=16, depth=2, states=[om]))
    return Case("pendulum_hybrid", "Damped pendulum, angle only (41 samples), 5 % noise, "
                "friction left to an MLP on omega; omega0 free",
                model, dict(name="pendulum", noise=0.05, observed=["theta"]),
                {"omega0": 2 * math.pi / 6}, hidden=("omega",), kind="hybrid")


CASES = {f.__name__: f for f in (fhn, fhn_3x20, sir_i, vdp_x, duffing_x, duffing_fine,
                                  two_tank, lv_hybrid, pendulum_hybrid)}


#: A fit "misses the data" where its fitted noise level of some channel is over this many
#: times the true one (the simulator's ``true_noise_std``): a wrong local optimum.
MISSED = 2.0


def run_case(case: Case, draws: int) -> dict:
    """Fit ``draws`` noise draws; per quantity, the interval hits at each level and the
    estimates and standard errors; per draw, whether the fit missed the data."""
    out = {"est": {k: [] for k in case.truth}, "se": {k: [] for k in case.truth},
           "hit": {k: {lv: [] for lv in LEVELS} for k in case.truth},
           "band": {h: {lv: [] for lv in LEVELS} for h in case.hidden},
           "missed": [], "failed": [], "flagged": 0, "fit_s": [], "table_s": [],
           "band_s": [], "seeds": [], "grown": 0}
    for seed in range(draws):
        data, true = case.data(seed)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = sysid.fit(case.model, data, **FIT, **case.fit)
        out["fit_s"].append(time.perf_counter() - start)
        if not result.status.success:
            out["failed"].append(seed)
            continue
        out["seeds"].append(seed)
        out["grown"] += "kept the grown" in str(result.stats.get("grow_horizon"))
        ratio = max(result.noise_std[k] / float(data[k].attrs["true_noise_std"])
                    for k in result.noise_std)
        out["missed"].append(bool(ratio > MISSED))
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tables = {lv: result.parameter_table(level=lv) for lv in LEVELS}
        out["flagged"] += any(issubclass(w.category, sysid.errors.IdentifiabilityWarning)
                              for w in caught)
        out["table_s"].append(time.perf_counter() - start)
        for k, v in case.truth.items():
            row = tables[LEVELS[0]].loc[k]
            out["est"][k].append(float(row["value"]))
            out["se"][k].append(float(row["std_error"]))
            for lv in LEVELS:
                r = tables[lv].loc[k]
                out["hit"][k][lv].append(bool(r["lower"] <= v <= r["upper"]))
        if case.hidden:
            start = time.perf_counter()
            for lv in LEVELS:
                band = result.impute(level=lv)
                for h in case.hidden:
                    t = true[h].values
                    ok = np.isfinite(t)
                    inside = (band[f"{h}_lower"].values <= t) & (t <= band[f"{h}_upper"].values)
                    out["band"][h][lv].append(inside[ok])
            out["band_s"].append(time.perf_counter() - start)
    return out


def _pct(hits) -> str:
    return f"{100 * np.mean(hits):.0f}" if len(hits) else "-"


def _mark(hits, lv) -> str:
    """The coverage, marked where it is outside the calibrated binomial range."""
    n = len(hits)
    if not n:
        return "-"
    cov = float(np.mean(hits))
    lo, hi = calibrated_range(n, lv)
    return _pct(hits) + ("" if lo <= cov <= hi else (" (low)" if cov < lo else " (high)"))


def rows_of(case: Case, out: dict) -> list[dict]:
    """Per quantity: coverage at each level over every successful fit, the calibrated
    range, coverage at 90 % over the fits that reach the data, and (over those) the
    size and bias of the errors."""
    rows = []
    good = ~np.asarray(out["missed"], bool)
    for k, v in case.truth.items():
        est, se = np.asarray(out["est"][k]), np.asarray(out["se"][k])
        n = est.size
        row = {"quantity": k, "truth": v, "fits": n}
        for lv in LEVELS:
            row[f"{round(100 * lv)} %"] = _mark(out["hit"][k][lv], lv)
        row["calibrated 68/90/95 (n fits)"] = "/".join(
            "{:.0f}-{:.0f}".format(*(100 * np.array(calibrated_range(n, lv)))) for lv in LEVELS)
        hit90 = np.asarray(out["hit"][k][0.90], bool)
        row["90 % w/o missed"] = _mark(hit90[good], 0.90) if (~good).any() else "="
        e, s_ = est[good], se[good]
        sd = float(np.std(e, ddof=1)) if e.size > 1 else float("nan")
        row["se / sd"] = float(np.mean(s_) / sd) if e.size > 1 and sd > 0 else float("nan")
        row["bias / sd"] = float((np.mean(e) - v) / sd) if e.size > 1 and sd > 0 else float("nan")
        row["|t| max"] = float(np.max(np.abs(e - v) / s_)) if e.size else float("nan")
        rows.append(row)
    for h in case.hidden:
        bands = out["band"][h]
        n = len(bands[LEVELS[0]])
        if not n:
            continue
        row = {"quantity": f"{h} (band, {bands[LEVELS[0]][0].size} times)", "truth": None,
               "fits": n}
        for lv in LEVELS:
            row[f"{round(100 * lv)} %"] = _pct(np.concatenate(bands[lv]))
        row["calibrated 68/90/95 (n fits)"] = "(pooled times)"
        row["90 % w/o missed"] = _pct(np.concatenate(
            [b for b, g in zip(bands[0.90], good) if g]) if good.any() else []) \
            if (~good).any() else "="
        rows.append(row)
    return rows


def summary_row(case: Case, out: dict, wall: float) -> dict:
    missed = [s for s, m in zip(out["seeds"], out["missed"]) if m]
    return {"case": case.name, "kind": case.kind, "draws": len(out["fit_s"]),
            "failed fits": len(out["failed"]) if not out["failed"] else
            f"{len(out['failed'])} (seeds {', '.join(map(str, out['failed']))})",
            "missed the data": len(missed) if not missed else
            f"{len(missed)} (seeds {', '.join(map(str, missed))})",
            "grown horizon kept": out["grown"],
            "identifiability warnings": out["flagged"],
            "fit s (median)": float(np.median(out["fit_s"])),
            "fit s (max)": float(np.max(out["fit_s"])),
            "table s (median)": float(np.median(out["table_s"])) if out["table_s"] else None,
            "bands s (median)": float(np.median(out["band_s"])) if out["band_s"] else None,
            "case wall s": wall}


def pooled_rows(runs: list) -> list[dict]:
    """Coverage pooled over cases: every parameter interval (one per quantity and fit;
    its calibrated binomial range beside it), and every hidden-state band (times pooled;
    neighbouring times are correlated, so no range is given). Also without the cases
    whose model is not the data's (``Case.misspecified``), whose coverage says how
    large the model error is rather than how good the approximation is."""
    rows = []
    for label, keep in (("all cases", lambda c: True),
                        ("correctly specified models", lambda c: not c.misspecified)):
        chosen = [(c, o) for c, o in runs if keep(c)]
        if not chosen:
            continue
        for what in ("parameters", "hidden-state bands"):
            row = {"pooled over": label, "intervals": what}
            for lv in LEVELS:
                if what == "parameters":
                    hits = [h for c, o in chosen for k in c.truth for h in o["hit"][k][lv]]
                    row[f"{round(100 * lv)} %"] = _mark(hits, lv) if hits else "-"
                    n = len(hits)
                else:
                    hits = [np.concatenate(o["band"][h][lv]) for c, o in chosen
                            for h in c.hidden if o["band"][h][lv]]
                    row[f"{round(100 * lv)} %"] = _pct(np.concatenate(hits)) if hits else "-"
                    n = int(sum(len(o["band"][h][lv]) for c, o in chosen for h in c.hidden))
            row["n (intervals or fits)"] = n
            row["calibrated 68/90/95"] = "/".join(
                "{:.0f}-{:.0f}".format(*(100 * np.array(calibrated_range(n, lv))))
                for lv in LEVELS) if what == "parameters" and n else "(pooled times)"
            rows.append(row)
    return rows


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 draws per case")
    parser.add_argument("--draws", type=int, default=None, help="noise draws per case (20)")
    parser.add_argument("--only", nargs="*", default=None, choices=list(CASES),
                        help="cases to run: " + " ".join(CASES))
    args = parser.parse_args(argv)
    draws = args.draws or (3 if args.quick else 20)
    names = [n for n in CASES if n in set(args.only or CASES)]
    print(f"# sysid calibration benchmark ({draws} draws per case), torch {torch.__version__}, "
          f"sysid {getattr(sysid, '__version__', '?')}, commit {commit()}, 1 thread"
          "\n")
    summary, runs, total = [], [], time.perf_counter()
    for name in names:
        case = CASES[name]()
        start = time.perf_counter()
        out = run_case(case, draws)
        wall = time.perf_counter() - start
        print(f"## {case.name}: {case.title}\n")
        print(markdown(rows_of(case, out)) + "\n", flush=True)
        summary.append(summary_row(case, out, wall))
        runs.append((case, out))
    print("## Pooled over the cases\n")
    print(markdown(pooled_rows(runs)) + "\n")
    print("## Fits and times\n")
    print(markdown(summary))
    print(f"\nTotal wall time {time.perf_counter() - total:.0f} s.")


if __name__ == "__main__":
    sys.exit(main())
