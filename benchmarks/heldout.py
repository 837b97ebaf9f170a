"""Issue 27: do sysid's defaults hold on problems that no benchmark was tuned on?

    cd benchmarks && python heldout.py [--quick] [--only NAME ...]   # results/heldout.md

Each model is written from its problem's textbook description (SymPy, rough guesses) and
fitted with DEFAULT options, ``sysid.fit(model, data, progress=False)`` (``noise=
"lognormal"`` only where the description says the error is relative), to data made here
by ``solve_ivp`` (DOP853, rtol 1e-11): irregular times, missing samples, never-measured
states, recorded inputs (linear between samples), noise seeds 1000+. Hybrids leave one
term of the truth to ``sysid.MLP``. The oracle (the data's limit) is ``least_squares`` on
the TRUE structure from the truth: every free parameter and initial state, residuals over
each channel's true noise level (log scale if relative). ``misfit``: the fit's RMS residual
over the noise level (worst channel); ``cost gap``: sysid's optimum minus the oracle's in
the oracle's objective (half chi-square; a few units = the same optimum); imputation and
forecast (one fifth of the span past the data; worst state): RMS error over the state's
spread. One thread on a shared machine: read ratios, not seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import sympy as sp
import xarray as xr
from scipy.integrate import solve_ivp
from scipy.optimize import least_squares

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import git_commit, markdown, one_thread  # noqa: E402

import sysid  # noqa: E402

TOL = dict(method="DOP853", rtol=1e-11, atol=1e-12)     # the truth's and the oracle's solves
_RHS: dict = {}                   # the true right-hand sides, lambdified once per problem


@dataclass
class Problem:
    """The true model, how it is measured, and the user's model."""
    name: str
    kind: str
    states: list                  # SymPy symbols
    eqs: dict                     # the TRUE right-hand sides (known constants substituted)
    truth: dict                   # every free parameter of the true model -> value
    guess: dict                   # the user's parameters -> rough guesses
    x0: list                      # initial states, one list per trajectory
    times: list                   # sample times, one array per trajectory
    obs: dict                     # measured state -> (noise sigma, missing fraction, every k-th)
    seed: int
    inputs: dict = field(default_factory=dict)   # input symbol -> recorded values u(t)
    noise: str = "gaussian"       # "lognormal": the description says the error is relative
    physics: dict | None = None   # a hybrid's known physics
    residual: object = None       # a hybrid's sysid.MLP

    def model(self) -> sysid.HybridODE:
        return sysid.HybridODE(states=self.states, physics=self.physics or self.eqs,
                               parameters=self.guess, residual=self.residual,
                               inputs=list(self.inputs))


# -- the truth, the data and the oracle ----------------------------------------------------
def _jittered(seed, t_end, n, jitter=0.35):
    """``n`` times on [0, t_end], each off its grid point by up to ``jitter`` steps."""
    rng, grid = np.random.default_rng(seed), np.linspace(0.0, t_end, n)
    grid[1:-1] += rng.uniform(-jitter, jitter, n - 2) * (grid[1] - grid[0])
    return np.round(grid, 6)


def _levels(seed, t_end, n, lo, hi, ramp=0.1):
    """A programme of ``n`` random levels in [lo, hi] joined by linear ramps."""
    rng, edges = np.random.default_rng(seed), np.linspace(0.0, t_end * 1.25, n + 1)
    knots = np.ravel([[a, b - ramp * (b - a)] for a, b in zip(edges[:-1], edges[1:])])
    values = np.repeat(rng.uniform(lo, hi, n), 2)
    return lambda t: np.interp(t, knots, values)


def _solve(p, params, x0, t_eval, knots):
    """The true model from t = 0, at ``t_eval`` (T, n); None where it fails. Inputs are
    the values recorded at ``knots``, linear between them."""
    if p.name not in _RHS:
        _RHS[p.name] = sp.lambdify([p.states, list(p.inputs), list(p.truth)],
                                   [p.eqs[s] for s in p.states], "numpy")
    f, us, args = _RHS[p.name], [u(knots) for u in p.inputs.values()], list(params)

    def rhs(t, x):
        return np.asarray(f(x, [np.interp(t, knots, u) for u in us], args), float).ravel()

    try:
        with np.errstate(all="ignore"):
            sol = solve_ivp(rhs, (0.0, float(t_eval[-1])), np.asarray(x0, float),
                            t_eval=t_eval, **TOL)
    except (ValueError, OverflowError, FloatingPointError, ZeroDivisionError):
        return None
    ok = sol.success and sol.y.shape[1] == len(t_eval) and np.all(np.isfinite(sol.y))
    return sol.y.T if ok else None


def simulate(p: Problem, replicate: int = 0) -> SimpleNamespace:
    """The data and the truth: ``grid`` the data's times, ``states`` (B, T, n) the truth on
    it (NaN past a trajectory), ``y`` channel -> (B, T) measurements, ``knots`` where
    inputs are recorded, ``future`` one fifth of the span past the data, and its truth;
    ``replicate`` > 0: another noise realisation (and other missing samples)."""
    rng = np.random.default_rng([p.seed, 1 + replicate])
    grid = np.unique(np.concatenate(p.times))
    future = grid[-1] + (grid[-1] - grid[0]) / 5 * np.linspace(0, 1, 41)[1:]
    knots = np.concatenate([grid, future])
    B, n, names = len(p.x0), len(p.states), [s.name for s in p.states]
    states = np.full((B, len(grid), n), np.nan)
    future_states = np.empty((B, len(future), n))
    y = {c: np.full((B, len(grid)), np.nan) for c in p.obs}
    for b, (x0, times) in enumerate(zip(p.x0, p.times)):
        inside = grid <= times[-1]
        whole = _solve(p, p.truth.values(), x0, np.r_[grid[inside], future], knots)
        states[b, inside], future_states[b] = whole[:inside.sum()], whole[inside.sum():]
        own = np.flatnonzero(np.isin(grid, times))
        for i, (c, (sigma, missing, every)) in enumerate(p.obs.items()):
            x, e = states[b, :, names.index(c)], rng.standard_normal(len(grid))
            seen = np.zeros(len(grid), bool)
            seen[own[::every]] = True
            seen &= rng.uniform(size=len(grid)) >= missing
            seen[own[0]] |= i == 0            # the first channel is measured at t = 0
            seen &= (x > 0) | (p.noise != "lognormal")
            noisy = x * np.exp(sigma * e) if p.noise == "lognormal" else x + sigma * e
            y[c][b] = np.where(seen, noisy, np.nan)
    dims = ("trajectory", "time") if B > 1 else ("time",)
    variables = {c: (dims, v if B > 1 else v[0]) for c, v in y.items()}
    variables.update({s.name: ("time", u(grid)) for s, u in p.inputs.items()})
    data = xr.Dataset(variables, coords={"time": grid})
    return SimpleNamespace(data=data, grid=grid, states=states, y=y, knots=knots,
                           future=future, future_states=future_states)


def _residuals(p: Problem, sim):
    """The oracle's residuals as a function of (free parameters, initial states): each
    measurement's error over its channel's true noise level (log scale if relative)."""
    k, n = len(p.truth), len(p.states)
    cols = [[s.name for s in p.states].index(c) for c in p.obs]
    sig = np.array([p.obs[c][0] for c in p.obs])
    size = sum(int(np.isfinite(v).sum()) for v in sim.y.values())

    def residual(theta):
        out = []
        for b, times in enumerate(p.times):
            t = sim.grid[sim.grid <= times[-1]]
            X = _solve(p, theta[:k], theta[k + b * n:k + b * n + n], t, sim.knots)
            if X is None:
                return np.full(size, 1e3)
            Y = np.stack([sim.y[c][b][:len(t)] for c in p.obs], -1)
            r = (np.log(np.maximum(X[:, cols], 1e-12)) - np.log(Y) if p.noise == "lognormal"
                 else X[:, cols] - Y) / sig
            out.append(r[np.isfinite(Y)])
        return np.concatenate(out)
    return residual


def oracle(p: Problem, sim) -> dict:
    """Least squares on the true structure from the truth: every free parameter, every
    initial state, within the signs the model declares; its forecast past the data."""
    k, B = len(p.truth), len(p.x0)          # the model's declared signs hold, as in sysid
    sign = [0.0 if q.is_positive or q.is_nonnegative else -np.inf for q in [*p.truth, *p.states]]
    low = np.r_[sign[:k], np.tile(sign[k:], B)]
    fit = least_squares(_residuals(p, sim), np.r_[list(p.truth.values()), np.ravel(p.x0)],
                        x_scale="jac", jac="3-point", diff_step=1e-5, xtol=1e-12,
                        ftol=1e-12, gtol=1e-12, max_nfev=100, bounds=(low, np.inf))
    x0 = fit.x[k:].reshape(B, -1)
    ahead = [_solve(p, fit.x[:k], x0[b], sim.future, sim.knots) for b in range(B)]
    ahead = np.stack([np.full_like(sim.future_states[0], np.inf) if a is None else a
                      for a in ahead])
    params = dict(zip(p.truth, fit.x[:k]))
    return {"parameters": params, "x0": x0, "cost": float(fit.cost),
            "errors": {q: abs(params[q] / p.truth[q] - 1) for q in p.guess},
            "forecast": _worst(ahead, sim)}


# -- one problem, fitted with the defaults ---------------------------------------------------
def _rms(pred, truth, spread):
    """RMS(pred - truth) over the finite truth, over ``spread``; inf if pred is not finite."""
    ok = np.isfinite(truth)
    if pred is None or not np.all(np.isfinite(pred[ok])):
        return np.inf
    return float(np.sqrt(np.mean((pred[ok] - truth[ok]) ** 2)) / spread)


def _worst(ahead, sim):           # the worst state's forecast error over its spread
    return max(_rms(ahead[..., j], sim.future_states[..., j], np.nanstd(sim.states[..., j]))
               for j in range(ahead.shape[-1]))


def _as_array(ds, p, B):          # (B, T, n) states of an output dataset
    return np.stack([ds[s.name].transpose(..., "time").values.reshape(B, -1)
                     for s in p.states], -1)


def evaluate(p: Problem, *, options=None, with_oracle=True, replicate=0) -> dict:
    """Fit ``p`` with the defaults (plus ``options``) and score it; never raises."""
    sim, B = simulate(p, replicate), len(p.x0)
    result, error, start = None, "", time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            noise = {"noise": p.noise} if p.noise != "gaussian" else {}
            result = sysid.fit(p.model(), sim.data, progress=False, **noise, **(options or {}))
        except Exception as exc:  # noqa: BLE001 - counted as a failure, message recorded
            error = f"{type(exc).__name__}: {exc}"
    rec = {"problem": p.name + (f" #{replicate}" if replicate else ""), "kind": p.kind,
           "fit_s": time.perf_counter() - start, "cost": np.nan, "oracle": None,
           "status": "exception" if result is None else result.status.code,
           "success": result is not None and result.status.success,
           "detail": error or result.status.detail, "result": result, "sim": sim,
           "warnings": [str(w.message) for w in caught
                        if issubclass(w.category, sysid.errors.FitWarning)],
           "errors": {}, "impute": {}, "misfit": np.nan, "forecast": np.nan}
    if result is not None:
        _score(p, sim, result, rec)
    if with_oracle:
        rec["oracle"] = oracle(p, sim)
    return rec


def _score(p, sim, result, rec):
    B, names = len(p.x0), [s.name for s in p.states]
    rec["errors"] = {q: abs(result.parameters[str(q)] / p.truth[q] - 1) for q in p.guess}
    try:
        imp = _as_array(result.impute(), p, B)
    except Exception:  # noqa: BLE001 - an imputation that fails scores inf
        imp = np.full_like(sim.states, np.inf)
    for j, name in enumerate(names):
        if name not in p.obs:
            rec["impute"][name] = _rms(imp[..., j], sim.states[..., j],
                                       np.nanstd(sim.states[..., j]))
    log = np.log if p.noise == "lognormal" else (lambda a: a)
    with np.errstate(all="ignore"):
        rec["misfit"] = max(_rms(log(imp[..., names.index(c)]), log(sim.y[c]), sigma)
                            for c, (sigma, _, _) in p.obs.items())
    if p.residual is not None:
        try:
            inputs = (xr.Dataset({s.name: ("time", u(sim.future)) for s, u in p.inputs.items()},
                                 coords={"time": sim.future}) if p.inputs else None)
            rec["forecast"] = _worst(_as_array(result.forecast(sim.future, inputs=inputs),
                                               p, B), sim)
        except Exception:  # noqa: BLE001 - a forecast that cannot be integrated scores inf
            rec["forecast"] = np.inf
    else:                          # sysid's optimum in the oracle's objective
        x0 = result.initial_states
        x0 = np.stack([np.atleast_1d(x0[name].values) for name in names], -1)
        theta = np.r_[[result.parameters[str(q)] for q in p.truth], x0.ravel()]
        rec["cost"] = 0.5 * float(np.sum(_residuals(p, sim)(theta) ** 2))


# -- the problems ----------------------------------------------------------------------------
def _pos(names):            # parameters and concentrations are declared positive
    return sp.symbols(names, positive=True)


def driven_oscillator():
    """A mass on a spring driven by a measured force, x'' + c x' + k x = g u(t); position
    only, irregular times, 20 % missing."""
    (x, v, u), (c, k, g) = sp.symbols("x v u"), _pos("c k g")
    return Problem("driven_oscillator", "input u; v unmeasured", [x, v],
                   {x: v, v: -k * x - c * v + g * u}, {c: 0.3, k: 4.0, g: 2.0},
                   {c: 0.5, k: 3.0, g: 1.0}, [[0.5, 0.0]], [_jittered(1001, 40.0, 200)],
                   {"x": (0.02, 0.2, 1)}, 1001, inputs={u: _levels(1051, 40.0, 12, -1, 1, 0.3)})


def enzyme_cascade():
    """Two Michaelis-Menten steps S -> I -> P; S and P assayed with 5 % relative error at
    irregular times, I never; three initial substrate concentrations."""
    (S, I, P), (V1, K1, V2, K2) = _pos("S I P"), _pos("V1 K1 V2 K2")
    r1, r2 = V1 * S / (K1 + S), V2 * I / (K2 + I)
    return Problem("enzyme_cascade", "relative error; I unmeasured; 3 runs", [S, I, P],
                   {S: -r1, I: r1 - r2, P: r2}, {V1: 1.0, K1: 2.0, V2: 0.6, K2: 0.8},
                   {V1: 1.0, K1: 1.0, V2: 1.0, K2: 1.0}, [[1.0, 0, 0], [4.0, 0, 0], [10.0, 0, 0]],
                   [_jittered(1002 + 100 * i, 30.0 + 5 * i, 22, 0.45) for i in range(3)],
                   {"S": (0.05, 0.0, 1), "P": (0.05, 0.1, 1)}, 1002, noise="lognormal")


def seir():
    """SEIR in population fractions (R implied); only the prevalence I reported, every ~2
    days with 10 % relative error, 15 % of reports missing."""
    (S, E, I), (beta, sigma, gamma) = _pos("S E I"), _pos("beta sigma gamma")
    return Problem("seir", "relative error; only I measured", [S, E, I],
                   {S: -beta * S * I, E: beta * S * I - sigma * E, I: sigma * E - gamma * I},
                   {beta: 0.8, sigma: 0.3, gamma: 0.25}, {beta: 0.5, sigma: 0.5, gamma: 0.1},
                   [[0.995, 0.004, 0.001]], [_jittered(1003, 100.0, 51)],
                   {"I": (0.1, 0.15, 1)}, 1003, noise="lognormal")


def brusselator():
    """The Brusselator on its limit cycle; y sampled at half the rate of x, 30 % missing."""
    x, y, a, b = _pos("x y a b")
    return Problem("brusselator", "limit cycle; y sparse", [x, y],
                   {x: a - (b + 1) * x + x ** 2 * y, y: b * x - x ** 2 * y}, {a: 1.0, b: 3.0},
                   {a: 1.5, b: 2.5}, [[1.2, 3.1]], [_jittered(1004, 20.0, 120)],
                   {"x": (0.05, 0.1, 1), "y": (0.05, 0.3, 2)}, 1004)


def rossler():
    """The Rossler system in its chaotic regime; x and y measured, z never."""
    (x, y, z), (a, b, c) = sp.symbols("x y z"), _pos("a b c")
    return Problem("rossler", "chaotic; z unmeasured", [x, y, z],
                   {x: -y - z, y: x + a * y, z: b + z * (x - c)}, {a: 0.2, b: 0.2, c: 5.7},
                   {a: 0.1, b: 0.3, c: 5.0}, [[-3.0, -6.0, 0.05]], [_jittered(1005, 30.0, 200)],
                   {"x": (0.1, 0.1, 1), "y": (0.1, 0.1, 1)}, 1005)


def chemostat():
    """A chemostat, Monod growth (mu_max, K_s, yield Y), feed 10 g/L, the dilution rate D(t)
    recorded; biomass about hourly, substrate every 4th sample."""
    S, X, D = *_pos("S X"), sp.Symbol("D")
    mu, Ks, Y = _pos("mu_max K_s Y")
    growth = mu * S / (Ks + S) * X
    return Problem("chemostat", "input D; S sparse", [S, X],
                   {S: D * (10 - S) - growth / Y, X: growth - D * X},
                   {mu: 0.5, Ks: 2.0, Y: 0.5}, {mu: 1.0, Ks: 1.0, Y: 0.4},
                   [[8.0, 0.2]], [_jittered(1006, 100.0, 101)],
                   {"X": (0.05, 0.05, 1), "S": (0.1, 0.0, 4)}, 1006,
                   inputs={D: _levels(1056, 100.0, 6, 0.1, 0.35)})


def heated_rod():
    """A rod lumped in three compartments: heater P u(t) into the first, conduction k
    between neighbours, loss h to the 20 C room; thermocouples at the ends only."""
    (T1, T2, T3, u), (P, k, h) = sp.symbols("T1 T2 T3 u"), _pos("P k h")
    return Problem("heated_rod", "input u; middle unmeasured", [T1, T2, T3],
                   {T1: P * u - k * (T1 - T2) - h * (T1 - 20),
                    T2: k * (T1 - T2) - k * (T2 - T3) - h * (T2 - 20),
                    T3: k * (T2 - T3) - h * (T3 - 20)}, {P: 4.0, k: 0.4, h: 0.05},
                   {P: 1.0, k: 0.1, h: 0.1}, [[20.0, 20.0, 20.0]], [_jittered(1007, 150.0, 151)],
                   {"T1": (0.1, 0.1, 1), "T3": (0.1, 0.1, 1)}, 1007,
                   inputs={u: _levels(1057, 150.0, 8, 0.0, 1.0)})


def morris_lecar():
    """Morris-Lecar (Rinzel & Ermentrout's form), I = 120: voltage recorded (1 mV), gating
    w never; g_Ca, g_K, g_L, phi guessed at the textbook's Hopf-regime values."""
    (V, w), (gCa, gK, gL, phi) = sp.symbols("V w"), _pos("g_Ca g_K g_L phi")
    m_inf, w_inf = (1 + sp.tanh((V + 1.2) / 18)) / 2, (1 + sp.tanh((V - 2) / 30)) / 2
    return Problem("morris_lecar", "spiking; w unmeasured", [V, w],
                   {V: (120 - gL * (V + 60) - gCa * m_inf * (V - 120) - gK * w * (V + 84)) / 20,
                    w: phi * (w_inf - w) * sp.cosh((V - 2) / 60)},
                   {gCa: 4.0, gK: 8.5, gL: 2.2, phi: 0.05},
                   {gCa: 4.4, gK: 8.0, gL: 2.0, phi: 0.04},
                   [[-40.0, 0.1]], [_jittered(1008, 500.0, 251)], {"V": (1.0, 0.1, 1)}, 1008)


def selkov():
    """Sel'kov's glycolysis oscillator: ADP (x) measured, F6P (y) never."""
    x, y, a, b = _pos("x y a b")
    return Problem("selkov", "limit cycle; y unmeasured", [x, y],
                   {x: -x + a * y + x ** 2 * y, y: b - a * y - x ** 2 * y},
                   {a: 0.08, b: 0.6}, {a: 0.1, b: 0.5}, [[0.5, 1.5]],
                   [_jittered(1009, 60.0, 121)], {"x": (0.02, 0.1, 1)}, 1009)


def two_mass():
    """Two unit masses, wall -k1- m1 -k2- m2, dampers c1, c2 to ground; positions
    measured, velocities never; two experiments."""
    (x1, v1, x2, v2), (k1, k2, c1, c2) = sp.symbols("x1 v1 x2 v2"), _pos("k1 k2 c1 c2")
    return Problem("two_mass", "velocities unmeasured; 2 runs", [x1, v1, x2, v2],
                   {x1: v1, v1: -k1 * x1 - k2 * (x1 - x2) - c1 * v1,
                    x2: v2, v2: -k2 * (x2 - x1) - c2 * v2}, {k1: 4.0, k2: 2.0, c1: 0.2, c2: 0.1},
                   {k1: 3.0, k2: 3.0, c1: 0.5, c2: 0.5}, [[1.0, 0, 0, 0], [0, 0, -0.5, 0.5]],
                   [_jittered(1011 + 100 * i, 30.0, 121) for i in range(2)],
                   {"x1": (0.01, 0.15, 1), "x2": (0.01, 0.15, 1)}, 1011)


def dc_motor():
    """A DC motor, L i' = V - R i - K w, J w' = K i - b w (L = 0.5 H, J = 0.01 kg m^2 from
    the data sheet); voltage recorded, current and speed measured, 10 % dropped."""
    (i, w, V), (R, K, b) = sp.symbols("i w V"), _pos("R K b")
    return Problem("dc_motor", "input V; both measured", [i, w],
                   {i: (V - R * i - K * w) / 0.5, w: (K * i - b * w) / 0.01},
                   {R: 1.2, K: 0.05, b: 0.02}, {R: 1.0, K: 0.1, b: 0.05},
                   [[0.0, 0.0]], [_jittered(1012, 6.0, 301)],
                   {"i": (0.05, 0.1, 1), "w": (0.05, 0.1, 1)}, 1012,
                   inputs={V: _levels(1062, 6.0, 8, 0.0, 12.0, 0.2)})


# -- hybrids: one term of the truth left to a network -----------------------------------------
def hybrid_predator_prey():
    """Rosenzweig-MacArthur: prey growth and predator death known in form, the Holling II
    response unknown: one network rate, lost by the prey, gained at the efficiency 0.6."""
    (N, P), (r, K, m, a, h) = _pos("N P"), _pos("r K m a h")
    eat = a * N * P / (1 + a * h * N)
    return Problem("hybrid_predator_prey", "hybrid; functional response", [N, P],
                   {N: r * N * (1 - N / K) - eat, P: 0.6 * eat - m * P},
                   {r: 1.0, K: 3.0, m: 0.2, a: 1.0, h: 0.5}, {r: 0.5, K: 5.0, m: 0.5},
                   [[1.0, 0.5], [2.5, 1.0]],
                   [_jittered(1013 + 100 * i, 40.0, 81) for i in range(2)],
                   {"N": (0.05, 0.1, 1), "P": (0.03, 0.2, 1)}, 1013,
                   physics={N: r * N * (1 - N / K), P: -m * P},
                   residual=sysid.MLP(width=16, depth=2, states={N: -1, P: 0.6}))


def hybrid_chemostat():
    """The chemostat with its growth law unknown: one network rate of S and X, biomass from
    substrate at the known yield 0.5 ({X: 1, S: -2}); feed S_in (nominally 12 g/L) fitted."""
    S, X, D = *_pos("S X"), sp.Symbol("D")
    Sin, mu, Ks = _pos("S_in mu_max K_s")
    growth = mu * S / (Ks + S) * X
    return Problem("hybrid_chemostat", "hybrid; growth law; input D", [S, X],
                   {S: D * (Sin - S) - 2 * growth, X: growth - D * X},
                   {Sin: 10.0, mu: 0.6, Ks: 1.5}, {Sin: 12.0}, [[6.0, 0.5]],
                   [_jittered(1014, 100.0, 101)], {"X": (0.05, 0.05, 1), "S": (0.1, 0.0, 4)},
                   1014, inputs={D: _levels(1064, 125.0, 7, 0.1, 0.4)},
                   physics={S: D * (Sin - S), X: -D * X},
                   residual=sysid.MLP(width=16, depth=2, states={X: 1, S: -2}, inputs=[S, X]))


def hybrid_motor():
    """The DC motor with its friction torque (b w + T_c tanh(w / 0.5)) unknown: a network
    of the speed in the speed's equation; R and K fitted."""
    (i, w, V), (R, K, b, Tc) = sp.symbols("i w V"), _pos("R K b T_c")
    return Problem("hybrid_motor", "hybrid; friction; input V", [i, w],
                   {i: (V - R * i - K * w) / 0.5,
                    w: (K * i - b * w - Tc * sp.tanh(w / 0.5)) / 0.01},
                   {R: 1.2, K: 0.05, b: 0.01, Tc: 0.05}, {R: 1.0, K: 0.1},
                   [[0.0, 0.0]], [_jittered(1015, 6.0, 301)],
                   {"i": (0.05, 0.1, 1), "w": (0.05, 0.1, 1)}, 1015,
                   inputs={V: _levels(1065, 7.5, 10, -12.0, 12.0, 0.2)},
                   physics={i: (V - R * i - K * w) / 0.5, w: K * i / 0.01},
                   residual=sysid.MLP(width=16, depth=2, states=[w], inputs=[w]))


def hybrid_two_mass():
    """The two-mass chain with a hardening coupling spring k2 d + k3 d^3 (d = x1 - x2)
    unknown: one network force of x1 and x2, equal and opposite ({v1: -1, v2: 1})."""
    (x1, v1, x2, v2), (k1, c1, c2, k2, k3) = sp.symbols("x1 v1 x2 v2"), _pos("k1 c1 c2 k2 k3")
    force = k2 * (x1 - x2) + k3 * (x1 - x2) ** 3
    return Problem("hybrid_two_mass", "hybrid; coupling spring", [x1, v1, x2, v2],
                   {x1: v1, v1: -k1 * x1 - force - c1 * v1, x2: v2, v2: force - c2 * v2},
                   {k1: 4.0, c1: 0.2, c2: 0.1, k2: 2.0, k3: 3.0}, {k1: 3.0, c1: 0.5, c2: 0.5},
                   [[1.0, 0, 0, 0], [0, 0, -0.8, 0.5]],
                   [_jittered(1016 + 100 * i, 30.0, 121) for i in range(2)],
                   {"x1": (0.01, 0.15, 1), "x2": (0.01, 0.15, 1)}, 1016,
                   physics={x1: v1, v1: -k1 * x1 - c1 * v1, x2: v2, v2: -c2 * v2},
                   residual=sysid.MLP(width=16, depth=2, states={v1: -1, v2: 1}, inputs=[x1, x2]))


PROBLEMS = {f.__name__: f for f in (
    driven_oscillator, enzyme_cascade, seir, brusselator, rossler, chemostat, heated_rod,
    morris_lecar, selkov, two_mass, dc_motor,
    hybrid_predator_prey, hybrid_chemostat, hybrid_motor, hybrid_two_mass)}
QUICK = ("brusselator", "selkov", "dc_motor", "heated_rod")


# -- the record ------------------------------------------------------------------------------
def _pct(v):
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:.2f} %"


def rows(rec) -> tuple[dict, list[dict]]:
    """The record's row of the summary table and its rows of the parameter table."""
    orc = rec["oracle"] or {"errors": {}, "forecast": np.nan, "cost": np.nan}
    ratio = {q: e / max(orc["errors"].get(q, np.nan), 1e-12) for q, e in rec["errors"].items()}
    worst = max(ratio, key=ratio.get, default=None)
    hybrid = "hybrid" in rec["kind"]
    summary = {"problem": rec["problem"], "setting": rec["kind"], "status": rec["status"],
               "fit s": rec["fit_s"], "misfit": rec["misfit"], "worst parameter": str(worst),
               "sysid err": _pct(rec["errors"].get(worst)),
               "oracle err": _pct(orc["errors"].get(worst)), "ratio": ratio.get(worst),
               "cost gap": None if hybrid else rec["cost"] - orc["cost"],
               "imputation": ", ".join(f"{k} {v:.3f}" for k, v in rec["impute"].items()),
               "forecast (oracle)": f"{rec['forecast']:.3f} ({orc['forecast']:.3f})"
               if hybrid else None}
    params = [{"problem": rec["problem"], "parameter": str(q), "sysid err": _pct(e),
               "oracle err": _pct(orc["errors"].get(q)), "ratio": ratio[q]}
              for q, e in rec["errors"].items()]
    return summary, params


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    ap.add_argument("--only", nargs="+", choices=list(PROBLEMS), metavar="NAME")
    ap.add_argument("--noise-seeds", type=int, default=1, help="noise realisations per problem")
    args = ap.parse_args(argv)
    one_thread()
    names = args.only or (QUICK if args.quick else list(PROBLEMS))
    runs = [(n, r) for n in names for r in range(args.noise_seeds)]
    summary, params, start = [], [], time.perf_counter()
    for name, r in runs:
        rec = evaluate(PROBLEMS[name](), replicate=r)
        summary, params = summary + [rows(rec)[0]], params + rows(rec)[1]
        print(f"  {rec['problem']}: {rec['status']} in {rec['fit_s']:.1f} s: "
              f"{rec['detail'][:300]}", *rec["warnings"], sep="\n    ", file=sys.stderr)
    print(f"commit {git_commit()}, {time.perf_counter() - start:.0f} s in all, one thread\n")
    print(markdown(summary) + "\n\n" + markdown(params))


if __name__ == "__main__":
    main()
