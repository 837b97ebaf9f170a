"""Training: validate, set up, then Adam, L-BFGS or Levenberg-Marquardt phases, checkpoints."""

from __future__ import annotations

import copy
import hashlib
import io
import os
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..data.bundle import prepare
from ..errors import FileFormatError, FitError, ModelError
from ..model.hybrid import HybridODE
from ..model.spec import model_to_spec
from ..problem.jacobian import jacobian_bytes
from ..problem.options import PENALTY_SLACK, FitOptions, FitStatus
from ..problem.problem import build_problem
from ..runtime.progress import progress_bar
from ..solve.integrate import backward, SolverFailure, threads_for
from . import levenberg_marquardt as lm

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
    """Validate, set up and train ``model`` on ``data`` (see :func:`sysid.fit` for the
    options). ``x0``: initial states (trajectories, states) in physical units, or None to
    estimate them from the first samples; ``like``: the :class:`~sysid.problem.Problem` of
    an earlier fit of a model with the same states on the same data, whose units and
    fitted states the fit starts from (see :func:`build_problem`). Raises nothing for a
    failed fit: its status says what happened."""
    if not isinstance(model, HybridODE):
        raise ModelError(f"fit expects a sysid.HybridODE as model; received "
                         f"{type(model).__name__}.")
    opts = FitOptions.from_kwargs(**options)
    start = time.perf_counter()
    n_traj = data.sizes.get("trajectory", 1) if hasattr(data, "sizes") else 1
    bundle = prepare(model, data, time_unit=opts.time_unit,
                     n_fitted=len(model.parameters) + n_traj * len(model.states))
    torch.manual_seed(opts.seed)
    problem = build_problem(model, bundle, opts, like=like)
    if x0 is not None:
        with torch.no_grad():
            x0 = torch.as_tensor(x0, dtype=torch.float64).reshape(problem.z0.shape)
            problem.z0.copy_((x0 - problem.loc) / problem.scale)
    trainer = _Trainer(problem, opts, fingerprint(model, bundle, opts)
                       if opts.checkpoint or opts.resume else "")
    if opts.resume:
        trainer.restore_checkpoint(opts.resume)
    with threads_for(problem.y.numel() * 4):
        status = trainer.run()
    stats = trainer.stats(time.perf_counter() - start + trainer.elapsed)
    if trainer.checkpoint_warning:
        warnings.warn(trainer.checkpoint_warning, RuntimeWarning, stacklevel=3)
    return Trained(model, data, bundle, problem, opts, status, trainer.history(), stats)


class _Trainer:
    """Adam with cosine decay and early stopping, then L-BFGS; keeps the best state.

    Training is a fixed sequence of phases (adam, lbfgs, tighten, polish). A checkpoint
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
        self.best_state = copy.deepcopy(problem.state_dict())
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
            self.best_state = copy.deepcopy(self.problem.state_dict())
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
                    low, high = opts.penalty_levels()
                    field = self.problem.field      # trimming serves physical parameters
                    if status.success and high != low and field.residual is not None \
                            and field.raw.numel() > 0:
                        status = self._phase("trim", self._trim)
            if status.success and self.problem.windows is not None:
                status = self._phase("polish", self._final_pass)
        except KeyboardInterrupt:
            status = FitStatus("interrupted", "" if not opts.checkpoint else
                               f"resume with sysid.fit(..., resume={str(opts.checkpoint)!r})")
        finally:
            if self.bar is not None:
                self.bar.close()
        self._restore()
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

    def _adam(self) -> FitStatus:
        opts, params = self.opts, [p for p in self.problem.parameters() if p.requires_grad]
        epochs = self.epochs()
        if epochs == 0:
            return FitStatus("early_stopped", "epochs=0" if opts.epochs == 0 else
                             "no network: Levenberg-Marquardt from the start")
        opt = torch.optim.Adam(params, lr=opts.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs,
                                                           eta_min=opts.lr / 20)
        c = {"step": 0, "since_best": 0, "failures": 0, "reference": float("inf")}
        watch = _ValidationWatch(self, opts.patience)
        saved = self._resume_state("adam")
        if saved is not None:
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            c.update(saved["counters"])
            watch.load(saved.get("validation"))
        status = self._adam_steps(opt, sched, c, watch, epochs)
        return watch.finish(status)

    def _adam_steps(self, opt, sched, c, watch, epochs: int) -> FitStatus:
        opts = self.opts
        while c["step"] < epochs:
            c["step"] += 1
            opt.zero_grad()
            try:
                loss, parts = self._loss()
                backward(loss)
            except SolverFailure as err:
                c["failures"] += 1
                self._restore()
                if c["failures"] > 3:
                    return _failure_status(err)
                opt.state.clear()                  # restart the moments, at a lower rate
                sched.base_lrs = [lr * 0.3 for lr in sched.base_lrs]
                sched.eta_min *= 0.3
                for group in opt.param_groups:
                    group["lr"] *= 0.3
                continue
            loss_value = float(loss.detach())
            self._record("adam", loss_value, parts, opt.param_groups[0]["lr"])
            if watch.update(parts, loss_value):
                return FitStatus("early_stopped", f"the held-out error stopped improving "
                                 f"after {self.epoch} epochs")
            opt.step()
            sched.step()
            ref = c["reference"]
            if not np.isfinite(ref) or loss_value < ref - 1e-3 * abs(ref) - 1e-12:
                c["reference"], c["since_best"] = loss_value, 0
            else:
                c["since_best"] += 1
                if c["since_best"] >= opts.patience and not watch.on:
                    return FitStatus("early_stopped", f"after {self.epoch} epochs")
            self._save({"phase": "adam", "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "counters": dict(c),
                        "validation": watch.dump()})
        return FitStatus("max_iterations", f"{epochs} Adam epochs")

    def _new_objective(self) -> None:
        """Re-score the restored best state after the loss function has changed."""
        with torch.no_grad():
            loss, _ = self._loss()
        self.best_loss = float(loss)
        self.best_state = copy.deepcopy(self.problem.state_dict())

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
        the data as well (a discrepancy rule), else the learning weight's fit."""
        if self.pending is None:
            self._restore()
            with torch.no_grad():
                nll = float(self._loss()[1]["nll"])
            self.anchor = {"state": copy.deepcopy(self.best_state), "nll": nll}
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
        if self._gauss_newton():
            status = self._levenberg_marquardt(self.opts.polish_iterations, "polish")
        else:
            status = self._lbfgs(self.opts.polish_iterations, phase="polish")
        if status.code == "max_iterations":     # a refinement: its budget is not a failure
            return FitStatus("converged", f"multiple shooting converged; the final "
                             f"single-shooting pass used its {self.opts.polish_iterations} "
                             f"iterations (polish_iterations)")
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

    def _gauss_newton(self) -> bool:
        """Single-shooting passes use Levenberg-Marquardt (see the gauss_newton option)."""
        return self.opts.gauss_newton and lm.supports_gauss_newton(self.problem)

    def _levenberg_marquardt(self, budget: int, phase: str) -> FitStatus:
        """Levenberg-Marquardt on the phase's objective; each accepted step is recorded (its
        ``lr`` column holds the damping). It writes no checkpoint inside the phase (see
        ``accepted``): a resumed fit restarts it, unless its L-BFGS fallback was running."""

        if self.pending is not None and self.pending.get("phase") == phase:
            return self._lbfgs(budget, phase=phase)     # the fallback's own checkpoint
        size = jacobian_bytes(self.problem)
        if size > lm.MAX_JACOBIAN_BYTES:       # too large a problem for a dense Jacobian
            status = self._lbfgs(budget, phase=phase)
            return FitStatus(status.code, f"{status.detail} (L-BFGS: Levenberg-Marquardt's "
                             f"dense Jacobian would take {size / 2 ** 30:.1f} GiB on this "
                             f"{phase} phase, above sysid.training.levenberg_marquardt."
                             f"MAX_JACOBIAN_BYTES = {lm.MAX_JACOBIAN_BYTES / 2 ** 30:.0f} GiB)")
        self._restore()
        total = self.problem.noise.total
        counters = {"iters": 0}
        watch = _ValidationWatch(self, 3)

        def accepted(f, new_lam):
            counters["iters"] += 1
            value = f / total
            parts = {"nll": torch.tensor(value)}
            if watch.on:                    # the held-out score at the accepted point
                with torch.no_grad():
                    parts["validation"] = self._loss()[1]["validation"]
            self._record(phase, value, parts, new_lam)
            if value < self.best_loss:
                self.best_loss = value
                self.best_state = copy.deepcopy(self.problem.state_dict())
            # No checkpoint here: after this callback Levenberg-Marquardt decides from the
            # step's gain whether it has converged, which (iterations, damping) cannot
            # carry, so a run resumed from here took one step more (measured: parameters
            # off by up to 1e-6). An interrupted phase restarts from its beginning (a
            # few Jacobians), and the result equals the uninterrupted one bit for bit.
            return watch.update(parts, value)

        # the polish stops, like L-BFGS's, once a step gains less than the tolerance
        report = lm.levenberg_marquardt(self.problem, budget, on_accept=accepted,
                                     tolerance=self.opts.tolerance if phase == "polish" else 0.0)
        self.lbfgs_iters = counters["iters"]
        if not np.isfinite(report.objective):
            return FitStatus("solver_failed", f"{phase}: {report.message}")
        if report.message.startswith("stopped by the caller"):
            status = FitStatus("early_stopped", f"{phase}: the held-out error rose for 3 "
                               f"steps")
        elif report.converged:
            status = FitStatus("converged", f"Levenberg-Marquardt: {report.message}")
        elif counters["iters"] == 0:    # it could not take a single step: L-BFGS instead
            return self._lbfgs(budget, phase=phase)
        elif counters["iters"] >= budget:
            status = FitStatus("max_iterations", f"{budget} Levenberg-Marquardt iterations "
                               f"({phase})")
        else:
            status = FitStatus("converged", f"Levenberg-Marquardt ({phase}): {report.message}")
        return watch.finish(status)

    def _lbfgs(self, budget: int, phase: str = "lbfgs") -> FitStatus:
        params = [p for p in self.problem.parameters() if p.requires_grad]
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=10, history_size=50,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-9,
                                tolerance_change=1e-12)
        watch = _ValidationWatch(self, 3)
        saved = self._resume_state(phase)
        if saved is not None:
            opt.load_state_dict(saved["optimizer"])
            self.lbfgs_iters, last = saved["counters"]["iters"], saved["counters"]["last"]
            watch.load(saved.get("validation"))
        else:
            self._restore()
            self.lbfgs_iters, last = 0, None
        return watch.finish(self._lbfgs_steps(opt, params, budget, phase, last, watch))

    def _lbfgs_steps(self, opt, params, budget, phase, last, watch) -> FitStatus:

        def closure():
            opt.zero_grad()
            closure.calls += 1
            try:
                loss, parts = self._loss()
                backward(loss)
            except SolverFailure as err:
                # a trial point of the line search where the model blows up: report a huge
                # loss with no slope so that the search backs off towards the current point
                closure.failure = err
                closure.failures += 1
                for p in params:
                    p.grad = torch.zeros_like(p)
                return torch.tensor(1e10, dtype=torch.float64)
            closure.parts = parts
            value = float(loss.detach())
            if value < self.best_loss:      # the parameters evaluated right now
                self.best_loss = value
                self.best_state = copy.deepcopy(self.problem.state_dict())
            return loss

        closure.parts, closure.failure = {}, SolverFailure("the loss is at least 1e10")

        while self.lbfgs_iters < budget:
            closure.calls = closure.failures = 0
            loss = opt.step(closure)
            if float(loss.detach()) >= 1e10:        # even the start point failed
                self._restore()
                return _failure_status(closure.failure, f"{phase}, at the current parameters")
            if closure.calls > 1 and closure.failures == closure.calls - 1:
                # no point but the start could be evaluated: stuck, not at a minimum
                self._restore()
                return _failure_status(closure.failure, f"{phase}, at every trial point "
                                       f"of the line search")
            state = opt.state[opt._params[0]]
            self.lbfgs_iters = int(state.get("n_iter", self.lbfgs_iters + 1))
            value = float(loss.detach())
            self._record(phase, value, closure.parts, 1.0)
            if watch.update(closure.parts, value):
                return FitStatus("early_stopped", f"{phase}: the held-out error rose for 3 "
                                 f"steps")
            refining = phase == "polish"      # earlier phases can sit on plateaus
            if last is not None and (abs(last - value) <= 1e-9 * (abs(value) + 1e-8) or (
                    refining and (last - value) * self.problem.noise.total < self.opts.tolerance)):
                return FitStatus("converged")
            last = value
            self._save({"phase": phase, "optimizer": opt.state_dict(),
                        "counters": {"iters": self.lbfgs_iters, "last": last},
                        "validation": watch.dump()})
        return FitStatus("max_iterations", f"{budget} L-BFGS iterations ({phase})")

    # -- checkpoints --------------------------------------------------------------------
    def _save(self, inner: dict | None, force: bool = False) -> None:
        path = self.opts.checkpoint
        now = time.perf_counter()
        if not path or (not force and now - self._last_write < self.opts.checkpoint_every):
            return
        payload = {
            "format": CHECKPOINT_FORMAT, "version": 1, "fingerprint": self.fingerprint,
            "done": {k: [v.code, v.detail] for k, v in self.done.items()},
            "pending": inner, "phase": self.phase,
            "problem": self.problem.state_dict(), "best_state": self.best_state,
            "best_loss": self.best_loss, "rows": self.rows, "epoch": self.epoch,
            "nfe": int(self.problem.field.nfe), "continuity": self.problem.continuity,
            "active": self.problem.active, "elapsed": self.elapsed + now - self._started,
            "penalty": self.penalty, "anchor": self.anchor,
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(_sealed(payload), f)
                f.flush()
                os.fsync(f.fileno())    # on disk before it replaces the previous one
            os.replace(tmp, path)       # the previous checkpoint stays whole until this
        except (OSError, RuntimeError) as err:   # a full disk, a missing folder: go on
            self.checkpoint_warning = (f"the checkpoint {path} could not be written ({err}); "
                                       f"the previous one, if any, is intact")
        finally:                        # also when interrupted mid-write
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        self._last_write = now

    def restore_checkpoint(self, path) -> None:
        ckpt = read_checkpoint(path)
        if ckpt["fingerprint"] != self.fingerprint:
            raise FitError(
                f"The checkpoint {path} was written by a fit of a different model, data or "
                f"options; resume needs the same ones (only checkpoint, checkpoint_every, "
                f"resume, progress and throw may change). Start a new fit without resume=.")
        p = self.problem
        try:
            p.continuity = float(ckpt["continuity"])
            p.use_windows(bool(ckpt["active"]))
            p.load_state_dict(ckpt["problem"])
            p.field.nfe = int(ckpt["nfe"])
            self.best_state = ckpt["best_state"]
            self.best_loss = float(ckpt["best_loss"])
            self.rows = list(ckpt["rows"])
            self.epoch = int(ckpt["epoch"])
            self.done = {k: FitStatus(*v) for k, v in ckpt["done"].items()}
            self.pending = ckpt["pending"]
            self.phase = ckpt["phase"]
            self.elapsed = float(ckpt["elapsed"])
            self.penalty = float(ckpt.get("penalty", self.penalty))
            self.anchor = ckpt.get("anchor")
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
            why = " ".join(str(err).split())
            raise FileFormatError(f"{path}: the checkpoint's entries do not fit this fit "
                                  f"({type(err).__name__}: {why}); it was edited or damaged. "
                                  f"Start a new fit without resume=.") from None

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


def _failure_status(err: SolverFailure, where: str = "") -> FitStatus:
    """The status of a fit that a solver failure ended: "diverged" where values stopped
    being finite, else "solver_failed" (step limit, step-size underflow)."""
    code = "diverged" if "not finite" in str(err) else "solver_failed"
    return FitStatus(code, f"{where}: {err}" if where else str(err))


class _ValidationWatch:
    """Early stopping on held-out windows (``validation`` > 0): remembers the state with
    the lowest held-out error in a phase, asks to stop after ``patience`` steps without
    a 0.1 % improvement, and leaves that state as the phase's best."""

    def __init__(self, trainer, patience: int):
        self.trainer, self.patience = trainer, patience
        self.on = trainer.problem.holdout is not None
        self.best, self.since, self.state, self.loss = float("inf"), 0, None, float("inf")

    def update(self, parts, loss_value) -> bool:
        if not self.on or "validation" not in parts:
            return False
        score = float(parts["validation"])
        if score < self.best * (1 - 1e-3):
            self.best, self.since, self.loss = score, 0, loss_value
            self.state = copy.deepcopy(self.trainer.problem.state_dict())
        else:
            self.since += 1
        return self.since >= self.patience

    def finish(self, status: FitStatus) -> FitStatus:
        if self.on and self.state is not None and status.success:
            self.trainer.best_state, self.trainer.best_loss = self.state, self.loss
        return status

    def dump(self):
        return None if not self.on else {"best": self.best, "since": self.since,
                                         "state": self.state, "loss": self.loss}

    def load(self, saved) -> None:
        if saved:
            self.best, self.since = float(saved["best"]), int(saved["since"])
            self.state, self.loss = saved["state"], float(saved["loss"])


CHECKPOINT_FORMAT = "sysid.checkpoint"


def _sealed(payload: dict) -> dict:
    """The checkpoint as written: its serialised bytes with their SHA-256 digest, so that
    a damaged file (torch.load reads most flipped bytes silently) is recognised."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    raw = buffer.getvalue()
    return {"format": CHECKPOINT_FORMAT, "version": 2, "sha256": hashlib.sha256(raw).hexdigest(),
            "body": torch.frombuffer(bytearray(raw), dtype=torch.uint8)}


def read_checkpoint(path) -> dict:
    """Read a training checkpoint as plain data (no code in the file can run)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(ckpt, dict) and "body" in ckpt:          # sealed (version 2)
            body = ckpt["body"]
            raw = body.numpy().tobytes() if isinstance(body, torch.Tensor) \
                and body.dtype == torch.uint8 and body.dim() == 1 else b""
            if hashlib.sha256(raw).hexdigest() != ckpt.get("sha256"):
                raise FileFormatError(
                    f"{path} is damaged: its contents do not match the checksum written "
                    f"with them (an incomplete copy, a disk error or an edit). Resume from "
                    f"an intact copy, or start a new fit without resume=.")
            ckpt = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"No checkpoint at {path!r}: check the path given as "
                                f"resume=.") from None
    except FileFormatError:
        raise
    except Exception as err:
        raise FileFormatError(f"{path} is not a sysid checkpoint (or a damaged or truncated "
                              f"one), or it contains objects that sysid refuses to load: "
                              f"{type(err).__name__}: {err}") from None
    keys = ("fingerprint", "done", "pending", "phase", "problem", "best_state", "best_loss",
            "rows", "epoch", "nfe", "continuity", "active", "elapsed")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT \
            or any(k not in ckpt for k in keys):
        raise FileFormatError(f"{path} is not a sysid checkpoint (format marker or entries "
                              f"missing).")
    return ckpt


def fingerprint(model, bundle, opts: FitOptions) -> str:
    """A digest of what determines a fit's steps: model, data and options."""
    import json


    h = hashlib.sha256()
    h.update(json.dumps(model_to_spec(model), sort_keys=True).encode())
    settings = {k: v for k, v in opts.to_dict().items() if k not in _RESUMABLE}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for arr in (bundle.times, bundle.y, bundle.mask, bundle.u):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


_RESUMABLE = ("checkpoint", "checkpoint_every", "resume", "progress", "throw")


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
