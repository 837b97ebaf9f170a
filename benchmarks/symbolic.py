"""Issue 4's benchmark: symbolic summaries of a hybrid model's neural residual.

    python benchmarks/symbolic.py              # the record (about 30-40 min on 2 cores)
    python benchmarks/symbolic.py --quick      # CI-sized (a few minutes)
    python benchmarks/symbolic.py --only partial pendulum hidden chemostat

Each section fits sysid's default hybrid model (known physics + ``sysid.MLP`` residual),
distils the residual with ``result.symbolic()`` and reads the selected equations, beside the
published number and an oracle: the correct structure fitted by least squares on the same
data (``baselines.py``), the data's own limit. Every timing runs on one thread
(``torch.set_num_threads(1)``); the machines are shared, so read the ratios, not the seconds.
The symbolic() column is CPU time (the target is "on one core"); fit times are wall times.

Sections
--------
lv        Lotka-Volterra of BENCHMARKS.md section 1 (Rackauckas et al. 2020), 5 % noise: the
          interaction terms -b x y and c x y left to the residual. lv_low: 0.5 % noise.
partial   Lotka-Volterra, 1 % noise, the predator measured at every 5th sample only.
pendulum  APHYNITY's damped pendulum (BENCHMARKS.md section 2), angle only, 5 % noise,
          irregular times, the friction -alpha omega left to the residual.
hidden    Unforced Duffing oscillator, position only: the missing cubic spring -beta x^3 is in
          the equation of the never-measured velocity and overlaps the known spring -alpha x.
chemostat Monod growth, biomass only, distilled with rational=True (symbolic_rational.py).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import sympy as sp
import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))

import baselines  # noqa: E402
import symbolic_rational  # noqa: E402
import sysid  # noqa: E402

torch.set_num_threads(1)

SECTIONS = ("lv", "lv_low", "partial", "pendulum", "hidden", "chemostat")


# -- helpers -----------------------------------------------------------------------------------
def _monoms(expr, gens):
    """Monomials (exponent tuples) of ``expr`` in ``gens`` matched by name; None if ``expr``
    is not a polynomial in them (a sin, a division, a foreign symbol)."""
    expr = sp.sympify(expr)
    by_name = {g.name: g for g in gens}
    expr = expr.xreplace({s: by_name[s.name] for s in expr.free_symbols if s.name in by_name})
    try:
        poly = sp.Poly(expr, *gens)
    except sp.PolynomialError:
        return None
    if poly.free_symbols - set(gens):
        return None
    return {m: float(c) for m, c in zip(poly.monoms(), poly.coeffs())}


def _only(expr, gens, monom):
    """(exact, coefficient): whether ``expr`` is exactly one term with exponents ``monom``."""
    terms = _monoms(expr, gens)
    exact = terms is not None and list(terms) == [monom]
    coef = terms.get(monom, 0.0) if terms is not None else float("nan")
    return exact, coef


def _short(expr, digits=3):
    expr = sp.sympify(expr)
    expr = expr.xreplace({f: sp.Float(float(f"{float(f):.{digits}g}"), digits)
                          for f in expr.atoms(sp.Float)})
    return str(expr).replace("**", "^").replace("|", "\\|")


def _pct(v):
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:.2f} %"


def _g(v, fmt=".3g"):
    return "inf" if v is None or not np.isfinite(v) else format(v, fmt)


def _med(rows, key):
    vals = [r[key] for r in rows]
    return float(np.median(vals)) if vals else float("nan")


def _yes(flag):
    return "**met**" if flag else "**not met**"


def _summarize(result, **options):
    """``result.symbolic(**options)`` timed; (summary or None, CPU seconds, error text). The time is
    the process's CPU time: one thread, so the time "on one core" of the target, which a
    busy shared machine inflates far less than the wall time (both are logged)."""
    start, cpu = time.perf_counter(), time.process_time()
    try:
        summary, err = result.symbolic(**options), ""
    except Exception as exc:    # noqa: BLE001 - reported in the table, not hidden
        summary, err = None, f"{type(exc).__name__}: {exc}"
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if summary is not None:     # where the time went, for the log
        secs = summary.path["seconds"]
        print(f"    symbolic(): {cpu:.1f} s CPU ({wall:.1f} s wall), {len(summary.path)} candidates, "
              f"{(secs > 0).sum()} refit in {secs.sum():.1f} s (slowest {secs.max():.1f} s), "
              f"{len(summary.warnings)} warning(s)", file=sys.stderr, flush=True)
        for text in summary.warnings:
            print(f"      warning: {text[:300]}", file=sys.stderr, flush=True)
    return summary, cpu, err


# -- 1-3. Lotka-Volterra -----------------------------------------------------------------------
X_, Y_ = sp.symbols("x y")


def _lv_dataset(times, Y):
    return xr.Dataset({"x": ("time", Y[:, 0]), "y": ("time", Y[:, 1])}, coords={"time": times})


def lv_symbolic(times, Y, seed):
    """Hybrid fit (a, d known), symbolic summary, and the distilled model's read-out."""
    model = sysid.HybridODE(states=[X_, Y_], physics={X_: 1.3 * X_, Y_: -1.8 * Y_},
                            residual=sysid.MLP())
    data = _lv_dataset(times, Y)
    start = time.perf_counter()
    result = sysid.fit(model, data, seed=seed, progress=False, throw=False)
    fit_s = time.perf_counter() - start
    summary, sym_s, err = _summarize(result)
    row = {"fit_s": fit_s, "sym_s": sym_s, "status": result.status.code, "error": err,
           "exact": False, "b": float("nan"), "c": float("nan"), "rel": np.inf,
           "eq_x": "-", "eq_y": "-", "warnings": 0, "truth_alt": False, "n_alt": (0, 0)}
    if summary is None:
        return row
    eq_x, eq_y = summary.equations.get("x", 0), summary.equations.get("y", 0)
    ok_x, cx = _only(eq_x, [X_, Y_], (1, 1))
    ok_y, cy = _only(eq_y, [X_, Y_], (1, 1))
    alts = summary.alternatives
    truth_alt = all(_only(eq, [X_, Y_], (1, 1))[0]
                    or any(_only(a["expression"], [X_, Y_], (1, 1))[0]
                           for a in alts.get(name, []))
                    for name, eq in (("x", eq_x), ("y", eq_y)))
    row.update(exact=ok_x and ok_y, b=-cx, c=cy, eq_x=_short(eq_x), eq_y=_short(eq_y),
               warnings=len(summary.warnings), truth_alt=truth_alt,
               n_alt=(len(alts.get("x", [])), len(alts.get("y", []))),
               alt_text="; ".join(f"{n}: {_short(a['expression'])} ({a['gap']:+.1f})"
                                  for n in ("x", "y") for a in alts.get(n, [])))
    try:
        start_fit = summary.result.impute(times)
        far = summary.result.forecast(baselines.EXTRAP_TIMES[1:])
        ext = np.concatenate([
            np.stack([start_fit["x"].values[:1], start_fit["y"].values[:1]], -1),
            np.stack([far["x"].values, far["y"].values], -1)])
        truth = baselines.lv_truth(baselines.EXTRAP_TIMES)
        rel = float(np.linalg.norm(ext - truth) / np.linalg.norm(truth))
        row["rel"] = rel if np.isfinite(rel) else np.inf
    except Exception:           # noqa: BLE001 - a forecast that blows up counts as inf
        row["rel"] = np.inf
    return row


def _errors(row):
    b, c = baselines.LV_PARAMS["b"], baselines.LV_PARAMS["c"]
    row["b_err"] = abs(row["b"] / b - 1) if np.isfinite(row["b"]) else np.inf
    row["c_err"] = abs(row["c"] / c - 1) if np.isfinite(row["c"]) else np.inf
    return row


def lotka_volterra(seeds, sigma, label):
    rows = []
    for seed in seeds:
        times, Y, _ = baselines.lv_data(seed, sigma)
        ours = _errors(lv_symbolic(times, Y, seed))
        orc = _errors(baselines.oracle_least_squares(times, Y))
        limit = baselines.cached_support_limit(times, Y, f"sigma={sigma}/seed={seed}")
        ours.update(seed=seed, o_c_err=orc["c_err"], o_b_err=orc["b_err"],
                    o_rel=orc["extrap_rel_l2"], limit=limit)
        rows.append(ours)
        _log(label, ours)
    return rows


def _log(label, r):
    print(f"  {label} seed {r['seed']}: fit {r['fit_s']:.1f} s ({r['status']}), symbolic "
          f"{r['sym_s']:.1f} s, x: {r['eq_x']}, y: {r['eq_y']}, c err {_pct(r['c_err'])} "
          f"(oracle {_pct(r['o_c_err'])}), rel L2 {_g(r['rel'])}"
          + (f" ERROR {r['error']}" if r["error"] else ""), file=sys.stderr, flush=True)


def _limit_text(limit):
    if limit is None:
        return "-"
    if tuple(limit["selected"]) == ("xy", "xy"):
        return "yes" if limit["rank"] == 0 else (
            f"yes ({{{limit['best'][0]}}}, {{{limit['best'][1]}}} {-limit['gap']:.1f} lower, "
            f"more terms)")
    x, y = limit["selected"]
    gap = limit["scores"][f"{x} | {y}"] - limit["scores"]["xy | xy"]
    return f"no: {{{x}}}, {{{y}}} by {-gap:.1f}"


def _seed_rows(rows):
    limits = any("limit" in r for r in rows)
    out = ["| seed | support exact | residual x | residual y | alternatives reported (EBIC gap) | "
           "truth among alternatives | b err | c err | rel. L2 [0, 50] | "
           "fit (s) | symbolic() CPU (s) | oracle c err | oracle rel. L2 |"
           + (" data prefer the truth |" if limits else ""),
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if limits else "")]
    for r in rows:
        note = f" ({r['error']})" if r["error"] else ""
        out.append(
            f"| {r['seed']} | {'yes' if r['exact'] else 'no'}{note} | {r['eq_x']} | "
            f"{r['eq_y']} | {r.get('alt_text') or '-'} | "
            f"{'yes' if r['truth_alt'] else 'no'} | {_pct(r['b_err'])} | {_pct(r['c_err'])} | {_g(r['rel'])} | "
            f"{r['fit_s']:.1f} | {r['sym_s']:.1f} | {_pct(r['o_c_err'])} | {_g(r['o_rel'])} |"
            + (f" {_limit_text(r.get('limit'))} |" if limits else ""))
    return out


def _reachable(rows):
    return sum(tuple(r["limit"]["selected"]) == ("xy", "xy") for r in rows if r.get("limit"))


def _limit_paragraph(reachable, n):
    return (
        f"Data limit: in {reachable}/{n} seeds the in-sample selection rule of "
        f"`symbolic()` (the fewest terms within 2 EBIC units of the lowest, then the "
        f"simplest, then the score; the summary also compares equally sparse candidates "
        f"on held-out windows, which this least-squares limit has none of) picks the true support when it is given the truth and every support one "
        f"term away (one equation's x*y swapped for another monomial of degree <= 3, or "
        f"one monomial added), each fitted by least squares with several starts "
        f"(`baselines.lv_support_limit`, column 'data prefer the truth': else the support "
        f"picked and its EBIC advantage). In the other seeds the data themselves favour a "
        f"wrong support, so no search can reach the truth there by this criterion: "
        f"{reachable}/{n} is the ceiling on this data.")


def _ambiguity(rows):
    """The issue-26 targets: the truth selected or reported as an alternative in every
    seed, selections at the data limit, at most 3 alternatives per equation."""
    n, among, most = len(rows), sum(r["truth_alt"] for r in rows), max(max(r["n_alt"]) for r in rows)
    prefer = [r for r in rows if r.get("limit") and tuple(r["limit"]["selected"]) == ("xy", "xy")]
    reached, beyond = sum(r["exact"] for r in prefer), sum(r["exact"] for r in rows) - sum(r["exact"] for r in prefer)
    return (f"What the data cannot decide: the true support is selected or among the reported alternatives "
            f"(`summary.alternatives`: every support within 6 EBIC units of the selected, supersets that score "
            f"worse left out) in {among}/{n} seeds, {_yes(among == n)}; the selection is at the data limit (exact "
            f"in every seed where the data prefer the truth) in {reached}/{len(prefer)}, {_yes(reached == len(prefer))}"
            + (f", and exact in {beyond} more where the in-sample scores prefer another support (the held-out "
               f"error decided)" if beyond else "")
            + f"; at most {most} alternatives for one equation, {_yes(most <= 3)} (target: 3).")


def lv_table(rows, sigma, need_exact, published_ude, published_oracle):
    n = len(rows)
    exact = sum(r["exact"] for r in rows)
    c_med, o_c_med = _med(rows, "c_err"), _med(rows, "o_c_err")
    rel_med, o_rel_med = _med(rows, "rel"), _med(rows, "o_rel")
    c_ratio, rel_ratio = c_med / o_c_med, rel_med / o_rel_med
    sym = [r["sym_s"] for r in rows]
    out = _seed_rows(rows)
    out += [
        "",
        "| method | seeds | supports exact | median b err | median c err | "
        "median rel. L2 [0, 50] | symbolic() CPU median / max (s) |",
        "|---|---|---|---|---|---|---|",
        f"| sysid hybrid fit + symbolic() (refit distilled model) | {n} | {exact}/{n} | "
        f"{_pct(_med(rows, 'b_err'))} | {_pct(c_med)} ({c_ratio:.2f}x oracle) | "
        f"{_g(rel_med)} ({rel_ratio:.2f}x oracle) | {np.median(sym):.1f} / {max(sym):.1f} |",
        f"| least-squares oracle (true structure, same data) | {n} | given | "
        f"{_pct(_med(rows, 'o_b_err'))} | {_pct(o_c_med)} | {_g(o_rel_med)} | - |",
        f"| UDE + SINDy (published, Rackauckas et al. 2020) | 1 | {published_ude}",
        f"| oracle (published, BENCHMARKS.md section 1) | 10 | given | {published_oracle}",
        "",
    ]
    ok_exact = exact >= math.ceil(need_exact * n)
    ok_ratio = c_ratio <= 1.25 and rel_ratio <= 1.25
    ok_time = max(sym) < 30.0
    reachable = _reachable(rows)
    out += [_limit_paragraph(reachable, n), "", _ambiguity(rows), ""]
    out.append(
        f"Targets ({100 * sigma:g} % noise): exact supports in at least "
        f"{need_exact * 10:g}/10 of the seeds -- {exact}/{n}, {_yes(ok_exact)}; median c error "
        f"and median rel. L2 at most 1.25x the oracle's -- {c_ratio:.2f}x and "
        f"{rel_ratio:.2f}x, {_yes(ok_ratio)}; symbolic() under 30 s -- max "
        f"{max(sym):.1f} s, {_yes(ok_time)}.")
    return "\n".join(out)


def partial(seeds):
    rows = []
    for seed in seeds:
        times, Y = baselines.partial_data(seed)
        ours = _errors(lv_symbolic(times, Y, seed))
        orc = _errors(baselines.oracle_least_squares(times, Y))
        limit = baselines.cached_support_limit(times, Y, f"partial/seed={seed}")
        ours.update(seed=seed, o_c_err=orc["c_err"], o_b_err=orc["b_err"],
                    o_rel=orc["extrap_rel_l2"], limit=limit)
        rows.append(ours)
        _log("partial", ours)
    return rows


def partial_table(rows):
    n = len(rows)
    exact = sum(r["exact"] for r in rows)
    c_med, o_c_med = _med(rows, "c_err"), _med(rows, "o_c_err")
    per_seed = [r["c_err"] / r["o_c_err"] for r in rows]
    sym = [r["sym_s"] for r in rows]
    ratio = c_med / o_c_med
    out = _seed_rows(rows)
    out += [
        "",
        "| method | seeds | supports exact | median b err | median c err | "
        "median rel. L2 [0, 50] | symbolic() CPU median / max (s) |",
        "|---|---|---|---|---|---|---|",
        f"| sysid hybrid fit + symbolic() | {n} | {exact}/{n} | {_pct(_med(rows, 'b_err'))} | "
        f"{_pct(c_med)} ({ratio:.2f}x oracle; per-seed ratio median "
        f"{np.median(per_seed):.2f}x) | {_g(_med(rows, 'rel'))} | "
        f"{np.median(sym):.1f} / {max(sym):.1f} |",
        f"| least-squares oracle (true structure, same data) | {n} | given | "
        f"{_pct(_med(rows, 'o_b_err'))} | {_pct(o_c_med)} | {_g(_med(rows, 'o_rel'))} | - |",
        "| UDE partial-observation scenario (published; prey at 61 points on [0, 6], "
        "predator at 6) | 1 | - | - | 3.75 % | 0.57 | - |",
        "",
        "Data: 31 samples on [0, 3], 1 % noise, prey x at every sample, predator y at every "
        "5th (7 samples, t = 0, 0.5, ..., 3).",
        "",
        _limit_paragraph(_reachable(rows), n),
        "",
        _ambiguity(rows),
        "",
        f"Targets: exact supports in every seed -- {exact}/{n}, {_yes(exact == n)}; median c "
        f"error at most 1.5x the oracle's -- {ratio:.2f}x, {_yes(ratio <= 1.5)}.",
    ]
    return "\n".join(out)


# -- 4. Pendulum -------------------------------------------------------------------------------
def pendulum(n_traj):
    data = sysid.datasets.simulate("pendulum", noise=0.05, observed=["theta"], irregular=True,
                                   n_trajectories=n_traj, dt=0.5, t_end=20.0, seed=0)
    th, om = sp.symbols("theta omega")
    w0 = sp.Symbol("omega0", positive=True)
    model = sysid.HybridODE(states=[th, om], physics={th: om, om: -w0 ** 2 * sp.sin(th)},
                            parameters={w0: 1.5}, residual=sysid.MLP(32, 2, states=[om]))
    start = time.perf_counter()
    result = sysid.fit(model, data, seed=0, progress=False, throw=False)
    fit_s = time.perf_counter() - start
    summary, sym_s, err = _summarize(result)
    true_w0, true_alpha = 2 * np.pi / 6, 0.2
    hyb_w0 = abs(result.parameters["omega0"] / true_w0 - 1)
    exact, alpha, w0_err, eq = False, float("nan"), float("nan"), "-"
    if summary is not None:
        res = summary.equations.get("omega", 0)
        exact, coef = _only(res, [th, om], (0, 1))
        alpha, eq = -coef, _short(res)
        w0_err = abs(summary.parameters["omega0"] / true_w0 - 1)
        print(f"  pendulum: {summary!r}", file=sys.stderr, flush=True)
    a_err = abs(alpha / true_alpha - 1) if np.isfinite(alpha) else np.inf
    ls = baselines.pendulum_least_squares(data)
    ok = exact and a_err <= 0.05 and w0_err <= 0.02
    return "\n".join([
        "| method | trajectories | residual of omega | alpha (true 0.2) | alpha err | "
        "omega0 err | fit (s) | symbolic() CPU (s) |",
        "|---|---|---|---|---|---|---|---|",
        f"| sysid hybrid fit (frictionless physics + MLP) | {n_traj} | network | - | - | "
        f"{_pct(hyb_w0)} | {fit_s:.1f} | - |",
        f"| sysid symbolic() (distilled model refit) | {n_traj} | {eq} | {_g(alpha, '.4f')} | "
        f"{_pct(a_err)} | {_pct(w0_err)} | - | {sym_s:.1f}{' ' + err if err else ''} |",
        f"| least squares, complete physics (oracle) | {n_traj} | -alpha*omega (given) | "
        f"{ls['alpha']:.4f} | {_pct(abs(ls['alpha'] / true_alpha - 1))} | "
        f"{_pct(abs(ls['omega0'] / true_w0 - 1))} | {ls['wall_s']:.1f} | - |",
        "| APHYNITY (published, Yin et al. 2021) | 25 | network (no symbolic read-out) | - | - "
        "| 4.0 % | - | - |",
        "",
        f"Angle only, 5 % noise, irregular times, {n_traj} trajectories of 20 s; status "
        f"{result.status.code}.",
        "",
        f"Target: residual of omega exactly one term in omega -- {'yes' if exact else 'no'}; "
        f"alpha within 5 % -- {_pct(a_err)}; omega0 after the refit within 2 % -- "
        f"{_pct(w0_err)}: {_yes(ok)}.",
    ])


# -- 5. A missing term in the equation of a never-measured state -------------------------------
HIDDEN_TRUTH = {"delta": 0.1, "alpha": 1.0, "beta": 1.0}
HIDDEN_X0 = [[1.5, 0.0], [-1.0, 1.2], [2.0, -0.5], [0.3, -1.8]]


def hidden():
    data = sysid.datasets.simulate(
        "duffing", noise=0.02, observed=["x"], n_trajectories=len(HIDDEN_X0), x0=HIDDEN_X0,
        dt=0.2, t_end=20.0, seed=0, params={**HIDDEN_TRUTH, "gamma": 0.0})
    x, v, u = sp.symbols("x v u")
    de, al = sp.Symbol("delta", positive=True), sp.Symbol("alpha", positive=True)
    model = sysid.HybridODE(states=[x, v], inputs=[u],
                            physics={x: v, v: -de * v - al * x + u},
                            parameters={de: 0.5, al: 0.5},
                            residual=sysid.MLP(32, 2, states=[v], inputs=[x, v]))
    start = time.perf_counter()
    result = sysid.fit(model, data, seed=0, progress=False, throw=False)
    fit_s = time.perf_counter() - start
    summary, sym_s, sym_err = _summarize(result)
    exact, beta, eq, ref = False, float("nan"), "-", {}
    if summary is not None:
        res = summary.equations.get("v", 0)
        exact, coef = _only(res, [x, v], (3, 0))
        beta, eq, ref = -coef, _short(res), summary.parameters
        print(f"  hidden: {summary!r}", file=sys.stderr, flush=True)
    ls = baselines.duffing_least_squares(data)
    t = HIDDEN_TRUTH

    def err(val, key):
        return abs(val / t[key] - 1) if val is not None and np.isfinite(val) else np.inf

    hyb = result.parameters
    b_err, a_err = err(beta, "beta"), err(ref.get("alpha", np.nan), "alpha")
    ok = exact and b_err <= 0.05 and a_err <= 0.05
    amp = float(np.nanmax(np.abs(data["x"].values)))
    return "\n".join([
        "| method | residual of v | alpha (true 1.0) | delta (true 0.1) | beta (true 1.0) | "
        "time (s; symbolic(): CPU) |",
        "|---|---|---|---|---|---|",
        f"| sysid hybrid fit (linear spring + damper physics + MLP) | network | "
        f"{hyb['alpha']:.4f} ({_pct(err(hyb['alpha'], 'alpha'))}) | {hyb['delta']:.4f} "
        f"({_pct(err(hyb['delta'], 'delta'))}) | - | {fit_s:.1f} |",
        f"| sysid symbolic() (distilled model refit) | {eq} | "
        f"{_g(ref.get('alpha', np.nan), '.4f')} ({_pct(a_err)}) | "
        f"{_g(ref.get('delta', np.nan), '.4f')} ({_pct(err(ref.get('delta', np.nan), 'delta'))})"
        f" | {_g(beta, '.4f')} ({_pct(b_err)}) | {sym_s:.1f} |",
        f"| least squares, correct structure (oracle) | -beta*x^3 (given) | "
        f"{ls['alpha']:.4f} ({_pct(err(ls['alpha'], 'alpha'))}) | {ls['delta']:.4f} "
        f"({_pct(err(ls['delta'], 'delta'))}) | {ls['beta']:.4f} ({_pct(err(ls['beta'], 'beta'))})"
        f" | {ls['wall_s']:.1f} |",
        "",
        f"Unforced Duffing x'' = -delta x' - alpha x - beta x^3, {len(HIDDEN_X0)} trajectories "
        f"from x0 = {HIDDEN_X0}, 20 s every 0.2 s, x only with 2 % noise (max |x| "
        f"{amp:.2f}), v never measured; physics -delta v - alpha x, the residual of v reads "
        f"x and v. Hybrid fit status {result.status.code}."
        + (f" symbolic() failed: {sym_err}" if summary is None else ""),
        "",
        f"Target: residual of v exactly x^3 -- {'yes' if exact else 'no'}; beta within 5 % -- "
        f"{_pct(b_err)}; alpha after the refit within 5 % -- {_pct(a_err)}: {_yes(ok)}.",
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    parser.add_argument("--only", nargs="*", default=None, choices=SECTIONS,
                        help="sections to run: " + " ".join(SECTIONS))
    args = parser.parse_args(argv)
    quick = args.quick
    sections = set(args.only or SECTIONS)
    seeds = list(range(3) if quick else range(10))
    print(f"# sysid symbolic-summary benchmark ({'quick' if quick else 'full'}), "
          f"torch {torch.__version__}, sysid {getattr(sysid, '__version__', '?')}, 1 thread\n")
    walls = {}

    def timed(name, fn):
        start = time.perf_counter()
        text = fn()
        walls[name] = time.perf_counter() - start
        print(text + f"\n\nSection wall time: {walls[name]:.0f} s.\n", flush=True)

    if "lv" in sections:
        print("## Lotka-Volterra, 5 % noise, a and d known (BENCHMARKS.md section 1)\n")
        timed("lv", lambda: lv_table(
            lotka_volterra(seeds, 0.05, "lv"), 0.05, 0.9,
            "- | b 0.9 (0 %) | c 0.9 (+12.5 %) | 0.59 | - |",
            "1.1 % | 6.8 % (max 22 %) | 0.57 (max 1.13) | - |"))
    if "lv_low" in sections:
        print("## Lotka-Volterra, 0.5 % noise, a and d known (BENCHMARKS.md section 1)\n")
        timed("lv_low", lambda: lv_table(
            lotka_volterra(seeds, 0.005, "lv_low"), 0.005, 1.0,
            "exact recovery | - | - | extrapolation matches | - |",
            "- | 0.7 % | 0.07 | - |"))
    if "partial" in sections:
        print("## Lotka-Volterra, predator at every 5th sample, 1 % noise\n")
        timed("partial", lambda: partial_table(partial(seeds)))
    if "pendulum" in sections:
        print("## Damped pendulum, angle only, friction distilled (BENCHMARKS.md section 2)\n")
        timed("pendulum", lambda: pendulum(5 if quick else 10))
    if "hidden" in sections:
        print("## A missing term in the equation of a never-measured state (Duffing)\n")
        timed("hidden", hidden)
    if "chemostat" in sections:
        print("## Monod growth in a chemostat, biomass X only (issue 28)\n")
        timed("chemostat", lambda: symbolic_rational.section(range(2 if quick else 5), _summarize))
    print("Wall time per section: " + ", ".join(f"{k} {v:.0f} s" for k, v in walls.items())
          + f"; total {sum(walls.values()):.0f} s.")


if __name__ == "__main__":
    main()
