"""Tests of sysid.datasets: bundled data and synthetic systems with known truth."""

from __future__ import annotations

import hashlib
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import xarray as xr
from scipy.integrate import solve_ivp

from sysid.datasets import available, load, simulate, system
from sysid.errors import DataError

REPO_DATA = Path(__file__).resolve().parents[1] / "datasets"
FIELD_NAMES = ["fisher_kpp", "burgers", "heat_2d"]     # fields over space: tests/test_pde.py
SYSTEM_NAMES = [n for n in available("simulate") if n not in FIELD_NAMES]


def _check_attrs(ds: xr.Dataset) -> None:
    for key in ("title", "source", "citation", "license", "description"):
        assert isinstance(ds.attrs[key], str) and ds.attrs[key]
    for name in list(ds.variables):
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"], name


# ----------------------------------------------------------------- bundled data
def test_lynx_hare_values_and_attrs():
    ds = load("lynx_hare")
    _check_attrs(ds)
    assert set(ds.data_vars) == {"hare", "lynx"} and ds.sizes == {"time": 21}
    np.testing.assert_array_equal(ds.time.values, np.arange(21.0))
    assert ds.time.dtype == np.float64
    assert (float(ds.hare[0]), float(ds.lynx[0])) == (30.0, 4.0)
    assert (float(ds.hare[-1]), float(ds.lynx[-1])) == (24.7, 8.6)
    assert float(ds.lynx.max()) == 59.4
    assert ds.time.attrs["units"] == "years" and ds.time.attrs["time_origin"] == "1900"
    assert ds.hare.attrs["units"] == "thousands of pelts"
    assert "Carpenter" in ds.attrs["citation"] and "Howard" in ds.attrs["citation"]


def test_lynx_hare_splits():
    train, test = load("lynx_hare", split="train"), load("lynx_hare", split="test")
    assert train.sizes["time"] == 16 and test.sizes["time"] == 5
    assert float(train.time[-1]) == 15.0 and float(test.time[0]) == 16.0
    assert test.attrs["split"] == "test"
    with pytest.raises(DataError, match="unknown split 'tets'.*Did you mean 'test'"):
        load("lynx_hare", split="tets")


def test_bundled_file_matches_provenance_hash():
    text = (REPO_DATA / "lynx_hare" / "PROVENANCE.txt").read_text()
    expected = re.search(r"sha256 ([0-9a-f]{64})", text).group(1)
    data = (REPO_DATA / "lynx_hare" / "hudson-bay-lynx-hare.csv").read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected


def test_data_dir_override(tmp_path, monkeypatch):
    (tmp_path / "lynx_hare").mkdir()
    src = (REPO_DATA / "lynx_hare" / "hudson-bay-lynx-hare.csv").read_text()
    (tmp_path / "lynx_hare" / "hudson-bay-lynx-hare.csv").write_text(
        src.replace("1900, 4.0, 30.0", "1900, 5.0, 31.0"))
    monkeypatch.setenv("SYSID_DATA_DIR", str(tmp_path))
    ds = load("lynx_hare")
    assert (float(ds.hare[0]), float(ds.lynx[0])) == (31.0, 5.0)
    shutil.rmtree(tmp_path / "lynx_hare")
    with pytest.raises(DataError, match=r"not found\. Looked in: \$SYSID_DATA_DIR: .*SYSID_DATA_DIR"):
        load("lynx_hare")


def test_unknown_names():
    with pytest.raises(DataError, match="unknown dataset 'lynx_har'.*Did you mean 'lynx_hare'"):
        load("lynx_har")
    with pytest.raises(DataError, match=r"synthetic system.*simulate\('lorenz'\)"):
        load("lorenz")
    with pytest.raises(DataError, match="unknown system 'lorentz'.*Did you mean 'lorenz'"):
        simulate("lorentz")
    with pytest.raises(DataError, match=r"load\('lynx_hare'\)"):
        simulate("lynx_hare")
    with pytest.raises(DataError, match="unknown system 'pendulm'.*Did you mean 'pendulum'"):
        system("pendulm")
    with pytest.raises(DataError, match="kind must be"):
        available("simulated")


def test_available():
    assert available("load") == ["lynx_hare", "cascaded_tanks", "emps", "silverbox"]
    assert SYSTEM_NAMES == ["lotka_volterra", "pendulum", "duffing", "van_der_pol",
                            "fitzhugh_nagumo", "lorenz", "sir", "two_tank"]
    assert available("simulate") == [*SYSTEM_NAMES, *FIELD_NAMES]
    assert available() == ["lynx_hare", "cascaded_tanks", "emps", "silverbox", *SYSTEM_NAMES,
                           *FIELD_NAMES]


# ------------------------------------------------------------- synthetic systems
@pytest.mark.parametrize("name", SYSTEM_NAMES)
def test_each_system_simulates(name):
    sysdef = system(name)
    data, truth = simulate(name, truth=True)
    _check_attrs(data)
    _check_attrs(truth)
    n = int(round(sysdef.t_end / sysdef.dt)) + 1
    assert data.sizes == {"time": n} and truth.sizes == {"time": n}
    assert list(data.data_vars) == [*sysdef.states, *sysdef.inputs]
    assert data.attrs["system"] == name and data.attrs["seed"] == 0 and data.attrs["noise"] == 0.05
    assert data.attrs["equations"] == sysdef.equations
    assert data.attrs["true_parameters"] == ", ".join(
        f"{k}={v!r}" for k, v in sysdef.parameters.items())
    for j, s in enumerate(sysdef.states):
        assert "noise_std" not in data[s].attrs
        std = data[s].attrs["true_noise_std"]
        assert std == pytest.approx(0.05 * np.mean(np.abs(truth[s].values)), rel=1e-12)
        assert float(truth[s][0]) == sysdef.x0[j]
    for u in sysdef.inputs:
        assert data[u].attrs["role"] == "input"
        xr.testing.assert_equal(data[u], truth[u])
    assert np.all(np.isfinite(truth.to_array().values))
    clean = simulate(name, noise=0.0)
    for s in sysdef.states:
        # the same solve twice in one process: equal to the last bits, not always bit for
        # bit (BLAS kernels inside scipy's DOP853 may sum in an order that depends on the
        # arrays' memory alignment; seen for duffing after other tests had run)
        np.testing.assert_allclose(clean[s].values, truth[s].values, rtol=1e-12, atol=1e-14)


def test_lotka_volterra_matches_independent_reference():
    ds = simulate("lotka_volterra", noise=0.0)
    assert ds.sizes["time"] == 31 and float(ds.time[-1]) == 3.0

    def rhs(t, z):
        x, y = z
        return [1.3 * x - 0.9 * x * y, 0.8 * x * y - 1.8 * y]

    ref = solve_ivp(rhs, (0.0, 3.0), [0.44249296, 4.6280594], method="DOP853",
                    rtol=1e-12, atol=1e-14, t_eval=ds.time.values)
    np.testing.assert_allclose(ds.x.values, ref.y[0], rtol=0, atol=1e-8)
    np.testing.assert_allclose(ds.y.values, ref.y[1], rtol=0, atol=1e-8)
    assert abs(float(ds.x[-1]) - ref.y[0, -1]) < 1e-8 and abs(float(ds.y[-1]) - ref.y[1, -1]) < 1e-8


def test_pendulum_energy_decays():
    truth = simulate("pendulum", noise=0.0, n_trajectories=4)
    omega0 = system("pendulum").parameters["omega0"]
    assert omega0 == pytest.approx(2 * math.pi / 6)
    energy = 0.5 * truth.omega.values**2 + omega0**2 * (1 - np.cos(truth.theta.values))
    assert np.all(np.diff(energy, axis=1) <= 1e-9)
    assert np.all(energy[:, -1] < 0.25 * energy[:, 0])
    assert np.all(energy[:, 0] < 2 * omega0**2)  # random starts below the separatrix


def test_seed_determinism():
    kw = dict(n_trajectories=3, irregular=True, missing=0.2, noise=0.1)
    xr.testing.assert_identical(simulate("two_tank", seed=7, **kw), simulate("two_tank", seed=7, **kw))
    a, b = simulate("two_tank", seed=7, **kw), simulate("two_tank", seed=8, **kw)
    assert not np.array_equal(a.time.values, b.time.values)
    c, d = simulate("lorenz", seed=1), simulate("lorenz", seed=2)
    assert np.max(np.abs(c.x.values - d.x.values)) > 0.01


def test_noise_level_matches_convention():
    data, truth = simulate("lotka_volterra", t_end=30.0, dt=0.01, noise=0.05, truth=True, seed=3)
    for s in ("x", "y"):
        expected = 0.05 * np.mean(np.abs(truth[s].values))
        measured = np.std(data[s].values - truth[s].values)
        assert abs(measured / expected - 1) < 0.2
        assert data[s].attrs["true_noise_std"] == pytest.approx(expected, rel=1e-12)


def test_missing_single_and_several_trajectories():
    data, truth = simulate("lotka_volterra", missing=0.3, truth=True)
    assert data.sizes["time"] == 31 - 9 and float(data.time[0]) == 0.0
    xr.testing.assert_equal(data.time, truth.time)
    assert not data.x.isnull().any()
    multi = simulate("lotka_volterra", missing=0.3, n_trajectories=4)
    assert multi.sizes == {"trajectory": 4, "time": 31}
    np.testing.assert_array_equal(multi.x.isnull().sum("time").values, [9, 9, 9, 9])
    assert not multi.x.isel(time=0).isnull().any()


def test_irregular_three_trajectories():
    data, truth = simulate("pendulum", n_trajectories=3, irregular=True, truth=True, seed=5)
    assert data.sizes == {"trajectory": 3, "time": 1 + 3 * 40}
    np.testing.assert_array_equal(data.trajectory.values, [0, 1, 2])
    counts = data.theta.notnull().sum("time").values
    np.testing.assert_array_equal(counts, [41, 41, 41])
    assert bool(data.theta.isnull().any()) and not data.theta.isel(time=0).isnull().any()
    t = data.time.values
    assert t[0] == 0.0 and t[-1] <= 20.0 and np.all(np.diff(t) > 0)
    assert not truth.to_array().isnull().any()
    single = simulate("pendulum", irregular=True)
    assert single.sizes == {"time": 41} and not np.allclose(np.diff(single.time.values), 0.5)


def test_observed_subset_and_options():
    data, truth = simulate("pendulum", observed=["theta"], truth=True)
    assert list(data.data_vars) == ["theta"] and set(truth.data_vars) == {"theta", "omega"}
    times = np.array([0.0, 0.3, 1.0, 2.5])
    ds = simulate("pendulum", times=times, x0=[0.5, 0.1], noise=0.0)
    np.testing.assert_array_equal(ds.time.values, times)
    assert float(ds.theta[0]) == 0.5 and float(ds.omega[0]) == 0.1
    two = simulate("pendulum", n_trajectories=2, x0=[[0.5, 0.0], [-0.3, 0.2]], noise=0.0)
    np.testing.assert_array_equal(two.theta.isel(time=0).values, [0.5, -0.3])
    fast = simulate("lotka_volterra", params={"a": 1.5}, noise=0.0)
    assert fast.attrs["true_parameters"] == "a=1.5, b=0.9, c=0.8, d=1.8"
    assert not np.allclose(fast.x.values, simulate("lotka_volterra", noise=0.0).x.values)


def test_two_tank_zero_order_hold_and_positive():
    data, truth = simulate("two_tank", noise=0.0, truth=True, seed=11)
    t, u = data.time.values, data.u.values
    assert data.u.attrs["role"] == "input" and data.u.attrs["units"] == "V"
    switches = t[1:][np.diff(u) != 0]
    assert len(switches) > 5 and np.all(np.mod(switches, 20.0) == 0)
    # 10 levels held on [0, 200); an 11th starts at the last sample t = 200
    assert len(np.unique(u[:-1])) == 10 and u[-1] != u[-2]
    assert u.min() >= 0.5 and u.max() <= 1.5
    assert truth.h1.min() > 0 and truth.h2.min() > 0 and truth.h1.max() < 12
    # independent zero-order-hold integration, one 20 s interval at a time
    p = system("two_tank").parameters
    state, ref = [1.0, 1.0], [np.array([1.0, 1.0])]
    for k in range(10):
        level = u[20 * k]

        def rhs(_t, h, level=level):
            return [-p["k1"] * np.sqrt(h[0]) + p["k4"] * level,
                    p["k2"] * np.sqrt(h[0]) - p["k3"] * np.sqrt(h[1])]

        seg = solve_ivp(rhs, (20.0 * k, 20.0 * (k + 1)), state, method="DOP853", rtol=1e-12,
                        atol=1e-13, t_eval=np.arange(20.0 * k + 1, 20.0 * (k + 1) + 0.5))
        ref.append(seg.y.T)
        state = seg.y[:, -1]
    ref = np.vstack(ref)
    np.testing.assert_allclose(np.column_stack([data.h1, data.h2]), ref, rtol=0, atol=1e-7)


def test_duffing_input_and_sir_conservation():
    data = simulate("duffing", noise=0.2)
    np.testing.assert_allclose(data.u.values, 0.2 * np.cos(1.2 * data.time.values), atol=1e-15)
    assert data.u.attrs["true_noise_std"] == 0.0
    sir = simulate("sir", noise=0.0)
    np.testing.assert_allclose((sir.S + sir.I + sir.R).values, 1.0, atol=1e-9)


def test_system_definition():
    lv = system("lotka_volterra")
    a, x, y = lv.symbols["a"], lv.symbols["x"], lv.symbols["y"]
    assert lv.parameters == {"a": 1.3, "b": 0.9, "c": 0.8, "d": 1.8}
    assert sp.simplify(lv.rhs[x] - (a * x - lv.symbols["b"] * x * y)) == 0
    assert lv.equations == "dx/dt = a*x - b*x*y; dy/dt = c*x*y - d*y"
    lv.parameters["a"] = 99.0  # a copy: the registry is unchanged
    assert system("lotka_volterra").parameters["a"] == 1.3
    assert simulate("lotka_volterra").attrs["true_parameters"].startswith("a=1.3,")


@pytest.mark.parametrize("kwargs, message", [
    (dict(noise=-0.1), "'noise' must be finite and in \\[0, inf\\); received -0.1"),
    (dict(noise="high"), "'noise' must be a real number; received 'high'"),
    (dict(missing=1.0), "'missing' must be finite and in \\[0, 1\\)"),
    (dict(n_trajectories=0), "'n_trajectories' must be >= 1; received 0"),
    (dict(n_trajectories=2.0), "'n_trajectories' must be an integer"),
    (dict(dt=0.0), "'dt' must be finite and in \\(0, inf\\)"),
    (dict(t_end=float("nan")), "'t_end' must be finite"),
    (dict(t_end=0.05), "dt=0.1 is larger than t_end=0.05"),
    (dict(times=[0.0, 2.0, 1.0]), "'times' must be a 1-D array of at least 2"),
    (dict(times=[0.0, 1.0], t_end=3.0), "either 'times' or 't_end'/'dt'"),
    (dict(times=[0.0, 1.0], irregular=True), "irregular=True draws its own"),
    (dict(x0=[1.0, 2.0, 3.0]), "'x0' must have shape \\(2,\\) or \\(n_trajectories=1, 2\\)"),
    (dict(params={"aa": 1.0}), "unknown parameter 'aa'.*Did you mean 'a'"),
    (dict(params=[1.0]), "'params' must be a dict"),
    (dict(params={"a": float("inf")}), "option params\\['a'\\] must be finite"),
    (dict(observed=["xx"]), "observed name 'xx' is not a state.*Did you mean 'x'"),
    (dict(observed=[]), "'observed' must be a non-empty list"),
    (dict(observed="x"), "'observed' must be a non-empty list"),
    (dict(seed=-1), "'seed' must be >= 0"),
    (dict(truth="yes"), "'truth' must be True or False"),
    (dict(irregular=1), "'irregular' must be True or False"),
])
def test_bad_options_raise(kwargs, message):
    with pytest.raises(DataError, match=message):
        simulate("lotka_volterra", **kwargs)


def test_bad_options_with_inputs():
    with pytest.raises(DataError, match="'x0' must have h1 >= 0"):
        simulate("two_tank", x0=[-1.0, 1.0])
    with pytest.raises(DataError, match="hold time must be positive"):
        simulate("two_tank", params={"u_hold": 0.0})
    with pytest.raises(DataError, match="staircase bounds reversed"):
        simulate("two_tank", params={"u_low": 2.0})
    ds = simulate("duffing", params={"gamma": 0.0}, noise=0.0)
    assert float(np.abs(ds.u).max()) == 0.0


def test_integration_failure_is_reported():
    # softening Duffing spring (beta < 0) from a large start blows up in finite time
    with pytest.raises(DataError, match="integration failed at t=.*beta=-1.0"):
        simulate("duffing", params={"beta": -1.0}, x0=[3.0, 0.0])
