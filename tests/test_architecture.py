"""The package's architecture, checked from its source (docs/architecture.py reads it).

No import circle anywhere in ``sysid`` or ``benchmarks`` (an import inside a function
counts: deferring an import to dodge a circle still leaves the circle), imports only go
down the layers of ``docs/architecture.md``, no module over 500 lines, no function over
80 lines of code. The checker itself is tested on small packages written here, so that it
cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
import importlib.util
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("architecture", ROOT / "docs" / "architecture.py")
arch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(arch)


@pytest.mark.parametrize("package", ["sysid", "benchmarks"])
def test_no_import_circle(package):
    edges = arch.graph(package)
    assert len(edges) > 8                                # the modules were found
    assert sum(len(v) for v in edges.values()) > 5       # and their imports
    circles = arch.cycles(edges)
    assert circles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_imports_go_down_the_layers():
    edges = arch.graph("sysid")
    rooms = {arch.room(m) for m in edges}
    unplaced = rooms - set(arch.LAYERS) - set(arch.BESIDE)
    assert not unplaced, f"rooms not in the layer table of docs/architecture.py: {unplaced}"
    assert arch.layer_violations(edges) == []


def test_no_module_or_function_over_its_size_limit():
    assert arch.oversize({**arch.modules("sysid"), **arch.modules("benchmarks")}) == []


def test_every_room_says_what_it_owns_and_may_import():
    for init in sorted((ROOT / "sysid").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert doc, f"{init.relative_to(ROOT)} has no module docstring"
        if init.parent.name not in arch.BESIDE:
            assert "May import" in doc, f"{init.relative_to(ROOT)}: say what it may import"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_checker_finds_a_circle_hidden_in_a_function(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "from .a import f\n",
        "pkg/a.py": "from .b import g\n\ndef f():\n    return g()\n",
        "pkg/b.py": "def g():\n    from .a import f   # lazy: still a circle\n    return f\n",
        "pkg/c.py": "import pkg.b\n",
    })
    edges = arch.graph("pkg", tmp_path)
    assert edges["pkg.a"] == {"pkg.b": 1}
    assert edges["pkg.b"] == {"pkg.a": 2}
    assert edges["pkg.c"] == {"pkg.b": 1}
    assert arch.cycles(edges) == [["pkg.a", "pkg.b"]]


def test_the_checker_finds_circles_between_scripts_and_through_packages(tmp_path):
    _write(tmp_path, {
        "scripts/one.py": "import two\n",
        "scripts/two.py": "from three import x\n",
        "scripts/three.py": "x = 1\nimport one\n",
        "lib/__init__.py": "from .sub import thing\n",
        "lib/sub/__init__.py": "from .deep import thing\n",
        "lib/sub/deep.py": "import lib\nthing = 1\n",
    })
    assert arch.cycles(arch.graph("scripts", tmp_path)) == [
        ["scripts.one", "scripts.three", "scripts.two"]]
    assert arch.cycles(arch.graph("lib", tmp_path)) == [["lib", "lib.sub", "lib.sub.deep"]]


def test_the_checker_flags_an_import_up_the_layers_and_an_oversize_function(tmp_path):
    edges = {"sysid.model.hybrid": {"sysid.results.result": 12},
             "sysid.results.result": {"sysid.model.hybrid": 3},
             "sysid.data.bundle": {"sysid.solve.integrate": 5},       # siblings
             "sysid.datasets._simulate": {"sysid.model.hybrid": 7},   # beside the layers
             "sysid.symbolic.search": {"sysid.training.trainer": 9}}  # kept apart
    bad = arch.layer_violations(edges)
    assert len(bad) == 4
    assert any("symbolic may not import training" in b for b in bad)
    assert "sysid.model.hybrid:12 imports sysid.results.result: model may not import " \
           "results" in bad
    assert any("data may not import solve" in b for b in bad)
    assert any("datasets may not import model" in b for b in bad)
    body = "\n".join(f"    x{i} = {i}" for i in range(81))
    _write(tmp_path, {"pkg/big.py": f'def f():\n    """Doc."""\n{body}\n    return x0\n',
                      "pkg/ok.py": f'def g():\n    """Doc.\n\n{body}\n    """\n    return 1\n'})
    found = arch.oversize({"pkg.big": tmp_path / "pkg/big.py", "pkg.ok": tmp_path / "pkg/ok.py"})
    assert len(found) == 1 and "big.py:1 f: 83 lines of code (limit 80)" in found[0]
