"""The tutorial notebooks: up to date with their sources, and executing without errors.

Each ``tutorials/NN_name.ipynb`` is generated from ``tutorials/NN_name.py`` (percent
format) by ``tutorials/build_notebooks.py``. These tests regenerate each notebook in memory
and compare it with the committed one, then execute the committed notebook with nbclient
in a ``python3`` kernel, in the fast setting (``SYSID_TUTORIAL_FAST=1``).
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
#: Seconds allowed per cell; the whole fast notebook is meant to take under 3 minutes.
CELL_TIMEOUT = 600


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebooks",
                                                  TUTORIALS / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_notebooks = _builder()
SOURCES = build_notebooks.sources(TUTORIALS)

def test_there_are_tutorials():
    assert SOURCES, f"no tutorial sources NN_name.py in {TUTORIALS}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_matches_its_source(source):
    target = build_notebooks.notebook_path(source)
    assert target.exists(), (f"{target.name} is missing: run "
                             "python tutorials/build_notebooks.py")
    committed = nbformat.read(target, as_version=4)
    expected = build_notebooks.build(source)
    got = [(c.cell_type, c.source) for c in committed.cells]
    want = [(c.cell_type, c.source) for c in expected.cells]
    assert got == want, (f"{target.name} is out of date with {source.name}: run "
                         "python tutorials/build_notebooks.py")
    for cell in committed.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{target.name} is committed with outputs: rebuild it from {source.name}")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_runs(source, tmp_path, monkeypatch):
    missing = build_notebooks.missing_data(source.stem)
    if missing:
        pytest.skip(missing)
    # The kernel inherits this process's environment.
    monkeypatch.setenv("SYSID_TUTORIAL_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("CI", os.environ.get("CI", "1"))
    nb = nbformat.read(build_notebooks.notebook_path(source), as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError with the traceback on a failing cell
    elapsed = time.perf_counter() - start
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, errors
    print(f"{source.stem}: {elapsed:.0f} s")
