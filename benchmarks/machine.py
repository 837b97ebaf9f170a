"""What the benchmarks measure the machine with, and how they print: resident and peak
memory of a process, the commit measured, and markdown tables.

The benchmark scripts import it as a sibling (``import machine``): run them as
``python benchmarks/<name>.py``.
"""

from __future__ import annotations

import math
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["markdown", "memory_mb", "reset_peak", "rss_mb", "peak_mb", "git_commit", "one_thread"]


def markdown(rows: list[dict]) -> str:
    """A markdown table of ``rows`` (columns in order of first appearance)."""
    if not rows:
        return "(no rows)"
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols]

    def fmt(v) -> str:
        if v is None:
            return ""
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)):
            v = float(v)
            if not math.isfinite(v):
                return str(v)
            if v == 0:
                return "0"
            a = abs(v)
            if a >= 1e6:
                return f"{v:.3g}"
            if a >= 1000:
                return f"{v:.0f}"
            if a >= 100:
                return f"{v:.1f}"
            if a >= 0.01:
                return f"{v:.3g}" if a < 10 else f"{v:.2f}"
            return f"{v:.2e}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def memory_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB.

    The peak is Linux's VmHWM, the high-water mark of this process image.
    ``getrusage(RUSAGE_SELF).ru_maxrss`` is not used: Linux carries it across ``execve``,
    so a child started by a large parent reports the parent's peak (seen here: every
    child read 519 MB, the benchmark parent's peak)."""
    try:
        with open("/proc/self/status") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        return (float(fields["VmRSS"].split()[0]) / 1024.0,
                float(fields["VmHWM"].split()[0]) / 1024.0)
    except (OSError, KeyError, ValueError):     # not Linux: ru_maxrss is the best there is
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak /= 1024.0 ** 2 if sys.platform == "darwin" else 1024.0
        return peak, peak


def reset_peak() -> bool:
    """Reset the peak RSS to the current RSS (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------- 1. compiled vs hand-written


def rss_mb() -> float:
    """Resident memory of this process now, in MB (from /proc; Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=ROOT).stdout.strip() or "?"
    except OSError:
        return "?"


def one_thread() -> None:
    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[key] = "1"
    import torch
    torch.set_num_threads(1)
