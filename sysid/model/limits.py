"""Limits on the sizes that a text spec or a saved file may ask for.

A spec (``sysid fit SPEC.toml``) or a saved result says how large the model is before
anything is built: a residual network's width and depth, the number of states and other
symbols, the length of the equations, the bytes its tensors take once read. A mistyped or
tampered size (``width = 1000000000``) would otherwise ask for more memory than any
machine has, and the process would grow until something killed it. Each size is checked
here against a limit, and the memory that the network's training would take (weights,
gradients, Adam's moments and L-BFGS's history) against :data:`LIMITS` ``"memory_gb"``,
before anything is allocated. Every limit can be raised with its environment variable,
e.g. ``SYSID_MAX_WIDTH=8192`` or ``SYSID_MAX_MEMORY_GB=32``.

>>> check_network(width=32, depth=2, n_in=3, n_out=2)      # a usual network: fine
>>> check_network(width=10**9, depth=1000, n_in=1, n_out=1)
Traceback (most recent call last):
...
sysid.errors.LimitError: The residual network's width 1,000,000,000 is over the limit of 4,096 neurons per hidden layer. ...
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

from ..errors import FileFormatError, LimitError

__all__ = ["LIMITS", "limit", "check_network", "network_bytes", "check_spec_sizes",
           "check_torch_file"]


@dataclass(frozen=True)
class Limit:
    default: float
    env: str
    what: str


#: name -> (default, environment variable that raises it, what it bounds)
LIMITS = {
    "width": Limit(4096, "SYSID_MAX_WIDTH", "neurons per hidden layer"),
    "depth": Limit(64, "SYSID_MAX_DEPTH", "hidden layers"),
    "symbols": Limit(10_000, "SYSID_MAX_SYMBOLS",
                     "states, inputs, parameters and fixed values in one model"),
    "equation_chars": Limit(2_000_000, "SYSID_MAX_EQUATION_CHARS",
                            "characters in all of a model's equations"),
    "memory_gb": Limit(8.0, "SYSID_MAX_MEMORY_GB",
                       "GiB of memory that a model's sizes may ask for"),
}

#: numbers held per network weight while training: the weight, its gradient, Adam's two
#: moments, a best copy, and L-BFGS's history (50 pairs of vectors)
_NUMBERS_PER_WEIGHT = 105


def limit(name: str) -> float:
    """The limit ``name`` of :data:`LIMITS`: its environment variable where set (a positive
    number), else the default."""
    spec = LIMITS[name]
    raw = os.environ.get(spec.env)
    if raw is None or raw.strip() == "":
        return spec.default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise LimitError(f"The environment variable {spec.env} must be a positive number "
                         f"(the limit on {spec.what}); received {raw!r}. Unset it for the "
                         f"default, {spec.default:,g}.")
    return value


def _raise_hint(name: str, needed: float) -> str:
    spec = LIMITS[name]
    return (f"If the size is meant, raise the limit: set the environment variable "
            f"{spec.env}={_round_up(needed)} (default {spec.default:,g}) before running sysid.")


def _round_up(x: float) -> str:
    return f"{int(x) + (x > int(x))}" if x < 1e15 else f"{x:.3g}"


def network_bytes(width: int, depth: int, n_in: int, n_out: int) -> tuple[int, float]:
    """(number of weights, bytes of memory their training takes) of an MLP with ``depth``
    hidden layers of ``width`` neurons, ``n_in`` inputs and ``n_out`` outputs (float64),
    computed in floats: the sizes may be absurd."""
    w, d = float(width), float(depth)
    n = (n_in + 1) * w + (d - 1) * (w + 1) * w + (w + 1) * n_out
    return n, n * 8.0 * _NUMBERS_PER_WEIGHT


def check_network(width, depth, n_in: int, n_out: int, where: str = "") -> None:
    """Refuse a residual network over the width, depth or memory limits, before it is
    built (:class:`~sysid.errors.LimitError`; ``where`` starts its message)."""
    for name, value in (("width", width), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, int):
            continue                      # the MLP's own check says what is wrong
        top = limit(name)
        if value > top:
            raise LimitError(f"{where}The residual network's {name} {value:,} is over the limit of "
                        f"{top:,g} {LIMITS[name].what}. A network of width {width:,} and "
                        f"depth {depth:,} would need about "
                        f"{network_bytes(width, depth, n_in, n_out)[1] / 2**30:,.3g} GiB "
                        f"to train; the tutorials use width 16-64 and depth 2. "
                        + _raise_hint(name, value))
    if isinstance(width, int) and isinstance(depth, int):
        n, need = network_bytes(width, depth, n_in, n_out)
        top = limit("memory_gb")
        if need > top * 2**30:
            raise LimitError(f"{where}The residual network (width {width:,}, depth {depth:,}, "
                        f"{n_in} inputs, {n_out} outputs) has {n:,.0f} weights and would "
                        f"need about {need / 2**30:,.3g} GiB to train (weights, gradients, "
                        f"optimizer state), over the limit of {top:,g} GiB. Use a smaller "
                        f"network. " + _raise_hint("memory_gb", need / 2**30))


def check_spec_sizes(spec: dict, where: str = "") -> None:
    """Check what a model spec (:func:`~sysid.model.spec.model_to_spec` data) declares
    before any of it is built: the number of symbols, the length of the equations and
    the residual network (its inputs and outputs at most all states and inputs)."""
    def count(key):
        value = spec.get(key) or []
        return len(value) if isinstance(value, (list, dict)) else 0

    n_states, n_inputs = count("states"), count("inputs")
    symbols = n_states + n_inputs + count("parameters") + count("fixed")
    top = limit("symbols")
    if symbols > top:
        raise LimitError(f"{where}The model declares {symbols:,} states, inputs, parameters and fixed "
                    f"values, over the limit of {top:,g}. " + _raise_hint("symbols", symbols))
    chars = 0
    for key in ("physics", "observations"):
        table = spec.get(key) or {}
        if isinstance(table, dict):
            chars += sum(len(v) for v in table.values() if isinstance(v, str))
    top = limit("equation_chars")
    if chars > top:
        raise LimitError(f"{where}The model's equations hold {chars:,} characters in all, over the "
                    f"limit of {top:,g}. " + _raise_hint("equation_chars", chars))
    res = spec.get("residual")
    if isinstance(res, dict):
        reads = res.get("inputs")
        writes = res.get("states")
        n_in = len(reads) if isinstance(reads, (list, tuple)) else n_states + n_inputs
        n_out = len(writes) if isinstance(writes, (list, tuple)) else max(n_states, 1)
        if isinstance(writes, dict):
            n_out = 1                    # one shared rate
        check_network(res.get("width"), res.get("depth"), max(n_in, 1), n_out, where)


def check_torch_file(path, what: str = "file") -> None:
    """Refuse a ``torch.save`` file whose records would take more memory once read than
    the memory limit, or that are compressed more than 16-fold (a zip bomb: torch reads
    deflated records too, and 8 GiB of zeros deflate into 8 MB), before ``torch.load``
    reads anything; and a file that is not a zip archive (``torch.save``'s format since
    PyTorch 1.6; the older format allocates each tensor at its declared size before
    reading it). A file object is left at the position it had."""
    where = path.tell() if hasattr(path, "seek") else None
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise FileFormatError(f"{path} is not a sysid {what} (not a zip archive as "
                              f"torch.save writes: {err}).") from None
    finally:
        if where is not None:
            path.seek(where)
    total = sum(e.file_size for e in entries)
    top = limit("memory_gb")
    if total > top * 2**30:
        raise LimitError(f"{path}: the {what} declares {total:,} bytes of records, over "
                              f"the memory limit of {top:,g} GiB; it was damaged or crafted. "
                              + _raise_hint("memory_gb", total / 2**30))
    for e in entries:
        if e.file_size > 16 * max(e.compress_size, 1) + 2**20:
            raise FileFormatError(f"{path}: the record {e.filename!r} of the {what} expands "
                                  f"from {e.compress_size:,} to {e.file_size:,} bytes; sysid "
                                  f"writes its files uncompressed, so it was crafted. "
                                  f"Refusing to load it.")
