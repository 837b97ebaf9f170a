"""Property-based tests of the data layer (issue 8, part 1).

Hypothesis builds random datasets for a pure-physics identity model (dx/dt = 0,
dy/dt = 0, optionally written as c*x with c fixed at 0): 0-3 trajectories, 2-30 times,
float, integer or datetime64 times (ns to days resolution, spans of centuries outside
1678-2262; sorted, unsorted, duplicated, with NaN), values from 1e-300 to 1e306, NaN
patterns (random, whole channel, whole trajectory), int/bool/float16/32/64/object
dtypes (integers converted with a DataWarning, booleans refused as measured channels), extra variables, inf values, valid or invalid ``noise_std`` attrs and dataset
attrs that HDF5 cannot store as such (big ints, text arrays, NUL characters).

Property: ``sysid.fit(..., epochs=0, lbfgs_iterations=0, polish_iterations=0)`` then
``result.impute()`` either succeeds with an output that has the data's dims, coords
and units and, for the identity model, constant trajectories equal to each measured
state's start value (a line through its first samples, clipped to their range), and
survives save/load with bit-identical imputations (results lost: 0), or
raises a documented :class:`sysid.errors.SysidError`; never another exception.
Cases whose refusal is certain (unsorted or duplicated times, non-numeric variables,
unknown variables, boolean channels, inf, values over 1e150, invalid noise_std) must be refused with a
DataError.

The default run takes a few seconds; ``pytest -m slow -s`` runs many more examples
and prints the counts.
"""

from __future__ import annotations

import collections
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sysid
from sysid.data.bundle import prepare
from sysid.errors import DataError, SysidError

x, y, c = sp.symbols("x y c")
IDENTITY = sysid.HybridODE(states=[x, y], physics={x: sp.Integer(0), y: sp.Integer(0)})
FIXED = sysid.HybridODE(states=[x, y], physics={x: c * x}, fixed={c: 0.0})
MODELS = {"identity": IDENTITY, "fixed": FIXED}

FAST = dict(epochs=0, lbfgs_iterations=0, polish_iterations=0, progress=False)

#: outcome counts, printed by the slow tests (``-s``)
COUNTS: collections.Counter = collections.Counter()

VALUE_DTYPES = ["float64", "float32", "float16", "int64", "int32", "bool", "object_num",
                "object_str"]


# -- strategies -----------------------------------------------------------------------------

@st.composite
def times_strategy(draw, n, hostile=True):
    """(time coordinate, kind, expected-refusal reason or None)."""
    kind = draw(st.sampled_from(["float", "int", "datetime"]))
    order = draw(st.sampled_from(["sorted"] * 3 + ["unsorted", "duplicated", "nan"]
                                 if hostile else ["sorted"]))
    if kind == "datetime":
        # resolutions from ns to days; "wide" spans centuries and leaves 1678-2262, where
        # nanosecond arithmetic overflows
        unit = draw(st.sampled_from(["ns", "ms", "s", "m", "h", "D", "wide"]))
        if unit == "wide":
            unit, top, start = "D", 200_000, np.datetime64(draw(st.sampled_from(
                ["1500-01-01", "1900-06-30", "2200-12-31"])), "s")
        else:
            top, start = 500, np.datetime64("2001-03-04T05:06:07", "s")
        steps = draw(st.lists(st.integers(1, top), min_size=n - 1, max_size=n - 1))
        values = start + np.concatenate([[0], np.cumsum(steps)]).astype(f"timedelta64[{unit}]")
    elif kind == "int":
        steps = draw(st.lists(st.integers(1, 1000), min_size=n - 1, max_size=n - 1))
        values = draw(st.integers(-10**6, 10**6)) + np.concatenate([[0], np.cumsum(steps)])
    else:
        steps = draw(st.lists(st.floats(1e-3, 100.0), min_size=n - 1, max_size=n - 1))
        values = draw(st.floats(-1e4, 1e4)) + np.concatenate([[0.0], np.cumsum(steps)])
    values = np.array(values)
    refusal = None
    if order == "unsorted":
        perm = draw(st.permutations(range(n)))
        values = values[list(perm)]
        if np.any(np.diff(values) < values.dtype.type(0) if kind != "datetime"
                  else np.diff(values) < np.timedelta64(0)):
            refusal = "sorted"
    elif order == "duplicated":
        j = draw(st.integers(1, n - 1))
        values[j] = values[j - 1]
        refusal = "duplicate"
    elif order == "nan":
        j = draw(st.integers(0, n - 1))
        if kind == "datetime":
            values[j] = np.datetime64("NaT")
            refusal = "missing value"
        elif kind == "float":
            values[j] = np.nan
            refusal = "NaN or inf"
    return values, kind, refusal


def _cast(values, dtype, draw):
    """Cast float values (NaN where missing) to ``dtype``; (array, refusal or None)."""
    if dtype in ("float64", "float32", "float16"):
        arr = values.astype(dtype)
        return arr, ("infinite" if np.isinf(arr).any() else None)
    if dtype in ("int64", "int32"):
        return np.nan_to_num(np.round(values), nan=0.0).clip(-1e9, 1e9).astype(dtype), None
    if dtype == "bool":          # a measured channel cannot be True/False (issue 31)
        return np.nan_to_num(values) > 0, "boolean"
    if dtype == "object_num":
        return np.array([None if np.isnan(v) else float(v) for v in values.ravel()],
                        dtype=object).reshape(values.shape), "not numeric"
    return np.array([draw(st.sampled_from(["1.0", "n/a", "", "x"])) for _ in values.ravel()],
                    dtype=object).reshape(values.shape), "not numeric"


@st.composite
def datasets(draw):
    """(dataset, model name, list of certain refusal reasons). About half the cases are
    valid datasets (``hostile`` False), the rest draw from every kind of damage."""
    hostile = draw(st.booleans())
    n = draw(st.integers(2, 30))
    n_traj = draw(st.sampled_from([None, 1, 2, 3]))
    times, time_kind, time_refusal = draw(times_strategy(n, hostile))
    refusals = [time_refusal] if time_refusal else []
    shape = (n,) if n_traj is None else (n_traj, n)
    dims = ("time",) if n_traj is None else ("trajectory", "time")
    big = draw(st.sampled_from([1.0, 1.0, 1.0, 1e-8, 1e8, 1e-300]
                               + ([1e149, 1e200, 1e306] if hostile else [])))
    data_vars = {}
    for name in draw(st.sampled_from([["x"], ["y"], ["x", "y"], ["x", "y"]]
                                     + ([[]] if hostile else []))):
        values = np.array(draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False),
                                        min_size=int(np.prod(shape)),
                                        max_size=int(np.prod(shape))))).reshape(shape) * big
        pattern = draw(st.sampled_from(["none", "random", "random", "trajectory"]
                                       + (["channel", "inf"] if hostile else [])))
        if pattern == "random":
            keep = np.array(draw(st.lists(st.booleans(), min_size=values.size,
                                          max_size=values.size))).reshape(shape)
            values = np.where(keep, values, np.nan)
        elif pattern == "channel":
            values[...] = np.nan
        elif pattern == "trajectory" and n_traj is not None:
            values[draw(st.integers(0, n_traj - 1))] = np.nan
        elif pattern == "inf":
            values.flat[draw(st.integers(0, values.size - 1))] = draw(
                st.sampled_from([np.inf, -np.inf]))
        dtype = draw(st.sampled_from(VALUE_DTYPES[:3] * 3 + VALUE_DTYPES[3:] if hostile
                                     else ["float64", "float64", "float32", "int64", "bool"]))
        arr, refusal = _cast(values, dtype, draw)
        if arr.dtype.kind == "f" and np.nanmax(np.abs(np.where(np.isinf(arr), 0, arr)),
                                               initial=0) > 1e150:
            refusal = refusal or "too large"
        if pattern == "inf" and dtype.startswith("float"):
            refusal = refusal or "infinite"
        if refusal:
            refusals.append(refusal)
        attrs = {}
        if draw(st.booleans()):
            attrs["units"] = draw(st.sampled_from(["m", "m/s", "", "kelvin"]))
        if draw(st.booleans()):
            attrs["long_name"] = draw(st.text(max_size=8))
        noise = draw(st.sampled_from([None, None, 0.1, 2, "0.5"] + ([
            0.0, -1.0, np.nan, np.inf, "abc", [1.0, 2.0]] if hostile else [])))
        if noise is not None:
            attrs["noise_std"] = noise
            try:
                ok = np.isfinite(float(noise)) and float(noise) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok and refusal is None:
                refusals.append("noise_std")
        data_vars[name] = (dims, arr, attrs)
    extra = draw(st.sampled_from([None, None, "z", "x_", "trajonly"] if hostile else [None]))
    if extra in ("z", "x_"):
        data_vars[extra] = (dims, np.zeros(shape))
        refusals.append("matches no state")
    elif extra == "trajonly" and n_traj is not None and "x" in data_vars:
        data_vars["x"] = (("trajectory",), np.ones(n_traj))
        refusals.append("no 'time' dimension")
    coords = {"time": times}
    if n_traj is not None and draw(st.booleans()):
        coords["trajectory"] = draw(st.sampled_from(
            [np.arange(n_traj) + 10, np.array([f"run{i}" for i in range(n_traj)])]))
    ds = xr.Dataset(data_vars, coords=coords, attrs=draw(st.sampled_from([
        {}, {"title": "random"}, {"flag": 1}, {"flag": True}, {"big": 2**70},
        {"labels": np.array(["a", "b"])}, {"mixed": np.array([1, "a"], dtype=object)},
        {"mask": np.array([True, False])}, {"nul": "a\x00b"}, {"nested": {"a": [1]}}])))
    return ds, draw(st.sampled_from(sorted(MODELS))), refusals


# -- the property -------------------------------------------------------------------------

def _start_value_bounds(ds, bundle, name, b):
    """Range the identity model's constant for ``name`` in trajectory ``b`` must lie in."""
    ch = bundle.channels.index(name)
    k = bundle.t_first[b]
    m = np.flatnonzero(bundle.mask[b, k:, ch]) + k
    if not len(m):
        return None
    first = bundle.y[b, m[:4], ch]
    return float(first.min()), float(first.max())


def check_dataset(ds, model_name, refusals):
    model = MODELS[model_name]
    COUNTS["tried"] += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = sysid.fit(model, ds, **FAST)
            out = result.impute()
    except SysidError as err:
        COUNTS["refused"] += 1
        COUNTS[f"refused:{type(err).__name__}"] += 1
        if refusals:
            assert isinstance(err, DataError), f"expected DataError for {refusals}, got {err!r}"
        assert str(err), "an error message must not be empty"
        return
    assert not refusals, f"accepted a dataset that must be refused ({refusals}):\n{ds}"
    COUNTS["accepted"] += 1
    bundle = result._bundle
    has_traj = "trajectory" in ds.dims
    # dims and coords like the data
    assert set(out.data_vars) >= {"x", "y"}
    for name in ("x", "y"):
        assert out[name].dims == (("trajectory", "time") if has_traj else ("time",))
    np.testing.assert_array_equal(out["time"].values, ds["time"].values)
    assert out["time"].dtype == ds["time"].dtype
    if has_traj:
        want = ds["trajectory"].values if "trajectory" in ds.coords \
            else np.arange(ds.sizes["trajectory"])
        np.testing.assert_array_equal(out["trajectory"].values, want)
    if np.issubdtype(ds["time"].dtype, np.datetime64):
        from sysid.data.bundle import _TIME_UNITS
        unit = out.attrs["time_unit"]
        assert unit in _TIME_UNITS
        stamps = ds["time"].values
        whole = stamps.astype("datetime64[s]")
        want = ((whole - whole[0]) / np.timedelta64(1, "s")
                + (stamps - whole) / np.timedelta64(1, "s")
                - (stamps[0] - whole[0]) / np.timedelta64(1, "s"))
        np.testing.assert_allclose(bundle.times * _TIME_UNITS[unit], want, rtol=1e-12,
                                   atol=1e-9)
    else:
        np.testing.assert_array_equal(bundle.times, ds["time"].values.astype(np.float64))
    assert np.all(np.diff(bundle.times) > 0)
    for key, value in ds.attrs.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(out.attrs[key], value)
        else:
            assert out.attrs[key] == value
    # values: the identity model keeps its start state
    for name in ("x", "y"):
        vals = out[name].values.reshape(bundle.n_trajectories, -1)
        assert np.all(np.isfinite(vals)), f"{name} imputed non-finite: {vals}"
        np.testing.assert_array_equal(vals, vals[:, :1] * np.ones_like(vals))
        if name in ds.data_vars and "units" in ds[name].attrs:
            assert out[name].attrs["units"] == ds[name].attrs["units"]
        if name not in bundle.channels:
            assert "never measured" in out[name].attrs["long_name"]
            continue
        for b in range(bundle.n_trajectories):
            bounds = _start_value_bounds(ds, bundle, name, b)
            if bounds is None:
                continue
            lo, hi = bounds
            tol = 1e-9 * max(1.0, abs(lo), abs(hi), float(np.nanmax(np.abs(bundle.y))))
            assert lo - tol <= vals[b, 0] <= hi + tol, (name, b, vals[b, 0], bounds)
            if lo == hi:
                assert vals[b, 0] == pytest.approx(lo, rel=1e-12, abs=tol)
    # save and load: nothing lost, predictions bit-identical
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.sysid"
        result.save(path)
        again = sysid.load(path).impute()
    COUNTS["saved_and_loaded"] += 1
    for name in ("x", "y"):
        np.testing.assert_array_equal(again[name].values, out[name].values)
    np.testing.assert_array_equal(again["time"].values, out["time"].values)
    # prepare() agrees with the fit's bundle, and the values are the data's
    again = prepare(model, ds)
    np.testing.assert_array_equal(again.mask, bundle.mask)
    for ch, name in enumerate(bundle.channels):
        raw = np.asarray(ds[name].transpose(*(("trajectory",) if has_traj else ()), "time")
                         .values, dtype=np.float64).reshape(bundle.n_trajectories, -1)
        np.testing.assert_array_equal(bundle.y[..., ch], raw)


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.data_too_large])


@settings(max_examples=100, derandomize=True, **_SETTINGS)
@given(datasets())
def test_random_datasets_convert_or_raise_documented_errors(case):
    check_dataset(*case)


@pytest.mark.slow
@settings(max_examples=3000, **_SETTINGS)
@given(datasets())
def test_random_datasets_many(case):
    check_dataset(*case)


@pytest.mark.slow
def test_zz_print_counts():
    """Run after the slow property (``pytest -m slow -s``): print what was tried."""
    print(f"\n[hardening-data] {dict(sorted(COUNTS.items()))}")


def test_identity_model_round_trip_example():
    """A hand-written case of the property: two trajectories, one with a late start."""
    ds = xr.Dataset({"x": (("trajectory", "time"), [[1.0, np.nan, 2.0], [np.nan, 3.0, 3.0]]),
                     "y": (("trajectory", "time"), [[5.0, np.nan, np.nan], [np.nan, 9.0, 9.0]])},
                    coords={"time": np.array(["2020-01-01", "2020-01-02", "2020-01-04"],
                                             dtype="datetime64[ns]")})
    out = sysid.fit(IDENTITY, ds, **FAST).impute()
    np.testing.assert_allclose(out["y"].values, [[5.0] * 3, [9.0] * 3], rtol=1e-12)
    np.testing.assert_allclose(out["x"].values[1], [3.0] * 3, rtol=1e-12)
    assert out.attrs["time_unit"] == "D"
    np.testing.assert_array_equal(out["time"].values, ds["time"].values)


# -- regressions found by the properties ---------------------------------------------------

def test_datetime_spans_beyond_nanosecond_range():
    """1700 to 2200 overflowed int64 nanoseconds: the data were reported as unsorted."""
    stamps = np.array(["1700-01-01", "1950-01-01", "2200-01-01"], dtype="datetime64[s]")
    ds = xr.Dataset({"x": ("time", [1.0, 2.0, 3.0])}, coords={"time": stamps})
    bundle = prepare(IDENTITY, ds)
    assert bundle.time_attrs["time_unit"] == "D"
    days = (stamps - stamps[0]) / np.timedelta64(1, "D")
    np.testing.assert_allclose(bundle.times, days, rtol=1e-15)
    out = sysid.fit(IDENTITY, ds, **FAST).impute()
    np.testing.assert_array_equal(out["time"].values, stamps)


def test_dates_before_1678_are_not_wrapped_around():
    stamps = np.array(["1500-01-01T00:00:00", "1500-01-01T00:00:30"], dtype="datetime64[s]")
    ds = xr.Dataset({"x": ("time", [1.0, 2.0])}, coords={"time": stamps})
    bundle = prepare(IDENTITY, ds)
    np.testing.assert_allclose(bundle.times, [0.0, 30.0])
    assert bundle.time_attrs["time_origin"].startswith("1500-01-01")


def test_nanosecond_times_keep_their_precision():
    stamps = np.datetime64("2020-01-01T00:00:00", "ns") + np.array([0, 1, 3], "timedelta64[ns]")
    ds = xr.Dataset({"x": ("time", [1.0, 2.0, 3.0])}, coords={"time": stamps})
    np.testing.assert_array_equal(prepare(IDENTITY, ds, time_unit="s").times, [0, 1e-9, 3e-9])


@pytest.mark.parametrize("value", [1e151, -1e200, 1.7e308])
def test_values_too_large_for_float64_arithmetic_are_refused(value):
    """They used to end in an internal solver failure (SolverFailure, not a SysidError)."""
    ds = xr.Dataset({"x": ("time", [1.0, value, 3.0])}, coords={"time": [0.0, 1.0, 2.0]})
    with pytest.raises(DataError, match=r"too large.*received .*time=1.0.*rescale"):
        sysid.fit(IDENTITY, ds, **FAST)


def test_noise_std_integer_beyond_float_is_a_data_error():
    """float(10**400) raised OverflowError."""
    ds = xr.Dataset({"x": ("time", [1.0, 2.0, 3.0], {"noise_std": 10**400})},
                    coords={"time": [0.0, 1.0, 2.0]})
    with pytest.raises(DataError, match="noise_std"):
        prepare(IDENTITY, ds)


def test_empty_time_says_empty():
    ds = xr.Dataset({"x": ("time", np.zeros(0))}, coords={"time": np.zeros(0)})
    with pytest.raises(DataError, match=r"'time' dimension is empty"):
        prepare(IDENTITY, ds)


def test_result_with_dates_outside_1678_2262_round_trips(tmp_path):
    """Saved data with such dates came back as cftime objects and the file was refused."""
    stamps = np.array(["1500-01-01", "1600-01-01", "1700-01-01"], dtype="datetime64[s]")
    ds = xr.Dataset({"x": ("time", [1.0, 2.0, 3.0])}, coords={"time": stamps})
    result = sysid.fit(IDENTITY, ds, **FAST)
    result.save(tmp_path / "old.sysid")
    again = sysid.load(tmp_path / "old.sysid")
    np.testing.assert_array_equal(again.impute()["x"].values, result.impute()["x"].values)
    np.testing.assert_array_equal(again.impute()["time"].values, stamps)


@pytest.mark.parametrize("attrs", [{"big": 2**70}, {"labels": np.array(["a", "b"])},
                                   {"mixed": np.array([1, "a"], dtype=object)},
                                   {"mask": np.array([True, False])}, {"flag": np.bool_(True)}])
def test_attrs_hdf5_cannot_store_are_saved_as_text_or_numbers(tmp_path, attrs):
    """These made result.save raise (TypeError, CompatibilityError): the result was lost."""
    ds = xr.Dataset({"x": ("time", [1.0, 2.0, 3.0])}, coords={"time": [0.0, 1.0, 2.0]},
                    attrs=attrs)
    result = sysid.fit(IDENTITY, ds, **FAST)
    result.save(tmp_path / "r.sysid")
    assert set(sysid.load(tmp_path / "r.sysid").data.attrs) == set(attrs)


def test_attrs_with_nul_and_lone_surrogates_can_be_saved(tmp_path):
    """Found by the slow property: a long_name holding '\\x00' made result.save raise
    h5py's ValueError (the fitted result could not be saved)."""
    ds = xr.Dataset({"x": ("time", [1.0, 2.0, 3.0], {"long_name": "a\x00b", "units": "\ud800"})},
                    coords={"time": [0.0, 1.0, 2.0]}, attrs={"title": "t\x00"})
    result = sysid.fit(IDENTITY, ds, **FAST)
    result.save(tmp_path / "r.sysid")
    again = sysid.load(tmp_path / "r.sysid")
    np.testing.assert_array_equal(again.impute()["x"].values, result.impute()["x"].values)
    assert again.data["x"].attrs["long_name"] == "a\\x00b"
