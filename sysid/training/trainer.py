"""Training: validate, build the problem, run the phases (:mod:`~sysid.training.phases`) with
checkpoints (:mod:`~sysid.training.checkpoints`), give back the parts of a result."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from typing import NamedTuple

import numpy as np
import torch

from ..data.bundle import prepare
from ..errors import ModelError
from ..model.hybrid import HybridODE
from ..model.pde import HybridPDE
from ..problem.options import PENALTY_SLACK, FitOptions, FitStatus
from ..problem.placement import check_device, to_device
from ..problem.problem import build_problem
from ..runtime.progress import progress_bar
from ..solve.integrate import SolverFailure, threads_for
from . import horizon, noise_choice
from .checkpoints import Checkpointing, fingerprint
from .phases import Phases, _failure_status, copy_state, fixed_step_status

#: Adam epochs of a model with a network when ``epochs`` is not given.
DEFAULT_EPOCHS = 60

__all__ = ["train", "Trained", "DEFAULT_EPOCHS"]


class Trained(NamedTuple):
    """What training gives back: the parts a :class:`sysid.FitResult` is made of."""

    model: HybridODE
    data: object
    bundle: object
    problem: object
    options: FitOptions
    status: FitStatus
    history: object
    stats: dict


def train(model: HybridODE, data, x0=None, *, like=None, **options) -> Trained:
    """:func:`_train`, whose successful fit of an ODE model that misses the data by more
    than :data:`~sysid.training.horizon.MISFIT` times their noise level says so in its
    status's ``note``."""
    trained = _train(model, data, x0, like=like, **options)
    if not trained.status.success or isinstance(model, HybridPDE) or trained.status.note:
        return trained
    if hasattr(trained.problem.noise, "profile"):       # negative binomial: its size
        trained.problem.noise.profile(*horizon.whole_predictions(trained.problem))
    note = horizon.misfit_note(trained.problem)
    return trained._replace(status=dataclasses.replace(trained.status, note=note)) \
        if note else trained


def _train(model: HybridODE, data, x0=None, *, like=None, **options) -> Trained:
    """Validate, set up and train ``model`` on ``data`` (see :func:`sysid.fit` for the
    options). ``x0``: initial states (trajectories, states) in physical units, or None to
    estimate them from the first samples; ``like``: the :class:`~sysid.problem.Problem` of
    an earlier fit of a model with the same states on the same data, whose units and
    fitted states the fit starts from (see :func:`build_problem`). Raises nothing for a
    failed fit: its status says what happened. Where ``grow_horizon`` asks for it, the
    fit is repeated on growing parts of the record (:mod:`~sysid.training.horizon`) and
    the better of the two is returned."""
    if not isinstance(model, HybridODE):
        raise ModelError(f"fit expects a sysid.HybridODE as model; received "
                         f"{type(model).__name__}.")
    start = time.perf_counter()
    opts = FitOptions.from_kwargs(**options)
    if opts.noise == "auto":
        if like is not None:                   # a refit keeps its original's error model
            options = dict(options, noise=like.options.noise)
        else:
            def fit_once(noise):
                return train(model, data, x0, **dict(options, noise=noise))

            bundle = prepare(model, data, time_unit=opts.time_unit)
            trained, note = noise_choice.choose(fit_once, bundle)
            return trained._replace(stats=dict(trained.stats, noise=note,
                                               wall_time_s=time.perf_counter() - start))
        opts = FitOptions.from_kwargs(**options)
    first, warm = None, model
    if opts.physics_first and model.residual is not None and like is None \
            and not isinstance(model, HybridPDE):
        warm, x0, first = _physics_first(model, data, x0, options)
    trained = _train_once(warm, data, x0, like, opts)
    if first is not None:
        trained = trained._replace(
            model=model, stats=dict(trained.stats, wall_time_s=time.perf_counter() - start,
                                    physics_first=first))
    growing = trained.options.grow_horizon
    if growing is False or isinstance(model, HybridPDE) or like is not None:
        return trained
    if trained.status.code == "interrupted" or (growing == "auto" and (
            model.residual is not None or not trained.status.success)):
        return trained
    reason = horizon.miss(trained.problem)
    if reason is None:
        if growing == "auto":
            return trained
        reason = "grow_horizon=True"
    stage = dict(options, grow_horizon=False, checkpoint=None, resume=None, progress=False)
    grown, after, why = horizon.rescue(
        lambda m, d, z, **o: _train_once(m, d, z, None, FitOptions(**o)),
        model, data, trained.bundle, stage, x0)
    before = horizon.whole_objective(trained.problem)
    kept = grown is not None and after < before
    what = (why if grown is None else f"the fit grown from the record's start reached "
            f"{after:.1f} against {before:.1f} (negative log-likelihood)")
    note = (f"grown horizon: {reason}; {what}; kept the "
            f"{'grown' if kept else 'whole-record'} fit")
    best = grown if kept else trained
    stats = dict(best.stats, wall_time_s=time.perf_counter() - start, grow_horizon=note)
    status = FitStatus(best.status.code, "; ".join(d for d in (best.status.detail, note) if d))
    return best._replace(model=model, stats=stats, status=status,
                         options=dataclasses.replace(best.options,
                                                     grow_horizon=trained.options.grow_horizon,
                                                     checkpoint=trained.options.checkpoint,
                                                     resume=trained.options.resume,
                                                     progress=trained.options.progress))


def _physics_first(model, data, x0, options: dict):
    """The physics alone (the network at zero, where it starts) fitted first; returns the
    model with the fitted parameters as its guesses, the initial states to start from and
    a note for the stats. Where that fit fails, the user's guesses are kept. Its initial
    states are not taken: an unmeasured state's start bends to make up for the missing
    terms (Robertson's y2 hundreds of times its peak off), where the data's own estimate is neutral."""
    physics = HybridODE(states=model.states, physics=model.physics,
                        parameters=model.parameters, inputs=model.inputs,
                        observations=model.observations, fixed=model.fixed)
    stage = dict(options, physics_first=False, epochs=None, checkpoint=None, resume=None,
                 progress=False)
    trained = train(physics, data, x0, **stage)
    if not trained.status.success:
        return model, x0, f"the physics alone did not fit ({trained.status.code}); " \
                          f"started from the guesses"
    with torch.no_grad():
        values = trained.problem.field.parameter_values().tolist()
    fitted = dict(zip(model.parameter_names, values))
    return model.with_parameters(fitted), x0, \
        "started from the physics alone fitted: " + ", ".join(
            f"{k} = {v:.4g}" for k, v in fitted.items())


def _train_once(model, data, x0, like, opts: FitOptions) -> Trained:
    """One fit of ``model`` to all of ``data`` (see :func:`train`)."""
    if opts.device != "cpu":
        check_device(opts.device)            # before any work: a clear error
    start = time.perf_counter()
    n_traj = data.sizes.get("trajectory", 1) if hasattr(data, "sizes") else 1
    # a field's initial state between its sensors is set by its smoothness prior: the
    # unknowns the data must carry alone are the parameters and the sensed points
    n_start = len(data.data_vars) if isinstance(model, HybridPDE) else len(model.states)
    bundle = prepare(model, data, time_unit=opts.time_unit,
                     n_fitted=len(model.parameters) + n_traj * n_start)
    torch.manual_seed(opts.seed)
    problem = build_problem(model, bundle, opts, like=like)
    opts = problem.options               # solver="auto" made concrete
    if x0 is not None:
        with torch.no_grad():
            x0 = torch.as_tensor(x0, dtype=torch.float64).reshape(problem.z0.shape)
            problem.z0.copy_(problem.to_z(x0))
    if opts.device != "cpu":             # built on the CPU from the data; trained there
        to_device(problem, opts.device)
    trainer = _Trainer(problem, opts, fingerprint(model, bundle, opts)
                       if opts.checkpoint or opts.resume else "")
    if opts.resume:
        trainer.restore_checkpoint(opts.resume)
    try:
        with threads_for(problem.y.numel() * 4):
            status = trainer.run()
    finally:
        if opts.device != "cpu":         # the result's outputs are computed on the CPU
            to_device(problem, "cpu")
    stats = trainer.stats(time.perf_counter() - start + trainer.elapsed)
    if trainer.checkpoint_warning:
        warnings.warn(trainer.checkpoint_warning, RuntimeWarning, stacklevel=3)
    return Trained(model, data, bundle, problem, opts, status, trainer.history(), stats)


class _Trainer(Phases, Checkpointing):
    """Adam with cosine decay and early stopping, then L-BFGS; keeps the best state.

    Training is a fixed sequence of phases (adam, lbfgs, tighten, polish, trim). A checkpoint
    (``opts.checkpoint``) holds the finished phases' statuses, the running phase's
    optimizer state and counters, the current and best tensors and the history, written
    at step boundaries; :meth:`restore_checkpoint` puts all of it back so that the resumed
    run takes exactly the steps the uninterrupted one would have taken.
    """

    def __init__(self, problem, opts: FitOptions, fingerprint: str = ""):
        self.problem = problem
        self.opts = opts
        self.fingerprint = fingerprint
        self.rows: list[dict] = []
        self.best_loss = float("inf")
        self.best_state = copy_state(problem.state_dict())
        self.epoch = 0
        self.lbfgs_iters = 0
        self.done: dict[str, FitStatus] = {}
        self.pending: dict | None = None      # the running phase's state, from a checkpoint
        self.phase = ""
        self.elapsed = 0.0                    # wall time of earlier (interrupted) runs
        self._started = time.perf_counter()
        self._last_write = -float("inf")
        self.checkpoint_warning = ""
        self.bar = None
        self.penalty = opts.penalty_levels()[0]
        self.anchor: dict | None = None      # the state and data fit before the trimming

    def _loss(self):
        return self.problem.loss(self.penalty, self.opts.weight_decay)

    def _record(self, phase, loss, parts, lr):
        value = float(loss)
        row = {"epoch": self.epoch, "phase": phase, "loss": value, "lr": lr,
               "nfe": self.problem.field.nfe}
        row.update({k: float(v.detach()) for k, v in parts.items()})
        self.rows.append(row)
        self.epoch += 1
        if phase == "adam" and value < self.best_loss:   # Adam records before its step
            self.best_loss = value
            self.best_state = copy_state(self.problem.state_dict())
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{value:.4g}", phase=phase)

    def _restore(self):
        self.problem.load_state_dict(self.best_state)

    # -- phases -------------------------------------------------------------------------
    def run(self) -> FitStatus:
        self.bar = _progress_bar(self.opts, self.epochs(), initial=len(self.rows))
        opts = self.opts
        try:
            status = self._phase("adam", self._adam)
            if status.success and opts.lbfgs_iterations > 0:
                if self._gauss_newton():
                    status = self._phase("lbfgs", lambda: self._levenberg_marquardt(
                        opts.lbfgs_iterations, "lbfgs"))
                else:
                    status = self._phase("lbfgs", lambda: self._lbfgs(opts.lbfgs_iterations))
                if status.success and self.problem.windows is not None:
                    status = self._phase("tighten", self._tighten)
            if status.success and self.problem.windows is not None:
                status = self._phase("polish", self._final_pass)
            low, high = opts.penalty_levels()
            field = self.problem.field      # trimming serves physical parameters
            if status.success and opts.lbfgs_iterations > 0 and high != low \
                    and field.residual is not None and field.raw.numel() > 0:
                status = self._phase("trim", self._trim)
                if status.code == "max_iterations":     # a refinement: its budget is no failure
                    status = FitStatus("converged", f"the stronger residual penalty kept; its "
                                       f"solve used its budget ({status.detail})")
        except KeyboardInterrupt:
            status = FitStatus("interrupted", "" if not opts.checkpoint else
                               f"resume with sysid.fit(..., resume={str(opts.checkpoint)!r})")
        finally:
            if self.bar is not None:
                self.bar.close()
        self._restore()
        if status.success:      # a fixed-step solve checked by step doubling
            status = fixed_step_status(self.problem) or status
        return status

    def _phase(self, name, body) -> FitStatus:
        if name in self.done:                      # finished before the checkpoint
            return self.done[name]
        self.phase = name
        try:
            status = body()
        except SolverFailure as err:    # a solve outside the optimisers' own handling
            self._restore()
            status = _failure_status(err, name)
        self.done[name] = status
        self.pending = None
        self._save(None, force=True)
        return status

    def _resume_state(self, name) -> dict | None:
        if self.pending is not None and self.pending.get("phase") == name:
            state, self.pending = self.pending, None
            return state
        return None

    def _new_objective(self) -> None:
        """Re-score the restored best state after the loss function has changed."""
        with torch.no_grad():
            loss, _ = self._loss()
        self.best_loss = float(loss)
        self.best_state = copy_state(self.problem.state_dict())

    def _tighten(self) -> FitStatus:
        """Close the gaps between shooting windows: a 10x stiffer continuity penalty,
        solved on the (cheap, batched) windows before the single-shooting pass."""
        if self.pending is None:
            self._restore()
            self.problem.continuity = self.opts.continuity / 10
            self._new_objective()
        if self._gauss_newton():
            return self._levenberg_marquardt(max(1, self.opts.lbfgs_iterations // 2),
                                             "tighten")
        return self._lbfgs(max(1, self.opts.lbfgs_iterations // 2), phase="tighten")

    def _trim(self) -> FitStatus:
        """``residual_penalty="auto"``: solve again with the stronger (trimming) weight of
        the residual penalty, and keep the result only if the data pay at most
        PENALTY_SLACK units of log-likelihood for it: the smallest residual that explains
        the data as well (a discrepancy rule), else the learning weight's fit.

        It runs after the single-shooting pass, so it is solved and priced over whole
        trajectories: on shooting windows, whose fitted starts absorb a weakened network
        that the whole record cannot, the lynx-hare demo's trim cost under 2 units and
        its hybrid then missed the hare peaks by half."""
        if self.pending is None:
            self._restore()
            with torch.no_grad():
                nll = float(self._loss()[1]["nll"])
            self.anchor = {"state": copy_state(self.best_state), "nll": nll}
            self.penalty = self.opts.penalty_levels()[1]
            self._new_objective()
        status = self._lbfgs(max(1, self.opts.lbfgs_iterations // 2), phase="trim")
        self._restore()
        with torch.no_grad():
            cost = (float(self._loss()[1]["nll"]) - self.anchor["nll"]) * self.problem.noise.total
        if cost > PENALTY_SLACK or not status.success:
            self.best_state, self.penalty = self.anchor["state"], self.opts.penalty_levels()[0]
            self._restore()
            self._new_objective()
            return FitStatus("converged", f"the stronger residual penalty would cost the data "
                             f"{cost:.1f} units of log-likelihood; kept "
                             f"residual_penalty={self.penalty}")
        return status

    def _final_pass(self) -> FitStatus:
        """Single shooting from the fitted initial states over whole trajectories."""
        if self.pending is None:
            self._restore()
            self.problem.use_windows(False)
            try:
                self._new_objective()
            except SolverFailure as err:
                self.problem.use_windows(True)
                return FitStatus("solver_failed", f"the model fitted on shooting windows "
                                 f"cannot be integrated over whole trajectories: {err}")
            if self.opts.polish_iterations == 0:
                return FitStatus("converged", "multiple shooting")
        # polish_iterations, then, where that pass ran out while it gained the data more
        # than a unit of log-likelihood, lbfgs_iterations more: the windows' optimum can
        # simulate poorly over whole trajectories (the lynx-hare demo: 10 iterations left
        # the hare peaks at 32 thousand pelts against 77 measured)
        before = self.best_loss
        for budget in (self.opts.polish_iterations, self.opts.lbfgs_iterations):
            if self._gauss_newton():
                status = self._levenberg_marquardt(budget, "polish")
            else:
                status = self._lbfgs(budget, phase="polish")
            gain = (before - self.best_loss) * self.problem.noise.total
            if status.code != "max_iterations" or not gain > 1.0:
                break
            self._restore()
        if status.code == "max_iterations":     # a refinement: its budget is not a failure
            return FitStatus("converged", f"multiple shooting converged; the "
                             f"single-shooting pass used its budget (polish_iterations="
                             f"{self.opts.polish_iterations}, then lbfgs_iterations)")
        return status

    def epochs(self) -> int:
        """The Adam epochs: the ``epochs`` option, or by default ``DEFAULT_EPOCHS`` for a
        model with a network (or without Levenberg-Marquardt) and 0 for one without.

        Adam's warm-up serves a network. Without one its first-order steps on the window
        starts and parameters only precede Levenberg-Marquardt's, and can lose the fit:
        SIR with S never measured, the 29 regions of tutorial 06's full setting, one fit
        went to beta = 1e9 and failed; from the guesses, Levenberg-Marquardt fitted all
        29 (median error 1.4 %, 1.5 % after Adam), 4x faster."""
        if self.opts.epochs is not None:
            return int(self.opts.epochs)
        return 0 if self._gauss_newton() else DEFAULT_EPOCHS

    def history(self):
        import xarray as xr
        keys = sorted({k for r in self.rows for k in r} - {"epoch", "phase"} | {"loss"})
        epoch = np.array([r["epoch"] for r in self.rows], dtype=int)
        data = {k: ("epoch", np.array([r.get(k, np.nan) for r in self.rows], dtype=float))
                for k in keys}
        data["phase"] = ("epoch", np.array([r["phase"] for r in self.rows], dtype=str))
        ds = xr.Dataset(data, coords={"epoch": epoch})
        ds["loss"].attrs["long_name"] = "training loss (negative log-likelihood per value + penalties)"
        return ds

    def stats(self, wall: float) -> dict:
        p = self.problem
        return {
            "epochs": sum(r["phase"] == "adam" for r in self.rows),
            "lbfgs_iterations": sum(r["phase"] != "adam" for r in self.rows),
            "shooting_windows": 0 if p.windows is None else int(p.windows.tau.shape[0]),
            "function_evaluations": int(p.field.nfe),
            "wall_time_s": float(wall),
            "loss": float(self.best_loss),
            "n_observations": int(p.mask.sum()),
            "residual_penalty": float(self.penalty),
            "n_physical_parameters": int(p.field.raw.numel()),
            "n_network_weights": int(sum(q.numel() for q in p.field.residual.parameters()))
            if p.field.residual is not None else 0,
        }


def _progress_bar(opts: FitOptions, epochs: int, initial: int = 0):
    """The fit's bar: ``epochs`` Adam epochs (``_Trainer.epochs``) and the L-BFGS
    iterations."""
    show = opts.progress
    if show is None:
        show = not os.environ.get("CI") and (sys.stderr.isatty() or "ipykernel" in sys.modules)
    if not show:
        return None
    return progress_bar(total=epochs + opts.lbfgs_iterations, initial=initial,
                        desc="sysid.fit", leave=False)
