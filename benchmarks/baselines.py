"""Peer baselines for the training benchmark.

* ``plain_recipe`` -- a PyTorch port of the "plain recipe" of the Universal Differential
  Equations Lotka-Volterra benchmark (Rackauckas et al. 2020, "Universal Differential
  Equations for Scientific Machine Learning", arXiv:2001.04385): a and d known, the
  interaction terms replaced by a 2-5-5-5-2 network with exp(-x^2) activations, Adam(0.1)
  for 200 iterations then BFGS (here L-BFGS with a strong-Wolfe line search) up to
  10,000 iterations on the summed squared error of the trajectory, dopri5 at rtol = atol
  = 1e-6, from the known initial condition, in float64. Published figures for the port:
  35-222 s per fit on one CPU core, fit error 0.013-0.14 on [0, 3], extrapolation to
  t = 50 divergent (relative L2 > 1e24).
* ``oracle_least_squares`` -- the oracle of the same benchmark: the correct structure,
  a and d known, b, c and the initial state fitted by ``scipy.optimize.least_squares``.
  Published at 5 % noise over 10 seeds: median errors 1.1 % (b), 6.8 % (c), extrapolation
  relative L2 0.57.
* ``pendulum_least_squares`` -- a physics-only least-squares fit of the damped pendulum
  theta'' = -omega0^2 sin(theta) - alpha theta' of APHYNITY (Yin et al., "Augmenting
  Physical Models with Deep Networks for Complex Dynamics Forecasting", ICLR 2021),
  fitting omega0, alpha and each trajectory's initial state to angle-only data.
* ``duffing_least_squares`` -- the correct-structure fit of an unforced Duffing oscillator
  x'' = -delta x' - alpha x - beta x^3 to position-only data: delta, alpha, beta and each
  trajectory's initial (x, v) fitted.

    python benchmarks/baselines.py      # quick sanity check
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp
from scipy.optimize import least_squares
from torchdiffeq import odeint

LV_PARAMS = {"a": 1.3, "b": 0.9, "c": 0.8, "d": 1.8}
LV_U0 = np.array([0.44249296, 4.6280594])
EXTRAP_TIMES = np.linspace(0.0, 50.0, 501)
_TIGHT = dict(method="DOP853", rtol=1e-10, atol=1e-12)


def _lv(t, u, a, b, c, d):
    return [a * u[0] - b * u[0] * u[1], c * u[0] * u[1] - d * u[1]]


def _solve(f, u0, times, args):
    """Solve from ``times[0]``; None when the solver fails or the result is not finite."""
    try:
        sol = solve_ivp(f, (times[0], times[-1]), u0, t_eval=times, args=args, **_TIGHT)
    except (ValueError, OverflowError, FloatingPointError):
        return None
    if not sol.success or sol.y.shape[1] != len(times) or not np.all(np.isfinite(sol.y)):
        return None
    return sol.y.T


def _rel_l2(pred, truth):
    if pred is None or pred.shape != truth.shape or not np.all(np.isfinite(pred)):
        return np.inf
    return float(np.linalg.norm(pred - truth) / np.linalg.norm(truth))


def _rmse(pred, truth):
    if pred is None or not np.all(np.isfinite(pred)):
        return np.inf
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def lv_truth(times):
    """Noise-free Lotka-Volterra states (T, 2) at ``times`` (t = 0 is the initial time)."""
    times = np.asarray(times, dtype=float)
    sol = solve_ivp(_lv, (0.0, times[-1]), LV_U0, t_eval=times,
                    args=tuple(LV_PARAMS.values()), **_TIGHT)
    return sol.y.T


def lv_data(seed, sigma=0.05):
    """The benchmark's data: 31 samples on [0, 3], noise sigma * (time mean of the state)."""
    times = np.linspace(0.0, 3.0, 31)
    X = lv_truth(times)
    rng = np.random.default_rng(seed)
    Y = X + sigma * X.mean(axis=0) * rng.standard_normal(X.shape)
    return times, Y, X


class _Gauss(torch.nn.Module):
    def forward(self, x):
        return torch.exp(-x * x)


class _UDE(torch.nn.Module):
    """dx/dt = a x + NN(x, y)[0], dy/dt = -d y + NN(x, y)[1]; counts evaluations."""

    def __init__(self):
        super().__init__()
        layers = [torch.nn.Linear(2, 5), _Gauss(), torch.nn.Linear(5, 5), _Gauss(),
                  torch.nn.Linear(5, 5), _Gauss(), torch.nn.Linear(5, 2)]
        for layer in layers[::2]:  # Flux's Dense default: Glorot-uniform weights, zero bias
            torch.nn.init.xavier_uniform_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
        self.net = torch.nn.Sequential(*layers).double()
        self.nfe = 0

    def forward(self, t, u):
        self.nfe += 1
        nn_out = self.net(u)
        return torch.stack([LV_PARAMS["a"] * u[..., 0] + nn_out[..., 0],
                            -LV_PARAMS["d"] * u[..., 1] + nn_out[..., 1]], dim=-1)


def plain_recipe(times, Y, seed, max_lbfgs=10_000, time_limit=None, verbose=False):
    """Fit the UDE plain recipe; ``time_limit`` (s, counted from the start) stops L-BFGS early."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = _UDE()
        t = torch.as_tensor(np.asarray(times, dtype=float))
        y = torch.as_tensor(np.asarray(Y, dtype=float))
        u0 = torch.as_tensor(LV_U0)
        params = list(model.parameters())
        log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if verbose else (lambda msg: None)

        def closure():
            opt.zero_grad()
            loss = ((odeint(model, u0, t, rtol=1e-6, atol=1e-6, method="dopri5") - y) ** 2).sum()
            loss.backward()
            return loss

        start = time.perf_counter()
        adam_iters = lbfgs_iters = 0
        status = "max_iter"
        try:
            opt = torch.optim.Adam(params, lr=0.1)
            for adam_iters in range(1, 201):
                loss = opt.step(closure)
                if not torch.isfinite(loss):
                    raise FloatingPointError("non-finite loss in Adam")
            log(f"adam: {adam_iters} iterations, loss {loss.item():.4g}")
            # One L-BFGS call to the cap, or chunks of 10 iterations to watch the clock; the
            # evaluation cap (25 per iteration) only bounds the line search.
            chunk = max_lbfgs if time_limit is None else 10
            opt = torch.optim.LBFGS(params, lr=1.0, max_iter=chunk, line_search_fn="strong_wolfe")
            while lbfgs_iters < max_lbfgs:
                if time_limit is not None and time.perf_counter() - start > time_limit:
                    status = f"time_limit ({time_limit} s)"
                    break
                asked = min(chunk, max_lbfgs - lbfgs_iters)
                opt.param_groups[0].update(max_iter=asked, max_eval=25 * asked)
                opt.step(closure)
                done = opt.state[params[0]]["n_iter"] - lbfgs_iters
                lbfgs_iters += done
                log(f"lbfgs: {lbfgs_iters} iterations, nfe {model.nfe}")
                if not all(torch.isfinite(p).all() for p in params):
                    raise FloatingPointError("non-finite parameters in L-BFGS")
                if done < asked:
                    status = "converged"
                    break
        except (AssertionError, RuntimeError, FloatingPointError) as err:
            status = f"failed: {err}"
        wall = time.perf_counter() - start
        nfe = model.nfe

        def predict(ts):
            try:
                with torch.no_grad():
                    out = odeint(model, u0, torch.as_tensor(ts), rtol=1e-6, atol=1e-6,
                                 method="dopri5").numpy()
            except (AssertionError, RuntimeError, OverflowError):
                return None
            return out if np.all(np.isfinite(out)) else None

        return {"wall_s": wall, "fit_rmse": _rmse(predict(np.asarray(times, dtype=float)),
                                                  lv_truth(times)),
                "extrap_rel_l2": _rel_l2(predict(EXTRAP_TIMES), lv_truth(EXTRAP_TIMES)),
                "nfe": nfe, "adam_iters": adam_iters, "lbfgs_iters": int(lbfgs_iters),
                "status": status}
    finally:
        torch.set_num_threads(threads)


def oracle_least_squares(times, Y, sigma=None):
    """Correct structure, a and d known; fit b, c and (x0, y0) to the measured entries of
    ``Y`` (NaN = not measured; the guess of a state missing at t = 0 is its first measured
    value). With ``sigma`` the residuals are weighted by the benchmark's noise scale,
    sigma * (time mean of each state of Y)."""
    times, Y = np.asarray(times, dtype=float), np.asarray(Y, dtype=float)
    a, d = LV_PARAMS["a"], LV_PARAMS["d"]
    mask = np.isfinite(Y)
    scale = 1.0 if sigma is None else sigma * np.abs(np.nanmean(Y, axis=0))

    def residual(p):
        pred = _solve(_lv, p[2:], times, (a, p[0], p[1], d))
        return np.full(mask.sum(), 1e6) if pred is None else ((pred - Y) / scale)[mask]

    first = [Y[np.flatnonzero(mask[:, j])[0], j] for j in range(Y.shape[1])]
    start = time.perf_counter()
    fit = least_squares(residual, np.array([1.0, 1.0, *first]))
    wall = time.perf_counter() - start
    b, c, x0, y0 = fit.x
    args = (a, b, c, d)
    return {"b": float(b), "c": float(c), "x0": (float(x0), float(y0)), "wall_s": wall,
            "fit_rmse": _rmse(_solve(_lv, fit.x[2:], times, args), lv_truth(times)),
            "extrap_rel_l2": _rel_l2(_solve(_lv, fit.x[2:], EXTRAP_TIMES, args),
                                     lv_truth(EXTRAP_TIMES)),
            "status": fit.message}


#: Monomials x^i y^j of total degree <= 3: the summary's default library for Lotka-Volterra.
LV_MONOMIALS = [(i, j) for deg in range(4) for i in range(deg, -1, -1) for j in [deg - i]]


def lv_support_limit(times, Y):
    """What any selection by likelihood can do on this data: the true support (x*y in both
    residuals) against every support one term away -- one equation's x*y swapped for
    another monomial of degree <= 3, or one monomial added to one equation -- each fitted
    by least squares (a and d known; the coefficients and the initial state free; several
    starts) and scored by the summary's EBIC, ``sum_c (n_c log v_c + RSS_c / v_c - n_c)
    + k log(N) + 2 sum_s log C(10, k_s)``, with v_c the candidate's mean squared residual
    on channel c but at least the true support's (standing in for the hybrid fit's, the
    floor of ``symbolic()``).
    Returns ``{"rank": place of the truth (0 = best), "best": the best support as (x
    terms, y terms), "gap": its EBIC minus the truth's, "selected": the
    support that the summary's rule picks among these (the fewest parameters within 2 EBIC
    units of the best, then the simplest terms, then the score), "scores": every support's
    EBIC}``. A ``selected`` other than the truth means that the data themselves lead the
    selection to a wrong support, whatever the search."""
    from math import comb, log

    times, Y = np.asarray(times, dtype=float), np.asarray(Y, dtype=float)
    a, d = LV_PARAMS["a"], LV_PARAMS["d"]
    seen = np.isfinite(Y)                     # a partly observed state has NaN samples
    scale = np.abs(np.nanmean(Y, axis=0))
    xy = (1, 1)
    others = [m for m in LV_MONOMIALS if m != xy]
    supports = ([((xy,), (xy,))] + [((xy,), (m,)) for m in others]
                + [((m,), (xy,)) for m in others] + [((xy, m), (xy,)) for m in others]
                + [((xy,), (xy, m)) for m in others])

    def name(terms):
        return " + ".join(("x" * i + "y" * j) or "1" for i, j in terms)

    scores, rss = {}, {}
    for sx, sy in supports:
        kx = len(sx)

        def rhs(t, u, *coef):
            x, y = u
            return [a * x + sum(c * x ** i * y ** j for c, (i, j) in zip(coef[:kx], sx)),
                    -d * y + sum(c * x ** i * y ** j for c, (i, j) in zip(coef[kx:], sy))]

        def residual(p):
            try:
                sol = solve_ivp(rhs, (times[0], times[-1]), p[-2:], t_eval=times,
                                args=tuple(p[:-2]), rtol=1e-8, atol=1e-8, events=_escape)
            except (ValueError, OverflowError, FloatingPointError):
                return np.full(Y.size, 1e3)
            if sol.y.shape[1] != len(times) or not np.all(np.isfinite(sol.y)):
                return np.full(int(seen.sum()), 1e3)
            return ((sol.y.T - Y) / scale)[seen]

        best = None
        for b0, c0 in ((-0.9, 0.8), (-0.2, 0.2), (-0.05, 0.05)):
            start = [b0] + [0.0] * (kx - 1) + [c0] + [0.0] * (len(sy) - 1)
            fit = least_squares(residual, start + [Y[0, 0], Y[0, 1]], max_nfev=60)
            if best is None or fit.cost < best.cost:
                best = fit
        r = np.full(Y.shape, np.nan)
        r[seen] = residual(best.x)
        r *= scale
        rss[(name(sx), name(sy))] = (np.nansum(r ** 2, axis=0), kx, len(sy))
    # each channel's noise variance: the candidate's own mean squared residual, but at
    # least the true support's (it stands in for the hybrid fit's, symbolic()'s floor)
    n_c = seen.sum(axis=0)
    floor = rss[("xy", "xy")][0] / n_c
    for key, (sse, kx, ky) in rss.items():
        v = np.maximum(sse / n_c, floor)
        scores[key] = float(np.sum(n_c * np.log(v) + sse / v - n_c)
                            + (kx + ky) * log(seen.sum())
                            + 2 * (log(comb(10, kx)) + log(comb(10, ky))))
    order = sorted(scores, key=scores.get)
    truth = ("xy", "xy")
    return {"rank": order.index(truth), "best": order[0],
            "gap": scores[order[0]] - scores[truth], "selected": _selected(scores),
            "scores": {f"{x} | {y}": v for (x, y), v in scores.items()}}


def _selected(scores):
    """The summary's in-sample rule (sysid.symbolic.scoring._sparsest_close without
    held-out scores) on ``{(x terms, y terms): EBIC}``: within 2 units of the lowest, the
    fewest terms, then the fewest operations (a monomial of degree g has max(g - 1, 0)
    multiplications and powers; each term counts one more), then the lower score."""
    def ops(term):
        i, j = term.count("x"), term.count("y")
        return int(i > 1) + int(j > 1) + int(i > 0 and j > 0) + 1

    low = min(scores.values())
    close = [s for s, v in scores.items() if v <= low + 2.0]
    terms = {s: [t for eq in s for t in eq.split(" + ")] for s in close}
    return min(close, key=lambda s: (len(terms[s]), sum(ops(t) for t in terms[s]), scores[s]))


#: The scoring rule the cached limits were computed with (a change recomputes them).
LIMIT_RULE = "EBIC, noise variance floored at the truth's (2026-11-29)"
SUPPORT_LIMIT_CACHE = Path(__file__).resolve().parent / "results" / "lv_support_limit.json"


def cached_support_limit(times, Y, key):
    """:func:`lv_support_limit`, read from ``results/lv_support_limit.json`` when it holds
    ``key`` for exactly this data (a checksum of ``times`` and ``Y``), else computed (about a
    minute) and stored. Regenerate all: ``python benchmarks/baselines.py --support-limit``."""
    digest = hashlib.sha256(np.ascontiguousarray(times, dtype=float).tobytes()
                            + np.ascontiguousarray(Y, dtype=float).tobytes()).hexdigest()
    cache = _read_json(SUPPORT_LIMIT_CACHE)
    hit = cache.get(key)
    if hit is not None and hit.get("data_sha256") == digest and hit.get("rule") == LIMIT_RULE:
        return {**hit, "best": tuple(hit["best"]), "selected": tuple(hit["selected"])}
    out = lv_support_limit(times, Y)
    cache[key] = {**out, "best": list(out["best"]), "selected": list(out["selected"]),
                  "data_sha256": digest, "rule": LIMIT_RULE}
    cache = {**_read_json(SUPPORT_LIMIT_CACHE), key: cache[key]}   # others may have written
    SUPPORT_LIMIT_CACHE.parent.mkdir(parents=True, exist_ok=True)
    partial = SUPPORT_LIMIT_CACHE.with_suffix(".json.partial")
    partial.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
    partial.replace(SUPPORT_LIMIT_CACHE)             # atomic: readers never see half a file
    return out


def _read_json(path) -> dict:
    for _ in range(3):
        try:
            return json.loads(path.read_text()) if path.exists() else {}
        except ValueError:                            # being written by another process
            time.sleep(1.0)
    return {}


def _escape(t, u, *args):
    """Event: a state has left any plausible range (the candidate blows up)."""
    return max(abs(u[0]), abs(u[1])) - 1e3


_escape.terminal = True


def _pendulum(t, u, omega0, alpha):
    return [u[1], -omega0 ** 2 * np.sin(u[0]) - alpha * u[1]]


def pendulum_least_squares(ds, omega0_guess=1.5, alpha_guess=0.1):
    """Physics-only fit of omega0, alpha and each trajectory's initial (theta, omega),
    stated at that trajectory's first observation time, to ``theta`` (NaN = missing) and,
    where present and finite, ``omega``, on the shared (possibly irregular) time axis."""
    time_axis = np.asarray(ds["time"].values, dtype=float)
    names = [n for n in ("theta", "omega") if n in ds and np.isfinite(ds[n].values).any()]
    obs = np.stack([ds[n].transpose("trajectory", "time").values for n in names], axis=-1)
    trajs, guesses = [], []
    for values in obs:  # (time, variable) for one trajectory
        keep = np.isfinite(values).any(axis=1)
        t_k, v_k = time_axis[keep], values[keep]
        order = np.argsort(t_k, kind="stable")
        t_k, v_k = t_k[order], v_k[order]
        t_u, first = np.unique(t_k, return_index=True)  # solve_ivp wants distinct times
        trajs.append((t_u, v_k[first]))
        th = values[:, 0][np.isfinite(values[:, 0])]
        th_t = time_axis[np.isfinite(values[:, 0])]
        j = np.argsort(th_t, kind="stable")
        th, th_t = th[j], th_t[j]
        k = 1 + int(np.argmax(th_t[1:] > th_t[0])) if len(th) > 1 else 0
        slope = (th[k] - th[0]) / (th_t[k] - th_t[0]) if k else 0.0
        guesses += [th[0], slope]

    def residual(p):
        out = []
        for i, (t_u, v_u) in enumerate(trajs):
            pred = _solve(_pendulum, p[2 + 2 * i: 4 + 2 * i], t_u, (p[0], p[1]))
            mask = np.isfinite(v_u)
            out.append(np.full(mask.sum(), 1e3) if pred is None
                       else (pred[:, :len(names)] - v_u)[mask])
        return np.concatenate(out)

    x0 = np.array([omega0_guess, alpha_guess, *guesses])
    lower = np.full(x0.size, -np.inf)
    lower[0] = 0.0
    start = time.perf_counter()
    fit = least_squares(residual, x0, bounds=(lower, np.inf))
    wall = time.perf_counter() - start
    return {"omega0": float(fit.x[0]), "alpha": float(fit.x[1]), "wall_s": wall,
            "status": fit.message}


def _duffing(t, u, delta, alpha, beta):
    return [u[1], -delta * u[1] - alpha * u[0] - beta * u[0] ** 3]


def duffing_least_squares(ds, guesses=(0.5, 0.5, 0.5)):
    """Correct-structure fit of the unforced Duffing oscillator to ``x`` (NaN = missing) of
    ``ds`` (dims trajectory, time): delta, alpha, beta (started at ``guesses``) and each
    trajectory's initial (x, v) at the first time, v guessed by a finite difference."""
    times = np.asarray(ds["time"].values, dtype=float)
    obs = ds["x"].transpose("trajectory", "time").values
    guess = []
    for x in obs:
        keep = np.flatnonzero(np.isfinite(x))
        guess += [x[keep[0]], (x[keep[1]] - x[keep[0]]) / (times[keep[1]] - times[keep[0]])]

    def residual(p):
        out = []
        for i, x in enumerate(obs):
            mask = np.isfinite(x)
            pred = _solve(_duffing, p[3 + 2 * i: 5 + 2 * i], times, tuple(p[:3]))
            out.append(np.full(mask.sum(), 1e3) if pred is None else (pred[:, 0] - x)[mask])
        return np.concatenate(out)

    start = time.perf_counter()
    fit = least_squares(residual, np.array([*guesses, *guess]))
    wall = time.perf_counter() - start
    delta, alpha, beta = (float(v) for v in fit.x[:3])
    return {"delta": delta, "alpha": alpha, "beta": beta, "wall_s": wall,
            "status": fit.message}


def partial_data(seed, sigma=0.01, every=5):
    """31 samples on [0, 3]; x everywhere, y at every ``every``-th sample (NaN elsewhere);
    noise sigma * (time mean of the complete noise-free state), as ``lv_data``."""
    times = np.linspace(0.0, 3.0, 31)
    X = lv_truth(times)
    rng = np.random.default_rng(seed)
    Y = X + sigma * X.mean(axis=0) * rng.standard_normal(X.shape)
    keep = np.zeros(len(times), dtype=bool)
    keep[::every] = True
    Y[~keep, 1] = np.nan
    return times, Y


if __name__ == "__main__":
    if "--support-limit" in sys.argv:       # the cache that benchmarks/symbolic.py reads
        for sigma in (0.05, 0.005):
            for seed in range(10):
                t, Y, _ = lv_data(seed, sigma)
                print(f"sigma {sigma} seed {seed}:",
                      cached_support_limit(t, Y, f"sigma={sigma}/seed={seed}"), flush=True)
        for seed in range(10):              # predator at every 5th sample, 1 % noise
            t, Y = partial_data(seed)
            print(f"partial seed {seed}:", cached_support_limit(t, Y, f"partial/seed={seed}"),
                  flush=True)
        sys.exit(0)
    for s in range(3):
        t, Y, _ = lv_data(s)
        r = oracle_least_squares(t, Y)
        r["b_err"] = abs(r["b"] / LV_PARAMS["b"] - 1)
        r["c_err"] = abs(r["c"] / LV_PARAMS["c"] - 1)
        print(f"oracle seed {s}:", r)
    t, Y, _ = lv_data(0)
    print("plain recipe seed 0 (60 s):", plain_recipe(t, Y, seed=0, time_limit=60))
