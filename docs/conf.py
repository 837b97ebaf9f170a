"""Sphinx configuration of the sysid documentation.

Build the site with one command from the repository root::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Pages are Markdown (MyST) and Jupyter notebooks (myst-nb); the API reference is generated
from the numpydoc docstrings (autodoc + autosummary + numpydoc); math is rendered by
MathJax.

The tutorials live in ``tutorials/`` at the repository root, outside this source folder.
Every ``tutorials/NN_name.ipynb`` is copied at build time into ``docs/tutorials/`` (a
generated, git-ignored folder), which the page ``tutorials.md`` lists with a glob, so a
new notebook appears without any edit here. The notebooks are committed without outputs
and executed by the build:

* ``SYSID_TUTORIAL_FAST=1`` (as in CI) runs them in their fast setting (smaller budgets);
  without it they run in full, which takes several minutes per notebook.
* ``SYSID_DOCS_EXECUTE`` chooses myst-nb's execution mode: ``force`` (default: execute
  every notebook that Sphinx reads), ``cache`` (keep outputs in ``docs/_build/.jupyter_cache``
  between clean builds), or ``off`` (no outputs: a quick check of the pages and the API).
* ``SYSID_DOCS_EXECUTED=DIR`` names a folder of tutorial notebooks that were already
  executed, with their outputs (``DIR/NN_name.ipynb``). The test suite sets it
  (``tests/conftest.py``): ``tests/test_tutorials.py`` executes each notebook once and the
  site is built from those outputs, so CI does not run every tutorial twice. Each such
  notebook must have the cells of the committed one (else the build stops: its outputs
  would be stale) and is shown as it is, not executed again; a tutorial missing from
  ``DIR`` is executed as usual.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))          # the package from this checkout, installed or not

import sysid  # noqa: E402

# -- project ------------------------------------------------------------------------------
project = "sysid"
author = "The sysid developers"
copyright = "2026, The sysid developers"
version = release = sysid.__version__

# -- extensions ---------------------------------------------------------------------------
extensions = [
    "myst_nb",                      # Markdown pages (MyST) and notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",                     # numpydoc-style docstrings
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_rtd_theme",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "Thumbs.db",
                    ".DS_Store"]
root_doc = "index"

# -- math ---------------------------------------------------------------------------------
# MathJax comes from its CDN by default. For a build read offline, point
# SYSID_DOCS_MATHJAX at a local MathJax 2 (e.g. Debian's libjs-mathjax:
# file:///usr/share/javascript/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML). The
# tests set it where that copy is installed (tests/conftest.py), so that headless Chromium
# can typeset the math without network (tests/test_docs_look.py).
if os.environ.get("SYSID_DOCS_MATHJAX"):
    mathjax_path = os.environ["SYSID_DOCS_MATHJAX"]
    mathjax2_config = {"tex2jax": {"inlineMath": [["\\(", "\\)"]],
                                   "displayMath": [["\\[", "\\]"]],
                                   "processEscapes": True, "processClass": "math",
                                   "ignoreClass": "tex2jax_ignore|mathjax_ignore|document"}}

# -- MyST ---------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# -- notebooks (myst-nb) ------------------------------------------------------------------
_MODES = ("force", "cache", "off", "auto")
nb_execution_mode = os.environ.get("SYSID_DOCS_EXECUTE", "force").strip() or "force"
if nb_execution_mode not in _MODES:
    raise ValueError(f"SYSID_DOCS_EXECUTE must be one of {_MODES}; received "
                     f"{nb_execution_mode!r}.")
nb_execution_timeout = 1800          # seconds per cell: the full setting fits for minutes
nb_execution_raise_on_error = True   # a failing tutorial fails the build
nb_execution_show_tb = True
nb_execution_in_temp = True          # files a tutorial writes do not land in docs/
nb_execution_cache_path = str(HERE / "_build" / ".jupyter_cache")
nb_merge_streams = True

# The notebook kernels inherit this process's environment. CI exports MPLBACKEND=Agg,
# under which a kernel would draw figures without showing them; the notebooks need the
# kernel's own inline backend (ipykernel sets it when MPLBACKEND is unset).
os.environ.pop("MPLBACKEND", None)
# A progress bar in a kernel is noise on a web page.
os.environ.setdefault("CI", "1")

TUTORIAL_PATTERN = "[0-9][0-9]_*.ipynb"


def _executed_folder() -> Path | None:
    """The folder named by ``SYSID_DOCS_EXECUTED`` (None when unset)."""
    value = os.environ.get("SYSID_DOCS_EXECUTED", "").strip()
    if not value:
        return None
    folder = Path(value)
    if not folder.is_dir():
        raise ValueError(f"SYSID_DOCS_EXECUTED must name a folder of executed notebooks; "
                         f"{value!r} is not a folder.")
    return folder


def _check_executed(notebook: Path, executed: Path) -> None:
    """Raise unless ``executed`` is ``notebook`` with outputs: the same cells, run."""
    import nbformat

    committed = nbformat.read(notebook, as_version=4)
    ran = nbformat.read(executed, as_version=4)
    if ([(c.cell_type, c.source) for c in committed.cells]
            != [(c.cell_type, c.source) for c in ran.cells]):
        raise ValueError(f"SYSID_DOCS_EXECUTED: {executed} does not have the cells of "
                         f"{notebook} (executed from an older version?); execute it again "
                         f"or unset SYSID_DOCS_EXECUTED.")
    if not any(c.get("execution_count") for c in ran.cells if c.cell_type == "code"):
        raise ValueError(f"SYSID_DOCS_EXECUTED: {executed} was not executed (no cell has "
                         f"an execution count).")


def copy_tutorials(source: Path = ROOT / "tutorials",
                   target: Path = HERE / "tutorials",
                   executed: Path | None = None) -> tuple[list[str], list[str]]:
    """Mirror ``source/NN_name.ipynb`` into ``target``; return the copied names and those
    of them that were taken, with their outputs, from the folder ``executed``.

    A notebook whose copy is already identical is left alone (its time stamp too, so an
    incremental build does not execute it again); a copy that differs is rewritten with a
    new time stamp (so Sphinx reads it again); copies whose source is gone are removed.
    """
    target.mkdir(exist_ok=True)
    names, pre_executed = [], []
    for notebook in sorted(source.glob(TUTORIAL_PATTERN)):
        origin = notebook
        if executed is not None and (executed / notebook.name).is_file():
            origin = executed / notebook.name
            _check_executed(notebook, origin)
            pre_executed.append(notebook.name)
        copy = target / notebook.name
        if not (copy.exists() and filecmp.cmp(origin, copy, shallow=False)):
            shutil.copyfile(origin, copy)
        names.append(notebook.name)
    for stale in target.glob(TUTORIAL_PATTERN):
        if stale.name not in names:
            stale.unlink()
    return names, pre_executed


TUTORIALS, PRE_EXECUTED = copy_tutorials(executed=_executed_folder())


def _tutorial_tools():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_notebooks",
                                                  ROOT / "tutorials" / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Tutorials whose benchmark data are not found here (e.g. Cascaded Tanks on a machine
#: without ../shared/data and no $SYSID_DATA_DIR): shown without outputs, not executed.
UNEXECUTED = [name for name in TUTORIALS
              if _tutorial_tools().missing_data(Path(name).stem)]
#: Tutorials already executed (``SYSID_DOCS_EXECUTED``) are shown with their outputs as
#: they are; myst-nb renders an excluded notebook without executing it.
nb_execution_excludepatterns = [f"tutorials/{name}"
                                for name in sorted(set(UNEXECUTED) | set(PRE_EXECUTED))]

# -- Architecture picture ----------------------------------------------------------------
def _draw_architecture() -> None:
    """Redraw _static/architecture.png from the current source (docs/architecture.py reads
    the imports with ast; nothing is executed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("architecture", HERE / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.draw(module.graph("sysid"), HERE / "_static" / "architecture.png")


_draw_architecture()

# -- API reference ------------------------------------------------------------------------
# autosummary writes one page per public name into api/generated/ (git-ignored); start
# from an empty folder so that a renamed or removed name leaves no stale page behind.
shutil.rmtree(HERE / "api" / "generated", ignore_errors=True)
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"           # numpydoc's Parameters sections give the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # the class template lists the members
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()   # style is reviewed, not enforced by the build

# -- HTML ---------------------------------------------------------------------------------
html_theme = "sphinx_rtd_theme"
html_title = f"sysid {release}"
html_static_path = ["_static"]
html_theme_options = {"navigation_depth": 3, "collapse_navigation": False}
html_show_sourcelink = False
