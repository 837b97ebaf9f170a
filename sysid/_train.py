"""``sysid.fit``: validate, set up, train (Adam, then an L-BFGS polish), package the result."""

from __future__ import annotations

import copy
import os
import sys
import time

import numpy as np
import torch

from ._data import prepare
from ._integrate import SolverFailure, threads_for
from ._model import HybridODE
from ._options import FitOptions, FitStatus
from ._problem import build_problem
from .errors import FitError, ModelError

__all__ = ["fit"]


def fit(model: HybridODE, data, **options):
    """Fit a hybrid model to data.

    Parameters
    ----------
    model : HybridODE
        Known physics plus optional neural residual.
    data : xarray.Dataset
        Measurements (see the data contract in the user guide): dimension ``time``,
        optional ``trajectory``, NaN where a channel was not measured.
    seed : int, default 0
        Seeds the network initialisation; same seed and data give the same result.
    epochs : int, default 60
        Maximum Adam epochs (full-batch) before the quasi-Newton (L-BFGS) phase; a
        short Adam warm-up moves the network off its zero start, L-BFGS does the rest.
    lr : float, default 0.02
        Adam learning rate (cosine-decayed to lr/20); every learnable quantity is
        scaled to order one, so the default suits data in any units.
    lbfgs_iterations : int, default 200
        Maximum L-BFGS iterations after Adam (0 skips them).
    shooting : "auto", "single" or int
        Multiple shooting: windows of this many samples, each with its own learnable
        start state tied to the previous window's end by a continuity penalty. "auto"
        uses windows of 5 samples for trajectories longer than 10 samples.
    continuity : float, default 0.01
        Tolerated gap between shooting windows, as a fraction of each state's spread;
        after L-BFGS converges on the windows it is tightened 10x and solved again.
    polish_iterations : int, default 10
        L-BFGS iterations of the final single-shooting pass from the fitted initial
        states (after multiple shooting).
    patience : int, default 30
        Adam stops early after this many epochs without a 0.1 % improvement.
    residual_penalty : float, default 1e-2
        Weight of the minimal-norm penalty on the (scaled) residual: the network only
        explains what the physics cannot.
    weight_decay : float, default 1e-5
        L2 penalty on the network weights.
    noise : {"gaussian", "lognormal"}
        Measurement noise model; levels come from ``attrs['noise_std']`` or are estimated.
    solver : {"dopri5", "rk4", "bosh3", "dopri8"}
        Integrator; adaptive dopri5 with ``rtol``/``atol`` by default, ``rk4`` uses
        ``substeps`` fixed steps per sample interval.
    rtol, atol : float
        Tolerances of adaptive solvers (1e-6, 1e-8).
    max_steps : int
        Step limit per solve; reaching it ends training with status ``solver_failed``.
    adjoint : bool
        Adjoint gradients (memory independent of the series length).
    interpolation : {"linear", "zoh"}
        How inputs are interpolated between samples.
    time_unit : {"s", "min", "h", "D"}, optional
        Unit for datetime64 time coordinates (default: chosen from the sampling step).
    progress : bool, optional
        Progress bar (default: on in terminals and notebooks, off when ``CI`` is set).
    throw : bool, default True
        Raise :class:`sysid.errors.FitError` when training fails (the error carries the
        best result as ``err.result``); with False, inspect ``result.status`` instead.

    Returns
    -------
    FitResult

    Examples
    --------
    >>> import sympy as sp, sysid
    >>> data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=1)
    >>> x, y = sp.symbols("x y")
    >>> a, b, c, d = sp.symbols("a b c d", positive=True)
    >>> model = sysid.HybridODE(states=[x, y],
    ...     physics={x: a * x - b * x * y, y: c * x * y - d * y},
    ...     parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
    >>> result = sysid.fit(model, data, progress=False)
    >>> round(result.parameters["a"], 1)
    1.3
    """
    from ._result import FitResult

    if not isinstance(model, HybridODE):
        raise ModelError(f"fit expects a sysid.HybridODE as model; received "
                         f"{type(model).__name__}.")
    opts = FitOptions.from_kwargs(**options)
    start = time.perf_counter()
    n_traj = data.sizes.get("trajectory", 1) if hasattr(data, "sizes") else 1
    bundle = prepare(model, data, time_unit=opts.time_unit,
                     n_fitted=len(model.parameters) + n_traj * len(model.states))
    torch.manual_seed(opts.seed)
    problem = build_problem(model, bundle, opts)
    trainer = _Trainer(problem, opts)
    with threads_for(problem.y.numel() * 4):
        status = trainer.run()
    stats = trainer.stats(time.perf_counter() - start)
    result = FitResult(model, data, bundle, problem, opts, status, trainer.history(), stats)
    if opts.throw and not status.success:
        err = FitError(f"{status} The best result so far is attached as err.result.")
        err.result = result
        raise err
    return result


class _Trainer:
    """Adam with cosine decay and early stopping, then L-BFGS; keeps the best state."""

    def __init__(self, problem, opts: FitOptions):
        self.problem = problem
        self.opts = opts
        self.rows: list[dict] = []
        self.best_loss = float("inf")
        self.best_state = copy.deepcopy(problem.state_dict())
        self.epoch = 0
        self.lbfgs_iters = 0
        self.bar = _progress_bar(opts)

    def _loss(self):
        return self.problem.loss(self.opts.residual_penalty, self.opts.weight_decay)

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

    def run(self) -> FitStatus:
        try:
            status = self._adam()
            if status.success and self.opts.lbfgs_iterations > 0:
                status = self._lbfgs(self.opts.lbfgs_iterations)
                if status.success and self.problem.active:
                    status = self._tighten()
            if status.success and self.problem.windows is not None:
                status = self._final_pass()
        except KeyboardInterrupt:
            status = FitStatus("interrupted")
        finally:
            if self.bar is not None:
                self.bar.close()
        self._restore()
        return status

    def _adam(self) -> FitStatus:
        opts, params = self.opts, [p for p in self.problem.parameters() if p.requires_grad]
        if opts.epochs == 0:
            return FitStatus("early_stopped", "epochs=0")
        opt = torch.optim.Adam(params, lr=opts.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=opts.epochs,
                                                           eta_min=opts.lr / 20)
        since_best, failures, reference = 0, 0, float("inf")
        for _ in range(opts.epochs):
            opt.zero_grad()
            try:
                loss, parts = self._loss()
                loss.backward()
            except SolverFailure as err:
                failures += 1
                self._restore()
                if failures > 3:
                    return FitStatus("solver_failed" if "not finite" not in str(err)
                                     else "diverged", str(err))
                for group in opt.param_groups:
                    group["lr"] *= 0.3
                opt = torch.optim.Adam(params, lr=opt.param_groups[0]["lr"])
                continue
            loss_value = float(loss.detach())
            self._record("adam", loss_value, parts, opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            if not np.isfinite(reference) or loss_value < reference - 1e-3 * abs(reference) - 1e-12:
                reference, since_best = loss_value, 0
            else:
                since_best += 1
                if since_best >= opts.patience:
                    return FitStatus("early_stopped", f"after {self.epoch} epochs")
        return FitStatus("max_iterations", f"{opts.epochs} Adam epochs")

    def _new_objective(self) -> None:
        """Re-score the restored best state after the loss function has changed."""
        with torch.no_grad():
            loss, _ = self._loss()
        self.best_loss = float(loss)
        self.best_state = copy.deepcopy(self.problem.state_dict())

    def _tighten(self) -> FitStatus:
        """Close the gaps between shooting windows: a 10x stiffer continuity penalty,
        solved on the (cheap, batched) windows before the single-shooting pass."""
        self._restore()
        self.problem.continuity = self.opts.continuity / 10
        self._new_objective()
        return self._lbfgs(max(1, self.opts.lbfgs_iterations // 2), phase="tighten")

    def _final_pass(self) -> FitStatus:
        """Single shooting from the fitted initial states over whole trajectories."""
        self._restore()
        self.problem.use_windows(False)
        try:
            self._new_objective()
        except SolverFailure as err:
            self.problem.use_windows(True)
            return FitStatus("solver_failed", f"the model fitted on shooting windows cannot "
                             f"be integrated over whole trajectories: {err}")
        if self.opts.polish_iterations == 0:
            return FitStatus("converged", "multiple shooting")
        status = self._lbfgs(self.opts.polish_iterations, phase="polish")
        if status.code == "max_iterations":     # a refinement: its budget is not a failure
            return FitStatus("converged", f"multiple shooting converged; the final "
                             f"single-shooting pass used its {self.opts.polish_iterations} "
                             f"iterations (polish_iterations)")
        return status

    def _lbfgs(self, budget: int, phase: str = "lbfgs") -> FitStatus:
        self._restore()
        self.lbfgs_iters = 0
        params = [p for p in self.problem.parameters() if p.requires_grad]
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=10, history_size=50,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-9,
                                tolerance_change=1e-12)
        last = None

        def closure():
            opt.zero_grad()
            try:
                loss, parts = self._loss()
            except SolverFailure:
                # a trial point of the line search where the model blows up: report a huge
                # loss with no slope so that the search backs off towards the current point
                for p in params:
                    p.grad = torch.zeros_like(p)
                return torch.tensor(1e10, dtype=torch.float64)
            loss.backward()
            closure.parts = parts
            value = float(loss.detach())
            if value < self.best_loss:      # the parameters evaluated right now
                self.best_loss = value
                self.best_state = copy.deepcopy(self.problem.state_dict())
            return loss

        closure.parts = {}

        while self.lbfgs_iters < budget:
            loss = opt.step(closure)
            if float(loss.detach()) >= 1e10:        # even the start point failed
                self._restore()
                return FitStatus("solver_failed", f"{phase}: the solver failed at the "
                                 f"current parameters")
            state = opt.state[opt._params[0]]
            self.lbfgs_iters = int(state.get("n_iter", self.lbfgs_iters + 1))
            value = float(loss.detach())
            self._record(phase, value, closure.parts, 1.0)
            if last is not None and abs(last - value) <= 1e-9 * (abs(value) + 1e-8):
                return FitStatus("converged")
            last = value
        return FitStatus("max_iterations", f"{budget} L-BFGS iterations ({phase})")

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
            "n_physical_parameters": int(p.field.raw.numel()),
            "n_network_weights": int(sum(q.numel() for q in p.field.residual.parameters()))
            if p.field.residual is not None else 0,
        }


def _progress_bar(opts: FitOptions):
    show = opts.progress
    if show is None:
        show = not os.environ.get("CI") and (sys.stderr.isatty() or "ipykernel" in sys.modules)
    if not show:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=opts.epochs + opts.lbfgs_iterations, desc="sysid.fit", leave=False)
