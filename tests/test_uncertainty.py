"""Parameter uncertainty (Laplace / Gauss-Newton) and bands on trajectories, on known
answers and by coverage over repeated noise draws."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sympy as sp
import xarray as xr
from scipy.stats import t as student_t

import sysid
from sysid.uncertainty.laplace import gauss_newton, laplace
from sysid.errors import IdentifiabilityWarning, ModelError


def _fit(model, data, **options):
    kw = dict(epochs=0, lbfgs_iterations=100, shooting="single", progress=False)
    kw.update(options)
    return sysid.fit(model, data, **kw)


@pytest.fixture(scope="module")
def drift():
    # dx/dt = c  =>  x(t) = x0 + c t: ordinary least squares on a straight line
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 4.0, 41)
    y = 0.5 + 1.5 * t + 0.1 * rng.standard_normal(t.size)
    x, c = sp.symbols("x c")
    model = sysid.HybridODE(states=[x], physics={x: c}, parameters={c: 1.0})
    data = xr.Dataset({"x": ("time", y)}, coords={"time": t})
    return t, y, _fit(model, data)


def test_linear_drift_matches_ordinary_least_squares(drift):
    # the Gauss-Newton covariance of c is exact, and with the n / (n - p) correction
    # equals the textbook OLS standard error of the slope.
    t, y, result = drift
    slope, intercept = np.polyfit(t, y, 1)
    rss = np.sum((y - (intercept + slope * t)) ** 2)
    se_ols = np.sqrt(rss / (t.size - 2) / np.sum((t - t.mean()) ** 2))
    curv = gauss_newton(result)
    assert curv.names == ["c"]
    assert curv.values[0] == pytest.approx(slope, rel=1e-6)
    assert curv.std_error("c") == pytest.approx(se_ols, rel=1e-4)


def test_parameter_table_is_the_textbook_slope_interval(drift):
    t, y, result = drift
    slope, intercept = np.polyfit(t, y, 1)
    rss = np.sum((y - (intercept + slope * t)) ** 2)
    se = np.sqrt(rss / (t.size - 2) / np.sum((t - t.mean()) ** 2))
    q = student_t.ppf(0.95, t.size - 2)        # 90 % two-sided, n - 2 degrees of freedom
    table = result.parameter_table(level=0.9)
    assert list(table.index) == ["c"] and table.index.name == "parameter"
    for col in ("value", "std_error", "lower", "upper", "rel_error", "identifiable"):
        assert col in table.columns
    row = table.loc["c"]
    assert row["value"] == pytest.approx(slope, rel=1e-6)
    assert row["std_error"] == pytest.approx(se, rel=1e-4)
    assert row["lower"] == pytest.approx(slope - q * se, rel=1e-4)
    assert row["upper"] == pytest.approx(slope + q * se, rel=1e-4)
    assert row["rel_error"] == pytest.approx(se / slope, rel=1e-4)
    assert bool(row["identifiable"]) and row["scale"] == "linear"
    assert table.attrs["dof"] == pytest.approx(t.size - 2, abs=1e-6)
    wider = result.parameter_table(level=0.99).loc["c"]
    assert wider["lower"] < row["lower"] and wider["upper"] > row["upper"]
    corr = result.parameter_correlation()
    assert corr.dims == ("parameter", "parameter_") and float(corr.sel(
        parameter="c", parameter_="c")) == pytest.approx(1.0)
    with pytest.raises(ModelError, match="level"):
        result.parameter_table(level=90)


def test_positive_parameter_error_maps_through_the_log_transform():
    # dx/dt = -k x with k > 0 is stored as log k; the reported error is in k's units and
    # agrees with a fit of the same model with k unconstrained; the interval is computed
    # on the log scale: positive, and symmetric about the value in ratio.
    rng = np.random.default_rng(1)
    t = np.linspace(0.0, 3.0, 31)
    y = 2.0 * np.exp(-0.7 * t) + 0.02 * rng.standard_normal(t.size)
    data = xr.Dataset({"x": ("time", y)}, coords={"time": t})
    x = sp.Symbol("x")
    errors, tables = [], []
    for k in (sp.Symbol("k", positive=True), sp.Symbol("k")):
        model = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 0.5})
        result = _fit(model, data)
        errors.append(gauss_newton(result).std_error("k"))
        tables.append(result.parameter_table(level=0.9))
    assert 0.0 < errors[0] < 0.05
    assert errors[0] == pytest.approx(errors[1], rel=1e-3)
    log_row, lin_row = tables[0].loc["k"], tables[1].loc["k"]
    assert log_row["scale"] == "log" and log_row["lower"] > 0
    assert log_row["value"] / log_row["lower"] == pytest.approx(
        log_row["upper"] / log_row["value"], rel=1e-9)
    assert log_row["std_error"] == pytest.approx(lin_row["std_error"], rel=1e-3)
    assert log_row["lower"] == pytest.approx(lin_row["lower"], rel=2e-3)


def test_models_with_a_network_are_refused_by_gauss_newton():
    x = sp.Symbol("x")
    data = xr.Dataset({"x": ("time", np.exp(-np.linspace(0, 1, 11)))},
                      coords={"time": np.linspace(0, 1, 11)})
    model = sysid.HybridODE(states=[x], physics={x: 0 * x}, residual=sysid.MLP(4, 1))
    result = sysid.fit(model, data, epochs=2, lbfgs_iterations=0, progress=False)
    with pytest.raises(ValueError, match="without a neural residual"):
        gauss_newton(result)


def _decay_data(seed=1):
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 3.0, 31)
    y = 2.0 * np.exp(-0.7 * t) + 0.02 * rng.standard_normal(t.size)
    return xr.Dataset({"x": ("time", y)}, coords={"time": t})


def test_unidentifiable_product_warns_and_is_flagged():
    # dx/dt = -a b x: only the product a b is determined
    x = sp.Symbol("x")
    a, b = sp.symbols("a b", positive=True)
    model = sysid.HybridODE(states=[x], physics={x: -a * b * x}, parameters={a: 0.5, b: 1.0})
    result = _fit(model, _decay_data())
    with pytest.warns(IdentifiabilityWarning, match=r"a, b") as record:
        table = result.parameter_table()
    text = str(record[0].message)
    assert "correlation" in text and "fixed=" in text and "reparametrise" in text
    assert not table["identifiable"].any()
    assert (table["rel_error"] > 1).all()
    assert (table["lower"] >= 0).all()         # the log-scale interval stays on its side
    corr = result.parameter_correlation()
    assert float(corr.sel(parameter="a", parameter_="b")) < -0.99


def test_identifiable_model_does_not_warn():
    x = sp.Symbol("x")
    k = sp.Symbol("k", positive=True)
    model = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 0.5})
    result = _fit(model, _decay_data())
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        table = result.parameter_table()
    assert table["identifiable"].all() and table.loc["k", "note"] == ""


def test_coverage_of_parameter_and_unobserved_state_intervals():
    # A -> B kinetics, only B measured (12 samples, 3 % noise): over 40 noise draws the
    # 90 % intervals of k and the 90 % band of the never-measured A must cover the truth
    # at a calibrated rate (binomial: 36 +- 4 of 40).
    a, b = sp.symbols("a b")
    k = sp.Symbol("k", positive=True)
    model = sysid.HybridODE(states=[a, b], physics={a: -k * a, b: k * a - 0.5 * b},
                            parameters={k: 1.0})
    t = np.linspace(0.0, 4.0, 12)
    true_a = 2.0 * np.exp(-1.2 * t)
    true_b = 2.0 * 1.2 / (0.5 - 1.2) * (np.exp(-1.2 * t) - np.exp(-0.5 * t))
    hits = []
    for seed in range(40):
        y = true_b + 0.03 * np.random.default_rng(seed).standard_normal(t.size)
        data = xr.Dataset({"b": ("time", y)}, coords={"time": t})
        result = _fit(model, data, lbfgs_iterations=50)
        row = result.parameter_table(level=0.9).loc["k"]
        band = result.impute(level=0.9)
        inside = (band["a_lower"].values <= true_a) & (true_a <= band["a_upper"].values)
        hits.append([row["lower"] <= 1.2 <= row["upper"], inside[0], inside[4],
                     inside.mean()])
    rate = np.mean(hits, axis=0)
    assert 0.75 <= rate[0] <= 0.98, rate
    assert 0.75 <= rate[1] <= 0.98 and 0.75 <= rate[2] <= 0.98, rate
    assert 0.75 <= rate[3] <= 0.98, rate


def test_bands_leave_the_plain_output_unchanged():
    x = sp.Symbol("x")
    k = sp.Symbol("k", positive=True)
    model = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 0.5})
    result = _fit(model, _decay_data())
    plain = result.impute()
    band = result.impute(level=0.9)
    assert set(plain.data_vars) == {"x"}
    assert set(band.data_vars) == {"x", "x_lower", "x_upper"}
    xr.testing.assert_identical(plain["x"], band["x"])
    assert (band["x_lower"] < band["x"]).all() and (band["x"] < band["x_upper"]).all()
    assert band.attrs["sysid_level"] == 0.9 and band.attrs["sysid_interval"] == "confidence"
    times = np.linspace(3.5, 6.0, 6)
    fc = result.forecast(times, level=0.9)
    pred = result.forecast(times, level=0.9, interval="prediction")
    xr.testing.assert_identical(result.forecast(times)["x"], fc["x"])
    width = fc["x_upper"] - fc["x_lower"]
    assert (np.diff(width.values) != 0).all()
    assert ((pred["x_upper"] - pred["x_lower"]) > width).all()   # plus measurement noise
    sigma = result.noise_std["x"]
    q = student_t.ppf(0.95, laplace(result).dof)
    half = 0.5 * (pred["x_upper"] - pred["x_lower"]).values
    assert np.all(half >= q * sigma - 1e-12)
    with pytest.raises(ModelError, match="interval"):
        result.impute(level=0.9, interval="credible")


def test_hybrid_model_interval_includes_the_network():
    # a spring with an unknown extra force: the network could take part of -k x, so the
    # physics interval with the network integrated out is at least as wide as with the
    # network held at its fitted weights.
    from scipy.integrate import solve_ivp

    t = np.linspace(0.0, 6.0, 21)
    sol = solve_ivp(lambda _, z: [z[1], -1.5 * z[0] - 0.2 * z[1]], (0, 6), [1.0, 0.0],
                    t_eval=t, rtol=1e-10, atol=1e-12)
    y = sol.y[0] + 0.02 * np.random.default_rng(0).standard_normal(t.size)
    data = xr.Dataset({"x": ("time", y)}, coords={"time": t})
    x, v = sp.symbols("x v")
    k = sp.Symbol("k", positive=True)
    model = sysid.HybridODE(states=[x, v], physics={x: v, v: -k * x}, parameters={k: 1.0},
                            residual=sysid.MLP(width=6, depth=1, states=[v]))
    result = sysid.fit(model, data, seed=0, epochs=10, lbfgs_iterations=15, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifiabilityWarning)
        full = result.parameter_table(level=0.9)
        frozen = result.parameter_table(level=0.9, network=False)
    assert np.isfinite(full[["value", "std_error", "lower", "upper"]].to_numpy()).all()
    assert full.attrs["network"] and not frozen.attrs["network"]
    assert full.loc["k", "std_error"] >= frozen.loc["k", "std_error"]
    assert full.loc["k", "lower"] <= frozen.loc["k", "lower"]
    assert full.loc["k", "upper"] >= frozen.loc["k", "upper"]
    curv = laplace(result)
    assert curv.raw_covariance.shape[0] == 1 + 2 + result.stats["n_network_weights"]


def test_bands_follow_the_trajectory_dimension():
    # two experiments, one with a missing sample: bands carry the (trajectory, time) dims
    t = np.linspace(0.0, 3.0, 16)
    rng = np.random.default_rng(3)
    y = np.stack([2.0 * np.exp(-0.7 * t), 1.0 * np.exp(-0.7 * t)])
    y = y + 0.02 * rng.standard_normal(y.shape)
    y[1, 5] = np.nan
    data = xr.Dataset({"x": (("trajectory", "time"), y)},
                      coords={"trajectory": [10, 20], "time": t})
    x = sp.Symbol("x")
    k = sp.Symbol("k", positive=True)
    result = _fit(sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 0.5}), data)
    band = result.impute(level=0.8)
    assert band["x_lower"].dims == ("trajectory", "time")
    assert list(band["trajectory"].values) == [10, 20]
    assert np.all(band["x_lower"].values < band["x"].values)
    assert np.all(band["x"].values < band["x_upper"].values)
    # the band of the larger trajectory is wider (the rate's error scales with the state)
    width = (band["x_upper"] - band["x_lower"]).isel(time=-1).values
    assert width[0] > width[1]


def test_a_loaded_result_gives_the_same_table(drift, tmp_path):
    _, _, result = drift
    path = tmp_path / "drift.sysid"
    result.save(path)
    again = sysid.load(path)
    a, b = result.parameter_table(), again.parameter_table()
    np.testing.assert_allclose(b[["value", "std_error", "lower", "upper"]].to_numpy(),
                               a[["value", "std_error", "lower", "upper"]].to_numpy(),
                               rtol=1e-10)
