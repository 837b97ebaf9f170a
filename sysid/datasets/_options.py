"""Validation of the keyword options of :func:`sysid.datasets.simulate`."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, suggest
from ._system import Staircase, System

__all__ = ["Options", "check_options"]


@dataclass(frozen=True)
class Options:
    """Normalised, validated simulate() options."""

    times: np.ndarray | None  # regular grid, or None when irregular
    t0: float
    t_last: float
    n_samples: int
    n_trajectories: int
    x0: np.ndarray | None  # (n_trajectories, n_states) or None (use defaults)
    params: dict[str, float]  # model parameters (all of them)
    input_params: dict[str, float]
    noise: float
    observed: tuple[str, ...]
    missing: float
    irregular: bool
    seed: int
    truth: bool


def _fail(name: str, what: str, value: object, fix: str) -> DataError:
    label = name if "[" in name else repr(name)  # params['a'] is already quoted
    return DataError(f"simulate(): option {label} {what}; received {value!r}. Fix: {fix}")


def _real(name: str, value: object, *, low: float | None = None, low_open: bool = False,
          high: float | None = None, high_open: bool = False, fix: str = "") -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise _fail(name, "must be a real number", value, fix)
    x = float(value)
    bad = not math.isfinite(x)
    bad |= low is not None and (x <= low if low_open else x < low)
    bad |= high is not None and (x >= high if high_open else x > high)
    if bad and low is None and high is None:
        raise _fail(name, "must be finite", value, fix)
    if bad:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        rng = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise _fail(name, f"must be finite and in {rng}", value, fix)
    return x


def _int(name: str, value: object, low: int, fix: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise _fail(name, "must be an integer", value, fix)
    if int(value) < low:
        raise _fail(name, f"must be >= {low}", value, fix)
    return int(value)


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise _fail(name, "must be True or False", value, f"Pass {name}=True or {name}=False.")
    return bool(value)


def _grid(sys: System, times: object, t_end: object, dt: object) -> np.ndarray:
    if times is not None:
        if t_end is not None or dt is not None:
            raise DataError("simulate(): pass either 'times' or 't_end'/'dt', not both; "
                            f"received times and t_end={t_end!r}, dt={dt!r}. Fix: drop "
                            "t_end/dt (explicit times define the grid).")
        try:
            arr = np.asarray(times, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise _fail("times", "must be a 1-D array of numbers", times,
                        "Pass e.g. numpy.linspace(0, 10, 101).") from exc
        if arr.ndim != 1 or arr.size < 2 or not np.all(np.isfinite(arr)) \
                or np.any(np.diff(arr) <= 0):
            raise _fail("times", "must be a 1-D array of at least 2 finite, strictly "
                        "increasing sample times", times,
                        "Pass sorted unique times, e.g. numpy.linspace(0, 10, 101).")
        return arr
    end = sys.t_end if t_end is None else _real(
        "t_end", t_end, low=0.0, low_open=True, fix="Pass a positive end time.")
    step = sys.dt if dt is None else _real(
        "dt", dt, low=0.0, low_open=True, fix="Pass a positive sampling interval.")
    if step > end:
        raise DataError(f"simulate(): dt={step!r} is larger than t_end={end!r}, so there "
                        "would be a single sample. Fix: choose dt <= t_end.")
    ratio = end / step
    m = round(ratio)
    if abs(ratio - m) <= 1e-9 * max(1.0, ratio):
        return np.linspace(0.0, end, m + 1)
    return step * np.arange(math.floor(ratio) + 1)


def _x0(sys: System, x0: object, n_traj: int) -> np.ndarray | None:
    if x0 is None:
        return None
    n = len(sys.states)
    fix = (f"Pass {n} values (one per state {', '.join(sys.states)}) or an array of "
           f"shape ({n_traj}, {n}).")
    try:
        arr = np.array(x0, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _fail("x0", "must be an array of numbers", x0, fix) from exc
    if arr.shape == (n,):
        arr = np.tile(arr, (n_traj, 1))
    if arr.shape != (n_traj, n):
        raise _fail("x0", f"must have shape ({n},) or (n_trajectories={n_traj}, {n}); "
                    f"got shape {arr.shape}", x0,
                    fix + " For several trajectories also pass n_trajectories.")
    if not np.all(np.isfinite(arr)):
        raise _fail("x0", "must be finite", x0, fix)
    for j, s in enumerate(sys.states):
        if s in sys.nonnegative and np.any(arr[:, j] < 0):
            raise _fail("x0", f"must have {s} >= 0 for the {sys.name} system", x0,
                        f"Use non-negative values for {', '.join(sys.nonnegative)}.")
    return arr


def _params(sys: System, params: object) -> tuple[dict[str, float], dict[str, float]]:
    model, inputs = dict(sys.parameters), dict(sys.input_parameters)
    if params is None:
        return model, inputs
    known = list(model) + list(inputs)
    if not isinstance(params, dict):
        raise _fail("params", "must be a dict of parameter name to value", params,
                    f"Pass e.g. params={{{known[0]!r}: 1.0}}; names: {', '.join(known)}.")
    for key, value in params.items():
        if key not in known:
            raise DataError(f"simulate(): unknown parameter {key!r} for system "
                            f"{sys.name!r}.{suggest(str(key), known)} Known parameters: "
                            f"{', '.join(known)}.")
        val = _real(f"params[{key!r}]", value, fix="Pass a finite number.")
        (model if key in model else inputs)[key] = val
    for sig in sys.signals.values():
        if isinstance(sig, Staircase):
            _real(f"params[{sig.hold!r}]", inputs[sig.hold], low=0.0, low_open=True,
                  fix="The staircase hold time must be positive.")
            if inputs[sig.low] > inputs[sig.high]:
                raise DataError(f"simulate(): staircase bounds reversed: {sig.low}="
                                f"{inputs[sig.low]!r} > {sig.high}={inputs[sig.high]!r}. "
                                f"Fix: make {sig.low} <= {sig.high}.")
    return model, inputs


def _observed(sys: System, observed: object) -> tuple[str, ...]:
    if observed is None:
        return sys.states
    if isinstance(observed, str) or not isinstance(observed, (list, tuple)) or not observed:
        raise _fail("observed", "must be a non-empty list of state names", observed,
                    f"Pass e.g. observed={[sys.states[0]]!r}; states: {', '.join(sys.states)}.")
    out: list[str] = []
    for name in observed:
        if name in sys.inputs:
            continue  # inputs are always included
        if name not in sys.states:
            raise DataError(f"simulate(): observed name {name!r} is not a state of "
                            f"{sys.name!r}.{suggest(str(name), sys.states)} States: "
                            f"{', '.join(sys.states)}.")
        if name in out:
            raise _fail("observed", f"lists {name!r} twice", observed, "List each state once.")
        out.append(name)
    if not out:
        raise _fail("observed", "must name at least one state", observed,
                    f"States: {', '.join(sys.states)} (inputs are always included).")
    return tuple(s for s in sys.states if s in out)


def check_options(sys: System, *, times, t_end, dt, n_trajectories, x0, params, noise,
                  observed, missing, irregular, seed, truth) -> Options:
    """Validate every option; raise :class:`DataError` on the first bad one."""
    grid = _grid(sys, times, t_end, dt)
    n_traj = _int("n_trajectories", n_trajectories, 1, "Pass a positive integer.")
    irregular = _bool("irregular", irregular)
    if irregular and times is not None:
        raise DataError("simulate(): irregular=True draws its own random sample times, so "
                        "'times' cannot be given as well. Fix: pass t_end/dt (the number "
                        "of samples is t_end/dt + 1), or irregular=False with times.")
    model, inputs = _params(sys, params)
    return Options(
        times=None if irregular else grid, t0=float(grid[0]), t_last=float(grid[-1]),
        n_samples=int(grid.size), n_trajectories=n_traj, x0=_x0(sys, x0, n_traj),
        params=model, input_params=inputs,
        noise=_real("noise", noise, low=0.0, fix="Pass a relative noise level >= 0, e.g. 0.05."),
        observed=_observed(sys, observed),
        missing=_real("missing", missing, low=0.0, high=1.0, high_open=True,
                      fix="Pass the fraction of samples to drop, 0 <= missing < 1."),
        irregular=irregular,
        seed=_int("seed", seed, 0, "Pass a non-negative integer seed."),
        truth=_bool("truth", truth))
