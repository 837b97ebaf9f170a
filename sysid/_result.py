"""``FitResult``: fitted parameters, equations, imputed states, forecasts and simulations."""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch
import xarray as xr

from ._data import prepare, time_to_float
from ._integrate import InputSignal, SolverFailure, solve_at_times, solve_segments, threads_for
from ._problem import initial_states, input_signal, segment_grid, segment_tensors
from .errors import DataError

__all__ = ["FitResult"]


class FitResult:
    """The outcome of :func:`sysid.fit`.

    Attributes
    ----------
    parameters : dict[str, float]
        Fitted physical parameters.
    status : FitStatus
        Why training stopped (``.message``, ``.advice``, ``.success``).
    history : xarray.Dataset
        Training curve over ``epoch``.
    stats : dict
        Epochs, L-BFGS iterations, function evaluations, wall time, counts.
    noise_std : dict[str, float]
        Fitted (or given) measurement noise level per channel.
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
        with torch.no_grad():
            values = self._problem.field.parameter_values().tolist()
        return dict(zip(self.model.parameter_names, values))

    @property
    def initial_states(self) -> xr.Dataset:
        """Fitted state of each trajectory at its first sample."""
        x0 = self._problem.x0().detach().numpy()
        from ._output import initial_states_dataset
        return initial_states_dataset(self, x0)

    @property
    def equations(self) -> dict[str, sp.Expr]:
        """Fitted right-hand side per state; the network appears as ``NN_<state>(...)``."""
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
        >>> table = result.parameter_table(level=0.9)       # doctest: +SKIP
        >>> table[["value", "std_error", "lower", "upper"]]  # doctest: +SKIP
                   value  std_error   lower   upper
        parameter
        omega0     1.046    0.0031   1.041   1.051
        """
        from ._uncertainty import parameter_table
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
        >>> corr = result.parameter_correlation()           # doctest: +SKIP
        >>> float(corr.sel(parameter="a", parameter_="b"))  # doctest: +SKIP
        0.87
        """
        from ._uncertainty import parameter_correlation
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
        >>> states = result.impute()                       # doctest: +SKIP
        >>> states["omega"].plot()                         # doctest: +SKIP
        >>> band = result.impute(level=0.9)                # doctest: +SKIP
        >>> band["omega_lower"], band["omega_upper"]       # doctest: +SKIP
        """
        tf = self._float_times(times)
        x = self._integrate(self._problem.x0().detach(), self._t0(), tf, self._problem.inputs)
        out = self._dataset(x, self._problem.inputs, tf, kind="impute", raw_times=times)
        if level is not None:
            from ._uncertainty import add_bands
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
        >>> future = result.forecast(horizon=5.0, level=0.9)       # doctest: +SKIP
        >>> future["x"].plot(); future["x_upper"].plot()           # doctest: +SKIP
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
            from ._uncertainty import add_bands
            out = add_bands(self, out, tf, signal, level, interval)
        return out

    def simulate(self, data: xr.Dataset, *, n_init: int = 10) -> xr.Dataset:
        """Run the fitted model on new data (new inputs, new experiment).

        The initial state of each trajectory is estimated from its first ``n_init``
        observed samples (the model's parameters stay fixed); then the model runs free
        over the whole record, driven by the data's inputs.
        """
        bundle = prepare(self.model, data, time_unit=self._bundle.time_attrs.get("time_unit"))
        signal = input_signal(bundle.times, bundle.u, self.options.interpolation)
        x0 = self._estimate_x0(bundle, signal, n_init)
        x = self._integrate(x0, bundle.times[bundle.t_first], bundle.times, signal)
        return self._dataset(x, signal, bundle.times, kind="simulate", template=data,
                             raw_times=data["time"].values)

    # -- plotting and files --------------------------------------------------------------
    def plot(self, *, forecast=None, states=None, figsize=None):
        """Data, fit and imputed states (and a forecast ``horizon``) per state and channel."""
        from ._plot import plot_result
        return plot_result(self, forecast=forecast, states=states, figsize=figsize)

    def save(self, path) -> None:
        """Write the result to ``path`` (a single file; see :func:`sysid.load`)."""
        from ._io import save_result
        save_result(self, path)

    def symbolic(self, **options):
        """Sparse symbolic summary of the neural residual (see :class:`SymbolicSummary`)."""
        from ._symbolic import summarize
        return summarize(self, **options)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v:.4g}" for k, v in self.parameters.items())
        return f"FitResult({params}; status={self.status.code})"

    # -- internals -----------------------------------------------------------------------
    def _t0(self) -> np.ndarray:
        return self._bundle.times[self._bundle.t_first]

    def _is_datetime(self) -> bool:
        return self._bundle.datetime

    def _to_datetime(self, tf):
        from ._data import _TIME_UNITS
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
                                  self.options.solver_options()).numpy()

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
        from ._output import states_dataset
        return states_dataset(self, x, signal, tf, kind=kind, template=template,
                              raw_times=raw_times)
