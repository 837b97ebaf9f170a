"""Tests of the real benchmark datasets (cascaded_tanks, emps, silverbox) and their download.

The data files are not shipped; these tests use /work/shared/data (next to the
repository) or $SYSID_TEST_DATA, laid out as <name>/<file>, and skip otherwise.
No test touches the network: downloads go through a monkeypatched urlopen.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import sysid.datasets
from sysid.datasets import _real, available, download, load
from sysid.errors import DataError

REPO_DATA = Path(__file__).resolve().parents[1] / "datasets"
DATA = Path(os.environ.get("SYSID_TEST_DATA")
            or Path(__file__).resolve().parents[2] / "shared" / "data")
NAMES = ["cascaded_tanks", "emps", "silverbox"]

needs_data = pytest.mark.skipif(
    not all((DATA / n / f.filename).is_file() for n in NAMES for f in _real.REMOTE[n]),
    reason=f"benchmark data files not found in {DATA} (set SYSID_TEST_DATA to a folder "
           f"holding <name>/<file>, e.g. one filled by sysid.datasets.download)")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Data from DATA via $SYSID_DATA_DIR; an empty private cache; no real network."""
    if DATA.is_dir():
        monkeypatch.setenv("SYSID_DATA_DIR", str(DATA))
    else:
        monkeypatch.delenv("SYSID_DATA_DIR", raising=False)
    monkeypatch.setenv("SYSID_CACHE_DIR", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def _check_attrs(ds):
    for key in ("title", "source", "citation", "license", "description", "metric"):
        assert isinstance(ds.attrs[key], str) and ds.attrs[key], key
    assert isinstance(ds.attrs["sampling_time"], float)
    assert isinstance(ds.attrs["init_window"], int)
    for name in ds.variables:
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"], name
    assert ds.time.attrs["units"] == "s" and ds.time.dtype == np.float64


def test_available_lists_all_four():
    assert available("load") == ["lynx_hare", "cascaded_tanks", "emps", "silverbox"]
    assert sysid.datasets.download is download


def test_provenance_in_repo_matches_pinned_checksums():
    for name in NAMES:
        text = (REPO_DATA / name / "PROVENANCE.txt").read_text()
        assert "NOT shipped" in text
        for spec in _real.REMOTE[name]:
            assert re.search(rf"{re.escape(spec.filename)}\s+{spec.size:,} bytes\s+sha256 {spec.sha256}",
                             text), (name, spec.filename)
            assert not (REPO_DATA / name / spec.filename).exists(), "data file must not be shipped"


# ------------------------------------------------------------------- contents
@needs_data
def test_cascaded_tanks():
    train, test = load("cascaded_tanks", split="train"), load("cascaded_tanks", split="test")
    for ds in (train, test):
        _check_attrs(ds)
        assert set(ds.data_vars) == {"u", "y"} and ds.sizes == {"time": 1024}
        np.testing.assert_array_equal(ds.time.values, 4.0 * np.arange(1024))
        assert ds.u.attrs["units"] == ds.y.attrs["units"] == "V"
        assert (ds.attrs["sampling_time"], ds.attrs["init_window"], ds.attrs["saturation"]) == (
            4.0, 5, 10.0)
    assert (float(train.u[0]), float(train.y[0])) == (3.2567, 5.205)
    assert (float(test.u[0]), float(test.y[0])) == (0.97619, 4.9728)
    assert float(train.y.max()) == float(test.y.max()) == 10.0
    # PROVENANCE's 4.7 % / 3.8 %: samples >= 9.99 V; exactly at 10 V: 47 and 37 of 1024
    assert int((train.y >= 9.99).sum()) == 48 and round(float((train.y >= 9.99).mean()), 3) == 0.047
    assert int((test.y >= 9.99).sum()) == 39 and round(float((test.y >= 9.99).mean()), 3) == 0.038
    assert int((train.y == 10.0).sum()) == 47 and int((test.y == 10.0).sum()) == 37
    assert "upper tank" in train.attrs["description"] and "same" in train.attrs["description"]
    both = load("cascaded_tanks")
    _check_attrs(both)
    assert both.sizes == {"trajectory": 2, "time": 1024}
    assert list(both.trajectory.values) == ["train", "test"] and "split" not in both.attrs
    np.testing.assert_array_equal(both.y.sel(trajectory="test").values, test.y.values)


@needs_data
def test_emps():
    train, test = load("emps", split="train"), load("emps", split="test")
    for ds in (train, test):
        _check_attrs(ds)
        assert ds.sizes == {"time": 24841}
        assert ds.time.values[0] == 0.0 and ds.time.values[-1] == pytest.approx(24.84)
        assert np.allclose(np.diff(ds.time.values), 1e-3)
        assert (ds.q.attrs["units"], ds.vir.attrs["units"], ds.q_ref.attrs["units"]) == (
            "m", "V", "m")
        assert "not a legal model input" in ds.q_ref.attrs["note"]
        assert (ds.attrs["sampling_time"], ds.attrs["init_window"]) == (0.001, 20)
        assert ds.attrs["gtau"] == pytest.approx(35.15, abs=0.01)
        assert (ds.attrs["kp"], ds.attrs["kv"]) == (160.18, 243.45)
        assert ds.attrs["reference_M"] == 95.1089 and ds.attrs["reference_offset"] == -3.1648
        assert -1e-4 < float(ds.q.min()) < 0.0 and float(ds.q.max()) == pytest.approx(0.2464, abs=2e-4)
    assert set(train.data_vars) == {"q", "vir", "q_ref"}
    assert set(test.data_vars) == {"q", "vir", "q_ref", "pulses"}
    assert test.pulses.attrs["units"] == "N" and set(np.unique(test.pulses.values)) == {0.0, 5.0}
    assert float(train.q[0]) == pytest.approx(7.45e-06) and float(train.vir[0]) == pytest.approx(2.53862809)
    assert float(test.vir[0]) == pytest.approx(2.55322418)
    both = load("emps")
    assert both.sizes == {"trajectory": 2, "time": 24841}
    assert np.isnan(both.pulses.sel(trajectory="train")).all()
    np.testing.assert_array_equal(both.q.sel(trajectory="test").values, test.q.values)


def test_emps_lengths_differ_asks_for_a_split():
    from sysid.datasets._real import _stack

    a = load("lynx_hare")
    with pytest.raises(DataError, match=r"different time axes.*split='train' or split='test'"):
        _stack("emps", {"train": a, "test": a.isel(time=slice(0, 5))}, {})


@needs_data
def test_silverbox_splits():
    full = load("silverbox")
    _check_attrs(full)
    fs = 1e7 / 2**14
    assert full.sizes == {"time": 131072} and full.attrs["sampling_time"] == 1 / fs
    assert (float(full.u[0]), float(full.y[0])) == (0.0057756, 0.0093978)
    assert full.u.attrs["units"] == full.y.attrs["units"] == "V"
    sizes = {"arrow": 40475, "arrow_no_extrapolation": 32000, "multisine": 86750,
             "train": 65062, "test": 21688}
    first = {"arrow": 100, "arrow_no_extrapolation": 100, "multisine": 40650, "train": 40650,
             "test": 40650 + 65062}
    for split, n in sizes.items():
        ds = load("silverbox", split=split)
        assert ds.sizes["time"] == n and ds.attrs["split"] == split and ds.attrs["init_window"] == 50
        assert float(ds.time[0]) == pytest.approx(first[split] / fs, rel=1e-12)
        np.testing.assert_array_equal(ds.y.values, full.y.values[first[split]:first[split] + n])


# ------------------------------------------------------------- errors, search
@needs_data
def test_wrong_split_suggests():
    with pytest.raises(DataError, match="unknown split 'tset'.*Did you mean 'test'"):
        load("cascaded_tanks", split="tset")
    with pytest.raises(DataError, match="unknown split 'arow'.*Did you mean 'arrow'"):
        load("silverbox", split="arow")
    with pytest.raises(DataError, match="unknown dataset 'silverbx'.*Did you mean 'silverbox'"):
        load("silverbx")


def test_missing_file_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("SYSID_DATA_DIR", raising=False)
    with pytest.raises(DataError) as info:
        load("emps", split="test", path=tmp_path)
    msg = str(info.value)
    assert "'emps/DATA_EMPS_PULSES.mat' not found" in msg and str(tmp_path) in msg
    assert "download=True" in msg and "sysid.datasets.download('emps')" in msg
    assert "SYSID_DATA_DIR" in msg and "cache" in msg
    with pytest.raises(DataError, match="not an existing folder"):
        load("emps", path=tmp_path / "nowhere")


@needs_data
def test_path_accepts_both_layouts(tmp_path, monkeypatch):
    monkeypatch.delenv("SYSID_DATA_DIR", raising=False)
    shutil.copy(DATA / "cascaded_tanks" / "dataBenchmark.csv", tmp_path)
    assert load("cascaded_tanks", split="train", path=tmp_path).sizes["time"] == 1024
    assert load("cascaded_tanks", split="train", path=DATA).sizes["time"] == 1024


@needs_data
def test_tampered_file_is_refused(tmp_path):
    data = bytearray((DATA / "cascaded_tanks" / "dataBenchmark.csv").read_bytes())
    data[40] = ord("9") if data[40] != ord("9") else ord("8")
    (tmp_path / "dataBenchmark.csv").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"differs from the published dataBenchmark\.csv.*"
                                        r"download\('cascaded_tanks'\)"):
        load("cascaded_tanks", path=tmp_path)


# ------------------------------------------------------------------- download
def _serve(monkeypatch, table):
    """Serve ``table[url]`` bytes from a fake urlopen; record the URLs asked for."""
    asked = []

    class Response(io.BytesIO):
        pass

    def urlopen(url, timeout=None):
        asked.append(url)
        if url not in table:
            raise urllib.error.URLError("offline test: no such URL")
        return Response(table[url])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return asked


@needs_data
def test_download_and_load_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("SYSID_DATA_DIR", raising=False)
    table = {f.url: (DATA / "emps" / f.filename).read_bytes() for f in _real.REMOTE["emps"]}
    asked = _serve(monkeypatch, table)
    with pytest.raises(DataError, match="not found"):
        load("emps", split="train")
    ds = load("emps", split="train", download=True)  # fetches only the file it needs
    assert ds.sizes["time"] == 24841 and asked == [_real.REMOTE["emps"][0].url]
    assert asked[0] == ("https://raw.githubusercontent.com/forgi86/sysid-neural-continuous/"
                        "956aa7ecd73061b0321c6f6098d74c9e4a7ce67a/examples/EMPS/data/DATA_EMPS.mat")
    where = download("emps")
    assert where == tmp_path / "cache" / "emps" and len(asked) == 2
    assert sorted(p.name for p in where.iterdir()) == ["DATA_EMPS.mat", "DATA_EMPS_PULSES.mat"]
    for f in _real.REMOTE["emps"]:
        assert hashlib.sha256((where / f.filename).read_bytes()).hexdigest() == f.sha256
    assert download("emps") == where and len(asked) == 2  # already there: nothing fetched
    assert load("emps").sizes["trajectory"] == 2  # now from the cache


def test_download_of_wrong_bytes_is_refused(tmp_path, monkeypatch):
    spec = _real.REMOTE["cascaded_tanks"][0]
    _serve(monkeypatch, {spec.url: b'"uEst","uVal","yEst","yVal","Ts",\n1,2,3,4,4,\n'})
    with pytest.raises(DataError, match=r"differs from the published dataBenchmark\.csv.*"
                                        r"refused and not saved"):
        download("cascaded_tanks")
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


def test_download_offline_names_url_and_manual_fix(tmp_path, monkeypatch):
    _serve(monkeypatch, {})
    spec = _real.REMOTE["silverbox"][0]
    with pytest.raises(DataError) as info:
        download("silverbox", folder=tmp_path / "store")
    msg = str(info.value)
    assert spec.url in msg and "by hand" in msg
    assert str(tmp_path / "store" / "silverbox" / "SNLS80mV.csv") in msg
    assert spec.url == ("https://raw.githubusercontent.com/forgi86/pytorch-ident/"
                        "f00d79ff8c6cb96d094d9ea1c079d4dcbf9a67e0/examples/statespace/silverbox/"
                        "SilverboxFiles/SNLS80mV.csv")
    assert not (tmp_path / "store" / "silverbox").exists() or not any(
        (tmp_path / "store" / "silverbox").iterdir())
    with pytest.raises(DataError, match="ships with sysid"):
        download("lynx_hare")
    with pytest.raises(DataError, match="Did you mean 'emps'"):
        download("emp")


def test_lynx_hare_with_path(tmp_path, monkeypatch):
    monkeypatch.delenv("SYSID_DATA_DIR", raising=False)
    ds = load("lynx_hare", path=tmp_path)  # nothing there: the shipped file, as before
    assert ds.sizes["time"] == 21 and "sampling_time" not in ds.attrs
    src = REPO_DATA / "lynx_hare" / "hudson-bay-lynx-hare.csv"
    (tmp_path / src.name).write_text(src.read_text().replace("1900, 4.0, 30.0", "1900, 5.0, 31.0"))
    assert float(load("lynx_hare", path=tmp_path).hare[0]) == 31.0
