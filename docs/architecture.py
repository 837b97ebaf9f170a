"""The package's import graph, read from the source, checked and drawn.

``python docs/architecture.py`` prints the rooms of :mod:`sysid` (one per subpackage), the
imports between them, any import circle and any module or function over its size limit, and
draws ``docs/_static/architecture.png``. ``tests/test_architecture.py`` runs the same checks
in the test suite.

Every ``import`` statement counts, at module level or inside a function: an import deferred
into a function to dodge a circle is still a circle. Nothing is imported or executed; the
files are parsed with :mod:`ast`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The rooms of sysid, bottom to top. A module may import its own room and the rooms of
# lower rank; rooms of the same rank are siblings and do not import each other.
LAYERS = {
    "errors": 0, "runtime": 0,
    "model": 1,
    "data": 2, "solve": 2,
    "problem": 3,
    "training": 4, "uncertainty": 4,
    "symbolic": 5,
    "results": 6,
    "many": 7,
    "cli": 8, "__main__": 9,
    "sysid": 10,                       # the package's own __init__: the public facade
}
# Imports the layers would allow but the design keeps out: symbolic distillation refits its
# candidates through the ``fit_from`` it is given, so it never depends on how training works.
APART = {"symbolic": {"training"}}
# sysid.datasets stands beside the layers: it simulates and loads data sets and needs
# only sysid.errors.
BESIDE = {"datasets": {"errors", "datasets"}}

# What each room owns, for the picture and for docs/architecture.md.
OWNS = {
    "errors": "error types",
    "runtime": "BLAS threads, progress bars",
    "model": "HybridODE, MLP, SymPy -> torch,\nsafe equation parser",
    "data": "Dataset -> tensors + masks",
    "solve": "Runge-Kutta, adaptive\nintegration, adjoint",
    "problem": "loss, windows, scaling,\nnoise models, options",
    "training": "Adam, L-BFGS, Levenberg-\nMarquardt, checkpoints",
    "uncertainty": "Laplace covariance,\nintervals",
    "symbolic": "candidate libraries,\nsearch, selection, summary",
    "results": "FitResult, outputs -> Dataset,\nplots, save / load",
    "many": "fit_many, sweep,\nensembles (Dask)",
    "cli": "sysid demo / fit / ...",
    "datasets": "bundled and simulated\ndata sets",
}

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def modules(package: str = "sysid", root: Path = ROOT) -> dict[str, Path]:
    """The modules of a package (or of a folder of scripts), by dotted name."""
    base = root / package
    found = {}
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    parts = name.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    base = ".".join(parts[:keep])
    return f"{base}.{node.module}" if node.module else base


def imports(name: str, path: Path, known: dict[str, Path],
            root: Path = ROOT) -> dict[str, int]:
    """The modules of ``known`` that module ``name`` imports, with the first line of each."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    top = name.split(".")[0]
    # a folder of scripts (no __init__.py, e.g. benchmarks/) imports its siblings by their
    # bare names: ``import baselines`` is benchmarks.baselines
    scripts = not (root / top / "__init__.py").exists()
    found: dict[str, int] = {}

    def add(target: str, line: int):
        if scripts and f"{top}.{target.split('.')[0]}" in known:
            target = f"{top}.{target}"
        while target and target not in known:       # sysid.model.hybrid.HybridODE -> module
            target = target.rpartition(".")[0]
        if target and target != name:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, name, is_package)
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                add(full if full in known else base, node.lineno)
    return found


def graph(package: str = "sysid", root: Path = ROOT) -> dict[str, dict[str, int]]:
    """Module -> {imported module: line}, for every module of the package."""
    known = modules(package, root)
    return {name: imports(name, path, known, root) for name, path in known.items()}


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The import circles: strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str):                                # Tarjan's algorithm, iteratively
        work = [(v, iter(sorted(edges.get(v, ()))))]
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == node:
                            break
                    if len(component) > 1 or node in edges.get(node, ()):
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def room(module: str) -> str:
    """The room of a sysid module: its subpackage (``sysid`` for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_violations(edges: dict[str, dict[str, int]]) -> list[str]:
    """Imports that go up the layers or sideways between sibling rooms."""
    bad = []
    for source, targets in sorted(edges.items()):
        a = room(source)
        for target, line in sorted(targets.items()):
            b = room(target)
            if a == b:
                continue
            if a in BESIDE:
                ok = b in BESIDE[a]
            elif b in BESIDE:
                ok = True
            elif a not in LAYERS or b not in LAYERS:
                bad.append(f"{source}:{line} imports {target}: room {a!r} or {b!r} is not "
                           "in the layer table (docs/architecture.py LAYERS)")
                continue
            else:
                ok = LAYERS[b] < LAYERS[a] and b not in APART.get(a, ())
            if not ok:
                bad.append(f"{source}:{line} imports {target}: {a} may not import {b}")
    return bad


def room_edges(edges: dict[str, dict[str, int]]) -> dict[str, set[str]]:
    """Room -> rooms it imports (without itself)."""
    out: dict[str, set[str]] = {}
    for source, targets in edges.items():
        a = room(source)
        out.setdefault(a, set())
        out[a].update(room(t) for t in targets if room(t) != a)
    return out


def _code_lines(node: ast.AST) -> int:
    lines = node.end_lineno - node.lineno + 1
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        lines -= body[0].end_lineno - body[0].lineno + 1
    return lines


def oversize(paths: dict[str, Path]) -> list[str]:
    """Modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES lines of
    code (the docstring not counted)."""
    bad = []
    for name, path in sorted(paths.items()):
        text = path.read_text()
        n = len(text.splitlines())
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        if n > MAX_MODULE_LINES:
            bad.append(f"{where}: {n} lines (limit {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                k = _code_lines(node)
                if k > MAX_FUNCTION_LINES:
                    bad.append(f"{where}:{node.lineno} {node.name}: {k} "
                               f"lines of code (limit {MAX_FUNCTION_LINES})")
    return bad


# The data path of a fit: what each step makes, and between two steps the function that
# makes the next (module, name). draw() checks that each function is defined in that module,
# so the picture cannot name a step that has moved.
DATA_PATH = [
    "xarray.Dataset\n(measurements, NaN = missing)",
    ("sysid.data.bundle", "prepare"),
    "DataBundle: arrays + masks,\ntimes, inputs",
    ("sysid.problem.problem", "build_problem"),
    "Problem: field, initial states,\nwindows, noise model, loss",
    ("sysid.training.trainer", "train"),
    "Trained: fitted tensors,\nstatus, history",
    ("sysid.results.result", "fit_from"),
    "FitResult",
    ("sysid.results.outputs", "states_dataset"),
    "xarray.Dataset: impute,\nforecast, simulate",
]


def defines(module: str, name: str, root: Path = ROOT) -> bool:
    """Whether ``module`` (a dotted name under ``root``) defines ``name`` at top level."""
    path = modules(module.split(".")[0], root)[module]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return True
    return False


def _room_positions(rooms) -> dict[str, tuple[float, float]]:
    ranks = sorted({LAYERS[r] for r in rooms if r in LAYERS})
    rows: dict[int, list[str]] = {}
    for r in sorted(rooms, key=lambda r: (LAYERS.get(r, 1), r)):
        row = ranks.index(LAYERS[r]) if r in LAYERS else 1
        rows.setdefault(row, []).append(r)
    pos = {}
    for row, names in rows.items():
        inside = [r for r in names if r not in BESIDE]
        for i, r in enumerate(inside):
            pos[r] = ((i - (len(inside) - 1) / 2) * 3.3, row * 1.25)
        for r in names:
            if r in BESIDE:
                pos[r] = (4.3, row * 1.25)
    return pos


def _implied(rooms, a, b) -> bool:
    """Whether room ``a`` reaches ``b`` through other rooms (the arrow adds nothing)."""
    seen, todo = set(), [w for w in rooms.get(a, ()) if w != b]
    while todo:
        v = todo.pop()
        if v == b:
            return True
        if v not in seen:
            seen.add(v)
            todo.extend(rooms.get(v, ()))
    return False


def _draw_rooms(ax, edges):
    rooms = room_edges(edges)
    for gone in ("__main__", "sysid"):
        rooms.pop(gone, None)
    for targets in rooms.values():
        targets.difference_update({"__main__", "sysid"})
    pos = _room_positions(rooms)
    for a, targets in sorted(rooms.items()):
        for b in sorted(targets):                      # sorted: the same bytes every build
            if _implied(rooms, a, b):
                continue
            (x0, y0), (x1, y1) = pos[a], pos[b]
            ax.annotate("", xy=(x1, y1 + 0.22), xytext=(x0, y0 - 0.52),
                        arrowprops=dict(arrowstyle="-|>", color="0.5", lw=0.9,
                                        shrinkA=0, shrinkB=0))
    for r, (x, y) in pos.items():
        ax.text(x, y, f"sysid.{r}", ha="center", va="center", fontsize=10,
                fontweight="bold", family="monospace",
                bbox=dict(boxstyle="round,pad=0.4", ec="#3a6ea5", lw=1.1,
                          fc="#f1f1f1" if r in BESIDE else "#e6effa"))
        ax.text(x, y - 0.2, OWNS.get(r, ""), ha="center", va="top", fontsize=7.5,
                color="0.25", linespacing=1.1)
    top = max(y for _, y in pos.values())
    ax.set_xlim(-5.6, 5.6)
    ax.set_ylim(-0.75, top + 0.45)
    ax.axis("off")
    ax.set_title("Rooms and imports (an arrow points to what a room imports; arrows that\n"
                 "a longer path implies are left out). Imports only go down.", fontsize=9.5)


def _draw_data_path(ax, root: Path = ROOT):
    boxes = DATA_PATH[::2]
    y = {k: (len(boxes) - 1 - k) * 1.6 for k in range(len(boxes))}
    for k, what in enumerate(boxes):
        ax.text(0, y[k], what, ha="center", va="center", fontsize=9, linespacing=1.15,
                bbox=dict(boxstyle="round,pad=0.45", fc="#fff7e0", ec="#b8860b", lw=1.1))
    for k, (module, name) in enumerate(DATA_PATH[1::2]):
        if not defines(module, name, root):
            raise RuntimeError(f"docs/architecture.py DATA_PATH: {module} defines no {name}")
        top, bottom = y[k] - 0.42, y[k + 1] + 0.42
        ax.annotate("", xy=(0, bottom), xytext=(0, top),
                    arrowprops=dict(arrowstyle="-|>", color="#b8860b", lw=1.3))
        room, _, rest = module.partition(".")[2].partition(".")
        ax.text(0.07, (top + bottom) / 2, f"sysid.{room}\n  {rest}.{name}", ha="left",
                va="center", fontsize=7.5, family="monospace", color="#6b4e00")
    ax.set_xlim(-1.7, 1.7)
    ax.set_ylim(-0.7, y[0] + 0.6)
    ax.axis("off")
    ax.set_title("The data path of sysid.fit (beside each arrow:\nthe room and function "
                 "that make the next step)", fontsize=9.5)


def draw(edges: dict[str, dict[str, int]], path: Path):
    """Draw the rooms in their layers with the imports between them, beside the data path
    of a fit; both are read from the source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 9.5),
                                      gridspec_kw={"width_ratios": [2.5, 1]})
    _draw_rooms(left, edges)
    _draw_data_path(right)
    fig.suptitle("sysid's architecture, drawn from the code by docs/architecture.py",
                 fontsize=11.5)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def report() -> tuple[str, bool]:
    """The checks' report as text, and whether all of them pass."""
    lines, ok = [], True
    for package in ("sysid", "benchmarks"):
        edges = graph(package)
        n = sum(len(v) for v in edges.values())
        found = cycles(edges)
        lines.append(f"{package}: {len(edges)} modules, {n} imports between them, "
                     f"{len(found)} import circle(s)")
        for c in found:
            lines.append("  circle: " + " <-> ".join(c))
        ok &= not found
    edges = graph("sysid")
    bad = layer_violations(edges)
    lines.append(f"sysid layers: {len(bad)} import(s) against the layer table")
    lines.extend("  " + b for b in bad)
    big = oversize({**modules("sysid"), **modules("benchmarks")})
    lines.append(f"size: {len(big)} module(s) or function(s) over the limits "
                 f"({MAX_MODULE_LINES} lines a module, {MAX_FUNCTION_LINES} a function)")
    lines.extend("  " + b for b in big)
    ok &= not bad and not big
    return "\n".join(lines), ok


def main() -> int:
    text, ok = report()
    print(text)
    for r, targets in sorted(room_edges(graph("sysid")).items(),
                             key=lambda kv: LAYERS.get(kv[0], 1.5)):
        print(f"  {r:12s} -> {', '.join(sorted(targets)) or '-'}")
    out = ROOT / "docs" / "_static" / "architecture.png"
    draw(graph("sysid"), out)
    print(f"drew {out.relative_to(ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
