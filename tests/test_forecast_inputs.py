"""Forecasts of an input-driven model use the future inputs they are given (issue 29).

A forced Duffing oscillator is fitted on t <= 20; its forecast to t = 30 is then run with the
true future forcing, with none and with a constant push. Each is checked against SciPy's
solution of the same equations, so a forecast that ignored its inputs (as it once did: the
recorded inputs won a merge and the future held NaN) fails here.
"""

import numpy as np
import pytest
import sympy as sp
import xarray as xr
from scipy.integrate import solve_ivp

import sysid
from sysid.errors import DataError

GAMMA, W = 0.2, 1.2          # the bundled system's forcing u = gamma cos(w t)
TRUE = {"delta": 0.3, "alpha": -1.0, "beta": 1.0}


@pytest.fixture(scope="module")
def fitted():
    data = sysid.datasets.simulate("duffing", noise=0.02, t_end=20.0, dt=0.2, seed=0)
    x, v, u = sp.symbols("x v u")
    delta, beta = sp.symbols("delta beta", positive=True)
    alpha = sp.Symbol("alpha")
    model = sysid.HybridODE(states=[x, v], inputs=[u],
                            physics={x: v, v: -delta * v - alpha * x - beta * x**3 + u},
                            parameters={delta: 0.2, alpha: -0.8, beta: 0.8})
    return sysid.fit(model, data, progress=False), data


def _future(times, values):
    return xr.Dataset({"u": ("time", np.asarray(values, dtype=float))}, coords={"time": times})


def _solve(params, x0, t0, times, force):
    def rhs(t, s):
        x, v = s
        return [v, -params["delta"] * v - params["alpha"] * x - params["beta"] * x**3 + force(t)]
    sol = solve_ivp(rhs, (t0, times[-1]), x0, t_eval=times, rtol=1e-10, atol=1e-12)
    return sol.y.T


def test_the_forecast_follows_the_future_inputs_it_is_given(fitted):
    result, _ = fitted
    grid = np.linspace(20.0, 30.0, 401)           # the inputs, finer than the forecast
    times = np.linspace(20.5, 30.0, 20)
    true_u = _future(grid, GAMMA * np.cos(W * grid))
    with_true = result.forecast(times, inputs=true_u)
    # against the truth: the true system from its true start, forced by the true input
    truth = _solve(TRUE, [1.0, 0.0], 0.0, np.concatenate([[0.0], times]),
                   lambda t: GAMMA * np.cos(W * t))[1:]
    rmse = np.sqrt(np.mean((with_true["x"].values - truth[:, 0]) ** 2))
    assert rmse < 0.05, rmse
    # the fitted model from its imputed state at t = 20, solved by SciPy with each input
    start = result.impute([20.0])
    x0 = [float(start["x"][0]), float(start["v"][0])]
    u20 = float(fitted[1]["u"][-1])       # the recorded input at t = 20 is kept
    later = grid[1:]
    for level in (0.0, 10.0):
        forecast = result.forecast(times, inputs=_future(later, np.full(later.size, level)))
        expect = _solve(result.parameters, x0, 20.0, np.concatenate([[20.0], times]),
                        lambda t: np.interp(t, [20.0, later[0]], [u20, level]))[1:]
        # to the solvers' accuracy (sysid's rtol 1e-6 over 30 time units of a double well),
        # 50x below the change that the input makes
        np.testing.assert_allclose(forecast["x"].values, expect[:, 0], atol=1e-3)
        np.testing.assert_allclose(forecast["v"].values, expect[:, 1], atol=1e-3)
        # and it is not the forecast with the true forcing
        assert np.max(np.abs(forecast["x"].values - with_true["x"].values)) > 0.05
    # the forcing is part of the output, over the forecast times
    np.testing.assert_allclose(with_true["u"].values, GAMMA * np.cos(W * times), atol=1e-3)


def test_a_forecast_past_the_known_inputs_is_refused(fitted):
    result, _ = fitted
    short = _future(np.linspace(20.0, 25.0, 51), np.zeros(51))
    with pytest.raises(DataError, match="known up to time 25.*forecast runs to 30"):
        result.forecast(np.linspace(21.0, 30.0, 10), inputs=short)
    with pytest.raises(DataError, match="needs their future values"):
        result.forecast(horizon=5.0)
    with pytest.raises(DataError, match=r"lack \['u'\]"):
        result.forecast(horizon=5.0, inputs=xr.Dataset({"w": ("time", np.zeros(3))},
                                                       coords={"time": [20.0, 25.0, 30.0]}))


def test_the_plot_draws_the_forecast_with_its_inputs(fitted):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result, _ = fitted
    grid = np.linspace(20.0, 26.0, 121)
    push = _future(grid, np.full(grid.size, 3.0))
    fig = result.plot(inputs=push)            # the forecast runs to the inputs' last time
    line = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "forecast"][0]
    t, drawn = line.get_xdata(), line.get_ydata()
    assert t[-1] == pytest.approx(26.0)
    expect = result.forecast(t, inputs=push)["x"].values
    np.testing.assert_allclose(drawn, expect, atol=1e-9)
    plt.close(fig)


def test_the_cli_forecasts_from_a_file_of_future_inputs_or_says_why_not(fitted, tmp_path, capsys):
    _, data = fitted
    (tmp_path / "model.toml").write_text(
        '[model]\nstates = ["x", "v"]\ninputs = ["u"]\n'
        '[model.physics]\nx = "v"\nv = "-delta*v - alpha*x - beta*x**3 + u"\n'
        '[model.parameters]\ndelta = 0.2\nalpha = -0.8\nbeta = 0.8\n'
        '[output]\nforecast_horizon = 5.0\n')
    data.to_netcdf(tmp_path / "data.nc")
    assert sysid.cli.main(["fit", str(tmp_path / "model.toml"), str(tmp_path / "data.nc"),
                           "--out", str(tmp_path / "a")]) == 0
    assert "no forecast written" in capsys.readouterr().out
    assert not (tmp_path / "a" / "forecast.nc").exists()
    grid = np.linspace(20.0, 25.0, 101)
    _future(grid, GAMMA * np.cos(W * grid)).to_netcdf(tmp_path / "future.nc")
    assert sysid.cli.main(["fit", str(tmp_path / "model.toml"), str(tmp_path / "data.nc"),
                           "--out", str(tmp_path / "b"), "--forecast-inputs",
                           str(tmp_path / "future.nc")]) == 0
    with xr.open_dataset(tmp_path / "b" / "forecast.nc") as opened:
        forecast = opened.load()
    assert float(forecast["time"][-1]) == pytest.approx(25.0)
    np.testing.assert_allclose(forecast["u"].values, GAMMA * np.cos(W * forecast["time"].values),
                               atol=1e-3)


def test_malformed_future_inputs_are_refused_with_what_to_give(fitted, tmp_path, capsys):
    result, data = fitted
    with pytest.raises(DataError, match="inputs must be an xarray.Dataset; received dict"):
        result.forecast(horizon=5.0, inputs={"u": [0.0]})
    with pytest.raises(DataError, match="need a 'time' dimension"):
        result.forecast(horizon=5.0, inputs=xr.Dataset({"u": ("step", np.zeros(3))}))
    with pytest.raises(DataError, match="have a 'trajectory' dimension but the data have none"):
        result.forecast(horizon=5.0, inputs=xr.Dataset(
            {"u": (("trajectory", "time"), np.zeros((1, 3)))}, coords={"time": [20.0, 25.0, 30.0]}))
    with pytest.raises(DataError, match="not past the data's last sample"):
        result.plot(inputs=_future(np.linspace(10.0, 20.0, 5), np.zeros(5)))
    (tmp_path / "m.toml").write_text('[model]\nstates = ["x", "v"]\ninputs = ["u"]\n'
                                     '[model.physics]\nx = "v"\nv = "-k*x + u"\n'
                                     '[model.parameters]\nk = 1.0\n')
    data.to_netcdf(tmp_path / "d.nc")
    capsys.readouterr()
    assert sysid.cli.main(["fit", str(tmp_path / "m.toml"), str(tmp_path / "d.nc"), "--out",
                           str(tmp_path / "o"), "--forecast-inputs",
                           str(tmp_path / "none.nc")]) != 0
    said = capsys.readouterr()
    assert "future inputs file" in said.err + said.out and "does not exist" in said.err + said.out
    assert not (tmp_path / "o").exists()           # refused before the fit


def test_an_invariant_that_no_state_can_be_solved_from_is_refused():
    x, y = sp.symbols("x y")
    k = sp.Symbol("k", positive=True)
    with pytest.raises(sysid.errors.ModelError, match="cannot be solved explicitly"):
        sysid.HybridODE(states=[x, y], physics={x: -k * x, y: k * x}, parameters={k: 1.0},
                        invariants=[sp.sin(x) + sp.sin(y) - 1])
