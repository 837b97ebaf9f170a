"""The real-data benchmark suite's own code (benchmarks/real.py), on the cheap parts.

The full suite takes about 8 min on 2 cores (``python benchmarks/real.py``); here the
lynx-hare section runs for real (a few seconds, in a worker process) and the helpers are
checked on known answers.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import real  # noqa: E402


def test_suite_runs_sections_in_parallel_and_prints_them_in_the_asked_order(tmp_path, capsys):
    """Two sections in two worker processes: lynx-hare fitted for real (its parameters
    inside the Stan 80 % intervals) and tanks skipped for want of data, each printed
    under its own title in the order asked, whichever finishes first."""
    real.main(["--only", "lynx_hare", "tanks", "--data", str(tmp_path / "no_such_folder"),
               "--figures", "", "--jobs", "2"])
    out = capsys.readouterr().out
    assert "2 at once" in out and "2 job(s) at once" in out
    lynx, tanks = out.index(real.TITLES["lynx_hare"]), out.index(real.TITLES["tanks"])
    assert lynx < tanks
    assert "Skipped: the data were not found" in out[tanks:]
    text = out[lynx:tanks]
    rows = [line for line in text.splitlines() if line.startswith("| ") and "inside" not in line]
    assert len(rows) == 4, text
    values = {r.split("|")[1].strip(): float(r.split("|")[2]) for r in rows}
    for name, (_, lo, hi) in real.STAN.items():
        assert lo <= values[name] <= hi, (name, values[name], lo, hi)
    assert "met (4/4)" in text


def test_suite_refuses_fewer_than_one_job(capsys):
    with pytest.raises(SystemExit):
        real.main(["--only", "lynx_hare", "--jobs", "0"])
    assert "--jobs must be at least 1; received 0" in capsys.readouterr().err


def test_block_mean_keeps_each_blocks_impulse():
    t = np.arange(10.0)
    ds = xr.Dataset({"q": ("time", t ** 2), "vir": ("time", t)}, coords={"time": t})
    out = real.block_mean(ds, 3, ["vir"])
    assert out["time"].values.tolist() == [0.0, 3.0, 6.0]       # the last partial block dropped
    assert out["q"].values.tolist() == [0.0, 9.0, 36.0]          # outputs sampled
    assert out["vir"].values.tolist() == [1.0, 4.0, 7.0]         # inputs averaged per block


def test_spread_gives_the_median_range_and_each_seed():
    assert real.spread([0.486, 0.301, 0.475], 3) == "0.475 (0.301-0.486; seeds 0.486, 0.301, 0.475)"
    assert real.spread([6.4219], 2) == "6.42"


def test_over_seeds_fits_each_seed_and_picks_the_median_run(monkeypatch):
    monkeypatch.setitem(real.SEEDS, "full", (0, 1, 2))
    errors = {0: 0.3, 1: 0.5, 2: 0.4}
    runs, median = real.over_seeds("full", lambda seed: seed,
                                   lambda result: (errors[result], f"sim {result}"))
    assert [r["seed"] for r in runs] == [0, 1, 2]
    assert [r["err"] for r in runs] == [0.3, 0.5, 0.4]
    assert median["seed"] == 2 and median["sim"] == "sim 2"
    assert real.seeds_text("full") == "the median over seeds 0, 1, 2"
    assert real.seeds_text("quick") == "seed 0"


def test_rmse():
    assert real.rmse([1.0, 2.0], [1.0, 4.0]) == np.sqrt(2.0)
