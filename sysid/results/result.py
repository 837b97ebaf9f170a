"""``FitResult``: fitted parameters, equations, imputed states, forecasts and simulations."""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch
import xarray as xr

from ..data.bundle import _TIME_UNITS
from ..errors import DataError
from ..model.pde import HybridPDE
from ..problem.segments import sample_interval
from ..solve.integrate import SolverFailure, threads_for
from ..symbolic.distill import summarize
from ..training.trainer import train
from ..uncertainty.tables import parameter_correlation, parameter_table
from .compare import Likelihood
from .field_result import FieldResult
from .failures import fit_error, report_failure
from .files import save_result
from .outputs import initial_states_dataset
from .plot import plot_result
from .trajectories import Trajectories, _float_times

__all__ = ["FitResult", "fit_from"]


class FitResult(Trajectories, Likelihood):
    """The outcome of :func:`sysid.fit`: parameters, states, forecasts, equations.

    Returned by :func:`sysid.fit` (and :func:`sysid.load`); not built by hand. Every
    output that has a time axis is an ``xarray.Dataset`` with the data's dims, coords and
    attrs, ready for ``.to_netcdf()``.

    Attributes
    ----------
    parameters : dict[str, float]
        Fitted physical parameters.
    equations : dict[str, sympy.Expr]
        Fitted right-hand side per state, the network as ``NN_<state>(...)``.
    initial_states : xarray.Dataset
        Fitted state of each trajectory at its first sample.
    status : FitStatus
        Why training stopped (``.message``, ``.advice``, ``.success``).
    history : xarray.Dataset
        Training curve over ``epoch``: one row per optimiser step, with its ``phase``,
        ``loss``, ``nll``, penalties and function evaluations (``nfe``).
    stats : dict
        Epochs, L-BFGS iterations, function evaluations, wall time, counts.
    noise_std : dict[str, float]
        Fitted (or given) measurement noise level per channel (NaN for count noise).
    model : HybridODE
        The fitted model's specification.
    data : xarray.Dataset
        The data it was fitted to.
    options : FitOptions
        The options of the fit.

    Examples
    --------
    A pendulum whose angle is measured and whose angular velocity is not:

    >>> import sympy as sp, sysid
    >>> data, truth = sysid.datasets.simulate("pendulum", observed=["theta"],
    ...                                       noise=0.02, truth=True)
    >>> theta, omega = sp.symbols("theta omega")
    >>> omega0, alpha = sp.symbols("omega0 alpha", positive=True)
    >>> model = sysid.HybridODE(
    ...     states=[theta, omega],
    ...     physics={theta: omega, omega: -omega0**2 * sp.sin(theta) - alpha * omega},
    ...     parameters={omega0: 1.5, alpha: 0.1})
    >>> result = sysid.fit(model, data, progress=False)
    >>> result                        # truth: omega0 = 1.047, alpha = 0.2
    FitResult(omega0=1.047, alpha=0.198; status=converged)
    >>> result.status.success
    True
    >>> result.noise_std["theta"], data["theta"].attrs["true_noise_std"]
    (0.0055, 0.0056)
    >>> list(result.history["phase"].to_series().unique())   # no network: no Adam epochs
    ['lbfgs', 'tighten', 'polish']

    The velocity was never measured; it is imputed at the data's times:

    >>> imputed = result.impute()
    >>> error = abs(imputed["omega"] - truth["omega"]).max()
    >>> print(f"largest error {float(error):.3f} rad/s")
    largest error 0.003 rad/s
    """

    def __init__(self, model, data, bundle, problem, options, status, history, stats):
        self.model = model
        self.data = data
        self._bundle = bundle
        self._problem = problem
        self.options = options
        self.status = status
        self.history = history
        self.stats = stats
        try:
            with torch.no_grad(), threads_for(problem.y.numel()):
                problem.loss(0.0, options.weight_decay)   # for the noise levels only
        except SolverFailure:
            pass                      # noise levels stay NaN; status already says why
        self.noise_std = {c: float(s) for c, s in zip(bundle.channels, problem.noise.sigma)}

    # -- parameters and equations ----------------------------------------------------------
    @property
    def parameters(self) -> dict[str, float]:
        """Fitted physical parameters by name (fixed constants are not listed).

        Examples
        --------
        >>> import sympy as sp, sysid
        >>> data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=1)
        >>> data.attrs["true_parameters"]
        'a=1.3, b=0.9, c=0.8, d=1.8'
        >>> x, y = sp.symbols("x y")
        >>> a, b, c, d = sp.symbols("a b c d", positive=True)
        >>> model = sysid.HybridODE(
        ...     states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
        ...     parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
        >>> result = sysid.fit(model, data, progress=False)
        >>> result.parameters
        {'a': 1.30, 'b': 0.899, 'c': 0.88, 'd': 1.82}
        """
        with torch.no_grad():
            values = self._problem.field.parameter_values().tolist()
        return dict(zip(self.model.parameter_names, values))

    @property
    def initial_states(self) -> xr.Dataset:
        """Fitted state of each trajectory at its first sample.

        Examples
        --------
        >>> import sympy as sp, sysid
        >>> data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=1)
        >>> x, y = sp.symbols("x y")
        >>> a, b, c, d = sp.symbols("a b c d", positive=True)
        >>> model = sysid.HybridODE(
        ...     states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
        ...     parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
        >>> x0 = sysid.fit(model, data, progress=False).initial_states
        >>> float(x0["x"]), float(x0["y"])         # truth: 0.442, 4.628
        (0.44, 4.63)
        """
        x0 = self._problem.x0().detach().numpy()
        return initial_states_dataset(self, x0)

    @property
    def equations(self) -> dict[str, sp.Expr]:
        """Fitted right-hand side per state; the network appears as ``NN_<state>(...)``.

        The fitted parameter values are substituted; the network's term is an undefined
        SymPy function of what it reads. :meth:`symbolic` replaces it by sparse terms.

        Examples
        --------
        >>> import sympy as sp, sysid
        >>> data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=1)
        >>> x, y = sp.symbols("x y")
        >>> a, c, d = sp.symbols("a c d", positive=True)
        >>> model = sysid.HybridODE(
        ...     states=[x, y], physics={x: a * x, y: c * x * y - d * y},
        ...     parameters={a: 1.0, c: 1.0, d: 1.0},
        ...     residual=sysid.MLP(width=16, depth=1, states=[x]))
        >>> result = sysid.fit(model, data, progress=False, epochs=5, lbfgs_iterations=5,
        ...                    polish_iterations=0)
        >>> print("dx/dt =", result.equations["x"])
        dx/dt = ...*x + NN_x(x, y)
        >>> sorted(result.equations)
        ['x', 'y']
        """
        subs = {s: sp.Float(v, 15) for s, v in zip(self.model.parameters, self.parameters.values())}
        rhs = dict(zip(self.model.state_names, (e.subs(subs) for e in self.model.rhs())))
        if self.model.residual is not None:
            names = self.model.state_names + self.model.input_names
            args = [(self.model.states + self.model.inputs)[names.index(n)]
                    for n in self.model.residual_inputs]
            for s in self.model.residual_states:
                rhs[s] = rhs[s] + sp.Function(f"NN_{s}")(*args)
        return rhs

    def parameter_table(self, level: float = 0.9, *, network: bool = True):
        """Value, standard error and ``level`` interval of each fitted physical parameter.

        The standard errors come from the Laplace approximation: the Gauss-Newton
        curvature of the fit's objective at its optimum, with the initial states (and,
        for a hybrid model, the network's weights, under the Gaussian prior that the
        fit's weight decay implies) integrated out. The noise levels are estimated from
        the residuals, so the intervals use Student's t with the residual degrees of
        freedom. Parameters given in ``fixed`` are known constants and not listed.

        A parameter declared ``positive=True`` (``negative=True``) is fitted as the log of
        its magnitude; its interval is computed on that log scale and mapped back, so it
        stays on its side of 0 and is not symmetric about the value. ``std_error`` is the
        delta-method error in the parameter's own units.

        Parameters whose data do not identify them (``identifiable`` False: relative
        error above 100 %, a correlation beyond +-0.99 with another parameter, or a
        near-flat direction of the curvature) trigger a
        :class:`sysid.errors.IdentifiabilityWarning` that says which and what to do.

        Parameters
        ----------
        level : float, default 0.9
            Coverage of the interval (0.9: a 90 % confidence interval).
        network : bool, default True
            For a hybrid model, include the network's weights in the approximation (the
            honest interval where the network can trade off against a physical term).
            False holds the network fixed at its fitted weights: narrower, conditional
            intervals, for comparison. Ignored without a network.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``parameter``; columns ``value``, ``std_error``, ``lower``,
            ``upper``, ``rel_error`` (``std_error / |value|``), ``identifiable`` (bool),
            ``scale`` (``"log"`` or ``"linear"``: where the interval was computed) and
            ``note`` (why a parameter is not identifiable). ``table.attrs`` holds
            ``level``, ``network``, ``dof`` and ``n_observations``.

        Notes
        -----
        The approximation is linear in the parameters about the optimum: too narrow when
        the model is strongly nonlinear over the uncertainty, the fit has not converged,
        the noise is correlated in time, or (hybrid models) the network could reach other
        optima. See ``docs/uncertainty.md``.

        Examples
        --------
        >>> import sympy as sp, sysid
        >>> data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=1)
        >>> x, y = sp.symbols("x y")
        >>> a, b, c, d = sp.symbols("a b c d", positive=True)
        >>> model = sysid.HybridODE(
        ...     states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
        ...     parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
        >>> result = sysid.fit(model, data, progress=False)
        >>> table = result.parameter_table(level=0.9)
        >>> table[["value", "std_error", "lower", "upper"]].round(3)
                   value  std_error  lower  upper
        parameter
        a          1.302      0.004  1.294  1.309
        b          0.899      0.006  0.889  0.909
        c          0.875      0.074  0.760  1.007
        d          1.820      0.018  1.790  1.851

        Every true value (a=1.3, b=0.9, c=0.8, d=1.8) lies inside its 90 % interval:

        >>> truth = {"a": 1.3, "b": 0.9, "c": 0.8, "d": 1.8}
        >>> all(table.loc[k, "lower"] < v < table.loc[k, "upper"] for k, v in truth.items())
        True
        """
        return parameter_table(self, level, network=network)

    def parameter_correlation(self, *, network: bool = True) -> xr.DataArray:
        """Correlation matrix of the fitted physical parameters (Laplace approximation).

        Computed on the fit's own (raw) scale: the log of positive parameters, which to
        first order gives the same correlations as the physical scale and stays finite
        along flat directions.

        Parameters
        ----------
        network : bool, default True
            As in :meth:`parameter_table`.

        Returns
        -------
        xarray.DataArray
            Dims ``("parameter", "parameter_")``, both labelled by parameter name.

        Examples
        --------
        >>> import sympy as sp, sysid
        >>> data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=1)
        >>> x, y = sp.symbols("x y")
        >>> a, b, c, d = sp.symbols("a b c d", positive=True)
        >>> model = sysid.HybridODE(
        ...     states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
        ...     parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
        >>> corr = sysid.fit(model, data, progress=False).parameter_correlation()
        >>> corr.round(2).values
        array([[1.  , 0.79, 0.28, 0.2 ],
               [0.79, 1.  , 0.18, 0.19],
               [0.28, 0.18, 1.  , 0.98],
               [0.2 , 0.19, 0.98, 1.  ]])

        The predator's growth ``c`` and death ``d`` are nearly confounded on this short
        record:

        >>> float(corr.sel(parameter="c", parameter_="d"))
        0.98
        """
        return parameter_correlation(self, network=network)

    # -- plotting and files --------------------------------------------------------------
    def plot(self, *, forecast=None, states=None, figsize=None, summary="latest", inputs=None):
        """Data, fit and imputed states (and a forecast ``horizon``) per state and channel.

        One panel per state (observed or not) and per observed channel that is not a
        state; several trajectories share a panel, one colour each (up to 10). Axes are
        labelled from the data's ``long_name`` and ``units`` attrs. Time counted in
        years from a year (``units="years"``, ``time_origin="1900"``) is drawn as
        calendar years; ``datetime64`` time as dates. Where a symbolic summary exists,
        its distilled equations (physics plus the selected terms, no network) are drawn
        too, in grey, with their forecast.

        Parameters
        ----------
        forecast : float, optional
            Also draw a forecast this far past the last sample.
        inputs : xarray.Dataset, optional
            The future inputs of an input-driven model, over the forecast (as for
            :meth:`forecast`); without ``forecast``, the forecast runs to their last time.
        states : list of str, optional
            Only these states and channels.
        figsize : tuple, optional
            Figure size in inches (default: 8 wide, 2.4 per panel).
        summary : SymbolicSummary, "latest" or None
            The summary whose distilled model is drawn; ``"latest"`` (the default): the
            one the last ``result.symbolic()`` call returned, if any; None: none.

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> import matplotlib.pyplot as plt, sympy as sp, sysid
        >>> data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=1)
        >>> x, y = sp.symbols("x y")
        >>> a, b, c, d = sp.symbols("a b c d", positive=True)
        >>> model = sysid.HybridODE(
        ...     states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
        ...     parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
        >>> fig = sysid.fit(model, data, progress=False).plot(forecast=2.0)
        >>> [ax.get_ylabel() for ax in fig.axes]
        ['prey population [1]', 'predator population [1]']
        >>> plt.close(fig)
        """
        if isinstance(summary, str):
            if summary != "latest":
                raise ValueError(f"plot(summary=...) takes a SymbolicSummary, 'latest' or "
                                 f"None; received {summary!r}.")
            summary = getattr(self, "_summary", None)
        if inputs is not None and not forecast and "time" in getattr(inputs, "coords", {}):
            forecast = float(_float_times(self, inputs["time"].values)[-1]) - self._bundle.times[-1]
            if forecast <= 0:
                raise DataError(f"plot(inputs=...) draws a forecast up to the inputs' last time, "
                                f"which is not past the data's last sample (by {forecast:g}); give "
                                f"inputs that reach past the data.")
        return plot_result(self, forecast=forecast, states=states, figsize=figsize,
                           summary=summary, inputs=inputs)

    def save(self, path) -> None:
        """Write the result to ``path``, a single file that :func:`sysid.load` reads back.

        The file holds plain data only: the model's equations as text, the trained
        tensors, the data and training history as netCDF bytes, the options and status.
        It is written to a temporary name first and then renamed, so an interrupted save
        never leaves a half-written file under ``path``.

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
        >>> path = os.path.join(tempfile.mkdtemp(), "lv.sysid")
        >>> result.save(path)
        >>> again = sysid.load(path)
        >>> again.parameters == result.parameters
        True
        >>> np.array_equal(again.forecast(horizon=5.0)["y"], result.forecast(horizon=5.0)["y"])
        True
        """
        save_result(self, path)

    def symbolic(self, **options):
        """Sparse symbolic summary of the neural residual: a :class:`SymbolicSummary`.

        The network is evaluated along the fitted trajectories, sparse regressions
        propose candidate sets of terms, and each candidate is refit to the data (physics
        plus terms, no network) and scored by EBIC; see the user guide for the method
        and :func:`sysid.symbolic.distill.summarize` for every option (``degree``,
        ``functions``, ``library``, ``thresholds``, ``n_points``, ``seed``,
        ``max_terms``, ``refine``, ``holdout``, ``ensemble``).

        Examples
        --------
        Lotka-Volterra with the prey's predation term left to a network:

        >>> import sympy as sp, sysid
        >>> data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=1)
        >>> x, y = sp.symbols("x y")
        >>> a, c, d = sp.symbols("a c d", positive=True)
        >>> model = sysid.HybridODE(
        ...     states=[x, y], physics={x: a * x, y: c * x * y - d * y},
        ...     parameters={a: 1.0, c: 1.0, d: 1.0},
        ...     residual=sysid.MLP(width=16, depth=1, states=[x]))
        >>> result = sysid.fit(model, data, progress=False,
        ...                    epochs=30, lbfgs_iterations=60, polish_iterations=5)

        The summary names the missing term (truth: ``-0.9*x*y``), and the refit puts the
        share of ``a`` that the network had taken back into the physics (truth: 1.3):

        >>> summary = result.symbolic(degree=2, ensemble=0, holdout=0, refine=0)
        >>> summary.equations
        {'x': -0.899*x*y}
        >>> summary.model_equations["x"]
        -0.899...*x*y + 1.30...*x
        """
        self._summary = summarize(self, fit_from=fit_from, **options)
        return self._summary

    def raise_for_status(self) -> "FitResult":
        """Raise :class:`sysid.errors.FitError` if the fit failed (``status.success`` is
        False: ``"diverged"`` or ``"solver_failed"``), with the status and its advice and
        this result as ``err.result``; return the result itself otherwise, so that
        ``sysid.fit(...).raise_for_status()`` reads as a strict fit.

        Examples
        --------
        >>> import sympy as sp, sysid
        >>> data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=1)
        >>> x, y = sp.symbols("x y")
        >>> a, b, c, d = sp.symbols("a b c d", positive=True)
        >>> model = sysid.HybridODE(states=[x, y],
        ...     physics={x: a * x - b * x * y, y: c * x * y - d * y},
        ...     parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
        >>> sysid.fit(model, data, progress=False).raise_for_status().status.code
        'converged'
        """
        if not self.status.success:
            raise fit_error(self)
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v:.4g}" for k, v in self.parameters.items())
        return f"FitResult({params}; status={self.status.code})"

    # -- internals -----------------------------------------------------------------------
    def _t0(self) -> np.ndarray:
        return self._bundle.times[self._bundle.t_first]

    def _is_datetime(self) -> bool:
        return self._bundle.datetime

    def _to_datetime(self, tf):
        a = self._bundle.time_attrs
        origin = np.datetime64(a["time_origin"], "ns")
        return origin + (np.asarray(tf) * _TIME_UNITS[a["time_unit"]] * 1e9).astype("timedelta64[ns]")

    def _sample_interval(self) -> float | None:
        """The longest interval a fixed-step solver integrates across in one go on a grid
        of its own (see ``solve_at_times``): the fit's typical sample interval."""
        return sample_interval(self._bundle)



def fit_from(model, data, x0, *, like=None, **options) -> FitResult:
    """:func:`sysid.fit` starting from the initial states ``x0`` (trajectories, states), in
    physical units, instead of estimating them from the first samples (``None``: the
    same as :func:`sysid.fit`). ``like``: a :class:`FitResult` of a model with the same states
    on the same data, whose units and fitted states (initial and window starts) the fit
    starts from (see :func:`build_problem`); ``x0``, if given, replaces its initial
    states. The symbolic summary continues each candidate's full and held-out refits from
    its previous refit this way."""
    field = isinstance(model, HybridPDE)      # a field: one channel per sensor point
    trained = train(model, model.flatten(data) if field else data, x0,
                    like=None if like is None else like._problem, **options)
    result = FitResult(*trained)
    if field:
        result = FieldResult(result, data, fit_from)
    report_failure(result, trained.options.throw)
    return result
