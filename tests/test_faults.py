"""Faults during training (issue 8, part 3).

Each fault is injected into a real fit and the documented outcome is asserted:

* the fit ends with a status that says why and what to try (``result.status``, or a
  :class:`sysid.errors.FitError` carrying the result as ``err.result``), never with a raw
  exception from the solver or torch;
* the parameters kept are the best evaluated before the fault: finite, the training
  loss recomputed at them equals the lowest one recorded, and below the start's;
* a checkpoint stays intact and resuming from it gives the result of an uninterrupted
  fit with the same seed, bit for bit (``torch.equal`` on every trained tensor: the
  resumed run takes exactly the same floating-point steps, so no tolerance is needed).

Faults: (a) a network that turns NaN mid-training, (b) the solver's step limit
(``max_steps``), (c) a stiff model at a tight tolerance and a finite-time blow-up
(step-size underflow), (d) Ctrl-C (KeyboardInterrupt) inside a loss evaluation, a solve
and a checkpoint write, and a crash right after a checkpoint write, (e) a full disk
(ENOSPC) when a checkpoint is written, (f) damaged and truncated checkpoints given to
``resume=``; and solver failures at the points that used to let a raw ``SolverFailure``
(or torchdiffeq's ``AssertionError`` from an adjoint backward solve) escape
:func:`sysid.fit`.

``pytest -m slow -s`` sweeps every injection point and prints the counts (faults
injected, checks, results lost).
"""

from __future__ import annotations

import collections
import errno
import hashlib
import io
import os

import numpy as np
import pytest
import sympy as sp
import torch
import xarray as xr

import sysid
import sysid.solve.integrate as integrate_module
import sysid.training.levenberg_marquardt as lm_module
import sysid.problem.problem as problem_module
import sysid.model.residual as residual_module
import sysid.training.checkpoints as checkpoint_module
import sysid.training.trainer as train_module
from sysid.data.bundle import prepare
from sysid.problem.options import FitOptions
from sysid.problem.problem import build_problem
from sysid.errors import FileFormatError, FitError, FitWarning, SolverError, SysidError

x, y = sp.symbols("x y")
a, b, c, d = sp.symbols("a b c d", positive=True)
COUNTS: collections.Counter = collections.Counter()

# 17 samples over 4 time units: four shooting windows, so every phase runs
DATA = sysid.datasets.simulate("lotka_volterra", noise=0.05, t_end=4.0, dt=0.25, seed=0)
PHYSICS = dict(progress=False, epochs=20, lbfgs_iterations=40, polish_iterations=5)
# loose tolerances: the fault handling, not the accuracy, is under test (2.5 s, not 7.5 s)
HYBRID = dict(progress=False, epochs=6, lbfgs_iterations=3, polish_iterations=2, rtol=1e-4,
              atol=1e-6)


def lotka_volterra(residual=None):
    return sysid.HybridODE(states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
                           parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0}, residual=residual)


def hybrid():
    return lotka_volterra(sysid.MLP(4, 1))


def state_key(problem) -> str:
    """Digest of every trained tensor of a problem (parameters, states, network)."""
    flat = torch.cat([p.detach().reshape(-1) for p in problem.parameters()])
    return hashlib.sha256(flat.numpy().tobytes()).hexdigest()


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def assert_same_fit(result, reference):
    """Bit-identical trained tensors, parameters, history length and status."""
    ref, new = reference._problem.state_dict(), result._problem.state_dict()
    assert ref.keys() == new.keys()
    for key in ref:
        assert torch.equal(ref[key], new[key]), key
    assert result.parameters == reference.parameters
    assert result.history.sizes["epoch"] == reference.history.sizes["epoch"]
    np.testing.assert_array_equal(result.history["loss"].values, reference.history["loss"].values)
    assert result.status.code == reference.status.code
    COUNTS["checks"] += 1


def assert_best_kept(result, model, data, phase="adam", **options):
    """The kept state is the best one evaluated in ``phase`` before the fault: finite, its
    loss (recomputed) is the lowest recorded there, and below that of the start."""
    hist = result.history
    losses = hist["loss"].values[hist["phase"].values == phase]
    assert len(losses) >= 2 and np.all(np.isfinite(losses))
    assert all(np.isfinite(v) for v in result.parameters.values())
    problem = result._problem
    assert all(torch.isfinite(p).all() for p in problem.parameters())
    penalty = FitOptions(**options).penalty_levels()[0]
    weight_decay = result.options.weight_decay
    with torch.no_grad():
        again = float(problem.loss(penalty, weight_decay)[0])
        start = build_problem(model, prepare(model, data), FitOptions(**options))
        start.use_windows(problem.active)
        first = float(start.loss(penalty, weight_decay)[0])
    assert again == pytest.approx(float(losses.min()), rel=1e-12, abs=1e-12)
    assert first == pytest.approx(float(losses[0]), rel=1e-12, abs=1e-12)   # row 0: the start
    assert again < first
    assert all(np.isfinite(v) for v in result.noise_std.values())
    COUNTS["checks"] += 1


# == (a) a network that turns NaN mid-training ==============================================

class NanNetwork:
    """From the ``start``-th loss evaluation on (for ``length`` evaluations, default for
    ever) the residual network returns NaN at every parameter state not evaluated before
    ``start``: the network "goes bad" wherever training moves it next, while the states it
    visited before stay finite (as they would for a real network whose weights drift into
    a region where it overflows)."""

    def __init__(self, monkeypatch, start: int, length: int | None = None):
        self.start, self.stop = start, None if length is None else start + length
        self.calls, self.seen, self.active, self.hits = 0, set(), False, 0
        loss, forward = problem_module.Problem.loss, residual_module.ResidualNet.forward
        poison = self

        def counting_loss(problem, *args, **kwargs):
            poison.calls += 1
            key = state_key(problem)
            if poison.calls < poison.start:
                poison.seen.add(key)
                poison.active = False
            else:
                live = poison.stop is None or poison.calls < poison.stop
                poison.active = live and key not in poison.seen
                poison.hits += poison.active
            return loss(problem, *args, **kwargs)

        def nan_forward(net, xu):
            out = forward(net, xu)
            return out * float("nan") if poison.active else out

        monkeypatch.setattr(problem_module.Problem, "loss", counting_loss)
        monkeypatch.setattr(residual_module.ResidualNet, "forward", nan_forward)


# The NaN network is injected into the PyTorch module's forward, so these fits run the
# PyTorch solver (compiled=False); test_native checks that a NaN network fails the same way
# ("not finite") on the native path, which is all the trainer sees of it.
EAGER = dict(compiled=False)


def test_a_network_that_turns_nan_in_adam_ends_diverged_with_the_best_state(monkeypatch):
    options = dict(progress=False, epochs=30, lbfgs_iterations=0, **EAGER)
    poison = NanNetwork(monkeypatch, start=8)
    # by default a failed fit returns its best result, with a FitWarning that says why
    with pytest.warns(FitWarning, match="best parameters found") as said:
        result = sysid.fit(hybrid(), DATA, **options)
    monkeypatch.undo()
    COUNTS["faults"] += poison.hits
    assert result.status.code == "diverged"
    assert not result.status.success
    assert "not finite" in result.status.detail
    assert "smaller lr" in result.status.advice and "smaller lr" in str(said[0].message)
    with pytest.raises(FitError, match="diverged") as caught:
        result.raise_for_status()
    assert caught.value.result is result
    # Adam tried four times (restarting its moments at 0.3x the rate), then stopped
    assert poison.hits == 4
    assert result.stats["epochs"] == 7 + 3         # 7 steps before the fault, 3 retries
    assert state_key(result._problem) in poison.seen
    assert_best_kept(result, hybrid(), DATA, **options)


def test_a_network_that_is_nan_for_a_while_is_recovered_from(monkeypatch):
    options = dict(progress=False, epochs=16, lbfgs_iterations=0, polish_iterations=0, **EAGER)
    poison = NanNetwork(monkeypatch, start=6, length=2)
    result = sysid.fit(hybrid(), DATA, **options)
    monkeypatch.undo()
    COUNTS["faults"] += poison.hits
    assert poison.hits == 1                # the first retry, at 0.3x the rate, is finite
    assert result.status.code == "converged"           # through to the final pass
    hist = result.history["loss"].values
    assert len(hist) == 15                 # 16 epochs, one of them lost to the fault
    assert hist.min() < 0.9 * hist[:5].min()           # training went on improving
    assert all(np.isfinite(v) for v in result.parameters.values())
    assert all(np.isfinite(v) for v in result.noise_std.values())
    COUNTS["checks"] += 1


def test_a_network_that_turns_nan_in_lbfgs_ends_diverged_with_the_state_before(monkeypatch):
    """L-BFGS backs off from NaN trial points of its line search; when every trial point
    fails, the line search ends where it started and the phase used to report
    "converged" (the whole fit did, with the network NaN wherever it was tried). It is
    now "diverged", with the state before the fault kept."""
    poison = NanNetwork(monkeypatch, start=HYBRID["epochs"] + 2)
    with pytest.raises(FitError, match="diverged") as caught:
        sysid.fit(hybrid(), DATA, **HYBRID, **EAGER, throw=True)
    monkeypatch.undo()
    COUNTS["faults"] += poison.hits
    result = caught.value.result
    assert poison.hits >= 1
    assert result.status.code == "diverged" and "smaller lr" in result.status.advice
    assert result.status.detail.startswith("lbfgs, at every trial point of the line search")
    assert "not finite" in result.status.detail
    hist = result.history
    adam = hist["loss"].values[hist["phase"].values == "adam"]
    lbfgs = hist["loss"].values[hist["phase"].values == "lbfgs"]
    assert lbfgs.size == 0            # its first step failed: nothing recorded
    # the kept state was evaluated before the fault, and its predictions are finite
    assert state_key(result._problem) in poison.seen
    assert result.stats["loss"] == adam.min()
    imputed = result.impute()
    assert np.all(np.isfinite(imputed["x"].values)) and np.all(np.isfinite(imputed["y"].values))
    COUNTS["checks"] += 1


# == (b) the solver's step limit ===========================================================

def oscillator_case():
    th, om = sp.symbols("theta omega")
    w = sp.Symbol("w", positive=True)
    model = sysid.HybridODE(states=[th, om], physics={th: om, om: -w ** 2 * th},
                            parameters={w: 1.0})
    t = np.linspace(0.0, 10.0, 21)
    noise = 0.02 * np.random.default_rng(0).standard_normal(t.size)
    data = xr.Dataset({"theta": ("time", np.cos(3.0 * t) + noise)}, coords={"time": t})
    return model, data


def failure_kind(err) -> str:
    text = str(err)
    for kind in ("not finite", "underflow", "max_num_steps"):
        if kind in text:
            return kind
    return text


class SolverSpy:
    """Counts the solver failures (by message) that a fit meets, without changing them."""

    def __init__(self, monkeypatch):
        self.failures: collections.Counter = collections.Counter()
        solve = integrate_module.solve_intervals
        spy = self

        def spying(*args, **kwargs):
            try:
                return solve(*args, **kwargs)
            except SolverError as err:
                spy.failures[failure_kind(err)] += 1
                raise
        monkeypatch.setattr(integrate_module, "solve_intervals", spying)


def test_reaching_max_steps_mid_training_ends_solver_failed_with_the_best_state(monkeypatch):
    # the data oscillate at w = 3; from w = 1 each Adam step needs more solver steps, and
    # at max_steps=40 the solve fails once w passes about 1.05
    model, data = oscillator_case()
    options = dict(progress=False, max_steps=40, shooting="single", epochs=40,
                   lbfgs_iterations=20)
    spy = SolverSpy(monkeypatch)
    with pytest.raises(FitError, match="max_num_steps exceeded") as caught:
        sysid.fit(model, data, **options, throw=True)
    COUNTS["faults"] += sum(spy.failures.values())
    assert spy.failures == {"max_num_steps": 4}
    result = caught.value.result
    assert result.status.code == "solver_failed"
    assert "max_steps" in result.status.detail and "larger max_steps" in result.status.advice
    assert 1.0 < result.parameters["w"] < 1.1          # moved towards 3, then stopped
    assert_best_kept(result, model, data, **options)
    # the kept state can be integrated within the same limit
    assert np.all(np.isfinite(result.impute()["theta"].values))


# == (c) stiffness and step-size underflow =================================================

def test_a_stiff_model_at_a_tight_tolerance_fails_with_advice_and_keeps_the_start(monkeypatch):
    # dx/dt = -k (x - cos t) with k = 2000: an explicit solver needs about 3 / k time units
    # per step (stability, whatever the tolerance), far beyond max_steps=100 over 1 unit
    k = sp.Symbol("k", positive=True)
    t = sp.Symbol("t", real=True)
    model = sysid.HybridODE(states=[x], physics={x: -k * (x - sp.cos(t))}, parameters={k: 2e3})
    times = np.linspace(0.0, 1.0, 9)
    data = xr.Dataset({"x": ("time", np.cos(times))}, coords={"time": times})
    spy = SolverSpy(monkeypatch)
    result = sysid.fit(model, data, progress=False, throw=False, rtol=1e-10, atol=1e-12,
                       max_steps=100)
    COUNTS["faults"] += sum(spy.failures.values())
    assert spy.failures["max_num_steps"] >= 1
    assert result.status.code == "solver_failed"
    assert "max_num_steps exceeded" in result.status.detail
    advice = result.status.advice
    assert "max_steps" in advice and "rtol/atol" in advice
    assert result.parameters["k"] == pytest.approx(2e3, rel=1e-12)   # the start: all it has
    COUNTS["checks"] += 1


def blow_up_case():
    # dx/dt = k x^2 from x = 1 reaches infinity at t = 1/k: data from k = 0.5 on [0, 1.8]
    k = sp.Symbol("k", positive=True)
    model = sysid.HybridODE(states=[x], physics={x: k * x ** 2}, parameters={k: 0.2})
    t = np.linspace(0.0, 1.8, 10)
    noise = 1 + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    data = xr.Dataset({"x": ("time", noise / (1 - 0.5 * t))}, coords={"time": t})
    return model, data


def test_steps_into_a_finite_time_blow_up_are_backed_off_from(monkeypatch):
    # Levenberg-Marquardt's first steps overshoot k past 0.56, where the solution blows up
    # inside the data's span (step-size underflow); it backs off and converges to k = 0.5
    model, data = blow_up_case()
    spy = SolverSpy(monkeypatch)
    result = sysid.fit(model, data, progress=False, shooting="single", epochs=0)
    COUNTS["faults"] += sum(spy.failures.values())
    assert spy.failures["underflow"] >= 1
    assert result.status.success and result.status.code == "converged"
    assert result.parameters["k"] == pytest.approx(0.5, rel=0.02)
    COUNTS["checks"] += 1


def test_a_model_that_blows_up_fails_with_a_sysid_error_outside_fit():
    # the result of a failed fit is still usable; integrating it where it blows up raises
    # a documented SysidError with advice, not an internal exception
    model, data = blow_up_case()
    result = sysid.fit(model, data, progress=False, throw=False, epochs=0, lbfgs_iterations=0)
    assert issubclass(integrate_module.SolverFailure, SolverError)
    assert issubclass(SolverError, SysidError) and issubclass(SolverError, RuntimeError)
    assert "max_steps" in SolverError.__doc__ and "rtol" in SolverError.__doc__
    with pytest.raises(SolverError, match="underflow in dt|not finite|max_num_steps"):
        result.forecast(np.linspace(1.7, 6.0, 5))      # blows up at t = 1/0.2 = 5
    COUNTS["faults"] += 1
    COUNTS["checks"] += 1


# == solver failures where a phase re-scores its start (used to escape as SolverFailure) ===

@pytest.mark.parametrize("model, phase", [(lotka_volterra, "tighten"), (hybrid, "trim")])
def test_a_solver_failure_when_a_phase_starts_is_a_status(monkeypatch, model, phase):
    """The tighten and trim phases re-score the best state before they start; a solver
    failure there escaped sysid.fit as a raw SolverFailure (not a SysidError)."""
    solve, method = integrate_module.solve_intervals, train_module._Trainer._new_objective
    armed = {"on": False, "hits": 0}

    def new_objective(self):
        armed["on"] = self.phase == phase
        try:
            return method(self)
        finally:
            armed["on"] = False

    def failing(*args, **kwargs):
        if armed["on"]:
            armed["hits"] += 1
            raise kwargs["failure"]("max_num_steps exceeded (injected)")
        return solve(*args, **kwargs)

    monkeypatch.setattr(train_module._Trainer, "_new_objective", new_objective)
    monkeypatch.setattr(integrate_module, "solve_intervals", failing)
    options = PHYSICS if model is lotka_volterra else HYBRID
    with pytest.raises(FitError, match=f"solver_failed.*{phase}: max_num_steps") as caught:
        sysid.fit(model(), DATA, **options, throw=True)
    COUNTS["faults"] += armed["hits"]
    result = caught.value.result
    assert armed["hits"] == 1
    assert result.status.code == "solver_failed" and "max_steps" in result.status.advice
    phases = set(result.history["phase"].values)
    assert phase not in phases and "adam" in phases and "lbfgs" in phases
    # the kept state is the best of the phases before: finite, and better than the start
    assert all(np.isfinite(v) for v in result.parameters.values())
    assert result.stats["loss"] < float(result.history["loss"][0])
    COUNTS["checks"] += 1


def test_an_adjoint_backward_solve_that_fails_is_a_status_not_an_assertion():
    """With adjoint=True the gradient integrates backwards in time; torchdiffeq signals
    its step limit there with an AssertionError, which escaped sysid.fit. At
    max_steps=16 the forward solve of these 6 samples fits, the backward one does not
    (measured: forward failures up to max_steps=14, backward ones from 16 to 24)."""
    data = sysid.datasets.simulate("lotka_volterra", noise=0.05, t_end=10.0, dt=2.0, seed=0)
    with pytest.raises(FitError, match="adjoint") as caught:
        sysid.fit(lotka_volterra(), data, progress=False, adjoint=True, max_steps=16,
                  shooting="single", epochs=60, throw=True)    # Adam's gradients (none by default here)
    COUNTS["faults"] += 4
    result = caught.value.result
    assert result.status.code == "solver_failed"
    assert "adjoint (backward) solve: max_num_steps exceeded" in result.status.detail
    assert "larger max_steps" in result.status.advice
    assert result.parameters == {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}   # the start
    assert result.history.sizes["epoch"] == 0         # no gradient was ever computed
    COUNTS["checks"] += 1


# == (d) interrupts: Ctrl-C inside a loss evaluation, a solve, a checkpoint write ==========

@pytest.fixture(scope="module")
def physics_reference():
    """An uninterrupted fit without a network (Adam, then Levenberg-Marquardt phases)."""
    return sysid.fit(lotka_volterra(), DATA, **PHYSICS)


@pytest.fixture(scope="module")
def hybrid_reference():
    """An uninterrupted hybrid fit (Adam, L-BFGS, tighten, trim, polish)."""
    return sysid.fit(hybrid(), DATA, **HYBRID)


class Interrupt:
    """Ctrl-C at the ``nth`` call of ``where`` once phase ``phase`` runs: "loss" (a loss
    evaluation, e.g. inside an L-BFGS line search), "solve" (a solve of the segments,
    on either solver: the native one cannot be stopped inside its C loop, so Ctrl-C there
    lands as it returns) or "jacobian" (a Levenberg-Marquardt point: objective and
    Jacobian)."""

    def __init__(self, monkeypatch, phase: str, nth: int, where: str = "loss"):
        self.phase, self.nth, self.calls, self.current, self.fired = phase, nth, 0, "", False
        run_phase = train_module._Trainer._phase
        target = {"loss": (problem_module.Problem, "loss"),
                  "solve": (integrate_module, "solve_intervals"),
                  "jacobian": (lm_module, "linearise")}[where]
        method = getattr(*target)
        interrupt = self

        def tracking(trainer, name, body):
            interrupt.current = name
            return run_phase(trainer, name, body)

        def interrupting(obj, *args, **kwargs):
            if interrupt.current == interrupt.phase and not interrupt.fired:
                interrupt.calls += 1
                if interrupt.calls == interrupt.nth:
                    interrupt.fired = True
                    raise KeyboardInterrupt
            return method(obj, *args, **kwargs)

        monkeypatch.setattr(train_module._Trainer, "_phase", tracking)
        monkeypatch.setattr(*target, interrupting)


def interrupted_then_resumed(monkeypatch, tmp_path, model, options, phase, nth, where="loss",
                             every=0):
    path = tmp_path / "fit.ckpt"
    interrupt = Interrupt(monkeypatch, phase, nth, where)
    stopped = sysid.fit(model, DATA, checkpoint=path, checkpoint_every=every, **options)
    monkeypatch.undo()
    assert interrupt.fired
    COUNTS["faults"] += 1
    assert stopped.status.code == "interrupted" and stopped.status.success
    assert f"resume={str(path)!r}" in stopped.status.message
    assert all(np.isfinite(v) for v in stopped.parameters.values())
    assert not path.with_name(path.name + ".tmp").exists()
    checkpoint_module.read_checkpoint(path)                  # whole and readable
    return stopped, sysid.fit(model, DATA, resume=path, **options)


@pytest.mark.parametrize("phase, nth, where", [("lbfgs", 3, "loss"), ("trim", 4, "solve")])
def test_an_interrupted_hybrid_fit_resumes_to_the_same_result_bit_for_bit(
        monkeypatch, tmp_path, hybrid_reference, phase, nth, where):
    stopped, resumed = interrupted_then_resumed(monkeypatch, tmp_path, hybrid(), HYBRID,
                                                phase, nth, where)
    assert stopped.history.sizes["epoch"] < hybrid_reference.history.sizes["epoch"]
    assert_same_fit(resumed, hybrid_reference)
    assert resumed.stats["function_evaluations"] == hybrid_reference.stats["function_evaluations"]


def test_resuming_from_a_phase_end_checkpoint_also_gives_the_same_result(
        monkeypatch, tmp_path, physics_reference):
    # checkpoint_every=3600: only the first write and the phases' ends; the interrupt in
    # the polish (Levenberg-Marquardt's second point: its first trial step) throws away
    # the steps since, and the resumed fit takes them again
    _, resumed = interrupted_then_resumed(monkeypatch, tmp_path, lotka_volterra(), PHYSICS,
                                          "polish", 2, "jacobian", every=3600)
    assert_same_fit(resumed, physics_reference)


class Disk:
    """torch.save as the checkpoint writer uses it, onto a disk that fails: writes to a
    file (not to an in-memory buffer) number ``fail`` (an int, or a container of them)
    write half their bytes and raise ``error``. Records each complete file's digest."""

    def __init__(self, monkeypatch, fail, error):
        self.fail = fail if hasattr(fail, "__contains__") else (fail,)
        self.error, self.writes, self.complete, self.files = error, 0, [], []
        save = torch.save
        disk = self

        def saving(obj, f, *args, **kwargs):
            if isinstance(f, io.BytesIO):
                return save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            save(obj, buffer, *args, **kwargs)
            raw = buffer.getvalue()
            disk.writes += 1
            if disk.writes in disk.fail:
                f.write(raw[:len(raw) // 2])
                raise disk.error
            f.write(raw)
            disk.complete.append(hashlib.sha256(raw).hexdigest())
            disk.files.append(raw)

        monkeypatch.setattr(torch, "save", saving)


def test_an_interrupt_during_a_checkpoint_write_keeps_the_previous_one(
        monkeypatch, tmp_path, physics_reference):
    path = tmp_path / "fit.ckpt"
    disk = Disk(monkeypatch, 12, KeyboardInterrupt())
    stopped = sysid.fit(lotka_volterra(), DATA, checkpoint=path, checkpoint_every=0, **PHYSICS)
    monkeypatch.undo()
    COUNTS["faults"] += 1
    assert disk.writes == 12 and stopped.status.code == "interrupted"
    assert sha256(path) == disk.complete[-1]          # write 11, whole
    assert not path.with_name(path.name + ".tmp").exists()
    assert_same_fit(sysid.fit(lotka_volterra(), DATA, resume=path, **PHYSICS), physics_reference)


def resumes_from_each(raws, tmp_path, reference, model, options) -> int:
    """Resume from each checkpoint (bytes) as if the fit had crashed right after
    writing it; every resumed fit must equal ``reference`` bit for bit."""
    for i, raw in enumerate(raws):
        path = tmp_path / f"crash_{i}.ckpt"
        path.write_bytes(raw)
        resumed = outcome(lambda: sysid.fit(model(), DATA, resume=path, **options))
        same = all(torch.equal(v, resumed._problem.state_dict()[k])
                   for k, v in reference._problem.state_dict().items())
        COUNTS["faults"] += 1
        COUNTS["lost"] += not same
        assert_same_fit(resumed, reference)
    return len(raws)


def test_a_crash_after_any_checkpoint_of_the_least_squares_phases_resumes_exactly(
        monkeypatch, tmp_path, physics_reference):
    """Found by the full-disk sweep: a checkpoint written after an accepted
    Levenberg-Marquardt step (then a crash, or a failed write at the phase's end)
    resumed to a fit that took one step more (33 history rows instead of 32, parameters
    off by up to 1e-6): the step's gain, from which Levenberg-Marquardt decides that it
    has converged, was not in the checkpoint."""
    disk = Disk(monkeypatch, (), None)
    sysid.fit(lotka_volterra(), DATA, checkpoint=tmp_path / "fit.ckpt", checkpoint_every=0,
              **PHYSICS)
    monkeypatch.undo()
    late = [raw for raw in disk.files       # written once Adam had finished
            if "adam" in checkpoint_module.read_checkpoint(io.BytesIO(raw))["done"]]
    assert resumes_from_each(late, tmp_path, physics_reference, lotka_volterra, PHYSICS) >= 4


# == (e) a full disk when a checkpoint is written ==========================================

@pytest.mark.parametrize("fail", [
    pytest.param(range(5, 10**6), id="full_from_write_5"),
    pytest.param([5], id="write_5", marks=pytest.mark.slow)])
def test_a_full_disk_warns_training_goes_on_and_the_last_checkpoint_is_intact(
        monkeypatch, tmp_path, physics_reference, fail):
    path = tmp_path / "fit.ckpt"
    disk = Disk(monkeypatch, fail, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.warns(RuntimeWarning, match=r"could not be written .*No space left on device"
                                            r".*the previous one, if any, is intact"):
        result = sysid.fit(lotka_volterra(), DATA, checkpoint=path, checkpoint_every=0,
                           **PHYSICS)
    monkeypatch.undo()
    failed = disk.writes - len(disk.complete)
    COUNTS["faults"] += failed
    assert failed == (disk.writes - 4 if len(fail) > 1 else 1) and disk.writes > 10
    assert_same_fit(result, physics_reference)         # training was not disturbed
    assert sha256(path) == disk.complete[-1]          # the last whole write, intact
    assert not path.with_name(path.name + ".tmp").exists()
    assert_same_fit(sysid.fit(lotka_volterra(), DATA, resume=path, **PHYSICS), physics_reference)


def test_an_unwritable_checkpoint_path_warns_and_training_goes_on(tmp_path,
                                                                   physics_reference):
    # a path under a regular file: unwritable even for root (permissions are not)
    (tmp_path / "a_file").write_text("not a folder")
    path = tmp_path / "a_file" / "fit.ckpt"
    with pytest.warns(RuntimeWarning, match=r"could not be written .*Not a directory"):
        result = sysid.fit(lotka_volterra(), DATA, checkpoint=path, checkpoint_every=0,
                           **PHYSICS)
    COUNTS["faults"] += 1
    assert_same_fit(result, physics_reference)
    assert (tmp_path / "a_file").read_text() == "not a folder"


# == (f) damaged checkpoints given to resume= ==============================================

@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    """A checkpoint of a fit interrupted in its L-BFGS (Levenberg-Marquardt) phase."""
    path = tmp_path_factory.mktemp("ckpt") / "fit.ckpt"
    mp = pytest.MonkeyPatch()
    Interrupt(mp, "lbfgs", 3, "jacobian")
    stopped = sysid.fit(lotka_volterra(), DATA, checkpoint=path, checkpoint_every=0, **PHYSICS)
    mp.undo()
    assert stopped.status.code == "interrupted"
    return path.read_bytes()


def damaged(raw: bytes) -> dict[str, bytes]:
    body = raw.index(b"PK", len(raw) // 4)            # a stored file inside the zip
    flips = {f"flip_{i}": raw[:i] + bytes([raw[i] ^ 0x10]) + raw[i + 1:]
             for i in (100, len(raw) // 3, len(raw) // 2, 2 * len(raw) // 3, len(raw) - 30)}
    return {"empty": b"", "truncated_to_1k": raw[:1024], "half": raw[:len(raw) // 2],
            "last_byte_missing": raw[:-1], "zeroed_block": raw[:body] + bytes(512)
            + raw[body + 512:], "garbage": os.urandom(4096), **flips}


def test_damaged_checkpoints_are_refused_and_nothing_is_lost(tmp_path, checkpoint_bytes,
                                                              physics_reference):
    """Each damaged file is refused with a FileFormatError that names it and is left as
    it was, or, where the damage missed everything the checksum covers (a byte of the
    zip's own bookkeeping), resumes to exactly the uninterrupted result."""
    outcomes = collections.Counter()
    for name, raw in damaged(checkpoint_bytes).items():
        path = tmp_path / f"{name}.ckpt"
        path.write_bytes(raw)
        before = sha256(path)
        try:      # the same file as resume= and checkpoint=: it must not be overwritten
            result = sysid.fit(lotka_volterra(), DATA, resume=path, checkpoint=path, **PHYSICS)
        except FileFormatError as err:
            message = str(err)
            assert str(path) in message, name
            assert "damaged" in message or "not a sysid checkpoint" in message, name
            assert sha256(path) == before, name
            assert not path.with_name(path.name + ".tmp").exists(), name
            outcomes["refused"] += 1
        else:
            assert_same_fit(result, physics_reference)
            outcomes["intact_content"] += 1
    COUNTS["faults"] += sum(outcomes.values())
    COUNTS["lost"] += sum(outcomes.values()) - outcomes["refused"] - outcomes["intact_content"]
    assert outcomes["refused"] >= 10 and sum(outcomes.values()) == 11
    # the intact file still resumes to the uninterrupted result
    path = tmp_path / "intact.ckpt"
    path.write_bytes(checkpoint_bytes)
    assert_same_fit(sysid.fit(lotka_volterra(), DATA, resume=path, **PHYSICS), physics_reference)


def test_a_flipped_byte_inside_the_saved_tensors_is_caught_by_the_checksum(tmp_path,
                                                                          checkpoint_bytes):
    """torch.load reads most flipped bytes of tensor data without complaint (measured:
    217 of 255 single-byte flips of a small file loaded, with different values); before
    the checksum a damaged checkpoint resumed silently to a different fit."""
    outer = torch.load(io.BytesIO(checkpoint_bytes), weights_only=True)
    body = bytearray(outer["body"].numpy().tobytes())
    inner = torch.load(io.BytesIO(bytes(body)), weights_only=True)
    target = inner["problem"]["field.raw"]                       # the physical parameters
    position = bytes(body).index(target.numpy().tobytes())
    body[position + 3] ^= 0x01
    flipped = torch.load(io.BytesIO(bytes(body)), weights_only=True)   # loads silently...
    assert not torch.equal(flipped["problem"]["field.raw"], target)    # ...different values
    outer["body"] = torch.frombuffer(bytearray(body), dtype=torch.uint8)
    path = tmp_path / "flipped.ckpt"
    torch.save(outer, path)
    with pytest.raises(FileFormatError, match="is damaged: its contents do not match the "
                                              "checksum"):
        sysid.fit(lotka_volterra(), DATA, resume=path, **PHYSICS)
    COUNTS["faults"] += 1
    COUNTS["checks"] += 1


def test_an_unsealed_checkpoint_of_the_previous_format_still_resumes(tmp_path, checkpoint_bytes,
                                                                     physics_reference):
    outer = torch.load(io.BytesIO(checkpoint_bytes), weights_only=True)
    path = tmp_path / "v1.ckpt"
    path.write_bytes(outer["body"].numpy().tobytes())       # the payload, as version 1 wrote it
    assert_same_fit(sysid.fit(lotka_volterra(), DATA, resume=path, **PHYSICS), physics_reference)


def test_a_checkpoint_whose_entries_do_not_fit_is_a_file_format_error(tmp_path,
                                                                      checkpoint_bytes):
    """Edited (checksum recomputed) so that a tensor has the wrong shape: this raised
    torch's RuntimeError from load_state_dict."""
    outer = torch.load(io.BytesIO(checkpoint_bytes), weights_only=True)
    inner = torch.load(io.BytesIO(outer["body"].numpy().tobytes()), weights_only=True)
    inner["problem"]["z0"] = torch.zeros(7, 3, dtype=torch.float64)
    path = tmp_path / "edited.ckpt"
    torch.save(checkpoint_module._sealed(inner), path)
    with pytest.raises(FileFormatError, match=r"entries do not fit this fit \(RuntimeError: "
                                              r".*size mismatch for z0"):
        sysid.fit(lotka_volterra(), DATA, resume=path, **PHYSICS)
    COUNTS["faults"] += 1
    COUNTS["checks"] += 1


# == slow sweeps: every injection point ====================================================

def outcome(fit):
    """Run ``fit``; return its result (FitError: the attached result). Anything else
    escaping is a lost result."""
    try:
        return fit()
    except FitError as err:
        return err.result


def kept_is_sound(result) -> bool:
    return (isinstance(result.status.code, str) and bool(result.status.message)
            and all(np.isfinite(v) for v in result.parameters.values())
            and all(torch.isfinite(p).all() for p in result._problem.parameters()))


SWEEP_CASES = {
    "physics_lm": (lotka_volterra, dict(HYBRID, epochs=6)),
    "physics_lbfgs": (lotka_volterra, dict(HYBRID, epochs=6, gauss_newton=False)),
    "hybrid": (hybrid, HYBRID),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SWEEP_CASES))
@pytest.mark.parametrize("persistent", [False, True], ids=["once", "from_then_on"])
def test_a_solver_failure_at_every_solve_never_escapes(monkeypatch, case, persistent):
    model, options = SWEEP_CASES[case]
    solve = integrate_module.solve_intervals
    calls = {"n": 0, "fail": -1}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["fail"] or (persistent and 0 < calls["fail"] <= calls["n"]):
            raise kwargs["failure"]("max_num_steps exceeded (injected)")
        return solve(*args, **kwargs)

    monkeypatch.setattr(integrate_module, "solve_intervals", failing)
    sysid.fit(model(), DATA, **options)
    total = calls["n"]
    codes = collections.Counter()
    for n in range(1, total + 1):
        calls.update(n=0, fail=n)
        result = outcome(lambda: sysid.fit(model(), DATA, **options))
        COUNTS["faults"] += 1
        COUNTS["checks"] += 1
        if not kept_is_sound(result):
            COUNTS["lost"] += 1
        codes[result.status.code] += 1
        assert kept_is_sound(result), n
    print(f"\n[faults] solver failure {case} {'persistent' if persistent else 'once'}: "
          f"{total} injection points -> {dict(codes)}")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["loss", "solve"])
def test_an_interrupt_anywhere_resumes_to_the_same_result(monkeypatch, tmp_path, where):
    # 20 L-BFGS iterations: several steps per phase, so checkpoints in mid-phase too
    options = dict(HYBRID, lbfgs_iterations=20, polish_iterations=5)
    reference = sysid.fit(hybrid(), DATA, **options)
    for phase in ("adam", "lbfgs", "tighten", "trim", "polish"):
        for nth in (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233):
            path = tmp_path / f"{where}_{phase}_{nth}.ckpt"
            interrupt = Interrupt(monkeypatch, phase, nth, where)
            stopped = sysid.fit(hybrid(), DATA, checkpoint=path, checkpoint_every=0, **options)
            monkeypatch.undo()
            if not interrupt.fired:          # the phase had fewer calls
                break
            COUNTS["faults"] += 1
            assert stopped.status.code == "interrupted"
            if not path.exists():            # interrupted before the first write
                continue
            resumed = sysid.fit(hybrid(), DATA, resume=path, **options)
            same = all(torch.equal(v, resumed._problem.state_dict()[k])
                       for k, v in reference._problem.state_dict().items())
            COUNTS["lost"] += not same
            assert_same_fit(resumed, reference)


@pytest.mark.slow
def test_a_nan_network_from_any_loss_evaluation_on_keeps_a_finite_state(monkeypatch):
    mp = pytest.MonkeyPatch()
    counter = NanNetwork(mp, start=10**9)
    sysid.fit(hybrid(), DATA, **HYBRID)
    mp.undo()
    codes = collections.Counter()
    for start in range(2, counter.calls + 1):
        poison = NanNetwork(monkeypatch, start=start)
        result = outcome(lambda: sysid.fit(hybrid(), DATA, **HYBRID))
        monkeypatch.undo()
        COUNTS["faults"] += poison.hits
        COUNTS["checks"] += 1
        sound = kept_is_sound(result) and state_key(result._problem) in poison.seen
        COUNTS["lost"] += not sound
        codes[result.status.code] += 1
        assert sound, start
    print(f"\n[faults] NaN network from each of {counter.calls} loss evaluations on -> "
          f"{dict(codes)}")


@pytest.mark.slow
def test_a_full_disk_at_any_write_keeps_the_last_checkpoint(monkeypatch, tmp_path,
                                                            physics_reference):
    mp = pytest.MonkeyPatch()
    disk = Disk(mp, (), OSError(errno.ENOSPC, "No space left on device"))
    sysid.fit(lotka_volterra(), DATA, checkpoint=tmp_path / "count.ckpt", checkpoint_every=0,
              **PHYSICS)
    mp.undo()
    for first in range(2, disk.writes + 1):
        path = tmp_path / f"full_{first}.ckpt"
        full = Disk(monkeypatch, range(first, 10**6), OSError(errno.ENOSPC, "No space left"))
        with pytest.warns(RuntimeWarning, match="could not be written"):
            result = sysid.fit(lotka_volterra(), DATA, checkpoint=path, checkpoint_every=0,
                               **PHYSICS)
        monkeypatch.undo()
        COUNTS["faults"] += full.writes - len(full.complete)
        assert_same_fit(result, physics_reference)
        assert sha256(path) == full.complete[-1]
        resumed = sysid.fit(lotka_volterra(), DATA, resume=path, **PHYSICS)
        assert_same_fit(resumed, physics_reference)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["physics", "hybrid"])
def test_a_crash_after_any_checkpoint_write_resumes_exactly(monkeypatch, tmp_path, case,
                                                            physics_reference):
    model, options = (lotka_volterra, PHYSICS) if case == "physics" else (
        hybrid, dict(HYBRID, lbfgs_iterations=20, polish_iterations=5))
    reference = physics_reference if case == "physics" else sysid.fit(model(), DATA, **options)
    disk = Disk(monkeypatch, (), None)
    sysid.fit(model(), DATA, checkpoint=tmp_path / "fit.ckpt", checkpoint_every=0, **options)
    monkeypatch.undo()
    n = resumes_from_each(disk.files, tmp_path, reference, model, options)
    print(f"\n[faults] crash after each of {n} checkpoint writes ({case}): all resumed exactly")


@pytest.mark.slow
def test_zz_print_counts():
    """Run after the slow sweeps (``pytest -m slow -s tests/test_faults.py``)."""
    print(f"\n[faults] {dict(sorted(COUNTS.items()))}")
    assert COUNTS["lost"] == 0
