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
# file:///usr/share/javascript/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML).
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


def copy_tutorials(source: Path = ROOT / "tutorials",
                   target: Path = HERE / "tutorials") -> list[str]:
    """Mirror ``source/NN_name.ipynb`` into ``target``; return the copied names.

    A notebook whose copy is already identical is left alone (its time stamp too, so an
    incremental build does not execute it again); copies whose source is gone are
    removed.
    """
    target.mkdir(exist_ok=True)
    names = []
    for notebook in sorted(source.glob(TUTORIAL_PATTERN)):
        copy = target / notebook.name
        if not (copy.exists() and filecmp.cmp(notebook, copy, shallow=False)):
            shutil.copy2(notebook, copy)
        names.append(notebook.name)
    for stale in target.glob(TUTORIAL_PATTERN):
        if stale.name not in names:
            stale.unlink()
    return names


TUTORIALS = copy_tutorials()


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
nb_execution_excludepatterns = [f"tutorials/{name}" for name in UNEXECUTED]

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
