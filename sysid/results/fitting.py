"""``sysid.fit`` and ``sysid.load``: the public entry points that give a :class:`FitResult`."""

from __future__ import annotations

import warnings

from ..errors import IdentifiabilityWarning
from ..model.hybrid import HybridODE
from ..model.pde import HybridPDE
from ..problem.reach import undetermined, undetermined_message
from .field_result import FieldResult
from .files import read_result
from .result import FitResult, fit_from
from .kalman_result import fit_process_noise

__all__ = ["fit", "fit_from", "load"]


def fit(model: HybridODE, data, **options):
    """Fit a hybrid model to data.

    Parameters
    ----------
    model : HybridODE or HybridPDE
        Known physics plus optional neural residual; a :class:`~sysid.HybridPDE` is a
        field over space (its result is a :class:`~sysid.FieldResult`).
    data : xarray.Dataset
        Measurements (see the data contract in the user guide): dimension ``time``,
        optional ``trajectory``, NaN where a channel was not measured; for a field, the
        field's variable over ``(time, x)`` (or ``(time, x, y)``), NaN off the sensors.
    seed : int, default 0
        Seeds the network initialisation; same seed and data give the same result.
    epochs : int, optional
        Maximum Adam epochs (full-batch) before the quasi-Newton (L-BFGS) phase; a
        short Adam warm-up moves the network off its zero start, L-BFGS does the rest.
        Default: 60 for a model with a network; 0 for a model without one where
        Levenberg-Marquardt applies (see ``gauss_newton``), which then starts from the
        guessed initial states. Given explicitly, Adam runs for any model.
    lr : float, default 0.02
        Adam learning rate (cosine-decayed to lr/20); every learnable quantity is
        scaled to order one, so the default suits data in any units.
    lbfgs_iterations : int, default 200
        Maximum L-BFGS iterations after Adam (0 skips them).
    tolerance : float, default 0.1
        The final single-shooting pass has converged when 10 L-BFGS iterations (or one
        Levenberg-Marquardt step) improve the objective by less than this, in units of log-likelihood of the whole data set
        (differences well below 1 are statistically negligible).
    shooting : "auto", "single" or int
        Multiple shooting: windows of this many samples, each with its own learnable
        start state tied to the previous window's end by a continuity penalty. "auto"
        uses windows of 5 samples for trajectories longer than 10 samples.
    grow_horizon : "auto", True or False
        Fit the start of each record first and extend it (the first eighth of its span,
        a quarter, a half, then all of it, each stage from the previous one's parameters
        and initial states), and keep that fit where its objective over whole
        trajectories is the better one. A model that can put an event at the wrong time
        (a relaxation oscillation's jump, a drifting phase) has local minima that every
        local optimiser started 20 % off stays in; before the first event the data see
        only the smooth dynamics that lead to it (Van der Pol with mu = 1000 measured on
        x only, from mu = 800: 22 % off on the whole record, 0.7 % grown). "auto" grows
        the horizon for a model without a network whose whole-record fit misses some
        channel by more than 3 times its noise level estimated from the data alone;
        ``result.stats["grow_horizon"]`` and the status's detail say what was done.
    continuity : float, default 0.01
        Tolerated gap between shooting windows, as a fraction of each state's spread;
        after L-BFGS converges on the windows it is tightened 10x and solved again.
    polish_iterations : int, default 10
        L-BFGS iterations of the single-shooting pass from the fitted initial states
        (after multiple shooting); it stops early once 10 iterations gain less than
        ``tolerance`` (Levenberg-Marquardt, for a model without a network: once one step
        gains less). Where these iterations run out while they gained the data more than
        a unit of log-likelihood, up to ``lbfgs_iterations`` more follow.
    gauss_newton : bool, default True
        For a model without a network (Gaussian or log-normal noise), the L-BFGS phases
        (``lbfgs_iterations`` on shooting windows or whole trajectories, the tightening
        and the polish) use Levenberg-Marquardt, a trust-region Gauss-Newton method, in
        place of L-BFGS: the iteration budgets then count its Jacobians, and a few suffice
        where L-BFGS takes hundreds of solves, and the Adam epochs default to 0. With
        ``validation`` the held-out error is scored after every step, as for L-BFGS.
        False keeps Adam (60 epochs by default) and L-BFGS.
    physics_first : bool, default False
        With a network: fit the physics alone first (the network at zero, where it
        starts; Levenberg-Marquardt, a second or so) and train the hybrid model from its
        parameters and initial states. It helps where the guesses are far off and the
        network's training cannot move them (stiff kinetics: the Robertson residual
        variant of ``benchmarks/stiff.py`` is recovered by ``symbolic()`` from guesses
        2x off with it, and not without); ``result.stats["physics_first"]`` says what it
        started from.
    patience : int, optional
        Adam stops early after this many epochs without a 0.1 % improvement (of the
        held-out error when ``validation`` is set, else of the training loss). Default:
        a tenth of the Adam epochs, at least 30 (the 60 default epochs: 30); a long
        training (``epochs=1000``) waits 100 epochs, long enough for Adam's early
        transient on a stiff hybrid model to pass.
    validation : float, default 0
        Fraction of shooting windows held out of training (never a trajectory's first or
        last, never two in a row; the same windows whatever the seed, so fits that differ
        in their seed or options compare) to score the model on data it does not see: each
        phase stops when the held-out error stops improving and keeps the state where it
        was lowest. Its history is ``result.history["validation"]``: the mean squared
        error of the held-out samples over a fixed noise scale per channel (the known
        ``noise_std``, else an estimate from the data's second differences), each
        held-out window predicted from the end of the window before it.
    residual_penalty : "auto" or float
        Weight of the minimal-norm penalty on the residual (the mean square of the
        network's output in units of each state's typical rate): the network explains
        only what the physics cannot, which keeps the physical parameters identifiable.
        "auto": 0.01 while the network learns, then (for models with physical
        parameters) a further L-BFGS phase at 1 over whole trajectories, kept only if the
        data pay at most 2 units of log-likelihood for it (a discrepancy rule: the
        smallest residual that explains the data as well). Measured when the trimming
        ran on the shooting windows: Lotka-Volterra with all four parameters free plus a
        residual, 5 % noise: worst parameter error 11.6 % -> 2.3 % (seed 0);
        angle-only pendulum, 5 trajectories: omega0 error 7.2 % -> 5.8 %; on lynx-hare
        (21 samples) the stronger weight would cost the fit and is declined. A number
        fixes the weight throughout. The data term's own weight adapts: the profiled
        Gaussian likelihood ``(N/2) log(mean squared error)`` has the gradient of the
        squared error times ``1/(mean squared error)``, a multiplier that grows as the
        fit improves (the role of APHYNITY's increasing lambda).
    weight_decay : float, default 1e-5
        L2 penalty on the network weights.
    noise : {"gaussian", "lognormal", "student_t", "poisson", "negative_binomial", "auto"}
        Measurement noise model: Gaussian per channel; log-normal for positive quantities
        such as counts; Student-t (4 degrees of freedom) when the data have outliers.
        Levels come from ``attrs['noise_std']`` or are estimated with the model.
        ``"poisson"`` and ``"negative_binomial"`` (its size ``r``, variance
        ``mu + mu^2 / r``, learned per channel) are for actual counts (nonnegative
        integers, not counts in thousands: the Poisson variance is the mean in counts);
        they are fitted by L-BFGS (``gauss_newton`` does not apply) and
        ``result.noise_std`` is NaN for them.
        ``"auto"`` fits the model under Gaussian and under log-normal errors (where every
        measurement is positive), and negative-binomial ones where every measurement is
        a nonnegative integer, and keeps the fit under which the measurements are the
        more likely (:mod:`sysid.training.noise_choice`; two or three fits):
        ``result.options.noise`` is the model kept, ``result.stats["noise"]`` the
        comparison.
    solver : {"auto", "dopri5", "rk4", "rosenbrock23", "bosh3", "dopri8"}
        Integrator. ``"auto"`` (default) measures the model's stiffness on the data (the
        spectral radius of the physics' Jacobian at the guessed states over the record,
        :mod:`sysid.problem.solver_choice`): an ODE gets the adaptive dopri5 with
        ``rtol``/``atol`` (in C where it applies), or the L-stable ``rosenbrock23`` when a
        sample interval would need more than 64 explicit steps (stiff kinetics); a field
        (:class:`~sysid.HybridPDE`) gets ``rk4`` with steps within its stability limit.
        ``rk4`` uses ``substeps`` fixed steps per sample interval (at least; more where
        ``max_step`` asks), ``rosenbrock23`` is adaptive with exact gradients through its
        linear solves. ``result.options.solver`` says what was used.
    max_step : float, optional
        ``rk4``: the longest step, in the data's time unit; each sample interval takes as
        many steps as keep within it (and at least ``substeps``).
    rtol, atol : float
        Tolerances of adaptive solvers (1e-6, 1e-8).
    max_steps : int
        Step limit per solve; reaching it ends training with status ``solver_failed``
        (where retrying at a lower rate does not help; the best parameters are kept).
    adjoint : bool
        Adjoint gradients (memory independent of the series length).
    compiled : bool, default True
        Run the ``dopri5`` and ``rk4`` solves in C generated from the model: the field,
        its vector-Jacobian products and the solver's discrete adjoint, compiled once per
        model with the system's C compiler and cached (``$SYSID_CACHE``, else
        ``~/.cache/sysid``). It takes the same steps as the PyTorch solver and gives the
        same values and gradients to rounding, 5-20x faster. Where it does not apply, the
        PyTorch solver runs: no C compiler, a function it does not generate, inputs
        sampled between the solver's sample times, ``adjoint=True``, another solver, a
        GPU, or a batch large enough for PyTorch's matrix products to be faster. ``False`` runs the PyTorch solver throughout. Rounding differences
        between the two can lead a hybrid fit's optimiser to a slightly different optimum,
        as a change of 1e-15 in the data would.
    device : str, default "cpu"
        Where training runs: ``"cuda"`` (or ``"cuda:N"``) trains on a CUDA GPU, when
        torch sees one; else the fit refuses to start and says why. The problem is built
        on the CPU from the data, trained on the GPU with the PyTorch solver (the C solver
        is for the CPU), with Levenberg-Marquardt steps and everything the result computes
        (imputation, forecasts, uncertainty, the symbolic summary) on the CPU; outputs are
        xarray as always. A GPU pays off for large batches (many trajectories or windows);
        the small fits of the tutorials run faster on the CPU's C solver.
    interpolation : {"linear", "zoh"}
        How inputs are interpolated between samples.
    time_unit : {"s", "min", "h", "D"}, optional
        Unit for datetime64 time coordinates (default: chosen from the sampling step).
    progress : bool, optional
        Progress bar (default: on in terminals and notebooks, off when ``CI`` is set).
    checkpoint : str or path, optional
        File that training state is written to (at most every ``checkpoint_every``
        seconds, and at the end of each phase), atomically: an interrupted or crashed
        fit can continue from it. A failed write (e.g. a full disk) warns and training
        goes on; the previous checkpoint stays intact.
    checkpoint_every : float, default 30
        Seconds between checkpoint writes (0: after every step).
    resume : str or path, optional
        Continue from a checkpoint written by an earlier call with the same model, data
        and options; the result equals that of an uninterrupted fit, bit for bit. A
        checkpoint carries a SHA-256 checksum: a damaged or truncated one is refused with
        :class:`sysid.errors.FileFormatError` (and left as it is).
    process_noise : float, "learn" or dict, optional
        A stochastic state-space fit (physics-only models): the model is the drift of
        ``dx = f(x) dt + diag(q) dW`` with ``q`` per state a given standard deviation
        (state units per square root of the time unit; a float for every state, or a dict
        {state: value}, states left out 0) or ``"learn"`` (fitted on the log scale). The
        parameters, initial states and learned noise levels maximise the extended Kalman
        filter's likelihood (RK4 moment equations; steps per sample interval from the
        field's fastest rate, or ``substeps`` if given; at most ``max_step`` long),
        started from the deterministic fit; the
        result (:class:`~sysid.results.kalman_result.KalmanResult`) imputes the
        Rauch-Tung-Striebel smoothed states with their bands. See the guide's "Process
        noise" section and :mod:`sysid.training.kalman`.
    throw : bool, optional
        What a failed fit (``status.success`` False: diverged, or the solver failed) does.
        Default (None): return the result with the best parameters found and issue a
        :class:`sysid.errors.FitWarning` with the status and what to try, so that a long
        fit is never lost to an exception; ``result.raise_for_status()`` raises
        afterwards. True: raise :class:`sysid.errors.FitError` (carrying the best result
        as ``err.result``). False: return without the warning.

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
    if options.get("process_noise") is not None:      # a stochastic state-space fit
        return fit_process_noise(model, data, **options)
    options.pop("process_noise", None)
    _warn_undetermined(model, data)
    return fit_from(model, data, None, **options)


def _warn_undetermined(model, data) -> None:
    """An IdentifiabilityWarning for initial states (and parameters) that nothing measured
    depends on (:mod:`sysid.problem.reach`)."""
    if not isinstance(model, HybridODE) or not hasattr(data, "data_vars"):
        return              # (a field, or input that the fit itself refuses clearly)
    measured = [str(v) for v in data.data_vars if str(v) in model.channels]
    if not measured:
        return              # the data's own check says what is missing
    states, params = undetermined(model, measured)
    if states:
        warnings.warn(undetermined_message(states, params), IdentifiabilityWarning,
                      stacklevel=3)


def load(path) -> FitResult:
    """Load a result written by :meth:`FitResult.save`.

    The file is read with ``torch.load(weights_only=True)`` and its equations with a
    whitelist parser: nothing in it can execute code. Predictions of the loaded result
    are bit-identical to the saved one's.

    Parameters
    ----------
    path : str or path-like
        A file written by :meth:`FitResult.save`.

    Returns
    -------
    FitResult
        With the saved model, data, options, status, statistics and history.

    Raises
    ------
    sysid.errors.FileFormatError
        The file is not a sysid result, holds objects other than plain data and tensors,
        was written by another format version, or was tampered with.

    Examples
    --------
    >>> import os, tempfile, numpy as np, sympy as sp, sysid
    >>> data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=1)
    >>> x, y = sp.symbols("x y")
    >>> a, b, c, d = sp.symbols("a b c d", positive=True)
    >>> model = sysid.HybridODE(
    ...     states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
    ...     parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
    >>> result = sysid.fit(model, data, progress=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "lotka_volterra.sysid")
    >>> result.save(path)
    >>> again = sysid.load(path)
    >>> again
    FitResult(a=1.302, b=0.899, c=0.8752, d=1.82; status=converged)
    >>> np.array_equal(again.impute()["x"], result.impute()["x"])
    True

    A file that is not a saved result is refused:

    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"not a result")
    >>> sysid.load(path)
    Traceback (most recent call last):
        ...
    sysid.errors.FileFormatError: ... is not a sysid result file ...
    """
    result = FitResult(*read_result(path))
    if isinstance(result.model, HybridPDE):      # a field: its outputs over space again
        data = result.model.gather(result.data, missing=float("nan"))
        return FieldResult(result, data, fit_from)
    return result
