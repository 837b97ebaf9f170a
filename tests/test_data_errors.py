"""Tests of the data contract (sysid.data.bundle.prepare and sysid.fit's validation).

Every bad dataset must be refused with a DataError that says what is wrong and how
to fix it, before any training starts (so these tests are fast).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import xarray as xr

import sysid
from sysid.data.bundle import DataBundle, prepare
from sysid.errors import DataError

# -- models -------------------------------------------------------------------------------

x, v, u = sp.symbols("x v u")
k = sp.Symbol("k", positive=True)

#: oscillator, 1 parameter + 2 initial states = 3 unknowns
OSC = sysid.HybridODE(states=[x, v], physics={x: v, v: -k * x}, parameters={k: 1.0})
#: forced oscillator, reads the input u
FORCED = sysid.HybridODE(states=[x, v], physics={x: v, v: -k * x + u},
                         parameters={k: 1.0}, inputs=[u])

position, velocity = sp.symbols("position velocity")
NAMED = sysid.HybridODE(states=[position, velocity],
                        physics={position: velocity, velocity: -k * position},
                        parameters={k: 1.0})

TIMES = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.5])


def series(values=None, times=TIMES, name="x", **more):
    """A single-trajectory dataset with ``name`` (and any ``more``) over ``time``."""
    values = np.cos(times) if values is None else np.asarray(values)
    data = {name: ("time", values)}
    data.update({n: ("time", np.asarray(a)) for n, a in more.items()})
    return xr.Dataset(data, coords={"time": np.asarray(times)})


def refused(model, ds, match, **prepare_kw):
    """Assert both sysid.fit and prepare refuse ``ds`` with a DataError matching ``match``."""
    with pytest.raises(DataError, match=match):
        sysid.fit(model, ds, progress=False)
    with pytest.raises(DataError, match=match):
        prepare(model, ds, **prepare_kw)


# -- time dimension -------------------------------------------------------------------------

def test_good_series_is_accepted():
    bundle = prepare(OSC, series(), n_fitted=3)
    assert isinstance(bundle, DataBundle)
    assert bundle.y.shape == (1, len(TIMES), 1)
    assert bundle.channels == ["x"]
    np.testing.assert_array_equal(bundle.times, TIMES)


def test_no_time_dimension_suggests_rename():
    ds = series().rename({"time": "t"})
    refused(OSC, ds, r"no 'time' dimension.*ds\.rename\(\{'t': 'time'\}\)")


def test_no_time_dimension_with_unrelated_name_still_says_how_to_fix():
    ds = xr.Dataset({"x": ("zzz", np.arange(4.0))})
    refused(OSC, ds, r"no 'time' dimension.*(rename|expand_dims)")


def test_time_dimension_without_coordinate():
    ds = xr.Dataset({"x": ("time", np.arange(4.0))})
    refused(OSC, ds, r"'time' dimension has no coordinate.*assign_coords")


def test_unsorted_times_suggest_sortby():
    ds = series(times=[0.0, 2.0, 1.0, 3.0], values=[1.0, 2.0, 3.0, 4.0])
    refused(OSC, ds, r"not sorted.*2\.0.*followed by.*1\.0.*ds\.sortby\('time'\)")


def test_duplicate_times_suggest_drop_duplicates():
    ds = series(times=[0.0, 1.0, 1.0, 2.0], values=[1.0, 2.0, 3.0, 4.0])
    refused(OSC, ds, r"duplicate values.*1\.0.*drop_duplicates\('time'\)")


def test_nan_time_is_refused():
    ds = series(times=[0.0, 1.0, np.nan, 3.0], values=[1.0, 2.0, 3.0, 4.0])
    refused(OSC, ds, r"'time' coordinate contains NaN or inf")


def test_string_time_is_refused():
    ds = series(times=np.array(["a", "b", "c"]), values=[1.0, 2.0, 3.0])
    refused(OSC, ds, r"'time' coordinate must be float or datetime64.*astype\(float\)")


@pytest.mark.parametrize("nat_at", [0, 2])
def test_nat_in_datetime_time_is_reported_as_missing_time(nat_at):
    stamps = np.array(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04", "2020-01-05"],
                      dtype="datetime64[ns]")
    stamps[nat_at] = np.datetime64("NaT")
    ds = series(times=stamps, values=np.arange(5.0))
    with pytest.raises(DataError, match=r"NaN|NaT|missing|finite"):
        prepare(OSC, ds)


# -- data variables -----------------------------------------------------------------------

def test_all_nan_variable_suggests_drop_vars():
    ds = series(v=np.full(len(TIMES), np.nan))
    refused(OSC, ds, r"'v' is all NaN.*ds\.drop_vars\('v'\)")


def test_inf_values_report_count_and_location():
    values = np.cos(TIMES)
    values[1] = np.inf
    values[3] = -np.inf
    refused(OSC, series(values), r"'x' contains 2 infinite value\(s\), first at time=.*0\.25"
                                 r".*NaN.*np\.isfinite")


def test_inf_in_second_trajectory_names_the_trajectory():
    values = np.ones((2, 4))
    values[1, 2] = np.inf
    ds = xr.Dataset({"x": (("trajectory", "time"), values)}, coords={"time": [0.0, 1, 2, 3]})
    refused(OSC, ds, r"'x' contains 1 infinite value\(s\), first at time=.*2\.0.*trajectory 1")


def test_unknown_variable_is_refused_with_fix():
    ds = series(temperature=np.ones(len(TIMES)))
    refused(OSC, ds, r"'temperature' matches no state, observation or input.*"
                     r"Model channels: \['x', 'v'\].*drop_vars\('temperature'\)")


@pytest.mark.parametrize("model, typo, meant", [
    (NAMED, "velocty", "velocity"),
    (NAMED, "postion", "position"),
    (OSC, "xx", "x"),
    (OSC, "vv", "v"),
])
def test_state_name_typo_gets_did_you_mean(model, typo, meant):
    good = model.state_names[0] if meant != model.state_names[0] else model.state_names[1]
    ds = series(name=good, **{typo: np.sin(TIMES)})
    refused(model, ds, rf"{typo!r} matches no state.*Did you mean {meant!r}\?")


def test_no_variable_measures_the_model():
    # the only variable is the input: nothing observes a state
    ds = series(name="u")
    refused(FORCED, ds, r"No data variable measures the model.*\['x', 'v'\]")


@pytest.mark.parametrize("values", [
    np.array(["1.0", "2.0", "oops", "4.0", "5.0", "6.0"]),
    np.array([1.0, "2", None, 4, 5, 6], dtype=object),
    np.arange(6.0) + 1j,
])
def test_non_numeric_variable_suggests_astype(values):
    refused(OSC, series(values), r"'x' is not numeric; received dtype.*astype\(float\)")


def test_variable_without_time_dimension():
    ds = series()
    ds["v"] = ("other", np.ones(3))
    refused(OSC, ds, r"'v' has (no 'time' dimension|dimension\(s\) \['other'\])")


def test_extra_dimension_suggests_trajectory():
    ds = xr.Dataset({"x": (("site", "time"), np.ones((2, len(TIMES))))},
                    coords={"time": TIMES})
    refused(OSC, ds, r"'x' has dimension\(s\) \['site'\] besides 'time' and 'trajectory'.*"
                     r"ds\.rename\(\{'site': 'trajectory'\}\)")


# -- inputs ------------------------------------------------------------------------------

def test_input_nan_inside_span_names_the_time():
    forcing = np.zeros(len(TIMES))
    forcing[2] = np.nan
    ds = series(u=forcing)
    refused(FORCED, ds, r"Input 'u' is missing \(NaN\) at time .*0\.5.*inside.*"
                        r"interpolate_na\('time'\)")


def test_input_nan_inside_span_of_second_trajectory():
    forcing = np.zeros((2, 4))
    forcing[1, 1] = np.nan
    ds = xr.Dataset({"x": (("trajectory", "time"), np.ones((2, 4))),
                     "u": (("trajectory", "time"), forcing)}, coords={"time": [0.0, 1, 2, 3]})
    refused(FORCED, ds, r"Input 'u' is missing \(NaN\) at time .*1\.0.* of trajectory 1")


def test_input_nan_outside_span_is_accepted():
    x_obs = np.cos(TIMES)
    x_obs[[0, -1]] = np.nan                       # span is TIMES[1]..TIMES[-2]
    forcing = np.zeros(len(TIMES))
    forcing[[0, -1]] = np.nan
    bundle = prepare(FORCED, series(x_obs, u=forcing))
    assert bundle.t_first.tolist() == [1] and bundle.t_last.tolist() == [len(TIMES) - 2]
    assert bundle.u.shape == (1, len(TIMES), 1)
    assert bundle.inputs == ["u"]


def test_missing_input_variable():
    refused(FORCED, series(), r"reads the input 'u'.*no such variable.*"
                              r"Add the input signal as a data variable named 'u'")


def test_missing_input_variable_with_typo_gets_did_you_mean():
    # 'uu' is also unknown as a channel, so the unknown-variable check may fire first;
    # either way the user is pointed to 'u'
    refused(FORCED, series(uu=np.zeros(len(TIMES))), r"Did you mean 'u'\?")


def test_all_nan_input_does_not_advise_dropping_it():
    ds = series(u=np.full(len(TIMES), np.nan))
    with pytest.raises(DataError, match=r"'u' is all NaN") as info:
        prepare(FORCED, ds)
    assert "unobserved" not in str(info.value)


# -- amount of data and container types -------------------------------------------------------

def test_fewer_observations_than_unknowns():
    ds = series(times=[0.0, 1.0], values=[1.0, 0.5])  # 2 values, k + x0 + v0 = 3 unknowns
    with pytest.raises(DataError, match=r"2 observed values.*3 unknowns.*fixed=\{"):
        sysid.fit(OSC, ds, progress=False)
    with pytest.raises(DataError, match=r"2 observed values.*3 unknowns"):
        prepare(OSC, ds, n_fitted=3)
    assert prepare(OSC, ds, n_fitted=2).n_observed == 2


def test_fewer_observations_than_unknowns_with_trajectories():
    ds = xr.Dataset({"x": (("trajectory", "time"), [[1.0, 0.5], [0.8, 0.2]])},
                    coords={"time": [0.0, 1.0]})
    with pytest.raises(DataError, match=r"observed values.*unknowns"):
        sysid.fit(OSC, ds, progress=False, epochs=1, lbfgs_iterations=0)


def test_dataarray_is_refused():
    da = series()["x"]
    refused(OSC, da, r"needs an xarray\.Dataset; received a DataArray named 'x'.*to_dataset")


@pytest.mark.parametrize("obj", [np.ones((5, 2)), {"x": [1.0, 2.0]}, None])
def test_non_dataset_is_refused(obj):
    refused(OSC, obj, rf"needs an xarray\.Dataset; received {type(obj).__name__}.*xr\.Dataset\(")


def test_trajectory_without_measurement():
    values = np.array([[1.0, 2.0, 3.0], [np.nan, np.nan, np.nan]])
    ds = xr.Dataset({"x": (("trajectory", "time"), values)},
                    coords={"time": [0.0, 1.0, 2.0], "trajectory": ["a", "b"]})
    refused(OSC, ds, r"Trajectory .*'b'.* has no measurement at all.*drop_sel\(trajectory=.*'b'")


def test_messages_show_plain_values_not_numpy_reprs():
    values = np.array([[1.0, 2.0, 3.0], [np.nan, np.nan, np.nan]])
    ds = xr.Dataset({"x": (("trajectory", "time"), values)},
                    coords={"time": [0.0, 1.0, 2.0], "trajectory": ["a", "b"]})
    with pytest.raises(DataError) as info:
        prepare(OSC, ds)
    assert "drop_sel(trajectory='b')" in str(info.value)
    forcing = np.zeros(len(TIMES))
    forcing[2] = np.nan
    with pytest.raises(DataError) as info:
        prepare(FORCED, series(u=forcing))
    assert "at time 0.5" in str(info.value)


@pytest.mark.parametrize("bad", [0.0, -0.5, np.nan, np.inf])
def test_non_positive_noise_std(bad):
    ds = series()
    ds["x"].attrs["noise_std"] = bad
    refused(OSC, ds, r"attrs\['noise_std'\] of 'x' must be a positive number")


def test_non_numeric_noise_std_is_a_data_error():
    ds = series()
    ds["x"].attrs["noise_std"] = "abc"
    with pytest.raises(DataError, match=r"noise_std"):
        prepare(OSC, ds)


def test_valid_noise_std_is_recorded():
    ds = series(v=np.sin(TIMES))
    ds["v"].attrs["noise_std"] = 0.05
    bundle = prepare(OSC, ds)
    assert bundle.channels == ["x", "v"]
    assert bundle.noise_std == [None, 0.05]


# -- accepted data -----------------------------------------------------------------------

def test_datetime_time_is_converted():
    stamps = np.datetime64("2021-03-01T00:00") + np.array([0, 6, 12, 30, 36], "timedelta64[h]")
    ds = series(times=stamps.astype("datetime64[ns]"), values=np.arange(5.0))
    bundle = prepare(OSC, ds)
    assert bundle.times.dtype == np.float64
    assert bundle.times[0] == 0.0
    assert bundle.time_attrs["time_unit"] == "h"          # median step of 6 hours
    np.testing.assert_allclose(bundle.times, [0, 6, 12, 30, 36])
    assert str(np.datetime64("2021-03-01T00:00", "ns")) == bundle.time_attrs["time_origin"]
    assert "since 2021-03-01" in bundle.time_attrs["units"]


def test_datetime_time_with_explicit_unit():
    stamps = np.datetime64("2021-03-01", "D") + np.arange(4).astype("timedelta64[D]")
    ds = series(times=stamps.astype("datetime64[ns]"), values=np.arange(4.0))
    bundle = prepare(OSC, ds, time_unit="min")
    assert bundle.time_attrs["time_unit"] == "min"
    np.testing.assert_allclose(bundle.times, [0, 1440, 2880, 4320])
    assert prepare(OSC, ds).time_attrs["time_unit"] == "D"
    with pytest.raises(DataError, match=r"time_unit must be one of.*'weeks'"):
        prepare(OSC, ds, time_unit="weeks")


def test_integer_time_is_accepted_as_float():
    bundle = prepare(OSC, series(times=np.arange(6), values=np.arange(6.0)))
    assert bundle.times.dtype == np.float64
    np.testing.assert_array_equal(bundle.times, np.arange(6.0))


def test_irregular_partial_trajectories_are_accepted():
    times = np.array([0.0, 0.3, 1.1, 1.5, 4.0])
    nan = np.nan
    x_obs = np.array([[nan, 1.0, 2.0, nan, 3.0],
                      [1.0, nan, nan, 2.0, nan],
                      [nan, nan, 5.0, nan, nan]])
    v_obs = np.array([[nan, nan, nan, nan, nan],
                      [nan, 0.5, nan, nan, nan],
                      [nan, nan, nan, nan, 7.0]])
    ds = xr.Dataset(
        {"v": (("time", "trajectory"), v_obs.T),             # other dim order and var order
         "x": (("trajectory", "time"), x_obs),
         "u": (("trajectory", "time"), np.tile(np.arange(5.0), (3, 1)))},
        coords={"time": times, "trajectory": [10, 20, 30]})
    ds["x"].attrs.update(units="m", long_name="position", noise_std=0.1)
    bundle = prepare(FORCED, ds, n_fitted=3)

    assert bundle.channels == ["x", "v"]                     # model order, not dataset order
    assert bundle.y.shape == (3, 5, 2)
    assert bundle.mask.shape == (3, 5, 2) and bundle.mask.dtype == bool
    expected_y = np.stack([x_obs, v_obs], axis=-1)
    np.testing.assert_array_equal(bundle.y, expected_y)      # NaN == NaN in this helper
    np.testing.assert_array_equal(bundle.mask, ~np.isnan(expected_y))
    assert bundle.n_observed == 8
    assert bundle.n_trajectories == 3
    assert bundle.t_first.tolist() == [1, 0, 2]
    assert bundle.t_last.tolist() == [4, 3, 4]
    np.testing.assert_array_equal(bundle.times, times)
    assert bundle.trajectory.tolist() == [10, 20, 30]
    assert bundle.u.shape == (3, 5, 1)
    np.testing.assert_array_equal(bundle.u[:, :, 0], np.tile(np.arange(5.0), (3, 1)))
    assert bundle.noise_std == [0.1, None]
    assert bundle.var_attrs["x"]["units"] == "m"


def test_time_only_variable_is_broadcast_over_trajectories():
    ds = xr.Dataset({"x": (("trajectory", "time"), np.ones((2, 3))),
                     "u": ("time", [0.0, 1.0, 2.0])}, coords={"time": [0.0, 1.0, 2.0]})
    bundle = prepare(FORCED, ds)
    assert bundle.u.shape == (2, 3, 1)
    np.testing.assert_array_equal(bundle.u[:, :, 0], [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])


def test_trajectory_without_coordinate_gets_index_labels():
    ds = xr.Dataset({"x": (("trajectory", "time"), np.ones((2, 3)))},
                    coords={"time": [0.0, 1.0, 2.0]})
    bundle = prepare(OSC, ds)
    assert bundle.trajectory.tolist() == [0, 1]
    assert bundle.y.shape == (2, 3, 1)


def test_no_trajectory_dimension_gives_none():
    assert prepare(OSC, series()).trajectory is None


# -- fit options -------------------------------------------------------------------------

def test_unknown_fit_option_gets_did_you_mean():
    with pytest.raises(TypeError, match=r"unknown option 'epoch'.*Did you mean 'epochs'\?"):
        sysid.fit(OSC, series(), epoch=3, progress=False)


@pytest.mark.parametrize("option", [{"lr": -1}, {"lr": 0.0}, {"epochs": -1}, {"rtol": 0.0}])
def test_out_of_range_fit_option(option):
    (name, _), = option.items()
    with pytest.raises(ValueError, match=rf"fit option {name} is out of range"):
        sysid.fit(OSC, series(), progress=False, **option)


@pytest.mark.parametrize("option", [{"solver": "euler"}, {"shooting": 1}, {"noise": "binomial"}])
def test_invalid_choice_fit_option(option):
    (name, _), = option.items()
    with pytest.raises(ValueError, match=rf"fit option {name} must be"):
        sysid.fit(OSC, series(), progress=False, **option)


def test_zero_training_budget_is_refused_or_returns_a_result():
    try:
        result = sysid.fit(OSC, series(), progress=False, epochs=0, lbfgs_iterations=0)
    except ValueError as err:
        assert not isinstance(err, DataError)
        assert "epochs" in str(err) or "lbfgs_iterations" in str(err)
        return
    assert result.parameters["k"] == pytest.approx(1.0)


def test_fit_refuses_non_model():
    with pytest.raises(sysid.errors.ModelError, match=r"expects a sysid\.HybridODE"):
        sysid.fit("not a model", series(), progress=False)
