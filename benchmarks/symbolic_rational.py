"""The chemostat section of ``benchmarks/symbolic.py`` (issue 28): Monod growth distilled
from a network with ``result.symbolic(rational=True)``, biomass X measured only.

    python benchmarks/symbolic.py --only chemostat

The truth (SciPy, ``rtol=1e-10``)::

    dS/dt = D (S_in - S) - mu_max S / (K_s + S) X / Y
    dX/dt = mu_max S / (K_s + S) X - D X

with mu_max 0.5 /h, K_s 2 g/L, D 0.2 /h, S_in 10 g/L, Y 0.5. Three experiments from
(S, X) = (10, 0.1), (4, 1), (1, 3), X every hour for 24 h with 2 % multiplicative noise,
S never measured. The hybrid model knows the dilution terms and the yield: one network
rate read from S and X, written into X and, times -1/Y, into S
(``sysid.MLP(16, 2, states={X: 1, S: -2}, inputs=[S, X])``). The oracle is the true
structure (mu_max and K_s unknown, the same data) fitted by sysid without a network from
three starts, the truth's among them: the data's own limit.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import sympy as sp
import xarray as xr
from scipy.integrate import solve_ivp

import sysid

MU, KS, D, S_IN, YIELD = 0.5, 2.0, 0.2, 10.0, 0.5
X0S = ((10.0, 0.1), (4.0, 1.0), (1.0, 3.0))
#: A new experiment (not in the data), run from its known initial state over 48 h.
NEW_X0 = (6.0, 0.5)
S_, X_ = sp.symbols("S X", positive=True)


def truth(x0, times):
    """(S, X) of the true chemostat at ``times`` from ``x0``."""
    def rhs(_, z):
        growth = MU * z[0] / (KS + z[0]) * z[1]
        return [D * (S_IN - z[0]) - growth / YIELD, growth - D * z[1]]
    sol = solve_ivp(rhs, (0.0, float(times[-1])), list(x0), t_eval=times, rtol=1e-10,
                    atol=1e-12)
    return sol.y[0], sol.y[1]


def chemostat_data(seed=0, noise=0.02, n=25, t_end=24.0, x0s=X0S):
    """``(dataset of X only, S along the data (trajectory, time))``."""
    rng = np.random.default_rng(seed)
    times = np.linspace(0.0, t_end, n)
    runs = [truth(x0, times) for x0 in x0s]
    S = np.array([r[0] for r in runs])
    X = np.array([r[1] for r in runs])
    noisy = X * (1.0 + noise * rng.standard_normal(X.shape))
    data = xr.Dataset({"X": (("trajectory", "time"), noisy)},
                      coords={"time": times, "trajectory": np.arange(len(x0s))})
    return data, S


def hybrid_model():
    return sysid.HybridODE(states=[S_, X_], physics={S_: D * (S_IN - S_), X_: -D * X_},
                           residual=sysid.MLP(16, 2, states={X_: 1, S_: -1 / YIELD},
                                              inputs=[S_, X_]))


def oracle_model(guess=(1.0, 1.0)):
    mu, K = sp.Symbol("mu_max", positive=True), sp.Symbol("K_s", positive=True)
    growth = mu * S_ / (K + S_) * X_
    return sysid.HybridODE(states=[S_, X_], parameters={mu: guess[0], K: guess[1]},
                           physics={S_: D * (S_IN - S_) - growth / YIELD,
                                    X_: growth - D * X_})


#: The oracle's starts (mu_max, K_s): a fit from (1, 1) alone can stop where an unmeasured
#: initial S sits at 0 (measured on fb91eb3: seed 0, S(0) 3e-15 for two of the
#: three experiments, a sum of squares above the truth's start).
ORACLE_STARTS = ((1.0, 1.0), (MU, KS), (0.25, 8.0))


def oracle(data):
    """The true structure fitted from each of ORACLE_STARTS; the fit with the smallest sum
    of squared residuals of X."""
    def rss(fit):
        seen = fit.impute()["X"].transpose(*data["X"].dims).values
        return float(np.nansum((seen - data["X"].values) ** 2))
    fits = [sysid.fit(oracle_model(g), data, seed=0, progress=False, throw=False)
            for g in ORACLE_STARTS]
    return min(fits, key=rss)


def monod(expr):
    """``(mu_max, K_s)`` where ``expr`` is exactly ``c * S * X / (S + K)``, else None."""
    expr = sp.sympify(expr)
    num, den = sp.fraction(sp.together(expr))
    S, X = (next((s for s in expr.free_symbols if s.name == n), None) for n in "SX")
    if S is None or X is None:
        return None
    c, K = sp.simplify(num / (S * X)), sp.expand(den - S)
    if c.free_symbols or K.free_symbols or not K.is_number or float(K) <= 0:
        return None
    return float(c), float(K)


def _run_model(equations, x0, times):
    """Integrate ``{name: rhs}`` in S, X from ``x0`` (SciPy): the distilled model on a
    new experiment."""
    S, X = sp.symbols("S X")
    rhs = [sp.sympify(equations[n]).xreplace(
        {s: {"S": S, "X": X}[s.name] for s in sp.sympify(equations[n]).free_symbols})
        for n in ("S", "X")]
    f = sp.lambdify([S, X], rhs, "numpy")
    sol = solve_ivp(lambda _, z: f(*z), (0.0, float(times[-1])), list(x0), t_eval=times,
                    rtol=1e-10, atol=1e-12)
    if not sol.success or sol.y.shape[1] != len(times):
        return np.full(len(times), np.inf)        # the model cannot be integrated: inf error
    return sol.y[0]


def _s_errors(fit, data, S_true, x0s=X0S):
    """RMSE of S over the data (imputed), past them (24 h forecast) and on the new
    experiment, each over the range of S along the data."""
    try:
        return _s_errors_of(fit, data, S_true, x0s)
    except Exception:           # noqa: BLE001 - a model that blows up counts as inf
        return {"imputed": np.inf, "forecast": np.inf, "new": np.inf}


def _s_errors_of(fit, data, S_true, x0s):
    times = data["time"].values
    span = float(S_true.max() - S_true.min())
    seen = fit.impute()["S"].transpose("trajectory", "time").values
    ahead_t = times[-1] + np.linspace(1.0, times[-1], len(times))
    ahead = fit.forecast(ahead_t)["S"].transpose("trajectory", "time").values
    future = np.array([truth(x0, np.concatenate([times, ahead_t]))[0][len(times):]
                       for x0 in x0s])
    new_t = np.linspace(0.0, 48.0, 97)
    new = _run_model(fit.equations, NEW_X0, new_t)
    rmse = {"imputed": float(np.sqrt(np.mean((seen - S_true) ** 2))) / span,
            "forecast": float(np.sqrt(np.mean((ahead - future) ** 2))) / span,
            "new": float(np.sqrt(np.mean((new - truth(NEW_X0, new_t)[0]) ** 2))) / span}
    return rmse


def run(seed, summarize):
    """One noise seed: hybrid fit, summary (``summarize(result, **options)`` -> (summary or
    None, CPU seconds, error text)), oracle; a dict of the numbers."""
    data, S_true = chemostat_data(seed)
    start = time.perf_counter()
    result = sysid.fit(hybrid_model(), data, seed=0, progress=False, throw=False)
    fit_s = time.perf_counter() - start
    summary, sym_cpu, err = summarize(result, rational=True)
    best = oracle(data)
    plain, _, _ = summarize(result)        # the polynomial library alone, as before
    nan = float("nan")
    row = {"seed": seed, "fit_s": fit_s, "sym_cpu": sym_cpu, "error": err, "eq_X": "-",
           "exact": False, "mu": nan, "K": nan, "S": {k: nan for k in ("imputed", "forecast",
                                                                         "new")},
           "o_mu": best.parameters["mu_max"], "o_K": best.parameters["K_s"],
           "o_S": _s_errors(best, data, S_true),
           "p_eq": plain.equations["X"] if plain is not None else "-",
           "p_S": _s_errors(plain.result, data, S_true) if plain is not None
           else {"forecast": nan, "new": nan}}
    if summary is None:
        return row
    found = monod(summary.equations["X"])
    tied = sp.simplify(summary.equations["S"] + 2 * summary.equations["X"]) == 0
    row.update(eq_X=summary.equations["X"], exact=found is not None and tied,
               mu=found[0] if found else nan, K=found[1] if found else nan,
               S=_s_errors(summary.result, data, S_true))
    print(f"  chemostat seed {seed}: {summary!r}", file=sys.stderr, flush=True)
    return row


def _pct(v):
    return "-" if not np.isfinite(v) else f"{100 * v:.2f} %"


def _short(expr):
    expr = sp.sympify(expr)
    return str(expr.xreplace({f: sp.Float(float(f"{float(f):.3g}"), 3)
                              for f in expr.atoms(sp.Float)})).replace("**", "^")


def section(seeds, summarize) -> str:
    """The record's table and targets for the noise ``seeds``."""
    rows = [run(s, summarize) for s in seeds]
    out = ["| seed | residual of X (S: -2 times it) | mu_max err | K_s err | S imputed | "
           "S forecast 24 h | S new experiment | oracle mu_max err | oracle K_s err | "
           "oracle S imputed | oracle S forecast | fit (s) | symbolic() CPU (s) | "
           "without rational: residual of X | S forecast | S new experiment |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    met = 0
    for r in rows:
        e_mu, e_K = abs(r["mu"] / MU - 1), abs(r["K"] / KS - 1)
        o_mu, o_K = abs(r["o_mu"] / MU - 1), abs(r["o_K"] / KS - 1)
        met += bool(r["exact"] and e_mu <= 0.1 and e_K <= 0.1 and r["S"]["forecast"] <= 0.05
                   and r["S"]["new"] <= 0.05)
        residual = _short(r["eq_X"]) + ("" if r["exact"] else " (not Monod)") \
            + (f" ({r['error']})" if r["error"] else "")
        out.append(
            f"| {r['seed']} | {residual} | {_pct(e_mu)} | {_pct(e_K)} | "
            f"{_pct(r['S']['imputed'])} | {_pct(r['S']['forecast'])} | {_pct(r['S']['new'])} | "
            f"{_pct(o_mu)} | {_pct(o_K)} | {_pct(r['o_S']['imputed'])} | "
            f"{_pct(r['o_S']['forecast'])} | {r['fit_s']:.1f} | {r['sym_cpu']:.1f} | "
            f"{_short(r['p_eq'])} | {_pct(r['p_S']['forecast'])} | {_pct(r['p_S']['new'])} |")
    out += ["", "S errors are RMSEs over the range of S along the data (true S from 1 to 10 "
            "g/L): imputed over the data (S never measured; its initial value fitted), "
            "forecast over the 24 h after the data, and a new experiment from (S, X) = "
            f"{NEW_X0} over 48 h run from its known initial state. The last three columns: "
            "`result.symbolic()` of the same hybrid fit without `rational` (monomials up to "
            "degree 3).", "",
            f"Target (issue 28): the Monod term recovered with mu_max and K_s within 10 %, "
            f"and the distilled model forecasts S within 5 % of its range (forecast and new "
            f"experiment) -- in {met}/{len(rows)} seeds, "
            f"{'**met**' if met == len(rows) else '**not met**'}."]
    return "\n".join(out)
