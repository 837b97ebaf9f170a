"""Files written by an earlier version still load: a saved result and a checkpoint written
by sysid at commit 30abd27 (the last flat-package layout, before the subpackages), with the
numbers that version computed from them (tests/files/, written by
tests/files/make_fixtures.py on that commit).

A file holds tensors, plain dictionaries and the model's text spec, never class or module
paths, so moving code must not change what loads; these tests fail if it does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import xarray as xr

import sysid

FILES = Path(__file__).resolve().parent / "files"
EXPECTED = json.loads((FILES / "expected_30abd27.json").read_text())


def _model():
    x, y = sp.symbols("x y")
    a, c, d = sp.symbols("a c d", positive=True)
    return sysid.HybridODE(states=[x, y], physics={x: a * x, y: c * x * y - d * y},
                           parameters={a: 1.0, c: 1.0, d: 1.0},
                           residual=sysid.MLP(width=4, depth=1, states=[x]))


def test_a_result_saved_by_the_flat_layout_loads_with_its_numbers():
    result = sysid.load(FILES / "result_30abd27.pt")
    assert result.status.code == EXPECTED["status"]
    # positive parameters are stored as logarithms: exp's last bit depends on the CPU's
    # vector unit (a 1-ulp difference on a fresh machine), so to 1e-15 relative
    assert result.parameters == pytest.approx(EXPECTED["parameters"], rel=1e-15)
    assert result.noise_std == pytest.approx(EXPECTED["noise_std"], rel=1e-12)
    imputed = result.impute()          # recomputed by today's solver from the stored state
    np.testing.assert_allclose(imputed["x"].values.ravel()[::5], EXPECTED["impute_x"],
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(imputed["y"].values.ravel()[::5], EXPECTED["impute_y"],
                               rtol=1e-9, atol=1e-12)
    assert result.model.rhs() == _model().rhs()     # the model, rebuilt from its text spec


def test_a_checkpoint_written_by_the_flat_layout_resumes():
    data = xr.load_dataset(FILES / "data_30abd27.nc")
    options = {k: v for k, v in EXPECTED["options"].items()}
    resumed = sysid.fit(_model(), data, resume=FILES / "fit_30abd27.ckpt", **options)
    assert resumed.status.code == EXPECTED["status"]
    # the checkpoint holds the finished fit: resuming it gives that fit's parameters
    assert resumed.parameters == pytest.approx(EXPECTED["parameters"], rel=1e-12)
