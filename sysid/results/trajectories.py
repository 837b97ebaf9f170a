"""A result's trajectories: imputed states, forecasts past the data and simulations of new
records, each integrated from the fitted initial states (or from initial states estimated
on a new record's first samples) and returned as an ``xarray.Dataset``
(:func:`~sysid.results.outputs.states_dataset`).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import xarray as xr

from ..data.bundle import prepare, time_to_float
from ..errors import DataError
from ..problem.segments import segment_grid, segment_tensors
from ..problem.starts import initial_states, input_signal
from ..solve.integrate import InputSignal, SolverFailure, solve_at_times, solve_segments
from ..uncertainty.bands import add_bands
from .outputs import states_dataset

__all__ = ["Trajectories"]


class Trajectories:
    """The trajectory methods of :class:`~sysid.FitResult` (mixed into it)."""

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
        tf = _float_times(self, times)
        x = _integrate(self, self._problem.x0().detach(), self._t0(), tf, self._problem.inputs)
        out = states_dataset(self, x, self._problem.inputs, tf, kind="impute", raw_times=times)
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
        times = forecast_times(self, times, horizon, n)
        signal = self._problem.inputs
        if self.model.inputs:
            signal = _future_inputs(self, inputs, times)
        tf = _float_times(self, times)
        x = _integrate(self, self._problem.x0().detach(), self._t0(), tf, signal)
        out = states_dataset(self, x, signal, tf, kind="forecast", raw_times=times)
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

        Warns
        -----
        RuntimeWarning
            When an input that the residual network reads leaves the range of the
            training data (both ranges are given): the network extrapolates there.

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
        _warn_outside_training_inputs(self, bundle)
        signal = input_signal(bundle.times, bundle.u, self.options.interpolation)
        x0 = _estimate_x0(self, bundle, signal, n_init)
        x = _integrate(self, x0, bundle.times[bundle.t_first], bundle.times, signal)
        return states_dataset(self, x, signal, bundle.times, kind="simulate", template=data,
                             raw_times=data["time"].values)


def _warn_outside_training_inputs(result, bundle) -> None:
    """A RuntimeWarning for each input that the residual network reads and that the new
    record drives outside the range it was fitted on: there the network extrapolates."""
    model = result.model
    if model.residual is None:
        return
    for j, name in enumerate(model.input_names):
        if name not in model.residual_inputs:
            continue
        train, new = result._bundle.u[..., j], bundle.u[..., j]
        if not (np.isfinite(train).any() and np.isfinite(new).any()):
            continue
        lo, hi = float(np.nanmin(train)), float(np.nanmax(train))
        new_lo, new_hi = float(np.nanmin(new)), float(np.nanmax(new))
        slack = 1e-9 * max(hi - lo, abs(hi), abs(lo), 1e-300)
        if new_lo < lo - slack or new_hi > hi + slack:
            warnings.warn(
                f"input {name!r} leaves the range the model was fitted on: the new record "
                f"spans [{new_lo:.4g}, {new_hi:.4g}], the training data [{lo:.4g}, {hi:.4g}]. "
                f"The residual network reads it and extrapolates outside that range, so the "
                f"simulation there is less reliable; fit on data that covers it, or compare "
                f"with a physics-only fit.", RuntimeWarning, stacklevel=3)


def forecast_times(result, times, horizon, n):
    """The forecast's times: ``times`` as given, else ``n`` points up to ``horizon`` past
    the last sample (datetime64 for datetime data)."""
    if times is not None:
        return times
    if horizon is None:
        raise DataError("forecast needs times=[...] or horizon=...; received neither.")
    end = result._bundle.times[-1]
    times = np.linspace(end, end + float(horizon), int(n) + 1)[1:]
    return result._to_datetime(times) if result._is_datetime() else times


def _float_times(result, times) -> np.ndarray:
    if times is None:
        return result._bundle.times
    arr = np.atleast_1d(np.asarray(times))
    if np.issubdtype(arr.dtype, np.datetime64) != result._is_datetime():
        raise DataError(f"times must be {'datetime64' if result._is_datetime() else 'float'} "
                        f"like the data's time coordinate; received dtype {arr.dtype}.")
    a = result._bundle.time_attrs if result._is_datetime() else {}
    tf, _ = time_to_float(xr.DataArray(arr, dims="time"), a.get("time_unit"),
                          a.get("time_origin"))
    if not np.all(np.isfinite(tf)) or np.any(np.diff(tf) <= 0):
        raise DataError("times must be finite, sorted and unique; received "
                        f"{arr[:5]!r}{'...' if arr.size > 5 else ''}.")
    return tf


def _integrate(result, x0, t0, times, signal: InputSignal) -> np.ndarray:
    """States (B, T, n) at ``times``, integrating forwards and backwards from x0 at t0."""
    with torch.no_grad():
        return solve_at_times(result._problem.field, x0, t0, times, signal,
                              result.options.solver_options(),
                              max_interval=result._sample_interval()).numpy()


def _estimate_x0(result, bundle, signal, n_init) -> torch.Tensor:
    """Initial states fitted to the first ``n_init`` samples, parameters held fixed."""
    problem, field = result._problem, result._problem.field
    x0, _ = initial_states(result.model, field, bundle)
    idx = segment_grid(bundle)[:, :max(int(n_init), 1)]
    if idx.shape[1] < 2:
        return torch.as_tensor(x0)
    tau, y, mask, u_grid = segment_tensors(bundle, idx)
    levels = [result.noise_std.get(c, float("nan")) for c in bundle.channels]
    sigma = torch.tensor([v if np.isfinite(v) and v > 0 else 1.0 for v in levels])
    z = problem.to_z(x0).detach().requires_grad_(True)
    opt = torch.optim.LBFGS([z], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")
    frozen = [p for p in field.parameters() if p.requires_grad]

    best = {"loss": float("inf"), "z": z.detach().clone()}

    def closure():
        opt.zero_grad()
        try:
            xs = solve_segments(field, problem.to_x(z), tau, signal,
                                result.options.solver_options())
        except SolverFailure:      # a trial start where the model blows up: back off
            z.grad = torch.zeros_like(z)
            return torch.tensor(1e10, dtype=torch.float64)
        pred = field.observe(tau, xs, u_grid)
        r = torch.where(mask, problem.noise.residuals(pred, y, mask), torch.zeros(()))
        loss = ((r / sigma) ** 2).sum()
        loss.backward()
        if not torch.isfinite(z.grad).all():
            z.grad = torch.zeros_like(z)
            return torch.tensor(1e10, dtype=torch.float64)
        if float(loss.detach()) < best["loss"]:
            best.update(loss=float(loss), z=z.detach().clone())
        return loss

    for p in frozen:
        p.requires_grad_(False)
    try:
        opt.step(closure)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    with torch.no_grad():       # a signed state's start on its side of 0
        best["z"] = problem.to_z(problem.to_x(best["z"]))
    # the best start evaluated (the guess where even that could not be integrated)
    return problem.to_x(best["z"]).detach()


def _future_inputs(result, inputs, times) -> InputSignal:
    """The inputs over the record and the forecast: the recorded inputs wherever they hold a
    value (the fitted trajectory was driven by them), the given future ``inputs``
    elsewhere; refused where the forecast would run past the last time at which every
    input is known."""
    names = result.model.input_names
    how = (f"Pass inputs=xr.Dataset({{name: ('time', values)}}, coords={{'time': times}}) "
           f"holding {names} over the forecast times.")
    if inputs is None:
        raise DataError(f"This model is driven by inputs {names}; a forecast needs their "
                        f"future values. {how}")
    if not isinstance(inputs, xr.Dataset):
        raise DataError(f"inputs must be an xarray.Dataset; received {type(inputs).__name__}. {how}")
    missing = [n for n in names if n not in inputs.data_vars]
    if missing:
        raise DataError(f"The future inputs lack {missing} (they hold "
                        f"{sorted(map(str, inputs.data_vars))}). {how}")
    if "time" not in inputs.dims:
        raise DataError(f"The future inputs need a 'time' dimension; received dims "
                        f"{dict(inputs.sizes)}. {how}")
    future = inputs[names]
    recorded = result.data[names]
    if "trajectory" in future.dims and "trajectory" not in recorded.dims:
        raise DataError("The future inputs have a 'trajectory' dimension but the data have "
                        "none; give them over 'time' only.")
    if "trajectory" in recorded.dims and "trajectory" in future.dims:
        future = future.reindex(trajectory=recorded["trajectory"])
    combined = recorded.combine_first(future)       # the record's own inputs where it has them
    tf = _float_times(result, combined["time"].values)
    B = result._bundle.n_trajectories
    u = np.stack([np.broadcast_to(combined[n].transpose(..., "time").values, (B, len(tf)))
                  for n in names], axis=-1).astype(float)
    need = float(np.max(_float_times(result, times)))
    for b in range(B):
        known = np.all(np.isfinite(u[b]), axis=-1)
        last = tf[known][-1] if known.any() else -np.inf
        if last < need - 1e-9 * max(1.0, abs(need)):
            raise DataError(
                f"The inputs {names} are known up to time {last:g}"
                f"{f' in trajectory {b}' if B > 1 else ''}, but the forecast runs to {need:g}; "
                f"the model cannot be integrated without them. {how}")
    return input_signal(tf, u, result.options.interpolation)
