"""fit_many, sweep and fit_ensemble: on a real 2-worker Dask LocalCluster and serially."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import xarray as xr

import sysid
from sysid.errors import DataError, FitError

distributed = pytest.importorskip("distributed")

RATES = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
TINY = dict(epochs=0, lbfgs_iterations=15, shooting="single", progress=False)


@pytest.fixture(scope="module")
def client():
    import logging
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def decay_model():
    x = sp.Symbol("x")
    k = sp.Symbol("k", positive=True)
    return sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 1.0})


def decay(rate, seed, n=25, noise=0.01, trajectories=None):
    t = np.linspace(0.0, 5.0, n)
    rng = np.random.default_rng(seed)
    if trajectories is None:
        y = 2.0 * np.exp(-rate * t) + noise * rng.standard_normal(n)
        return xr.Dataset({"x": ("time", y, {"units": "V"})}, coords={"time": t})
    x0 = np.linspace(1.0, 2.5, trajectories)[:, None]
    y = x0 * np.exp(-rate * t) + noise * rng.standard_normal((trajectories, n))
    return xr.Dataset({"x": (("trajectory", "time"), y)},
                      coords={"time": t, "trajectory": np.arange(trajectories)})


@pytest.fixture(scope="module")
def sites():
    data = {f"s{i}": decay(rate, i) for i, rate in enumerate(RATES)}
    data["broken"] = decay(0.5, 99).rename(x="y")      # fit raises DataError
    return data


@pytest.fixture(scope="module")
def on_dask(client, sites):
    return sysid.fit_many(decay_model(), sites, client=client, **TINY)


@pytest.fixture(scope="module")
def serial(sites):
    return sysid.fit_many(decay_model(), sites, scheduler="serial", **TINY)


def test_fit_many_on_dask_matches_serial_bit_for_bit(on_dask, serial):
    assert on_dask.labels == serial.labels == [f"s{i}" for i in range(6)] + ["broken"]
    np.testing.assert_array_equal(on_dask.parameters["k"].values, serial.parameters["k"].values)
    for label in on_dask.succeeded:
        a, b = on_dask[label].impute(), serial[label].impute()
        np.testing.assert_array_equal(a["x"].values, b["x"].values)
        assert on_dask[label].status.code == serial[label].status.code


def test_fit_many_recovers_each_sites_rate(on_dask):
    k = on_dask.parameters["k"].sel(site=[f"s{i}" for i in range(6)]).values
    np.testing.assert_allclose(k, RATES, rtol=0.03)
    # each member is sysid.fit on its own data with the same seed
    plain = sysid.fit(decay_model(), decay(RATES[2], 2), **TINY)
    assert plain.parameters["k"] == on_dask["s2"].parameters["k"]


def test_a_failing_member_is_reported_not_fatal(on_dask):
    assert list(on_dask.failed) == ["broken"]
    assert on_dask.failed["broken"].startswith("DataError")
    assert "'y'" in on_dask.failed["broken"]
    assert "Traceback" in on_dask.tracebacks["broken"]
    assert np.isnan(on_dask.parameters["k"].sel(site="broken"))
    assert on_dask.status["broken"] == "failed"
    assert (on_dask.status.drop("broken") != "failed").all()
    with pytest.raises(FitError, match="broken"):
        on_dask["broken"]
    text = repr(on_dask)
    assert "6 fitted, 1 failed" in text and "broken" in text
    table = on_dask.summary()
    assert table.loc["broken", "status"] == "failed" and table.loc["s0", "error"] == ""
    assert on_dask.parameter_table().shape == (7, 1)
    stacked = on_dask.impute()
    assert stacked["x"].dims == ("site", "time") and stacked.sizes["site"] == 6
    assert stacked["x"].attrs["units"] == "V"


def test_fit_many_splits_a_dataset_along_dim():
    ds = xr.concat([decay(r, i) for i, r in enumerate(RATES[:3])], dim="sensor")
    ds = ds.assign_coords(sensor=["a", "b", "c"])
    fits = sysid.fit_many(decay_model(), ds, dim="sensor", scheduler="serial", seed=[0, 1, 2],
                          **TINY)
    assert fits.dim == "sensor" and fits.labels == ["a", "b", "c"]
    np.testing.assert_allclose(fits.parameters["k"].values, RATES[:3], rtol=0.03)
    with pytest.raises(DataError, match="dim="):
        sysid.fit_many(decay_model(), ds, scheduler="serial", **TINY)
    with pytest.raises(DataError, match="sensor"):
        sysid.fit_many(decay_model(), ds, dim="sensors", scheduler="serial", **TINY)


def test_options_are_checked_before_any_fit(tmp_path):
    data = [decay(0.5, 0)]
    with pytest.raises(TypeError, match="lbfgs_iterations"):
        sysid.fit_many(decay_model(), data, lbfgs_iteration=3, scheduler="serial")
    with pytest.raises(ValueError, match="checkpoint"):
        sysid.fit_many(decay_model(), data, checkpoint=tmp_path / "c.pt", scheduler="serial")
    with pytest.raises(ValueError, match="scheduler"):
        sysid.fit_many(decay_model(), data, scheduler="threads")


def test_sweep_runs_every_setting():
    runs = sysid.sweep(decay_model(), decay(0.5, 3), {"solver": ["dopri5", "rk4"],
                                                       "lbfgs_iterations": [3, 15]},
                       scheduler="serial", epochs=0, shooting="single", progress=False)
    assert len(runs) == 4 and runs.dim == "config"
    assert list(runs.parameters["solver"].values) == ["dopri5", "dopri5", "rk4", "rk4"]
    assert list(runs.parameters["lbfgs_iterations"].values) == [3, 15, 3, 15]
    table = runs.summary()
    assert {"solver", "lbfgs_iterations", "loss", "status"} <= set(table.columns)
    assert runs.best("loss") in runs.labels
    with pytest.raises(ValueError, match="validation"):
        runs.best("validation")


def test_ensemble_on_dask_matches_serial_and_covers_the_truth(client):
    truth = 0.5
    data = decay(truth, 12, n=40, noise=0.03)   # its estimate is 0.8 standard errors off
    kw = dict(n=8, resample="windows", seed=1, **TINY)
    ens = sysid.fit_ensemble(decay_model(), data, client=client, **kw)
    again = sysid.fit_ensemble(decay_model(), data, scheduler="serial", **kw)
    np.testing.assert_array_equal(ens.parameters["k"].values, again.parameters["k"].values)
    table = ens.parameter_table(level=0.9)
    assert table.attrs["level"] == 0.9
    row = table.loc["k"]
    assert row["lower"] < truth < row["upper"] and row["std"] > 0
    assert row["lower"] < row["value"] < row["upper"]

    conf = ens.impute(level=0.9)
    pred = ens.impute(level=0.9, interval="prediction")
    np.testing.assert_array_equal(conf["x_upper"].values,
                                  again.impute(level=0.9)["x_upper"].values)
    assert conf.attrs["sysid_level"] == 0.9 and conf.attrs["sysid_interval"] == "confidence"
    assert set(conf.data_vars) == {"x", "x_lower", "x_upper"}
    width = conf["x_upper"] - conf["x_lower"]
    assert (width > 0).all()
    assert ((pred["x_upper"] - pred["x_lower"]) > width).all()
    curve = 2.0 * np.exp(-truth * data["time"].values)
    inside = (conf["x_lower"].values <= curve) & (curve <= conf["x_upper"].values)
    assert inside.mean() >= 0.8
    observed = data["x"].values
    covered = (pred["x_lower"].values <= observed) & (observed <= pred["x_upper"].values)
    assert covered.mean() >= 0.75
    future = ens.forecast(horizon=2.0, n=5, level=0.8)
    assert future.sizes["time"] == 5 and future.attrs["sysid_level"] == 0.8
    assert (future["x_upper"] > future["x_lower"]).all()


def test_ensemble_same_seed_same_members_and_trajectory_resampling():
    data = decay(0.6, 5, n=20, noise=0.02, trajectories=4)
    kw = dict(n=4, resample="trajectories", seed=3, scheduler="serial", **TINY)
    a = sysid.fit_ensemble(decay_model(), data, **kw)
    b = sysid.fit_ensemble(decay_model(), data, **kw)
    np.testing.assert_array_equal(a.parameters["k"].values, b.parameters["k"].values)
    assert len(a) == 4 and a.reference is not None and 0 < a.kept_fraction < 1
    bands = a.impute()
    assert bands["x_lower"].dims == ("trajectory", "time")
    assert (bands["x_upper"] >= bands["x_lower"]).all()
    # "seeds" only varies the network's start: a physics-only model gives no spread
    c = sysid.fit_ensemble(decay_model(), data, n=2, resample="seeds", scheduler="serial",
                           **TINY)
    assert c.parameter_table().loc["k", "std"] == 0.0
    with pytest.raises(DataError, match="2 trajectories"):
        sysid.fit_ensemble(decay_model(), decay(0.5, 0), resample="trajectories",
                           scheduler="serial", **TINY)


def test_a_member_saves_while_a_client_is_active(client, on_dask, tmp_path):
    on_dask["s0"].save(tmp_path / "s0.sysid")
    again = sysid.load(tmp_path / "s0.sysid")
    assert again.parameters == on_dask["s0"].parameters


def test_a_member_keeps_the_uncertainty_of_its_fit(client):
    """A member rebuilt from its task ends on the objective its fit ended on (whole
    trajectories after the polish on shooting windows), so its standard errors and bands
    are those of the same fit run directly (they were computed on the windows, and the
    bands failed with a shape error). The model has no network: seeds do not matter."""
    data = decay(0.7, 0, n=30)
    runs = sysid.fit_many(decay_model(), {"a": data}, client=client, progress=False)
    direct = sysid.fit(decay_model(), data, progress=False)
    assert direct._problem.windows is not None and not direct._problem.active
    member = runs["a"]
    np.testing.assert_allclose(member.parameter_table()["std_error"].values,
                               direct.parameter_table()["std_error"].values, rtol=1e-10)
    band, ref = member.impute(level=0.9), direct.impute(level=0.9)
    np.testing.assert_allclose(band["x_lower"].values, ref["x_lower"].values, rtol=1e-10)
