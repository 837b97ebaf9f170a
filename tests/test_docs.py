"""The documentation: every public name has a running example, and the Sphinx site builds.

The site is built once per test session by the fixture ``site`` (``tests/conftest.py``),
the way ``docs/conf.py`` and the README say (``python -m sphinx -W --keep-going -b html
docs OUT``: every warning is an error), with ``MPLBACKEND=Agg`` as in CI. The tutorial
pages show the outputs of the notebooks as ``tests/test_tutorials.py`` executed them, in
their fast setting (``SYSID_TUTORIAL_FAST=1``), through ``SYSID_DOCS_EXECUTED``: each
notebook is executed once per session, by whichever test asks first, so this module run
alone executes them too. The tests then read the HTML it wrote. The docstring examples
themselves run as doctests (``--doctest-modules`` in ``pyproject.toml``); here we check
that each public name of the API contract has examples that are not skipped.
"""

from __future__ import annotations

import doctest
import html
import inspect
import re
from pathlib import Path

import pytest

import sysid

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TUTORIALS = ROOT / "tutorials"
RESULTS = ROOT / "benchmarks" / "results"

#: The public names of the API contract (../shared/API.md) and of ``sysid.__all__``, with
#: the members of the classes that the contract names.
FUNCTIONS = ["fit", "load", "compare", "fit_many", "sweep", "fit_ensemble",
             "datasets.load", "datasets.simulate", "datasets.download",
             "datasets.available", "datasets.system"]
CLASSES = ["HybridODE", "MLP", "FitResult", "FitOptions", "FitStatus", "SymbolicSummary",
           "FitCollection", "Ensemble", "datasets.System", "datasets.Staircase"]
MODULES = ["datasets", "errors"]
MEMBERS = {
    "FitResult": ["parameters", "equations", "initial_states", "parameter_table",
                  "parameter_correlation", "impute", "forecast", "simulate", "symbolic",
                  "history", "plot", "save"],
    "SymbolicSummary": ["equations", "model_equations", "to_latex", "refit"],
}
#: Docstrings in modules that another change is rewriting; their examples are proposed
#: there. Remove a name once its running example has landed (the strict xfail then
#: reminds whoever forgets).
PENDING: set[str] = set()


def _resolve(dotted: str):
    obj = sysid
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _running_examples(obj) -> list[str]:
    """Source of the docstring examples of ``obj`` that doctest does not skip."""
    doc = inspect.getdoc(obj) or ""
    examples = doctest.DocTestParser().get_examples(doc)
    return [ex.source for ex in examples if not ex.options.get(doctest.SKIP, False)]


def _case(name: str):
    marks = [pytest.mark.xfail(strict=True, reason="running example proposed, not landed")] \
        if name in PENDING else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_case(n) for n in FUNCTIONS])
def test_every_public_function_has_a_running_example_that_calls_it(name):
    code = "".join(_running_examples(_resolve(name)))
    assert f"{name.split('.')[-1]}(" in code, (
        f"sysid.{name} needs an Examples section whose (not skipped) examples call it")


@pytest.mark.parametrize("name", [_case(n) for n in CLASSES + MODULES])
def test_every_public_class_and_module_has_running_examples(name):
    assert _running_examples(_resolve(name)), (
        f"sysid.{name} needs an Examples section with examples that run (not +SKIP)")


@pytest.mark.parametrize("name", [_case(f"{cls}.{m}") for cls, ms in MEMBERS.items()
                                  for m in ms])
def test_every_contract_member_is_exercised_by_a_running_example(name):
    cls_name, member = name.split(".")
    cls = _resolve(cls_name)
    own = inspect.getattr_static(cls, member, None)
    own_doc = own.fget if isinstance(own, property) else own
    code = "".join(_running_examples(cls))
    if own_doc is not None and callable(own_doc):
        code += "".join(_running_examples(own_doc))
    assert re.search(rf"\.{member}\b", code), (
        f"no running example of sysid.{cls_name} or of the member itself uses .{member}")


# -- the site (the session fixture ``site`` of conftest.py builds it) -------------------
def _page(site, name: str) -> str:
    path = site[0] / name
    assert path.exists(), f"{name} was not built"
    return path.read_text(encoding="utf-8")


def _text(page: str) -> str:
    body = page[page.find('<div itemprop="articleBody">'):]
    return html.unescape(re.sub(r"<[^>]+>", "", body))


def test_build_is_warning_free(site):
    # -W already fails the build on any warning; this names them if that ever changes.
    # (Kernels may log "[IPKernelApp] WARNING | ..." on stderr: not Sphinx's.)
    _, log = site
    found = [line for line in log.splitlines() if "WARNING: " in line or "ERROR: " in line]
    assert not found, "\n".join(found[:20])


def test_the_build_does_not_execute_the_tutorials_again(site, executed_tutorials):
    # The tutorial pages show the outputs of the notebooks as executed_tutorials ran them
    # (SYSID_DOCS_EXECUTED): myst-nb excludes them from execution, and logs it.
    _, log = site
    executed = [s.stem for s in executed_tutorials.sources() if executed_tutorials.run(s)]
    assert executed, "no tutorial was executed"
    assert "Executing notebook" not in log, "the docs build executed a tutorial again"
    lines = [line for line in log.splitlines() if "xecut" in line]
    for stem in executed:
        assert any(f"tutorials/{stem}.ipynb" in line and "Excluded from execution" in line
                   for line in lines), (
            f"{stem} was not taken as executed by the docs build:\n" + "\n".join(lines))


def test_pages_exist(site):
    for name in ["index", "installation", "tutorials", "guide", "uncertainty", "scale",
                 "api", "benchmarks", "results", "changelog", "citing"]:
        _page(site, f"{name}.html")
    index = _page(site, "index.html")
    for target in ["installation.html", "tutorials.html", "guide.html", "api.html",
                   "changelog.html", "citing.html", "results.html"]:
        assert f'href="{target}' in index, f"the index does not link {target}"


def test_api_reference_documents_every_public_name(site):
    for name in FUNCTIONS + CLASSES + ["errors"]:
        page = _page(site, f"api/generated/sysid.{name}.html")
        assert f'id="sysid.{name}"' in page or f'id="module-sysid.{name}"' in page, name
        assert "Examples" in page, f"the page of sysid.{name} shows no examples"
    api = _page(site, "api.html")
    assert 'id="module-sysid.datasets"' in api and 'id="sysid.t"' in api
    result = _page(site, "api/generated/sysid.FitResult.html")
    for member in MEMBERS["FitResult"]:          # a method or property, or an attribute
        assert (f'id="sysid.FitResult.{member}"' in result
                or f"<strong>{member}</strong>" in result), f"FitResult.{member} is missing"
    summary = _page(site, "api/generated/sysid.SymbolicSummary.html")
    for member in ["to_latex", "refit", "parameter_table"]:
        assert f"sysid.SymbolicSummary.{member}" in summary, member
    errors = _page(site, "api/generated/sysid.errors.html")
    for name in ["DataError", "ModelError", "FitError", "IdentifiabilityWarning"]:
        assert f'id="sysid.errors.{name}"' in errors, name
    # numpydoc turned the sections into field lists and rubrics
    fit = _text(_page(site, "api/generated/sysid.fit.html"))
    assert "Parameters" in fit and "Returns" in fit and "residual_penalty" in fit


def test_math_is_rendered_with_mathjax(site):
    index = _page(site, "index.html")
    assert "mathjax" in index.lower(), "MathJax is not loaded on a page with math"
    assert 'class="math' in index


def _missing_data(stem: str) -> str:
    """'' when tutorial ``stem`` has its data here (else it is built unexecuted)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_notebooks",
                                                  TUTORIALS / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.missing_data(stem)


def test_every_tutorial_is_a_page_with_executed_outputs(site):
    notebooks = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
    assert notebooks, "no tutorials found"
    listing = _page(site, "tutorials.html")
    images = 0
    for notebook in notebooks:
        page = _page(site, f"tutorials/{notebook.stem}.html")
        assert f"tutorials/{notebook.stem}.html" in listing, f"{notebook.name} not listed"
        if _missing_data(notebook.stem):      # listed, shown without outputs
            assert "cell_output" not in page
            continue
        assert "cell_output" in page, f"{notebook.name} was rendered without outputs"
        assert "Traceback" not in page, f"{notebook.name} shows an error"
        images += len(re.findall(r'<img[^>]+src="\.\./_images/', page))
    assert images > 0, "no tutorial page shows a figure"


def test_a_tutorial_page_has_a_figure_and_math_where_its_notebook_has_math(site):
    pages = {p.stem: _page(site, f"tutorials/{p.stem}.html")
             for p in sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))}
    with_figure = [name for name, page in pages.items() if "../_images/" in page]
    assert with_figure, "no tutorial page shows a figure"
    nbformat = pytest.importorskip("nbformat")
    for name, page in pages.items():
        nb = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
        markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        if re.search(r"\$[^$\n]+\$", markdown):
            assert 'class="math' in page and "mathjax" in page.lower(), (
                f"{name}: the notebook has $...$ math that the page does not render")


def test_benchmark_results_page_includes_every_record(site):
    source = (DOCS / "results.md").read_text(encoding="utf-8")
    text = _text(_page(site, "results.html"))
    records = sorted(RESULTS.glob("*.md"))
    assert records
    for record in records:
        assert f"../benchmarks/results/{record.name}" in source, (
            f"docs/results.md does not include {record.name}")
        title = next(line for line in record.read_text(encoding="utf-8").splitlines()
                     if line.startswith("# "))
        assert title[2:].strip()[:40] in text, f"{record.name} is not on the results page"


def test_citing_and_changelog(site):
    citing = _text(_page(site, "citing.html"))
    assert "@software{sysid" in citing
    for key in ["carpenter2018lotka", "schoukens2017three", "janot2019emps",
                "wigren2013three", "10.4121/12960104"]:
        assert key in citing, key
    changelog = _text(_page(site, "changelog.html"))
    assert sysid.__version__ in changelog
