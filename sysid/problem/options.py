"""Fit options, validated in one place, and the fit status."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from ..solve.integrate import SolverOptions
from ..errors import suggest
from .placement import device_name

__all__ = ["FitOptions", "FitStatus"]


PENALTY_LEARN, PENALTY_TRIM = 0.01, 1.0     # residual_penalty="auto"
PENALTY_SLACK = 2.0      # units of log-likelihood the data may pay for the stronger one


@dataclass(frozen=True)
class FitOptions:
    """Options of :func:`sysid.fit`, validated in one place.

    ``sysid.fit(model, data, **options)`` builds one from its keyword options, and the
    result keeps it as ``result.options``. Each field is documented in :func:`sysid.fit`;
    a misspelt option is refused with a suggestion, never silently ignored.

    Examples
    --------
    >>> import sysid
    >>> options = sysid.FitOptions(epochs=30, noise="lognormal")
    >>> options.epochs, options.noise, options.solver
    (30, 'lognormal', 'auto')
    >>> sysid.FitOptions.from_kwargs(epoch=30)
    Traceback (most recent call last):
        ...
    TypeError: sysid.fit got an unknown option 'epoch'. Did you mean 'epochs'? Options: ...
    >>> sysid.FitOptions(noise="gauss")
    Traceback (most recent call last):
        ...
    ValueError: fit option noise must be one of ('gaussian', 'lognormal', 'student_t', 'poisson', 'negative_binomial', 'auto'); received 'gauss'.
    """

    seed: int = 0
    epochs: int | None = None      # None: DEFAULT_EPOCHS with a network (see sysid.fit)
    lr: float = 0.02
    lbfgs_iterations: int = 200
    tolerance: float = 0.1
    patience: int | None = None   # None: max(30, Adam epochs // 10)
    shooting: str | int = "auto"
    continuity: float = 0.01
    polish_iterations: int = 10
    gauss_newton: bool = True
    residual_penalty: float | str = "auto"
    weight_decay: float = 1e-5
    validation: float = 0.0
    noise: str = "gaussian"
    solver: str = "auto"
    rtol: float = 1e-6
    atol: float = 1e-8
    max_steps: int = 5_000
    substeps: int = 4
    max_step: float | None = None
    adjoint: bool = False
    compiled: bool = True
    device: str = "cpu"
    interpolation: str = "linear"
    time_unit: str | None = None
    progress: bool | None = None
    throw: bool | None = None     # None: return a failed fit with a FitWarning
    grow_horizon: bool | str = "auto"
    physics_first: bool = False
    checkpoint: str | None = None
    checkpoint_every: float = 30.0
    resume: str | None = None

    def adam_patience(self, epochs: int | None) -> int:
        """The Adam phase's patience: the option, else a tenth of the Adam ``epochs``,
        at least 30 (``epochs=None``: the 60 default epochs, so 30)."""
        if self.patience is not None:
            return self.patience
        return 30 if epochs is None else max(30, int(epochs) // 10)

    def __post_init__(self):
        for name in ("checkpoint", "resume"):       # paths are kept as text
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                if not isinstance(value, os.PathLike):
                    raise ValueError(f"fit option {name} must be a file path; received "
                                     f"{value!r}.")
                object.__setattr__(self, name, os.fspath(value))
        object.__setattr__(self, "device", device_name(self.device))
        checks = {
            "epochs": self.epochs is None or self.epochs >= 0,
            "lbfgs_iterations": self.lbfgs_iterations >= 0,
            "lr": self.lr > 0, "patience": self.patience is None or self.patience >= 1,
            "residual_penalty": self.residual_penalty == "auto" or (
                not isinstance(self.residual_penalty, str) and self.residual_penalty >= 0),
            "weight_decay": self.weight_decay >= 0,
            "rtol": self.rtol > 0, "atol": self.atol > 0, "max_steps": self.max_steps >= 1,
            "substeps": self.substeps >= 1,
            "max_step": self.max_step is None or (not isinstance(self.max_step, str)
                                                  and self.max_step > 0), "continuity": self.continuity > 0,
            "polish_iterations": self.polish_iterations >= 0,
            "checkpoint_every": self.checkpoint_every >= 0, "tolerance": self.tolerance >= 0,
            "validation": 0 <= self.validation <= 0.5,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"fit option {name} is out of range; received "
                                 f"{getattr(self, name)!r}.")
        if self.solver == "rosenbrock23" and self.adjoint:
            raise ValueError("fit option solver='rosenbrock23' computes its gradients through "
                             "its steps; adjoint=True is for torchdiffeq's explicit solvers. "
                             "Use adjoint=False (the default) with rosenbrock23.")
        choices = {"solver": ("auto", "dopri5", "rk4", "bosh3", "dopri8", "rosenbrock23"),
                   "interpolation": ("linear", "zoh"),
                   "noise": ("gaussian", "lognormal", "student_t", "poisson",
                             "negative_binomial", "auto")}
        if self.throw not in (None, True, False):
            raise ValueError(f"fit option throw must be None, True or False; received "
                             f"{self.throw!r}.")
        if self.noise == "auto" and (self.checkpoint or self.resume):
            raise ValueError("fit option noise='auto' fits the model two or three times "
                             "(gaussian, lognormal and, for counts, negative_binomial "
                             "errors) and cannot checkpoint that; give the noise "
                             "model explicitly (noise='gaussian' or 'lognormal') to use "
                             "checkpoint= or resume=.")
        if self.physics_first not in (True, False):
            raise ValueError(f"fit option physics_first must be True or False; received "
                             f"{self.physics_first!r}.")
        if self.grow_horizon not in ("auto", True, False):
            raise ValueError(f"fit option grow_horizon must be 'auto', True or False; "
                             f"received {self.grow_horizon!r}.")
        if not (self.shooting in ("auto", "single") or (isinstance(self.shooting, int)
                                                        and self.shooting >= 2)):
            raise ValueError(f"fit option shooting must be 'auto', 'single' or a window length "
                             f"in samples (>= 2); received {self.shooting!r}.")
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"fit option {name} must be one of {allowed}; received "
                                 f"{getattr(self, name)!r}.")

    @classmethod
    def from_kwargs(cls, **kwargs) -> "FitOptions":
        names = [f.name for f in dataclasses.fields(cls)]
        for key in kwargs:
            if key not in names:
                raise TypeError(f"sysid.fit got an unknown option {key!r}.{suggest(key, names)} "
                                f"Options: {', '.join(names)}.")
        return cls(**kwargs)

    def penalty_levels(self) -> tuple[float, float]:
        """(weight while learning, weight of the refinements) of the residual penalty."""
        if self.residual_penalty == "auto":
            return PENALTY_LEARN, PENALTY_TRIM
        return float(self.residual_penalty), float(self.residual_penalty)

    def solver_options(self) -> SolverOptions:
        return SolverOptions(method=self.solver, rtol=self.rtol, atol=self.atol,
                             max_steps=self.max_steps, substeps=self.substeps,
                             max_step=self.max_step,
                             adjoint=self.adjoint, compiled=self.compiled)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_MESSAGES = {
    "converged": ("The fit converged: the loss stopped improving.", ""),
    "max_iterations": ("The iteration budget ran out while the loss was still improving.",
                       "Increase lbfgs_iterations (or epochs) to continue."),
    "early_stopped": ("Training stopped early: the loss stopped improving.", ""),
    "interrupted": ("Training was interrupted (Ctrl-C); the best parameters so far are kept.",
                    "Call sysid.fit again with more epochs to continue."),
    "diverged": ("Training diverged (the loss or the solver became non-finite); the best "
                 "parameters so far are kept.",
                 "Try a smaller lr, better initial parameter guesses, solver='rk4', or a "
                 "larger max_steps."),
    "solver_failed": ("The ODE solver failed (too many steps or step-size underflow: the "
                      "model became stiff or blew up); the best parameters so far are kept.",
                      "Try a larger max_steps, looser rtol/atol, better initial guesses, "
                      "a smaller lr, or for a stiff system (rates that span decades) "
                      "solver='rosenbrock23'."),
}


@dataclass(frozen=True)
class FitStatus:
    """Why training stopped, in words, with advice. ``success`` is False only for failures.

    ``result.status`` of every fit. The codes are ``"converged"``, ``"early_stopped"``,
    ``"max_iterations"`` and ``"interrupted"`` (successes: the best parameters are kept)
    and ``"diverged"`` and ``"solver_failed"`` (failures: :func:`sysid.fit` returns the
    result with the best parameters found and a :class:`sysid.errors.FitWarning`;
    ``throw=True`` or ``result.raise_for_status()`` raises :class:`sysid.errors.FitError`).

    Attributes
    ----------
    code : str
        One of the codes above.
    detail : str
        What the training loop reported (iterations, the phase that stopped).
    note : str
        A caution that ``str(status)`` shows after a success: a fit whose residuals are
        more than 3 times the noise level estimated from the data alone says so here.
    success : bool
        False for ``"diverged"`` and ``"solver_failed"``.
    message : str
        The code in words, with the detail.
    advice : str
        What to try next ("" when nothing is needed).

    Examples
    --------
    >>> import sysid
    >>> status = sysid.FitStatus("max_iterations")
    >>> status.success
    True
    >>> print(status)
    max_iterations: The iteration budget ran out while the loss was still improving. Increase lbfgs_iterations (or epochs) to continue.
    >>> "rosenbrock23" in sysid.FitStatus("solver_failed").advice
    True
    """

    code: str
    detail: str = ""
    note: str = ""       # a caution for a success, e.g. a fit that misses the data

    @property
    def success(self) -> bool:
        return self.code not in ("diverged", "solver_failed")

    @property
    def message(self) -> str:
        text, _ = _MESSAGES[self.code]
        return text + (f" ({self.detail})" if self.detail else "")

    @property
    def advice(self) -> str:
        return _MESSAGES[self.code][1]

    def __str__(self) -> str:
        """The code and its meaning in words, with advice; a failure also says where it
        failed (``detail``), a success leaves the training loop's report to ``detail``."""
        text = self.message if not self.success else _MESSAGES[self.code][0]
        return f"{self.code}: {text}" + (f" {self.advice}" if self.advice else "") + (
            f" Note: {self.note}" if self.note else "")

