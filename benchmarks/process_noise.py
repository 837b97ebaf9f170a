"""Issue 30: parameter recovery under a real process disturbance, deterministic fit against
the extended Kalman filter likelihood (``sysid.fit(..., process_noise=...)``).

    cd benchmarks && python process_noise.py [--seeds 0 1 2] [--only NAME ...]
    # writes results/process_noise.md

Each system is an SDE ``dx = f(x; p) dt + diag(q) dW`` simulated by Euler-Maruyama at step
1e-3 (the disturbance is white noise, as the filter assumes), sampled regularly and
measured with Gaussian noise. The user's model is the true drift with guesses off by
20-50 %. One call, ``sysid.fit(model, data, process_noise={...: "learn"})``, gives both
numbers: the deterministic fit it starts from (``stats["process_noise"]
["deterministic_parameters"]``, the same as ``sysid.fit(model, data)`` with the same
options) and the Kalman fit, its process noise level learned. Errors are relative to the
true parameters; ``worst`` is the largest over the model's parameters. One thread on a
shared machine: read ratios, not seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import sympy as sp
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import git_commit, markdown, one_thread  # noqa: E402

import sysid  # noqa: E402

FINE = 1e-3


def euler_maruyama(drift, x0, q, dt, n, seed):
    """States (n, dim) every ``dt`` of ``dx = drift(x) dt + q dW`` at step ``FINE``."""
    rng = np.random.default_rng(seed)
    per = int(round(dt / FINE))
    x, q = np.array(x0, dtype=float), np.asarray(q, dtype=float)
    out = [x.copy()]
    for _ in range(n - 1):
        for _ in range(per):
            x = x + drift(x) * FINE + q * np.sqrt(FINE) * rng.standard_normal(x.shape)
        out.append(x.copy())
    return np.array(out)


def oscillator():
    x, v = sp.symbols("x v")
    w, c = sp.symbols("w c", positive=True)
    truth = {"w": 1.5, "c": 0.3}
    return dict(
        name="damped oscillator, force noise", states=[x, v],
        physics={x: v, v: -w ** 2 * x - c * v}, guess={w: 1.0, c: 0.1}, truth=truth,
        drift=lambda s: np.array([s[1], -truth["w"] ** 2 * s[0] - truth["c"] * s[1]]),
        x0=[1.0, 0.0], q=[0.0, 0.5], learn={"v": "learn"}, measured={"x": 0.05},
        dt=0.25, n=81)


def logistic():
    n_ = sp.Symbol("N", positive=True)
    r, k = sp.symbols("r K", positive=True)
    truth = {"r": 0.8, "K": 10.0}
    return dict(
        name="logistic growth, environmental noise", states=[n_],
        physics={n_: r * n_ * (1 - n_ / k)}, guess={r: 0.5, k: 7.0}, truth=truth,
        drift=lambda s: truth["r"] * s * (1 - s / truth["K"]),
        x0=[2.0], q=[0.5], learn={"N": "learn"}, measured={"N": 0.2}, dt=0.25, n=81)


def lotka_volterra():
    x, y = sp.symbols("x y", positive=True)
    a, b, c, d = sp.symbols("a b c d", positive=True)
    t = {"a": 1.0, "b": 0.5, "c": 0.4, "d": 0.8}
    return dict(
        name="Lotka-Volterra, environmental noise", states=[x, y],
        physics={x: a * x - b * x * y, y: c * x * y - d * y},
        guess={a: 1.3, b: 0.7, c: 0.3, d: 1.0}, truth=t,
        drift=lambda s: np.array([t["a"] * s[0] - t["b"] * s[0] * s[1],
                                  t["c"] * s[0] * s[1] - t["d"] * s[1]]),
        x0=[2.0, 1.5], q=[0.15, 0.15], learn={"x": "learn", "y": "learn"},
        measured={"x": 0.1, "y": 0.1}, dt=0.25, n=81)


SYSTEMS = {"oscillator": oscillator, "logistic": logistic, "lotka_volterra": lotka_volterra}


def dataset(system, seed):
    xs = euler_maruyama(system["drift"], system["x0"], system["q"], system["dt"],
                        system["n"], seed)
    rng = np.random.default_rng(10_000 + seed)
    t = system["dt"] * np.arange(system["n"])
    names = [str(s) for s in system["states"]]
    data = {name: ("time", xs[:, names.index(name)] + sd * rng.standard_normal(len(t)))
            for name, sd in system["measured"].items()}
    return xr.Dataset(data, coords={"time": t})


def errors(fitted, truth):
    return {k: abs(fitted[k] / v - 1) for k, v in truth.items()}


def run_one(key, seed):
    system = SYSTEMS[key]()
    data = dataset(system, seed)
    model = sysid.HybridODE(states=system["states"], physics=system["physics"],
                            parameters=system["guess"])
    start = time.perf_counter()
    result = sysid.fit(model, data, progress=False, process_noise=system["learn"])
    wall = time.perf_counter() - start
    det = errors(result.stats["process_noise"]["deterministic_parameters"], system["truth"])
    kal = errors(result.parameters, system["truth"])
    q_true = dict(zip([str(s) for s in system["states"]], system["q"]))
    q_fit = ", ".join(f"{k} {v:.3g} ({q_true[k]:g})" for k, v in result.process_noise.items()
                      if k in system["learn"])
    row = {"system": system["name"], "seed": seed}
    for name in system["truth"]:
        row[f"{name}: det / Kalman"] = f"{100 * det[name]:.1f} / {100 * kal[name]:.1f} %"
    return {"system": system["name"], "seed": seed, "_errors": (det, kal),
            "worst det %": 100 * max(det.values()), "worst Kalman %": 100 * max(kal.values()),
            "mean det %": 100 * np.mean(list(det.values())),
            "mean Kalman %": 100 * np.mean(list(kal.values())),
            "q fitted (true)": q_fit, "status": result.status.code, "wall s": wall}, row


def overall(errs):
    """Per system: mean relative error over seeds and parameters, deterministic and
    Kalman, and in how many (seed, parameter) pairs the Kalman fit is the closer."""
    rows = []
    for name in dict.fromkeys(e[0] for e in errs):
        pairs = [(d[k], k_[k]) for n, d, k_ in errs if n == name for k in d]
        det, kal = np.array(pairs).T
        rows.append({"system": name, "fits": sum(e[0] == name for e in errs),
                     "mean error det %": 100 * det.mean(),
                     "mean error Kalman %": 100 * kal.mean(),
                     "median det %": 100 * np.median(det),
                     "median Kalman %": 100 * np.median(kal),
                     "Kalman closer": f"{int((kal < det).sum())} of {len(det)}"})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"
                                             / "process_noise.md"))
    args = parser.parse_args(argv)
    one_thread()
    summary, detail, errs = [], [], []
    for key in args.only:
        for seed in args.seeds:
            s, d = run_one(key, seed)
            errs.append((s["system"], *s.pop("_errors")))
            summary.append(s)
            detail.append(d)
            print(s, flush=True)
    text = ("# Process noise: deterministic fit vs Kalman likelihood\n\n"
            f"`cd benchmarks && python process_noise.py --seeds "
            f"{' '.join(map(str, args.seeds))}` (commit {git_commit()}). Relative errors "
            f"of the fitted parameters against the truth.\n\n" + markdown(overall(errs)) +
            "\n\nPer fit:\n\n" + markdown(summary) +
            "\n\nPer parameter (deterministic / Kalman):\n\n" +
            "\n\n".join(markdown([r for r in detail if r["system"] == name])
                        for name in dict.fromkeys(r["system"] for r in detail)) + "\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
