"""Fields over space (issue 25): hybrid PDE fits from a few sensors, and their summaries.

Run ``python benchmarks/fields.py`` (about 10 minutes on 2 cores; ``--quick``: Fisher-KPP
on one seed) and it prints a markdown table (the record: ``benchmarks/results/fields.md``).
Every dataset is ``sysid.datasets.simulate(name, seed=s)``: the truth is computed on a
grid 4x finer than the model's (pseudo-spectral for the periodic 1-D cases, central
differences for the insulated plate) with SciPy, so the model meets its own
discretisation error. Rows:

* Fisher-KPP ``u_t = D u_xx + r u (1 - u)``, 64 points, 8 sensors, 40 irregular times,
  5 % noise, D known, the reaction learnt by a local network reading ``u``; targets:
  the summary finds ``r u - r u^2`` with r within 3 %, the field imputed within 5 % of its
  spread. Also the physics-only fit of the complete equation (D and r fitted).
* Burgers ``u_t = nu u_xx - u u_x``, 64 points, 12 sensors, nu known, the advection
  learnt by a local network reading ``u`` and ``u_x``; target: the summary finds
  ``-u u_x``.
* 2-D heat ``u_t = D (u_xx + u_yy) + q - k u^3`` on a 32 x 32 insulated plate, 10
  sensors, D known, the source learnt by a local network reading ``u``; target: the fit
  under 5 minutes (its summary is not run: each candidate's refit of 1,024 states takes
  minutes).

Field error: RMS over every grid point and sample time of (imputed - true field), over
the true field's standard deviation.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import sympy as sp
import torch

import sysid
from machine import markdown

x, y = sp.symbols("x y")


def field_error(result, truth) -> float:
    field = result.impute()
    return float(np.sqrt(((field["u"] - truth["u"]) ** 2).mean()) / truth["u"].std())


def coefficients(expr) -> dict[str, float]:
    return {sp.sstr(m): float(c) for m, c in sp.expand(expr).as_coefficients_dict().items()}


def fit_and_distil(model, data, truth, case):
    """The hybrid fit and its summary, timed: the columns every hybrid row shares, and
    the summary's coefficients by monomial."""
    start = time.perf_counter()
    result = sysid.fit(model, data, seed=0, progress=False, throw=False)
    wall = time.perf_counter() - start
    start = time.perf_counter()
    summary = result.symbolic()
    swall = time.perf_counter() - start
    row = {"case": case, "fit s": f"{wall:.0f}", "symbolic s": f"{swall:.0f}",
           "hybrid field error": f"{field_error(result, truth):.3f}",
           "summary": sp.sstr(sp.N(summary.equations["u"], 4))}
    tail = {"distilled field error": f"{field_error(summary.result, truth):.3f}",
            "status": result.status.code}
    return row, tail, coefficients(summary.equations["u"])


def fisher_hybrid(seed):
    data, truth = sysid.datasets.simulate("fisher_kpp", seed=seed, truth=True)
    u = sp.Function("u")(x)
    D = sp.Symbol("D", positive=True)
    model = sysid.HybridPDE(fields=[u], space={"x": data["x"].values}, boundary={"x": "periodic"},
                            physics={u: D * u.diff(x, 2)}, fixed={D: 0.1},
                            residual=sysid.MLP(16, 2, local=True, inputs=["u"]))
    row, tail, c = fit_and_distil(model, data, truth, f"Fisher-KPP hybrid, data seed {seed}")
    r = c.get("u(x)", float("nan"))
    return {**row, "exact support": "yes" if set(c) == {"u(x)", "u(x)**2"} else "no",
            "parameter error": f"r {abs(r - 1.0) * 100:.1f} % "
                               f"(-r: {abs(-c.get('u(x)**2', 0) - 1) * 100:.1f} %)", **tail}


def fisher_physics(seed):
    data, truth = sysid.datasets.simulate("fisher_kpp", seed=seed, truth=True)
    u = sp.Function("u")(x)
    D, r = sp.symbols("D r", positive=True)
    model = sysid.HybridPDE(fields=[u], space={"x": data["x"].values}, boundary={"x": "periodic"},
                            physics={u: D * u.diff(x, 2) + r * u * (1 - u)},
                            parameters={D: 0.05, r: 0.5})
    start = time.perf_counter()
    result = sysid.fit(model, data, progress=False, throw=False)
    wall = time.perf_counter() - start
    p = result.parameters
    return {"case": f"Fisher-KPP physics only (D, r fitted), data seed {seed}",
            "fit s": f"{wall:.1f}", "symbolic s": "-",
            "hybrid field error": f"{field_error(result, truth):.3f}", "summary": "-",
            "exact support": "-",
            "parameter error": f"r {abs(p['r'] - 1) * 100:.1f} %, D {abs(p['D'] - 0.1) * 1000:.1f} %",
            "distilled field error": "-", "status": result.status.code}


def fisher_limit(seed):
    """What the Fisher-KPP data determine: with D known (as the hybrid has it), the true
    one-parameter reaction ``r u (1 - u)`` and the summary's two-term structure
    ``a u + b u^2``, each fitted by maximum likelihood, with Laplace standard errors."""
    data = sysid.datasets.simulate("fisher_kpp", seed=seed)
    u = sp.Function("u")(x)
    D, r = sp.symbols("D r", positive=True)
    a, b = sp.symbols("a b")
    row = {"data seed": seed}
    for name, reaction, guesses in (("r u (1 - u)", r * u * (1 - u), {r: 0.5}),
                                    ("a u + b u^2", a * u + b * u ** 2, {a: 0.5, b: -0.5})):
        model = sysid.HybridPDE(fields=[u], space={"x": data["x"].values},
                                boundary={"x": "periodic"},
                                physics={u: D * u.diff(x, 2) + reaction},
                                parameters=guesses, fixed={D: 0.1})
        result = sysid.fit(model, data, progress=False, throw=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")         # (a and b are correlated: expected)
            se = result.std_errors() if hasattr(result, "std_errors") else \
                result.parameter_table(0.9)["std_error"].to_dict()
        row[name] = ", ".join(f"{k} {v:.4f} +- {se[k]:.4f} ({abs(abs(v) - 1) * 100:.1f} % off)"
                              for k, v in result.parameters.items())
    return row


def burgers(seed):
    data, truth = sysid.datasets.simulate("burgers", seed=seed, truth=True)
    u = sp.Function("u")(x)
    nu = sp.Symbol("nu", positive=True)
    model = sysid.HybridPDE(fields=[u], space={"x": data["x"].values}, boundary={"x": "periodic"},
                            physics={u: nu * u.diff(x, 2)}, fixed={nu: 0.1},
                            residual=sysid.MLP(16, 2, local=True, inputs=["u", "u_x"]))
    row, tail, c = fit_and_distil(model, data, truth, f"Burgers hybrid, data seed {seed}")
    key = "u(x)*Derivative(u(x), x)"
    return {**row, "exact support": "yes" if set(c) == {key} else "no",
            "parameter error": f"u u_x coefficient {abs(-c.get(key, 0) - 1) * 100:.1f} %",
            **tail}


def heat(seed):
    data, truth = sysid.datasets.simulate("heat_2d", seed=seed, truth=True)
    u = sp.Function("u")(x, y)
    D = sp.Symbol("D", positive=True)
    model = sysid.HybridPDE(fields=[u], space={"x": data["x"].values, "y": data["y"].values},
                            boundary={"x": "neumann", "y": "neumann"},
                            physics={u: D * (u.diff(x, 2) + u.diff(y, 2))}, fixed={D: 0.01},
                            residual=sysid.MLP(16, 2, local=True, inputs=["u"]))
    start = time.perf_counter()
    result = sysid.fit(model, data, seed=0, progress=False, throw=False)
    wall = time.perf_counter() - start
    return {"case": f"2-D heat 32 x 32 hybrid, 10 sensors, data seed {seed}",
            "fit s": f"{wall:.0f}", "symbolic s": "-",
            "hybrid field error": f"{field_error(result, truth):.3f}",
            "summary": "not run (each candidate's refit of 1,024 states takes minutes)",
            "exact support": "-", "parameter error": "-", "distilled field error": "-",
            "status": result.status.code}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fisher-KPP on one seed only")
    parser.add_argument("--limit", action="store_true",
                        help="only what the Fisher-KPP data determine (a few seconds)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.limit:
        print("## Fisher-KPP: the data limit (D known, maximum likelihood)\n")
        print(markdown([fisher_limit(s) for s in (0, 1, 2)]))
        return
    seeds = (0,) if args.quick else (0, 1, 2)
    print(f"# sysid fields benchmark ({'quick' if args.quick else 'full'}), torch "
          f"{torch.__version__}, 1 thread\n", flush=True)
    jobs = [(fisher_physics, s) for s in seeds] + [(fisher_hybrid, s) for s in seeds]
    if not args.quick:
        jobs += [(burgers, 0), (heat, 0)]
    rows = []
    for fn, seed in jobs:
        rows.append(fn(seed))
        print(markdown(rows[-1:]), flush=True)          # each row as it is measured
    print("\n" + markdown(rows))
    print(f"\nSuite wall time {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    sys.exit(main())
