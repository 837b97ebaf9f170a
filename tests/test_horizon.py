"""Growing the horizon (``grow_horizon``): a relaxation oscillation whose whole-record
objective traps every local optimiser 20 % from the truth is fitted from the start of the
record outward, and a fit that already matches its data is left alone."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import xarray as xr
from scipy.integrate import solve_ivp

import sysid
from sysid.data.bundle import prepare
from sysid.training.horizon import _stage_lengths

MU = 1000.0


def _van_der_pol(seed=0, mu=MU):
    # x only, 60 samples over two relaxation periods (T ~ 1.61 mu), 1 % noise of the range
    t = np.linspace(0.0, 3000.0, 60)
    sol = solve_ivp(lambda _, s: [s[1], mu * (1 - s[0] ** 2) * s[1] - s[0]], (0.0, t[-1]),
                    [2.0, 0.0], method="Radau", t_eval=t, rtol=1e-10, atol=1e-12)
    rng = np.random.default_rng(seed)
    return xr.Dataset({"x": ("time", sol.y[0] + 0.02 * rng.standard_normal(t.size))},
                      coords={"time": t})


def _model(guess):
    x, v = sp.symbols("x v")
    m = sp.Symbol("mu", positive=True)
    return sysid.HybridODE(states=[x, v], physics={x: v, v: m * (1 - x ** 2) * v - x},
                           parameters={m: guess})


@pytest.mark.parametrize("guess", [800.0, 1200.0])
def test_a_stiff_relaxation_oscillation_is_fitted_by_growing_the_horizon(guess):
    # issue 25's target: mu within 2 % from a guess 20 % off (measured: 0.8 % from both)
    data = _van_der_pol()
    result = sysid.fit(_model(guess), data, progress=False, max_steps=50_000)
    assert abs(result.parameters["mu"] / MU - 1) < 0.02
    assert result.options.solver == "rosenbrock23"
    note = result.stats["grow_horizon"]
    assert "kept the grown fit" in note and "grown horizon" in result.status.detail
    assert result.model.parameters[sp.Symbol("mu", positive=True)] == guess   # as given
    # the imputed velocity follows the truth's slow branches (x within its noise)
    assert float(np.abs(result.impute()["x"] - data["x"]).median()) < 0.03


def test_without_growing_the_same_fit_stays_in_the_trap():
    # the mechanism that reaches the truth above: without it the fit stops 20 % off
    result = sysid.fit(_model(800.0), _van_der_pol(), progress=False, max_steps=50_000,
                       grow_horizon=False)
    assert abs(result.parameters["mu"] / MU - 1) > 0.1
    assert "grow_horizon" not in result.stats


def test_a_fit_that_matches_its_data_is_not_grown():
    data = sysid.datasets.simulate("lotka_volterra", noise=0.02, seed=1)
    x, y = sp.symbols("x y")
    a, b, c, d = sp.symbols("a b c d", positive=True)
    model = sysid.HybridODE(states=[x, y],
                            physics={x: a * x - b * x * y, y: c * x * y - d * y},
                            parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
    result = sysid.fit(model, data, progress=False)
    assert "grow_horizon" not in result.stats
    assert abs(result.parameters["a"] / 1.3 - 1) < 0.05


def test_stages_hold_enough_samples_and_grow():
    data = _van_der_pol()
    model = _model(800.0)
    lengths = _stage_lengths(prepare(model, data), n_unknowns=3)
    assert lengths == sorted(set(lengths)) and lengths[0] >= 5 and lengths[-1] < 60
    # too few samples for any stage: nothing to grow
    assert _stage_lengths(prepare(model, data.isel(time=slice(0, 8))), n_unknowns=3) == []


def test_grow_horizon_option_is_checked():
    with pytest.raises(ValueError, match="grow_horizon must be 'auto', True or False"):
        sysid.FitOptions(grow_horizon="yes")


def test_systematic_residuals_grow_the_horizon_where_the_misfit_ratio_misses_them():
    # issue 27's calibration benchmark (benchmarks/calibration.py, fhn_3x20, noise seed 3):
    # FitzHugh-Nagumo as 3 trajectories of 20 irregular samples. The whole-record fit
    # stopped at a wrong optimum (fitted noise level 16-26x the true one) and said
    # "converged"; the misfit ratio to the second-difference noise level stayed under 3
    # (on sparse samples of an oscillation that level is 5-10x the true noise), but the
    # residuals are systematic (lag-1 autocorrelation over 3 standard errors), which now
    # grows the horizon too
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from calibration import fhn_3x20

    case = fhn_3x20()
    data, _ = case.data(3)
    result = sysid.fit(case.model, data, progress=False, seed=0)
    assert result.status.success
    note = result.stats.get("grow_horizon", "")
    assert "systematic" in note and "kept the grown fit" in note, note
    for name, level in result.noise_std.items():     # the data's 5 % noise, not 16-26x
        assert level < 2 * 0.05 * float(np.nanstd(data[name].values)) + 0.05, (name, level)
    for name, truth in case.truth.items():
        assert abs(result.parameters[name] / truth - 1) < 0.25, (name, result.parameters)
