"""Build the tutorial notebooks (.ipynb) from their reviewed sources (.py, percent format).

The ``tutorials/NN_name.py`` files are the sources: plain Python in the "percent" format
that Jupytext, VS Code and Spyder understand. A line ``# %%`` starts a code cell and a
line ``# %% [markdown]`` starts a Markdown cell, whose lines are comments (``# text``).
This script turns each source into ``NN_name.ipynb`` without outputs, so that the
notebooks open in Jupyter and CI can execute them (``tests/test_tutorials.py``)::

    python tutorials/build_notebooks.py            # (re)write every notebook
    python tutorials/build_notebooks.py --check    # exit 1 if a notebook is out of date
    python tutorials/build_notebooks.py --execute 04_uncertainty [--fast] [--out DIR]

``--execute`` runs notebooks as Jupyter does (a ``python3`` kernel, via ``nbclient``), in
the full setting unless ``--fast``, prints each one's run time and writes the executed
copies to ``--out`` (default ``tutorials/_executed/``, not tracked). Unlike running a
source as a script, this also works for the tutorials whose Dask worker processes import
the main module (04 and 06).

Only ``nbformat`` is needed (no Jupytext). Cell ids are derived from the position of the
cell, so that rebuilding an unchanged source gives an identical file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCE_PATTERN = "[0-9][0-9]_*.py"
_MARKER = re.compile(r"^# %%(?P<rest>.*)$")


#: Tutorials that need benchmark data sysid does not ship: notebook stem -> dataset name.
NEEDS_DATA = {"05_cascaded_tanks": "cascaded_tanks"}
#: Where the notebooks look for those data when ``$SYSID_DATA_DIR`` is not set: the
#: ``shared/data`` folder beside the repository.
SHARED_DATA = HERE.parent.parent / "shared" / "data"


def missing_data(stem: str) -> str:
    """Why tutorial ``stem`` cannot run here, found as the notebook finds its data
    (``$SYSID_DATA_DIR``, the download cache, or :data:`SHARED_DATA`); '' when it can.
    The tests skip such a notebook and the documentation build shows it unexecuted."""
    name = NEEDS_DATA.get(stem)
    if name is None:
        return ""
    import sysid
    from sysid.errors import DataError

    try:
        sysid.datasets.load(name, split="train",
                            path=SHARED_DATA if SHARED_DATA.is_dir() else None)
    except DataError as err:
        return f"{stem} needs the {name} data, not found: {str(err)[:200]}"
    return ""


def sources(folder: Path = HERE) -> list[Path]:
    """The tutorial sources in ``folder``, in their numbered order."""
    return sorted(folder.glob(SOURCE_PATTERN))


def _strip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _uncomment(line: str) -> str:
    if line.startswith("# "):
        return line[2:]
    if line.startswith("#"):
        return line[1:]
    return line


def parse_cells(text: str) -> list[tuple[str, str]]:
    """Split percent-format text into ``(cell_type, source)`` pairs.

    Text before the first marker becomes a code cell if it is not blank. A cell whose
    marker is ``# %% [markdown]`` (or ``[md]``) is Markdown: its comment prefixes are
    removed. Leading and trailing blank lines of every cell are dropped.
    """
    cells: list[tuple[str, list[str]]] = []
    kind, lines = "code", []
    for line in text.splitlines():
        match = _MARKER.match(line)
        if match:
            cells.append((kind, lines))
            rest = match.group("rest").strip()
            kind = "markdown" if rest.startswith(("[markdown]", "[md]")) else "code"
            lines = []
        else:
            lines.append(line)
    cells.append((kind, lines))
    out = []
    for kind, body in cells:
        body = _strip_blank(body)
        if kind == "markdown":
            body = [_uncomment(line) for line in body]
        if body:
            out.append((kind, "\n".join(body)))
    return out


def build(source: Path) -> nbformat.NotebookNode:
    """The notebook (no outputs) for one percent-format source."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, (kind, text) in enumerate(parse_cells(source.read_text(encoding="utf-8"))):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = make(text)
        cell.id = f"{source.stem[:2]}-{i:03d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def notebook_path(source: Path) -> Path:
    return source.with_suffix(".ipynb")


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def execute(names, out: Path, fast: bool) -> int:
    """Run the named notebooks (stems or file names; all when empty) in a Jupyter kernel,
    from ``out`` as working folder; write the executed copies there. Returns the number
    that failed."""
    import nbclient

    chosen = sources()
    if names:
        wanted = {Path(n).stem for n in names}
        unknown = wanted - {s.stem for s in chosen}
        if unknown:
            raise SystemExit(f"no tutorial named {', '.join(sorted(unknown))}; the tutorials "
                             f"are: {', '.join(s.stem for s in chosen)}")
        chosen = [s for s in chosen if s.stem in wanted]
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)              # the kernel's inline figures
    if fast:
        env["SYSID_TUTORIAL_FAST"] = "1"
    else:
        env.pop("SYSID_TUTORIAL_FAST", None)
    failed = 0
    for source in chosen:
        nb = nbformat.read(notebook_path(source), as_version=4)
        client = nbclient.NotebookClient(nb, timeout=None, kernel_name="python3",
                                         resources={"metadata": {"path": str(out)}})
        start = time.perf_counter()
        try:
            client.execute(env=env)
            status = "ok"
        except Exception as err:         # a failing cell: report it, go on with the next
            failed += 1
            last = (str(err).strip().splitlines() or [""])[-1]
            status = f"FAILED ({type(err).__name__}: {last})"
        target = out / notebook_path(source).name
        nbformat.write(nb, target)
        print(f"{source.stem}: {status}, {time.perf_counter() - start:.0f} s "
              f"({'fast' if fast else 'full'} setting) -> {target}", flush=True)
    return failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if a notebook differs from its source")
    parser.add_argument("--execute", nargs="*", metavar="NAME", default=None,
                        help="run these notebooks (all if none named) in a Jupyter kernel")
    parser.add_argument("--fast", action="store_true",
                        help="with --execute: the fast setting (SYSID_TUTORIAL_FAST=1)")
    parser.add_argument("--out", default=str(HERE / "_executed"),
                        help="with --execute: folder for the executed notebooks")
    args = parser.parse_args(argv)
    if args.execute is not None:
        return 1 if execute(args.execute, Path(args.out), args.fast) else 0
    stale = []
    for source in sources():
        target = notebook_path(source)
        text = render(build(source))
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(target.name)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run python tutorials/build_notebooks.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
