"""Speed and memory of sysid's training internals, printed as markdown tables.

    python benchmarks/speed.py            # full run
    python benchmarks/speed.py --quick    # CI-sized run
    python benchmarks/speed.py --only physics,scaling,adjoint
    python benchmarks/speed.py --only field,peer      # sysid vs diffrax (needs ".[bench]")

Everything runs in float64 on one thread (``torch.set_num_threads(1)``); times are CPU
time of the process (``time.process_time``), which stays stable on a busy shared machine
where wall time does not (wall time is printed alongside where it matters).

1. ``physics_ratio``: the compiled SymPy physics (``HybridField.physics(t, x, u)``, called
   as the solver calls it, with the parameter transform evaluated once per solve) against
   the same right-hand side written by hand in torch; forward (graph recorded) and
   forward + backward (gradients for the states and the parameters).
2. ``trajectory_scaling``: one training step (loss + backward) of the problem that
   ``sysid.fit`` builds, for 1 to 1000 (quick: 100) Lotka-Volterra trajectories of 100
   samples, in multiple shooting (the default) and single shooting, plus a short
   ``sysid.fit``.
3. ``adjoint_memory``: the peak resident memory of one single-shooting loss + backward
   with and without ``adjoint=True``, for a pendulum series of 200 and of 2000 samples
   (quick: 50 and 500), each configuration in a fresh subprocess; the adjoint rows also
   compare loss and gradient with direct backpropagation.
4. ``least_squares``: fits of models without a network by Levenberg-Marquardt
   (``gauss_newton=True``, the default) against L-BFGS (``gauss_newton=False``), single
   shooting from the same start: CPU time, the ratio, and the difference of the final
   objectives (log-likelihood units over the whole data set; negative = LM lower).

5. ``field`` and ``peer`` (``peer.py``): one vector-field evaluation + VJP in sysid and in
   jitted JAX, and the UDE Lotka-Volterra fit by sysid, by the diffrax + equinox + optax
   recipe (``diffrax_peer.py``; JAX is the optional ``bench`` extra) and by the plain
   torchdiffeq recipe, per seed and median.
6. ``evaluations`` (``evaluations.py``): where the README demo's fit spends its field
   evaluations and time, phase by phase.

Each measurement function returns a list of dict rows; :func:`markdown` formats them.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import sympy as sp
import torch

import sysid
from sysid.data.bundle import prepare
from sysid.model.field import HybridField
from sysid.problem.options import FitOptions
from sysid.model.parameters import transform_for
from sysid.problem.problem import build_problem

from machine import markdown, memory_mb, reset_peak  # noqa: E402 (sibling scripts)
import evaluations  # noqa: E402
import peer  # noqa: E402

torch.set_num_threads(1)
F64 = torch.float64

__all__ = ["physics_ratio", "trajectory_scaling", "adjoint_memory", "markdown"]


# ----------------------------------------------------------------------------- helpers
# CPU time of this process, not wall time: the work is single-threaded, and on a shared
# machine wall time also counts the time other processes hold the core (measured on this
# project's 2-core machines under load: wall-clock minima of identical code varied by
# 30-50 %, CPU-time minima by under 1 %).
_clock = time.process_time


def _time_loop(fn, loops: int) -> float:
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = _clock()
        for _ in range(loops):
            fn()
        return _clock() - start
    finally:
        if gc_was:
            gc.enable()


def _compare(fns: dict, repeat: int, min_time: float) -> dict:
    """timeit-style: per function a loop count lasting ``min_time``, then ``repeat``
    rounds that alternate between the functions (so drifting machine load hits all of
    them alike). Returns {name: (min, median)} seconds per call."""
    loops = {}
    for name, fn in fns.items():
        fn()                                   # warm-up
        n = 1
        while True:
            took = _time_loop(fn, n)
            if took >= min_time or n >= 1 << 20:
                break
            n = max(n * 2, int(n * min_time / max(took, 1e-9) * 1.1))
        loops[name] = n
    samples = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            samples[name].append(_time_loop(fn, loops[name]) / loops[name])
    return {name: (min(s), statistics.median(s)) for name, s in samples.items()}


def _systems():
    """(name, HybridODE, hand-written rhs(t, x, u, p) with p the parameter tensors)."""
    x, y = sp.symbols("x y")
    a, b, c, d = sp.symbols("a b c d", positive=True)
    lv = sysid.HybridODE(states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
                         parameters={a: 1.3, b: 0.9, c: 0.8, d: 1.8})

    def lv_hand(t, s, u, p):
        a, b, c, d = p
        x, y = s.unbind(-1)
        xy = x * y
        return torch.stack([a * x - b * xy, c * xy - d * y], dim=-1)

    th, om = sp.symbols("theta omega")
    w0, al = sp.symbols("omega0 alpha", positive=True)
    pend = sysid.HybridODE(states=[th, om],
                           physics={th: om, om: -w0 ** 2 * sp.sin(th) - al * om},
                           parameters={w0: 2 * math.pi / 6, al: 0.2})

    def pend_hand(t, s, u, p):
        w0, al = p
        th, om = s.unbind(-1)
        return torch.stack([om, -w0 ** 2 * torch.sin(th) - al * om], dim=-1)

    X, Y, Z = sp.symbols("x y z")
    sg, rh, be = sp.symbols("sigma rho beta", positive=True)
    lorenz = sysid.HybridODE(states=[X, Y, Z],
                             physics={X: sg * (Y - X), Y: X * (rh - Z) - Y, Z: X * Y - be * Z},
                             parameters={sg: 10.0, rh: 28.0, be: 8.0 / 3.0})

    def lorenz_hand(t, s, u, p):
        sg, rh, be = p
        x, y, z = s.unbind(-1)
        return torch.stack([sg * (y - x), x * (rh - z) - y, x * y - be * z], dim=-1)

    return [("lotka_volterra", lv, lv_hand), ("pendulum", pend, pend_hand),
            ("lorenz", lorenz, lorenz_hand)]


def _field(model) -> HybridField:
    """The hybrid field exactly as ``build_problem`` makes it (physics only)."""
    syms = list(model.parameters)
    guesses = [model.parameters[s] for s in syms]
    transform = transform_for(syms, guesses)
    return HybridField(model, model.state_names, transform, transform.inverse(guesses), None)


def physics_ratio(quick: bool = False) -> list[dict]:
    """Compiled physics vs hand-written torch; time per call and compiled/hand ratio."""
    repeat, min_time = (11, 0.005) if quick else (31, 0.01)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for name, model, hand in _systems():
        field = _field(model)
        field.freeze_parameters(True)          # as solve_segments does for a whole solve
        p = field._cached                      # the parameter tensors the field uses
        n = len(model.states)
        for batch in (1, 64, 4096):
            x = (torch.rand(batch, n, generator=gen, dtype=F64) * 2 - 1).requires_grad_(True)
            t = torch.rand(batch, generator=gen, dtype=F64)
            u = x.new_zeros(batch, 0)
            ones = torch.ones(batch, n, dtype=F64)
            wrt = [x, *p]
            torch.testing.assert_close(field.physics(t, x, u), hand(t, x, u, p))
            gc_ = torch.autograd.grad(field.physics(t, x, u), wrt, ones)
            gh_ = torch.autograd.grad(hand(t, x, u, p), wrt, ones)
            for g1, g2 in zip(gc_, gh_):
                torch.testing.assert_close(g1, g2)

            fns = {
                "compiled_fwd": lambda: field.physics(t, x, u),
                "hand_fwd": lambda: hand(t, x, u, p),
                "compiled_fwdbwd": lambda: torch.autograd.grad(field.physics(t, x, u), wrt, ones),
                "hand_fwdbwd": lambda: torch.autograd.grad(hand(t, x, u, p), wrt, ones),
            }
            res = _compare(fns, repeat, min_time)
            us = {k: v[0] * 1e6 for k, v in res.items()}          # min per call, µs
            med = {k: v[1] * 1e6 for k, v in res.items()}
            rows.append({
                "system": name, "batch": batch, "compiled ops": field._physics.n_ops,
                "compiled fwd µs": us["compiled_fwd"], "hand fwd µs": us["hand_fwd"],
                "ratio fwd": us["compiled_fwd"] / us["hand_fwd"],
                "compiled fwd+bwd µs": us["compiled_fwdbwd"],
                "hand fwd+bwd µs": us["hand_fwdbwd"],
                "ratio fwd+bwd": us["compiled_fwdbwd"] / us["hand_fwdbwd"],
                "ratio fwd (median)": med["compiled_fwd"] / med["hand_fwd"],
                "ratio fwd+bwd (median)": med["compiled_fwdbwd"] / med["hand_fwdbwd"],
            })
        field.freeze_parameters(False)
    return rows


# ------------------------------------------------------------ 2. cost vs trajectories
def _lv_model(residual=True):
    x, y = sp.symbols("x y")
    a, b, c, d = sp.symbols("a b c d", positive=True)
    return sysid.HybridODE(states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
                           parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0},
                           residual=sysid.MLP(16, 2) if residual else None)


def _setup(model, data, **options):
    """``sysid.fit``'s set-up: options, prepared data, seeded problem."""
    opts = FitOptions.from_kwargs(progress=False, **options)
    n_traj = data.sizes.get("trajectory", 1)
    bundle = prepare(model, data, time_unit=opts.time_unit,
                     n_fitted=len(model.parameters) + n_traj * len(model.states))
    torch.manual_seed(opts.seed)
    return build_problem(model, bundle, opts), opts


def _step(problem, opts) -> float:
    """One training step (zeroed gradients, loss, backward) as Adam takes it."""
    problem.zero_grad(set_to_none=True)
    loss, _ = problem.loss(opts.penalty_levels()[0], opts.weight_decay)
    loss.backward()
    return float(loss.detach())


def trajectory_scaling(quick: bool = False) -> list[dict]:
    """Time and nfe of one training step vs the number of trajectories (100 samples each)."""
    counts = (1, 10, 100) if quick else (1, 10, 100, 1000)
    steps = 2 if quick else 3
    rows, base = [], {}
    for n in counts:
        start = time.perf_counter()
        data = sysid.datasets.simulate("lotka_volterra", n_trajectories=n, t_end=9.9, dt=0.1,
                                       noise=0.05, seed=0)
        sim_s = time.perf_counter() - start
        assert data.sizes["time"] == 100, dict(data.sizes)
        model = _lv_model()
        start = time.perf_counter()
        problem, opts = _setup(model, data)
        setup_s = time.perf_counter() - start
        for mode in ("multiple", "single"):
            problem.use_windows(mode == "multiple")
            seg = problem.windows if problem.active else problem.single
            _step(problem, opts)                           # warm-up
            times, walls, nfes = [], [], []
            for _ in range(steps):
                nfe0 = problem.field.nfe
                start, wall = _clock(), time.perf_counter()
                _step(problem, opts)
                times.append(_clock() - start)
                walls.append(time.perf_counter() - wall)
                nfes.append(problem.field.nfe - nfe0)
            step_s = min(times)
            base.setdefault(mode, (step_s, statistics.median(nfes)))
            rows.append({
                "N": n, "what": f"step, {mode} shooting",
                "segments": int(seg.tau.shape[0]), "samples/segment": int(seg.tau.shape[1]),
                "nfe/step": int(statistics.median(nfes)), "CPU s": step_s,
                "wall s": min(walls),
                "per trajectory ms": 1e3 * step_s / n,
                "x N=1": step_s / base[mode][0],
                "(x N=1)/N": step_s / base[mode][0] / n,
                "simulate s": sim_s, "prepare+build s": setup_s,
            })
        if n == counts[0]:                    # first-call costs (lazy imports) untimed
            sysid.fit(_lv_model(), data, epochs=1, lbfgs_iterations=0, polish_iterations=0,
                      progress=False, seed=0)
        start, wall = _clock(), time.perf_counter()
        result = sysid.fit(_lv_model(), data, epochs=5, lbfgs_iterations=0,
                           polish_iterations=0, progress=False, seed=0)
        cpu, wall = _clock() - start, time.perf_counter() - wall
        base.setdefault("fit", cpu)
        rows.append({
            "N": n, "what": "sysid.fit: 5 Adam epochs + single-shooting pass",
            "nfe (total)": int(result.stats["function_evaluations"]), "CPU s": cpu,
            "wall s": wall, "per trajectory ms": 1e3 * cpu / n, "x N=1": cpu / base["fit"],
            "(x N=1)/N": cpu / base["fit"] / n, "status": result.status.code,
        })
        del problem, data
        gc.collect()
    return rows


# ---------------------------------------------------------------- 3. adjoint memory
def _pendulum_model():
    th, om = sp.symbols("theta omega")
    w0, al = sp.symbols("omega0 alpha", positive=True)
    return sysid.HybridODE(states=[th, om],
                           physics={th: om, om: -w0 ** 2 * sp.sin(th) - al * om},
                           parameters={w0: 1.5, al: 0.1}, residual=sysid.MLP(16, 2))


def _adjoint_child(n_samples: int, adjoint: bool, dt: float) -> dict:
    """Runs in a fresh process: warm up on a short series, set up, then one measured
    loss + backward; its memory is the growth of the peak RSS over the RSS before the
    step (peak reset there), or over the set-up's peak where a reset is impossible."""
    def data_for(k):
        return sysid.datasets.simulate("pendulum", t_end=dt * (k - 1), dt=dt, noise=0.05,
                                       seed=0)

    warm, wopts = _setup(_pendulum_model(), data_for(20), shooting="single", adjoint=adjoint)
    _step(warm, wopts)                      # autograd engine, allocator, lazy imports
    del warm
    data = data_for(n_samples)
    assert data.sizes["time"] == n_samples
    problem, opts = _setup(_pendulum_model(), data, shooting="single", adjoint=adjoint)
    gc.collect()
    reset = reset_peak()           # the step's peak, not the set-up's (when possible)
    current, peak = memory_mb()
    baseline = current if reset else peak
    nfe0 = problem.field.nfe
    start, wall = _clock(), time.perf_counter()
    error, loss, forward_s, nfe_forward = None, float("nan"), float("nan"), 0
    try:                                    # _step, split into its forward and backward
        problem.zero_grad(set_to_none=True)
        value, _ = problem.loss(opts.penalty_levels()[0], opts.weight_decay)
        forward_s, nfe_forward = _clock() - start, problem.field.nfe - nfe0
        value.backward()
        loss = float(value.detach())
    except Exception as err:                # report, do not hide
        error = f"{type(err).__name__}: {err}"
    took, wall = _clock() - start, time.perf_counter() - wall
    peak = memory_mb()[1]
    grad = [] if error else torch.cat([p.grad.reshape(-1) for p in problem.parameters()
                                       if p.grad is not None]).tolist()
    return {"baseline_mb": baseline, "peak_mb": peak, "step_s": took, "wall_s": wall,
            "forward_s": forward_s, "loss": loss, "nfe_forward": nfe_forward,
            "nfe": problem.field.nfe - nfe0, "grad": grad, "error": error,
            "peak_reset": reset}


def _run_child(n_samples: int, adjoint: bool, dt: float, timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--adjoint-child",
           f"{n_samples},{int(adjoint)},{dt}"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        return {"error": f"exit {out.returncode}: {out.stderr.strip()[-500:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def adjoint_memory(quick: bool = False) -> list[dict]:
    """Peak RSS of one single-shooting loss + backward, adjoint vs direct backprop,
    for 200 and 2000 pendulum samples (quick: 50 and 500), same step dt = 0.1."""
    dt, sizes = 0.1, ((50, 500) if quick else (200, 2000))
    timeout = 300.0 if quick else 600.0
    results = {}
    for adjoint in (False, True):
        for n in sizes:
            results[adjoint, n] = _run_child(n, adjoint, dt, timeout)
    rows = []
    for adjoint in (False, True):
        small = results[adjoint, sizes[0]]
        for n in sizes:
            r = results[adjoint, n]
            direct = results[False, n]
            row = {"adjoint": adjoint, "samples": n}
            if r.get("error"):
                row["error"] = r["error"]
                rows.append(row)
                continue
            delta = r["peak_mb"] - r["baseline_mb"]
            row.update({"step MB": delta, "baseline MB": r["baseline_mb"],
                        "peak MB": r["peak_mb"], "CPU s": r["step_s"],
                        "forward CPU s": r["forward_s"], "wall s": r["wall_s"],
                        "nfe forward": r["nfe_forward"],
                        "nfe backward": r["nfe"] - r["nfe_forward"]})
            if n != sizes[0] and not small.get("error"):
                small_delta = small["peak_mb"] - small["baseline_mb"]
                row[f"MB growth vs {sizes[0]}"] = (delta / small_delta if small_delta > 0
                                                   else float("inf"))
                row[f"CPU growth vs {sizes[0]}"] = r["step_s"] / small["step_s"]
            if adjoint and not direct.get("error") and r["grad"]:
                row["CPU vs direct"] = r["step_s"] / direct["step_s"]
                g, g0 = np.array(r["grad"]), np.array(direct["grad"])
                row["grad rel. diff vs direct"] = float(np.linalg.norm(g - g0)
                                                        / max(np.linalg.norm(g0), 1e-300))
                row["loss diff vs direct"] = abs(r["loss"] - direct["loss"])
            if not r.get("peak_reset", True):
                row["note"] = "peak RSS not resettable: growth over the set-up's peak"
            rows.append(row)
    return rows


# --------------------------------------------------------------------- least squares
def _least_squares_cases(quick: bool):
    import sysid

    x, y = sp.symbols("x y")
    a, b, c, d = sp.symbols("a b c d", positive=True)
    lv = sysid.HybridODE(states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
                         parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
    yield ("Lotka-Volterra, 4 parameters, 31 points, 5 % noise", lv,
           sysid.datasets.simulate("lotka_volterra", noise=0.05, seed=1, t_end=3.0, dt=0.1))
    th, om = sp.symbols("theta omega")
    w0, al = sp.Symbol("omega0", positive=True), sp.Symbol("alpha")
    pend = sysid.HybridODE(states=[th, om], physics={th: om, om: -w0 ** 2 * sp.sin(th)
                                                     - al * om},
                           parameters={w0: 1.2, al: 0.1})
    n_traj = 3 if quick else 10
    yield (f"pendulum, angle only, {n_traj} trajectories of 20 s, 5 % noise", pend,
           sysid.datasets.simulate("pendulum", noise=0.05, observed=["theta"], irregular=True,
                                   n_trajectories=n_traj, dt=0.5, t_end=20.0, seed=0))


def least_squares(quick: bool = False) -> list[dict]:
    import sysid

    rows = []
    for label, model, data in _least_squares_cases(quick):
        row = {"case": label}
        results = {}
        for name, gn in (("LM", True), ("L-BFGS", False)):
            start = time.process_time()
            results[name] = sysid.fit(model, data, epochs=0, lbfgs_iterations=200,
                                      shooting="single", gauss_newton=gn, progress=False,
                                      throw=False)
            row[f"{name} cpu s"] = time.process_time() - start
        row["ratio L-BFGS / LM"] = row["L-BFGS cpu s"] / row["LM cpu s"]
        n = results["LM"]._problem.noise.total
        row["objective LM - L-BFGS"] = (results["LM"].stats["loss"]
                                        - results["L-BFGS"].stats["loss"]) * n
        row["LM status"] = results["LM"].status.code
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ main
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    parser.add_argument("--only", default="field,peer,evaluations,physics,scaling,adjoint,"
                        "least_squares", help="comma-separated subset of field, peer, "
                        "evaluations, physics, scaling, adjoint, least_squares")
    parser.add_argument("--adjoint-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.adjoint_child:
        n, adj, dt = args.adjoint_child.split(",")
        print(json.dumps(_adjoint_child(int(n), bool(int(adj)), float(dt))))
        return
    sections = {
        "field": ("One vector-field evaluation + vector-Jacobian product, UDE Lotka-Volterra "
                  "field with sysid.MLP()'s default network (2 x 32 tanh): sysid eager "
                  "PyTorch and native C vs jitted JAX (best of 5 repeats)", peer.field_evaluation),
        "peer": ("UDE Lotka-Volterra (BENCHMARKS.md section 1, 5 % noise): sysid vs the "
                 "diffrax + equinox + optax recipe vs the plain torchdiffeq recipe, wall time "
                 "including compilation", peer.peer_fits),
        "evaluations": ("Where the README demo's fit spends its field evaluations and "
                        "time, per training phase (lynx-hare, MLP residual, log-normal noise)",
                        evaluations.demo_phases),
        "physics": ("Compiled physics vs hand-written torch (min time per call; ratio = "
                    "compiled / hand-written, target <= ~1)", physics_ratio),
        "scaling": ("Cost vs number of Lotka-Volterra trajectories (100 samples each, "
                    "MLP(16, 2) residual)", trajectory_scaling),
        "adjoint": ("Peak memory of one single-shooting loss + backward, one pendulum "
                    "series, dt = 0.1, MLP(16, 2) residual (fresh process each; step MB = "
                    "peak RSS growth during the step; nfe backward = right-hand-side calls "
                    "during backward, 0 for direct backpropagation, which replays the "
                    "recorded graph)", adjoint_memory),
        "least_squares": ("Models without a network: Levenberg-Marquardt vs L-BFGS, single "
                          "shooting, same start (CPU time)", least_squares),
    }
    total = time.perf_counter()
    print(f"# sysid speed ({'quick' if args.quick else 'full'}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread, float64, device cpu, "
          f"{os.cpu_count()} cores\n")
    for key in [k.strip() for k in args.only.split(",") if k.strip()]:
        title, fn = sections[key]
        start = time.perf_counter()
        rows = fn(args.quick)
        print(f"## {title}\n\n{markdown(rows)}\n\n({key}: {time.perf_counter() - start:.1f} s)\n",
              flush=True)
    print(f"Total wall time: {time.perf_counter() - total:.1f} s")


if __name__ == "__main__":
    main()
