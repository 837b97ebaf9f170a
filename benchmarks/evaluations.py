"""Where a fit's vector-field evaluations and time go (``speed.py --only evaluations``).

The README demo's fit (lynx-hare, 21 yearly samples, 2 states, MLP residual, log-normal
noise; ``sysid demo`` runs it) with each training phase's loss evaluations counted. Counting
wraps ``Problem.loss`` for the duration of the fit and restores it after; the fit itself is
unchanged (same seed, same result). Per phase: optimiser rows of the history, loss
evaluations (each one integrates every segment), right-hand-side evaluations in total and
per loss, and the time inside the loss (forward) and outside it (backward, optimiser).
The fit runs with the defaults (its solves in C, ``compiled=True``, the C compiler's time
included: the kernel cache starts empty); the last row is the
same fit on the PyTorch solver (``compiled=False``). Their losses may differ: the optimiser
can amplify rounding differences of 1e-15 into another optimum, as it does for data
changed by 1e-15 on either solver.
"""

from __future__ import annotations

import collections
import time
from contextlib import contextmanager

import torch

import sysid
import sysid.problem.problem as problem_module
import sysid.training.trainer as trainer_module
from sysid.cli import demo_problem

from peer import cold_cache  # sibling script: run from benchmarks/

__all__ = ["demo_phases"]


@contextmanager
def _counted(phase_of):
    counts = collections.defaultdict(lambda: {"calls": 0, "nfe": 0, "loss s": 0.0})
    original = problem_module.Problem.loss

    def loss(self, *args, **kwargs):
        nfe, start = self.field.nfe, time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            row = counts[phase_of()]
            row["calls"] += 1
            row["nfe"] += self.field.nfe - nfe
            row["loss s"] += time.process_time() - start

    problem_module.Problem.loss = loss
    try:
        yield counts
    finally:
        problem_module.Problem.loss = original


def demo_phases(quick: bool) -> list[dict]:
    """One row per training phase of the demo fit, then the whole fit."""
    data, model = demo_problem()
    phase = {"now": "setup"}
    torch.set_num_threads(1)
    with _counted(lambda: phase["now"]) as counts:
        start, wall = time.process_time(), time.perf_counter()
        # the phase of each loss call: the one the trainer has entered last
        original_phase = trainer_module._Trainer._phase

        def entering(self, name, body):
            phase["now"] = name
            return original_phase(self, name, body)

        trainer_module._Trainer._phase = entering
        try:
            with cold_cache():               # compiling the model counts
                result = sysid.fit(model, data, seed=0, noise="lognormal", progress=False)
        finally:
            trainer_module._Trainer._phase = original_phase
        cpu, wall = time.process_time() - start, time.perf_counter() - wall
    rows_per_phase = result.history["phase"].to_series().value_counts()
    out = []
    for name, c in counts.items():
        out.append({"phase": name, "history rows": int(rows_per_phase.get(name, 0)),
                    "loss evaluations": c["calls"], "field evaluations": c["nfe"],
                    "per loss": c["nfe"] / c["calls"] if c["calls"] else 0.0,
                    "CPU s in the loss (forward)": c["loss s"]})
    total = sum(c["nfe"] for c in counts.values())
    out.append({"phase": "whole fit", "history rows": int(rows_per_phase.sum()),
                "loss evaluations": sum(c["calls"] for c in counts.values()),
                "field evaluations": total,
                "CPU s in the loss (forward)": sum(c["loss s"] for c in counts.values()),
                "CPU s total": cpu, "wall s": wall,
                "ms per field evaluation (all included)": 1e3 * cpu / max(total, 1),
                "status": f"{result.status.code}, loss {result.stats['loss']:.4f}"})
    start, wall = time.process_time(), time.perf_counter()
    eager = sysid.fit(model, data, seed=0, noise="lognormal", progress=False, compiled=False)
    cpu, wall = time.process_time() - start, time.perf_counter() - wall
    n = eager.stats["function_evaluations"]
    out.append({"phase": "whole fit, compiled=False (PyTorch solver)",
                "history rows": eager.history.sizes["epoch"],
                "field evaluations": n, "CPU s total": cpu, "wall s": wall,
                "ms per field evaluation (all included)": 1e3 * cpu / max(n, 1),
                "status": f"{eager.status.code}, loss {eager.stats['loss']:.4f}"})
    return out
