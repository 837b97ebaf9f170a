"""The ``sysid`` command line: ``sysid demo`` and ``sysid fit SPEC.toml DATA.nc --out DIR``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import datasets
from .errors import SysidError
from .model import MLP, HybridODE
from .model.spec import model_from_spec
from .results import fit

__all__ = ["main", "model_from_toml", "write_outputs"]

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def _symbol_entry(item, where):
    if isinstance(item, str):
        return {"name": item, "assumptions": {}}
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return {"name": item["name"],
                "assumptions": {k: v for k, v in item.items() if k != "name"}}
    raise SysidError(f"{where}: each entry must be a name or a table with 'name'; "
                     f"received {item!r}.")


#: How each table of [model] is written, for the error messages.
_TABLE_EXAMPLES = {
    "physics": '[model.physics]\nx = "-k * x"',
    "observations": '[model.observations]\ndistance = "sqrt(x**2 + y**2)"',
    "parameters": "[model.parameters]\nk = { value = 0.5, positive = true }",
    "algebraic": '[model.algebraic]\nz = "x**2"',
    "fixed": "[model.fixed]\ng = 9.81",
    "residual": "[model.residual]\nwidth = 32\nstates = [\"v\"]",
}


def _table(m: dict, key: str) -> dict | None:
    """``m[key]`` when it is a TOML table (None when absent); anything else is refused."""
    value = m.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise SysidError(f"[model] {key} must be a table, e.g.\n{_TABLE_EXAMPLES[key]}\n"
                     f"received {key} = {value!r} (type {type(value).__name__}).")


def _list(m: dict, key: str) -> list:
    value = m.get(key, [])
    if isinstance(value, list):
        return value
    raise SysidError(f"[model] {key} must be a list of names, e.g. {key} = [\"x\", \"y\"]; "
                     f"received {key} = {value!r} (type {type(value).__name__}).")


def _valued_entries(table, where):
    out = []
    for name, item in (table or {}).items():
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            out.append({"name": name, "assumptions": {}, "value": float(item)})
        elif isinstance(item, dict) and "value" in item:   # low/high: a bounded parameter
            out.append({"name": name, **{k: item[k] for k in ("value", "low", "high")
                                         if k in item},
                        "assumptions": {k: v for k, v in item.items()
                                        if k not in ("value", "low", "high")}})
        else:
            raise SysidError(f"[{where}] {name}: give a number or a table like "
                             f"{{ value = 0.5, positive = true }}; received {item!r}.")
    return out


def model_from_toml(spec: dict):
    """Build a HybridODE from the ``[model]`` table of a TOML spec (equations as text)."""
    m = spec.get("model")
    if not isinstance(m, dict) or "states" not in m:
        raise SysidError("The spec needs a [model] table with states = [...]; see "
                         "`sysid fit --help` for the format.")
    residual = _table(m, "residual")
    if residual is not None:
        residual = {"width": 32, "depth": 2, "states": None, "inputs": None,
                    "activation": "tanh", **residual}
    algebraic = dict(_table(m, "algebraic") or {})     # z = "x**2": z solved, eliminated
    observations = dict(_table(m, "observations") or {})
    both = sorted(set(algebraic) & set(observations))
    if both:
        raise SysidError(f"[model] {both[0]!r} is both an algebraic state and an observation; "
                         f"an algebraic state is measured under its own name already.")
    states = [_symbol_entry(s, "states") for s in _list(m, "states")]
    listed = {e["name"]: e for e in states}      # an algebraic state listed keeps its assumptions
    return model_from_spec({
        "states": [e for e in states if e["name"] not in algebraic],
        "algebraic": [listed.get(n, {"name": n, "assumptions": {}}) for n in algebraic],
        "inputs": [_symbol_entry(s, "inputs") for s in _list(m, "inputs")],
        "parameters": _valued_entries(_table(m, "parameters"), "model.parameters"),
        "fixed": _valued_entries(_table(m, "fixed"), "model.fixed"),
        "physics": dict(_table(m, "physics") or {}),
        "observations": {**observations, **algebraic},
        "residual": residual,
    })


def write_outputs(result, out: Path, *, horizon: float | None = None, inputs=None) -> dict:
    """Parameters, equations, imputed states, forecast (netCDF) and figures into ``out``.

    An input-driven model's forecast needs its future ``inputs`` (an ``xarray.Dataset``
    over time); without them no forecast is written and a note says why."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = {}
    (out / "parameters.json").write_text(json.dumps({
        "parameters": result.parameters, "noise_std": result.noise_std,
        "status": str(result.status), "stats": result.stats}, indent=2))
    files["parameters"] = "parameters.json"
    (out / "equations.txt").write_text(
        "".join(f"d{k}/dt = {v}\n" for k, v in result.equations.items()))
    files["equations"] = "equations.txt"
    result.impute().to_netcdf(out / "imputed.nc", engine="h5netcdf")
    files["imputed"] = "imputed.nc"
    if horizon and result.model.inputs and inputs is None:
        print(f"no forecast written: the model is driven by inputs {result.model.input_names}, "
              f"whose future values were not given; name a file of them (netCDF or CSV with "
              f"a time column) as forecast_inputs in the spec's [output] table or with "
              f"--forecast-inputs.")
        horizon = None
    if horizon:
        result.forecast(horizon=horizon, n=100, inputs=inputs).to_netcdf(
            out / "forecast.nc", engine="h5netcdf")
        files["forecast"] = "forecast.nc"
    fig = result.plot(forecast=horizon or None, inputs=inputs if horizon else None)
    fig.savefig(out / "fit.png", dpi=120)
    plt.close(fig)
    files["figure"] = "fit.png"
    result.save(out / "result.sysid")
    files["result"] = "result.sysid"
    return files


def _print_summary(result, out: Path, files: dict):
    print(f"status: {result.status}")
    print("fitted parameters:")
    for k, v in result.parameters.items():
        print(f"  {k:>12s} = {v:.6g}")
    print("equations:")
    for k, v in result.equations.items():
        print(f"  d{k}/dt = {v}")
    print(f"time: {result.stats['wall_time_s']:.1f} s, "
          f"{result.stats['function_evaluations']} function evaluations")
    print(f"wrote {', '.join(files.values())} to {out}/")


def demo_problem():
    """The demo's data and model: the lynx-hare pelts, hare growth and lynx death as
    physics with learnable rates, the interactions left to a neural residual.

    Returns
    -------
    (xarray.Dataset, sysid.HybridODE)
    """
    import sympy as sp

    data = datasets.load("lynx_hare")
    hare, lynx = sp.symbols("hare lynx")
    alpha, gamma = sp.symbols("alpha gamma", positive=True)
    model = HybridODE(
        states=[hare, lynx], physics={hare: alpha * hare, lynx: -gamma * lynx},
        parameters={alpha: 0.5, gamma: 0.5}, residual=MLP(width=16, depth=2))
    return data, model


def _demo(args) -> int:
    data, model = demo_problem()
    print("sysid demo: Hudson's Bay lynx-hare pelts 1900-1920 (Carpenter 2018, Howard 2009)")
    print("known physics: hare growth alpha*hare, lynx death -gamma*lynx; "
          "interactions learned by a neural residual; log-normal noise")
    fast = {"epochs": 30, "lbfgs_iterations": 40, "polish_iterations": 5} if args.fast else {}
    result = fit(model, data, seed=args.seed, noise="lognormal", progress=None, **fast)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("(a free network can take over part of alpha*hare and gamma*lynx; the symbolic "
          "refit below hands such terms back to the parameters)")
    _write_symbolic(result, out, degree=2)
    print("reference (Carpenter 2018, Stan, full Lotka-Volterra): alpha 0.55, beta 0.028, "
          "gamma 0.80, delta 0.024")
    files = write_outputs(result, out, horizon=10.0)     # fit.png shows the distilled model
    _print_summary(result, out, files)
    return 0


def _write_symbolic(result, out: Path, **options) -> None:
    """Distil the residual into equations; print them and write symbolic.txt/.tex."""
    import sympy as sp

    try:
        summary = result.symbolic(**options)
    except SysidError as err:       # the fit's own outputs are still written after this
        print(f"no symbolic summary: {err}")
        return
    print("discovered equations (residual distilled and refit against the data):")
    for k, v in summary.model_equations.items():
        print(f"  d{k}/dt = {sp.N(v, 4)}")
    for note in summary.warnings:
        print(f"  note: {note}")
    (out / "symbolic.txt").write_text(repr(summary) + "\n\n" + summary.path.to_string() + "\n")
    (out / "symbolic.tex").write_text(summary.to_latex() + "\n")
    print(f"wrote symbolic.txt, symbolic.tex to {out}/")


def _read_data(path: Path):
    """A dataset from a netCDF file, or a CSV file with a ``time`` column."""
    import xarray as xr

    if path.suffix == ".csv":
        import pandas as pd
        return xr.Dataset.from_dataframe(pd.read_csv(path).set_index("time"))
    with xr.open_dataset(path) as ds:          # read whole, the file closed
        return ds.load()


def _fit(args) -> int:
    spec = tomllib.loads(Path(args.spec).read_text())
    model = model_from_toml(spec)
    data = _read_data(Path(args.data))
    output = spec.get("output", {})
    future = args.forecast_inputs or output.get("forecast_inputs")
    if future is not None:      # a path in the spec is relative to the spec's folder
        path = Path(future) if args.forecast_inputs else Path(args.spec).parent / future
        if not path.is_file():
            raise SysidError(f"The future inputs file {str(path)!r} does not exist; give the "
                             f"path of a netCDF or CSV file (with a time column) holding "
                             f"{model.input_names} past the data.")
        future = _read_data(path)
    options = dict(spec.get("fit", {}))
    result = fit(model, data, **options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if output.get("symbolic") and model.residual is not None:
        _write_symbolic(result, out)        # before the figure, which then shows it
    files = write_outputs(result, out, horizon=output.get("forecast_horizon"), inputs=future)
    _print_summary(result, out, files)
    return 0


SPEC_HELP = """\
SPEC.toml format (equations are text, parsed by a whitelist, never evaluated):

  [model]
  states = ["hare", "lynx"]                 # or { name = "x", positive = true }
  inputs = []                               # exogenous inputs read from the data
  [model.physics]                           # known part of d(state)/dt
  hare = "alpha*hare"
  lynx = "-gamma*lynx"
  [model.parameters]                        # learnable, with initial guesses
  alpha = { value = 0.5, positive = true }
  gamma = 0.5                               # or { value = 0.5, low = 0, high = 1 }
  [model.fixed]                             # known constants
  [model.observations]                      # channel = "expression of states"
  [model.algebraic]                         # z = "x**2": an algebraic state (eliminated)
  [model.residual]                          # omit for physics only
  width = 16
  depth = 2
  [fit]                                     # any sysid.fit option
  seed = 0
  noise = "lognormal"
  [output]
  forecast_horizon = 10.0
  forecast_inputs = "future.nc"             # an input-driven model's future inputs
                                            # (netCDF or CSV with a time column)
  symbolic = true                           # distil the residual into equations
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sysid", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit the bundled lynx-hare data and write the outputs")
    demo.add_argument("--out", default="sysid-demo", help="output folder (default sysid-demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--fast", action="store_true", help="fewer iterations (for CI)")
    fit = sub.add_parser("fit", help="fit a TOML model spec to a netCDF (or CSV) dataset",
                         description=SPEC_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    fit.add_argument("spec")
    fit.add_argument("data")
    fit.add_argument("--out", required=True)
    fit.add_argument("--forecast-inputs", default=None,
                     help="netCDF or CSV file of the inputs' future values, for the forecast "
                          "of an input-driven model")
    args = parser.parse_args(argv)
    try:
        return _demo(args) if args.command == "demo" else _fit(args)
    except (SysidError, tomllib.TOMLDecodeError, TypeError, FileNotFoundError) as err:
        print(f"sysid: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
