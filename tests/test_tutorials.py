"""The tutorial notebooks: up to date with their sources, and executing without errors.

Each ``tutorials/NN_name.ipynb`` is generated from ``tutorials/NN_name.py`` (percent
format) by ``tutorials/build_notebooks.py``. These tests regenerate each notebook in memory
and compare it with the committed one, then execute the committed notebook with nbclient
in a ``python3`` kernel, in the fast setting (``SYSID_TUTORIAL_FAST=1``).

The execution is the session fixture ``executed_tutorials`` (``tests/conftest.py``): each
notebook runs once per session, and the documentation build (``tests/test_docs.py``)
shows those same outputs instead of executing the notebooks a second time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import build_notebooks as load_build_notebooks

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"

build_notebooks = load_build_notebooks()
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
def test_notebook_runs(source, executed_tutorials):
    missing = build_notebooks.missing_data(source.stem)
    if missing:
        pytest.skip(missing)
    # Raises CellExecutionError with the traceback on a failing cell (again, if the docs
    # build asked for this notebook first in this session).
    executed = executed_tutorials.run(source)
    nb = nbformat.read(executed, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count for cell in code), (
        f"{source.stem}: not every code cell was executed")
    if source.stem in executed_tutorials.seconds:
        print(f"{source.stem}: {executed_tutorials.seconds[source.stem]:.0f} s")


def test_a_notebook_that_raises_fails_and_is_not_kept(new_tutorial_runner, tmp_path):
    """The runner behind test_notebook_runs (and the site's outputs) fails on an error,
    every time it is asked, and keeps no executed copy that the site could show."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = build_notebooks.build(SOURCES[0]).metadata
    nb.cells = [nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("raise RuntimeError('tutorial broken')")]
    nbformat.write(nb, tmp_path / "99_broken.ipynb")
    for _ in range(2):
        with pytest.raises(nbclient.exceptions.CellExecutionError, match="tutorial broken"):
            new_tutorial_runner.run(tmp_path / "99_broken.py")
    assert not list(new_tutorial_runner.folder.iterdir())


def test_execute_names_the_tutorials_when_asked_for_an_unknown_one(tmp_path):
    with pytest.raises(SystemExit, match="no tutorial named 99_nothing; the tutorials are: "
                                         "01_quickstart_lynx_hare"):
        build_notebooks.main(["--execute", "99_nothing", "--out", str(tmp_path)])
    assert not any(tmp_path.iterdir())          # nothing run, nothing written
