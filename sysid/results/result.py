"""``FitResult``: fitted parameters, equations, imputed states, forecasts and simulations."""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch
import xarray as xr

from ..data.bundle import _TIME_UNITS, prepare, time_to_float
from ..errors import DataError, FitError
from ..problem.problem import (initial_states, input_signal, sample_interval, segment_grid,
                               segment_tensors)
from ..solve.integrate import InputSignal, SolverFailure, solve_at_times, solve_segments, threads_for
from ..symbolic.distill import summarize
from ..training.trainer import train
from ..uncertainty.laplace import add_bands, parameter_correlation, parameter_table
from .files import save_result
from .outputs import initial_states_dataset, states_dataset
from .plot import plot_result

__all__ = ["FitResult", "fit_from"]


class FitResult:
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
        Fitted (or given) measurement noise level per channel.
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

    # -- trajectories --------------------------------------------------------------------
    def impute(self, times=None, *, level=None, interval="confidence") -> xr.Dataset:
        """Every state and every channel at ``times`` (default: the data's times).

        Returns an ``xarray.Dataset`` with the data's dims, coords and attrs; states that
        were never measured are included.

        Parameters
        ----------
        times : array_like, optional
            Float (or datetime64, like the data) times; default the data's times.
        level : float, optional
            With e.g. ``level=0.9``, the dataset also holds ``<var>_lower`` and
            ``<var>_upper`` for every state and channel: a 90 % band from the delta method
            (the trajectory's Jacobian in the parameters, initial states and network
            weights, times their Laplace covariance; see :meth:`parameter_table`).
            ``None`` (default): no bands, the output is as without uncertainty.
        interval : {"confidence", "prediction"}
            ``"confidence"``: uncertainty of the model's trajectory. ``"prediction"``:
            measured channels also include the fitted measurement noise (where a new
            measurement would fall). States that are not measured get the same band
            either way.

        Examples
        --------
        A pendulum measured by its angle only; its angular velocity is imputed:

        >>> import numpy as np, sympy as sp, sysid
        >>> data, truth = sysid.datasets.simulate("pendulum", observed=["theta"],
        ...                                       noise=0.02, truth=True)
        >>> theta, omega = sp.symbols("theta omega")
        >>> omega0, alpha = sp.symbols("omega0 alpha", positive=True)
        >>> model = sysid.HybridODE(
        ...     states=[theta, omega],
        ...     physics={theta: omega, omega: -omega0**2 * sp.sin(theta) - alpha * omega},
        ...     parameters={omega0: 1.5, alpha: 0.1})
        >>> result = sysid.fit(model, data, progress=False)
        >>> band = result.impute(level=0.9)
        >>> sorted(band.data_vars)
        ['omega', 'omega_lower', 'omega_upper', 'theta', 'theta_lower', 'theta_upper']
        >>> rmse = float(np.sqrt(((band["omega"] - truth["omega"]) ** 2).mean()))
        >>> print(f"RMS error of the never-measured velocity: {rmse:.3f} rad/s")
        RMS error of the never-measured velocity: 0.002 rad/s

        At any other times, e.g. a fine grid for a plot:

        >>> fine = result.impute(np.linspace(0.0, 20.0, 401))
        >>> fine.sizes["time"], fine["theta"].attrs["units"]
        (401, 'rad')
        """
        tf = self._float_times(times)
        x = self._integrate(self._problem.x0().detach(), self._t0(), tf, self._problem.inputs)
        out = self._dataset(x, self._problem.inputs, tf, kind="impute", raw_times=times)
        if level is not None:
            out = add_bands(self, out, tf, self._problem.inputs, level, interval)
        return out

    def forecast(self, times=None, *, horizon=None, n=200, inputs=None, level=None,
                 interval="confidence") -> xr.Dataset:
        """Continue each trajectory past its data.

        Give absolute ``times``, or ``horizon`` (time past the last sample) and ``n``
        points. Input-driven models need the future ``inputs`` as an ``xarray.Dataset``.
        ``level`` and ``interval`` add uncertainty bands ``<var>_lower``/``<var>_upper``
        as in :meth:`impute`.

        Examples
        --------
        Fit Lotka-Volterra on ``0 <= t <= 3``, forecast to ``t = 4``, compare with the truth:

        >>> import numpy as np, sympy as sp, sysid
        >>> data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=1)
        >>> x, y = sp.symbols("x y")
        >>> a, b, c, d = sp.symbols("a b c d", positive=True)
        >>> model = sysid.HybridODE(
        ...     states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
        ...     parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
        >>> result = sysid.fit(model, data, progress=False)
        >>> future = result.forecast(horizon=1.0, n=2, level=0.9)
        >>> future["time"].values
        array([3.5, 4. ])
        >>> future["x"].values.round(2)
        array([2.99, 5.45])
        >>> truth = sysid.datasets.simulate("lotka_volterra", noise=0.0, t_end=4.0, dt=0.5)
        >>> truth["x"].sel(time=future["time"]).values.round(2)
        array([2.99, 5.49])
        >>> bool((future["x_lower"] < future["x"]).all() and (future["x"] < future["x_upper"]).all())
        True
        """
        end = self._bundle.times[-1]
        if times is None:
            if horizon is None:
                raise DataError("forecast needs times=[...] or horizon=...; received neither.")
            times = np.linspace(end, end + float(horizon), int(n) + 1)[1:]
            if self._is_datetime():
                times = self._to_datetime(times)
        signal = self._problem.inputs
        if self.model.inputs:
            signal = self._future_inputs(inputs, times)
        tf = self._float_times(times)
        x = self._integrate(self._problem.x0().detach(), self._t0(), tf, signal)
        out = self._dataset(x, signal, tf, kind="forecast", raw_times=times)
        if level is not None:
            out = add_bands(self, out, tf, signal, level, interval)
        return out

    def simulate(self, data: xr.Dataset, *, n_init: int = 10) -> xr.Dataset:
        """Run the fitted model on new data (new inputs, new experiment).

        The initial state of each trajectory is estimated from its first ``n_init``
        observed samples (the model's parameters stay fixed); then the model runs free
        over the whole record, driven by the data's inputs.

        Parameters
        ----------
        data : xarray.Dataset
            A new record, under the data contract of :func:`sysid.fit`; the model's
            inputs must be known over it.
        n_init : int, default 10
            Number of first samples used to estimate each trajectory's initial state.

        Returns
        -------
        xarray.Dataset
            Every state and channel (and input) at the data's times, with its dims and
            attrs.

        Examples
        --------
        Fit a pendulum on one experiment (angle measured), then predict a new one that
        starts at rest in the downward position with a push (angle and velocity unknown
        to the model: they are estimated from the first 10 angles):

        >>> import numpy as np, sympy as sp, sysid
        >>> data = sysid.datasets.simulate("pendulum", observed=["theta"], noise=0.02)
        >>> theta, omega = sp.symbols("theta omega")
        >>> omega0, alpha = sp.symbols("omega0 alpha", positive=True)
        >>> model = sysid.HybridODE(
        ...     states=[theta, omega],
        ...     physics={theta: omega, omega: -omega0**2 * sp.sin(theta) - alpha * omega},
        ...     parameters={omega0: 1.5, alpha: 0.1})
        >>> result = sysid.fit(model, data, progress=False)
        >>> new, truth = sysid.datasets.simulate("pendulum", observed=["theta"], x0=[0.0, 1.0],
        ...                                      noise=0.02, seed=5, truth=True)
        >>> run = result.simulate(new)
        >>> float(run["omega"][0])                     # truth: 1.0
        1.00
        >>> error = float(np.abs(run["omega"] - truth["omega"]).max())
        >>> print(f"largest velocity error over the new record: {error:.3f} rad/s")
        largest velocity error over the new record: 0.005 rad/s
        """
        bundle = prepare(self.model, data, time_unit=self._bundle.time_attrs.get("time_unit"))
        signal = input_signal(bundle.times, bundle.u, self.options.interpolation)
        x0 = self._estimate_x0(bundle, signal, n_init)
        x = self._integrate(x0, bundle.times[bundle.t_first], bundle.times, signal)
        return self._dataset(x, signal, bundle.times, kind="simulate", template=data,
                             raw_times=data["time"].values)

    # -- plotting and files --------------------------------------------------------------
    def plot(self, *, forecast=None, states=None, figsize=None):
        """Data, fit and imputed states (and a forecast ``horizon``) per state and channel.

        One panel per state (observed or not) and per observed channel that is not a
        state; several trajectories share a panel, one colour each (up to 10). Axes are
        labelled from the data's ``long_name`` and ``units`` attrs.

        Parameters
        ----------
        forecast : float, optional
            Also draw a forecast this far past the last sample.
        states : list of str, optional
            Only these states and channels.
        figsize : tuple, optional
            Figure size in inches (default: 8 wide, 2.4 per panel).

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
        return plot_result(self, forecast=forecast, states=states, figsize=figsize)

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
        return summarize(self, fit_from=fit_from, **options)

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

    def _float_times(self, times) -> np.ndarray:
        if times is None:
            return self._bundle.times
        arr = np.atleast_1d(np.asarray(times))
        if np.issubdtype(arr.dtype, np.datetime64) != self._is_datetime():
            raise DataError(f"times must be {'datetime64' if self._is_datetime() else 'float'} "
                            f"like the data's time coordinate; received dtype {arr.dtype}.")
        a = self._bundle.time_attrs if self._is_datetime() else {}
        tf, _ = time_to_float(xr.DataArray(arr, dims="time"), a.get("time_unit"),
                              a.get("time_origin"))
        if not np.all(np.isfinite(tf)) or np.any(np.diff(tf) <= 0):
            raise DataError("times must be finite, sorted and unique; received "
                            f"{arr[:5]!r}{'...' if arr.size > 5 else ''}.")
        return tf

    def _integrate(self, x0, t0, times, signal: InputSignal) -> np.ndarray:
        """States (B, T, n) at ``times``, integrating forwards and backwards from x0 at t0."""
        with torch.no_grad():
            return solve_at_times(self._problem.field, x0, t0, times, signal,
                                  self.options.solver_options(),
                                  max_interval=self._sample_interval()).numpy()

    def _sample_interval(self) -> float | None:
        """The longest interval a fixed-step solver integrates across in one go on a grid
        of its own (see ``solve_at_times``): the fit's typical sample interval."""
        return sample_interval(self._bundle)

    def _estimate_x0(self, bundle, signal, n_init) -> torch.Tensor:
        """Initial states fitted to the first ``n_init`` samples, parameters held fixed."""
        problem, field = self._problem, self._problem.field
        x0, _ = initial_states(self.model, field, bundle)
        idx = segment_grid(bundle)[:, :max(int(n_init), 1)]
        if idx.shape[1] < 2:
            return torch.as_tensor(x0)
        tau, y, mask, u_grid = segment_tensors(bundle, idx)
        levels = [self.noise_std.get(c, float("nan")) for c in bundle.channels]
        sigma = torch.tensor([v if np.isfinite(v) and v > 0 else 1.0 for v in levels])
        z = ((torch.as_tensor(x0) - problem.loc) / problem.scale).requires_grad_(True)
        opt = torch.optim.LBFGS([z], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")
        frozen = [p for p in field.parameters() if p.requires_grad]

        def closure():
            opt.zero_grad()
            xs = solve_segments(field, problem.loc + problem.scale * z, tau, signal,
                                self.options.solver_options())
            pred = field.observe(tau, xs, u_grid)
            r = torch.where(mask, problem.noise.residuals(pred, y, mask), torch.zeros(()))
            loss = ((r / sigma) ** 2).sum()
            loss.backward()
            return loss

        for p in frozen:
            p.requires_grad_(False)
        try:
            opt.step(closure)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return (problem.loc + problem.scale * z).detach()

    def _future_inputs(self, inputs, times) -> InputSignal:
        if inputs is None:
            raise DataError(
                f"This model is driven by inputs {self.model.input_names}; a forecast needs "
                f"their future values. Pass inputs=xr.Dataset({{name: ('time', values)}}, "
                f"coords={{'time': times}}) covering the forecast times.")
        bundle_in = xr.merge([self.data[self.model.input_names], inputs[self.model.input_names]],
                             compat="override", join="outer")
        tf = self._float_times(bundle_in["time"].values)
        u = np.stack([np.broadcast_to(bundle_in[n].transpose(..., "time").values,
                                      (self._bundle.n_trajectories, len(tf)))
                      for n in self.model.input_names], axis=-1)
        return input_signal(tf, u, self.options.interpolation)

    def _dataset(self, x, signal, tf, *, kind, template=None, raw_times=None) -> xr.Dataset:
        return states_dataset(self, x, signal, tf, kind=kind, template=template,
                              raw_times=raw_times)


def fit_from(model, data, x0, *, like=None, **options) -> FitResult:
    """:func:`sysid.fit` starting from the initial states ``x0`` (trajectories, states), in
    physical units, instead of estimating them from the first samples (``None``: the
    same as :func:`sysid.fit`). ``like``: a :class:`FitResult` of a model with the same states
    on the same data, whose units and fitted states (initial and window starts) the fit
    starts from (see :func:`build_problem`); ``x0``, if given, replaces its initial
    states. The symbolic summary continues each candidate's full and held-out refits from
    its previous refit this way."""
    trained = train(model, data, x0, like=None if like is None else like._problem, **options)
    result = FitResult(*trained)
    if trained.options.throw and not trained.status.success:
        err = FitError(f"{trained.status} The best result so far is attached as err.result.")
        err.result = result
        raise err
    return result
