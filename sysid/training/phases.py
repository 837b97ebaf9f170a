"""The optimisation phases of a fit: Adam epochs, L-BFGS iterations and Levenberg-Marquardt
steps, each with its early stopping on held-out windows and its checkpoints.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..problem.jacobian import jacobian_bytes
from ..problem.options import FitStatus
from ..problem.placement import on_cpu
from ..solve.integrate import FIXED_STEP_LIMIT, backward, SolverFailure, fixed_step_error
from . import levenberg_marquardt as lm


def copy_state(state: dict) -> dict:
    """A copy of a state dict whose tensors do not alias the module's (what
    ``copy.deepcopy`` gives, at a fraction of its cost: on the UDE Lotka-Volterra fit the
    deep copies of the best state took 0.27 s of 1.5 s)."""
    out = type(state)((k, v.detach().clone() if isinstance(v, torch.Tensor)
                       else copy.deepcopy(v)) for k, v in state.items())
    if hasattr(state, "_metadata"):
        out._metadata = state._metadata        # (version numbers: read, never written)
    return out


def _failure_status(err: SolverFailure, where: str = "") -> FitStatus:
    """The status of a fit that a solver failure ended: "diverged" where values stopped
    being finite, else "solver_failed" (step limit, step-size underflow)."""
    code = "diverged" if "not finite" in str(err) else "solver_failed"
    return FitStatus(code, f"{where}: {err}" if where else str(err))


def fixed_step_status(problem) -> FitStatus | None:
    """A ``"solver_failed"`` status where the fit's fixed-step (rk4) solve is not accurate
    at the fitted parameters: the sample intervals of the trajectories (or of the
    shooting windows, where the fit ended on them) solved again with twice the steps move
    a state, summed over a trajectory, by more than :data:`~sysid.solve.integrate.FIXED_STEP_LIMIT` of its
    range (step doubling, :func:`~sysid.solve.integrate.fixed_step_error`; two forward
    solves, no gradient). None where the solve is accurate or not fixed-step."""
    solver = problem.solver
    if solver.method != "rk4":
        return None
    with torch.no_grad():       # on the objective the fit ended on: its windows where it
        seg, starts = problem.single, problem.x0()      # kept them (a chaotic record)
        if problem.active:
            seg = problem.windows
            starts = torch.cat([starts, problem.to_x(problem.zw)])[problem.source]
        ratio, j = fixed_step_error(problem.field, starts, seg.tau, seg.inputs, solver)
    if ratio <= FIXED_STEP_LIMIT:
        return None
    name = problem.field.model.state_names[j]
    moved = ("is not finite in one of the solves" if not np.isfinite(ratio)
             else f"moves by {ratio:.3g} of its range (its intervals' changes summed)")
    return FitStatus("solver_failed", (
        f"the fixed-step solve is not accurate at the fitted parameters: each sample "
        f"interval solved again with twice the steps (substeps={2 * solver.substeps} "
        f"instead of {solver.substeps}), state {name} {moved}; the limit is "
        f"{FIXED_STEP_LIMIT:g}. The fit followed "
        f"rk4's error (an unstable step on a stiff system), not the data. Fix: "
        f"solver='auto' (the default: it measures stiffness and picks rosenbrock23 where "
        f"needed), solver='rosenbrock23' for stiff kinetics, solver='dopri5' (adaptive), "
        f"or more substeps"))


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
            self.state = copy_state(self.trainer.problem.state_dict())
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


class Phases:
    """The phases of :class:`~sysid.training.trainer._Trainer` (mixed into it)."""

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
        patience = opts.adam_patience(epochs)
        watch = _ValidationWatch(self, patience)
        saved = self._resume_state("adam")
        if saved is not None:
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            c.update(saved["counters"])
            watch.load(saved.get("validation"))
        status = self._adam_steps(opt, sched, c, watch, epochs, patience)
        return watch.finish(status)

    def _adam_steps(self, opt, sched, c, watch, epochs: int, patience: int) -> FitStatus:
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
            self.problem.project_()            # signed states' starts stay on their side
            sched.step()
            ref = c["reference"]
            if not np.isfinite(ref) or loss_value < ref - 1e-3 * abs(ref) - 1e-12:
                c["reference"], c["since_best"] = loss_value, 0
            else:
                c["since_best"] += 1
                if c["since_best"] >= patience and not watch.on:
                    return FitStatus("early_stopped", f"after {self.epoch} epochs")
            self._save({"phase": "adam", "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "counters": dict(c),
                        "validation": watch.dump()})
        return FitStatus("max_iterations", f"{epochs} Adam epochs")

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
                self.best_state = copy_state(self.problem.state_dict())
            # No checkpoint here: after this callback Levenberg-Marquardt decides from the
            # step's gain whether it has converged, which (iterations, damping) cannot
            # carry, so a run resumed from here took one step more (measured: parameters
            # off by up to 1e-6). An interrupted phase restarts from its beginning (a
            # few Jacobians), and the result equals the uninterrupted one bit for bit.
            return watch.update(parts, value)

        # the polish stops, like L-BFGS's, once a step gains less than the tolerance
        with on_cpu(self.problem):      # a dense numpy Jacobian: on the CPU
            report = lm.levenberg_marquardt(self.problem, budget, on_accept=accepted,
                                         tolerance=self.opts.tolerance if phase == "polish"
                                         else 0.0)
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
                self.best_state = copy_state(self.problem.state_dict())
            return loss

        closure.parts, closure.failure = {}, SolverFailure("the loss is at least 1e10")

        while self.lbfgs_iters < budget:
            closure.calls = closure.failures = 0
            loss = opt.step(closure)
            self.problem.project_()            # signed states' starts stay on their side
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
