"""Standard errors from the curvature of the likelihood (Gauss-Newton) on known answers."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import xarray as xr

import sysid
from sysid._uncertainty import gauss_newton


def test_linear_drift_matches_ordinary_least_squares():
    # dx/dt = c  =>  x(t) = x0 + c t: the Gauss-Newton covariance of c is exact, and with
    # the n / (n - p) correction equals the textbook OLS standard error of the slope.
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 4.0, 41)
    y = 0.5 + 1.5 * t + 0.1 * rng.standard_normal(t.size)
    x, c = sp.symbols("x c")
    model = sysid.HybridODE(states=[x], physics={x: c}, parameters={c: 1.0})
    data = xr.Dataset({"x": ("time", y)}, coords={"time": t})
    result = sysid.fit(model, data, epochs=0, lbfgs_iterations=100, shooting="single",
                       progress=False)
    slope, intercept = np.polyfit(t, y, 1)
    rss = np.sum((y - (intercept + slope * t)) ** 2)
    se_ols = np.sqrt(rss / (t.size - 2) / np.sum((t - t.mean()) ** 2))
    curv = gauss_newton(result)
    assert curv.names == ["c"]
    assert curv.values[0] == pytest.approx(slope, rel=1e-6)
    assert curv.std_error("c") == pytest.approx(se_ols, rel=1e-4)


def test_positive_parameter_error_maps_through_the_log_transform():
    # dx/dt = -k x with k > 0 is stored as log k; the reported error is in k's units and
    # agrees with a fit of the same model with k unconstrained.
    rng = np.random.default_rng(1)
    t = np.linspace(0.0, 3.0, 31)
    y = 2.0 * np.exp(-0.7 * t) + 0.02 * rng.standard_normal(t.size)
    data = xr.Dataset({"x": ("time", y)}, coords={"time": t})
    x = sp.Symbol("x")
    errors = []
    for k in (sp.Symbol("k", positive=True), sp.Symbol("k")):
        model = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 0.5})
        result = sysid.fit(model, data, epochs=0, lbfgs_iterations=100, shooting="single",
                           progress=False)
        errors.append(gauss_newton(result).std_error("k"))
    assert 0.0 < errors[0] < 0.05
    assert errors[0] == pytest.approx(errors[1], rel=1e-3)


def test_models_with_a_network_are_refused():
    x = sp.Symbol("x")
    data = xr.Dataset({"x": ("time", np.exp(-np.linspace(0, 1, 11)))},
                      coords={"time": np.linspace(0, 1, 11)})
    model = sysid.HybridODE(states=[x], physics={x: 0 * x}, residual=sysid.MLP(4, 1))
    result = sysid.fit(model, data, epochs=2, lbfgs_iterations=0, progress=False)
    with pytest.raises(ValueError, match="without a neural residual"):
        gauss_newton(result)
