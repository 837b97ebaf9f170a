"""Shared by the documentation tests: each tutorial executed once, the site built once.

CI used to execute every tutorial notebook twice: once in ``tests/test_tutorials.py`` and
once more when ``tests/test_docs.py`` built the site with myst-nb. Now:

* :func:`executed_tutorials` executes each committed notebook at most once per session, in
  the fast setting (``SYSID_TUTORIAL_FAST=1``), and writes the executed copy (with its
  outputs) into a session folder. ``tests/test_tutorials.py`` fails on a notebook that
  raises; whichever test asks first executes the notebook, so ``pytest
  tests/test_docs.py`` alone executes them too.
* :func:`site` builds the Sphinx site once per session, the way ``docs/conf.py`` and the
  README say (``python -m sphinx -W --keep-going -b html docs OUT``: every warning is an
  error), with ``SYSID_DOCS_EXECUTED`` pointing at that folder, so that the tutorial pages
  show those outputs instead of executing the notebooks again. ``tests/test_docs.py`` and
  ``tests/test_docs_look.py`` read what it wrote.

Nothing here is imported at collection time beyond the standard library and pytest, so the
other test modules do not pay for it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TUTORIALS = ROOT / "tutorials"
#: Seconds allowed per notebook cell (a whole fast notebook should take under 3 minutes).
CELL_TIMEOUT = 600
#: Seconds the Sphinx build may take (with the tutorials already executed, about a minute).
BUILD_TIMEOUT = 3600
#: Debian's libjs-mathjax (MathJax 2). Where it is installed the site is built against it,
#: so that a browser without network (tests/test_docs_look.py) renders the math.
LOCAL_MATHJAX = Path("/usr/share/javascript/mathjax/MathJax.js")


def build_notebooks():
    """``tutorials/build_notebooks.py`` as a module (it is a script, not in a package)."""
    spec = importlib.util.spec_from_file_location("build_notebooks",
                                                  TUTORIALS / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TutorialRunner:
    """Executes the committed tutorial notebooks, each at most once, into ``folder``.

    :meth:`run` returns the executed copy ``folder/NN_name.ipynb``, or None when the
    notebook's data are missing here (``build_notebooks.missing_data``). A notebook that
    raises is written nowhere (so the site cannot show it), and the error is raised again
    to every later caller, so that each test that needs it fails, not only the first.
    """

    def __init__(self, folder: Path, workdirs):
        import nbclient
        import nbformat

        self.folder = folder
        self._workdirs = workdirs          # () -> a fresh folder for a kernel's files
        self._nbclient, self._nbformat = nbclient, nbformat
        self._tools = build_notebooks()
        self.seconds: dict[str, float] = {}
        self._done: dict[str, Path | None] = {}
        self._failed: dict[str, BaseException] = {}

    def sources(self) -> list[Path]:
        return self._tools.sources(TUTORIALS)

    def missing_data(self, stem: str) -> str:
        return self._tools.missing_data(stem)

    def run(self, source: Path) -> Path | None:
        stem = source.stem
        if stem in self._failed:
            raise self._failed[stem]
        if stem not in self._done:
            try:
                self._done[stem] = self._execute(source)
            except BaseException as err:
                self._failed[stem] = err
                raise
        return self._done[stem]

    def run_all(self) -> None:
        for source in self.sources():
            self.run(source)

    def _execute(self, source: Path) -> Path | None:
        if self.missing_data(source.stem):
            return None
        # The kernel's environment, as the documentation build gives it (docs/conf.py):
        # the fast setting, no progress bars, and MPLBACKEND unset, so that the kernel's
        # inline backend puts the figures into the outputs (under CI's MPLBACKEND=Agg it
        # would draw them without showing them, and the pages would have no figures).
        env = dict(os.environ, SYSID_TUTORIAL_FAST="1")
        env.setdefault("CI", "1")
        env.pop("MPLBACKEND", None)
        env.pop("SYSID_DOCS_EXECUTED", None)
        nb = self._nbformat.read(self._tools.notebook_path(source), as_version=4)
        client = self._nbclient.NotebookClient(
            nb, timeout=CELL_TIMEOUT, kernel_name="python3",
            resources={"metadata": {"path": str(self._workdirs())}})
        start = time.perf_counter()
        client.execute(env=env)    # a failing cell raises CellExecutionError (traceback)
        self.seconds[source.stem] = time.perf_counter() - start
        errors = [out for cell in nb.cells if cell.cell_type == "code"
                  for out in cell.get("outputs", []) if out.get("output_type") == "error"]
        assert not errors, f"{source.name} has error outputs: {errors}"
        target = self.folder / self._tools.notebook_path(source).name
        self._nbformat.write(nb, target)
        return target


@pytest.fixture(scope="session")
def executed_tutorials(tmp_path_factory) -> TutorialRunner:
    """The session's :class:`TutorialRunner` (notebooks are executed when first asked)."""
    pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    return TutorialRunner(tmp_path_factory.mktemp("executed_tutorials"),
                          lambda: tmp_path_factory.mktemp("tutorial_cwd"))


@pytest.fixture(scope="session")
def site(tmp_path_factory, executed_tutorials):
    """``(html folder, build log)`` of the site, built once per session from the
    tutorials as :func:`executed_tutorials` executed them."""
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    pytest.importorskip("numpydoc")
    pytest.importorskip("sphinx_rtd_theme")
    # A tutorial that raises fails every test of the site, as it failed the build when
    # myst-nb executed the notebooks (nb_execution_raise_on_error).
    executed_tutorials.run_all()
    out = tmp_path_factory.mktemp("docs")
    env = dict(os.environ, SYSID_TUTORIAL_FAST="1", MPLBACKEND="Agg",
               SYSID_DOCS_EXECUTED=str(executed_tutorials.folder))
    env.pop("SYSID_DOCS_EXECUTE", None)          # the default: execute what is not executed
    if LOCAL_MATHJAX.is_file() and not env.get("SYSID_DOCS_MATHJAX"):
        env["SYSID_DOCS_MATHJAX"] = (f"{LOCAL_MATHJAX.as_uri()}"
                                     "?config=TeX-AMS-MML_HTMLorMML")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "--no-color", "-b", "html",
           "-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT)
    elapsed = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the docs build failed ({elapsed:.0f} s):\n{log[-8000:]}"
    print(f"docs build: {elapsed:.0f} s")
    return out / "html", log


@pytest.fixture
def new_tutorial_runner(tmp_path):
    """A fresh :class:`TutorialRunner` writing into ``tmp_path`` (to test the runner)."""
    pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    (tmp_path / "executed").mkdir()
    return TutorialRunner(tmp_path / "executed", lambda: tmp_path)
