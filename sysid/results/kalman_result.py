"""The result of a fit with process noise (``sysid.fit(..., process_noise=...)``): the
Kalman likelihood's parameters, the smoothed states as the imputation with their bands,
and forecasts from the last filtered state (:mod:`sysid.training.kalman`,
:mod:`sysid.training.kalman_fit`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import xarray as xr
from scipy.stats import norm

from ..errors import DataError, ModelError
from ..training.kalman import Grid
from ..training.kalman_fit import train_process_noise
from .outputs import states_dataset
from .failures import report_failure
from .result import FitResult
from .trajectories import _float_times, forecast_times

__all__ = ["KalmanResult", "fit_process_noise"]

_SCALES = {"positive": "log", "negative": "log", "above": "log", "below": "log",
           "bounded": "logit"}                   # the raw scale of each kind


class KalmanResult(FitResult):
    """A :class:`~sysid.FitResult` of a stochastic state-space fit.

    The model is the drift of ``dx = f(x) dt + diag(q) dW``; ``parameters`` and
    ``initial_states`` maximise the extended Kalman filter's likelihood of the data.

    Besides those of :class:`~sysid.FitResult`:

    Attributes
    ----------
    process_noise : dict[str, float]
        Per state, the process noise standard deviation ``q`` (state units per square
        root of the time unit), fitted or given.
    noise_std : dict[str, float]
        The measurement noise levels of the Kalman fit (fitted or ``attrs['noise_std']``).
    stats["process_noise"] : dict
        The deterministic fit that started it (``deterministic_parameters``,
        ``deterministic_status``), the final negative log-likelihood ``nll``, the number
        of L-BFGS rounds and the RK4 steps per interval.

    ``simulate(data)`` runs the fitted drift deterministically (the mean model) from
    initial states estimated on the new record, as for a deterministic fit.
    """

    def __init__(self, trained, space):
        super().__init__(*trained)
        self._space = space
        with torch.no_grad():
            q, sigma = space.q().tolist(), space.sigma().tolist()
        self.process_noise = dict(zip(self.model.state_names, q))
        self.noise_std = dict(zip(self._bundle.channels, sigma))

    # -- states ------------------------------------------------------------------------
    def _smoothed(self, tf):
        """Smoothed means (B, T, n) and covariances (B, T, n, n) at float times ``tf``
        (None: the data's times)."""
        grid, idx = Grid.from_bundle(self._bundle, tf)
        mean, cov = self._space.smooth(grid)
        return mean[:, idx], cov[:, idx]

    def impute(self, times=None, *, level=None, interval="confidence") -> xr.Dataset:
        """The smoothed states (Rauch-Tung-Striebel, given all the data and the fitted
        parameters and noise levels) at ``times`` (default: the data's times).

        Other times are merged into the filter's grid as times without a measurement, so
        they get the smoothed state there too; past a trajectory's last sample that is the
        prediction from its last filtered state (as :meth:`forecast`), and before its
        first sample (where the state-space model starts) NaN.

        ``level`` adds ``<var>_lower`` and ``<var>_upper``: the smoothed state's normal
        interval (its covariance; the parameters' uncertainty is not included), for a
        channel that is not a state through the observation's Jacobian;
        ``interval="prediction"`` adds the measurement noise to the channels.
        """
        tf = _float_times(self, times)
        mean, cov = self._smoothed(None if times is None else tf)
        out = states_dataset(self, mean, self._problem.inputs, tf, kind="impute",
                             raw_times=times)
        if level is not None:
            out = self._bands(out, tf, mean, cov, level, interval)
        return out

    def forecast(self, times=None, *, horizon=None, n=200, inputs=None, level=None,
                 interval="confidence") -> xr.Dataset:
        """Each trajectory continued past its data from its last filtered state: the mean
        follows the model, the covariance grows with the process noise
        (``P' = F P + P F^T + diag(q^2)``), which ``level`` turns into bands. Give
        absolute ``times`` or a ``horizon`` past the last sample and ``n`` points. It is
        :meth:`impute` at those times (at times within the data: the smoothed states).
        Models with inputs are not forecast here (their future inputs would have to enter
        the filter): fit without ``process_noise`` for that."""
        if self.model.inputs:
            raise ModelError("forecast of a process-noise fit does not take future inputs; "
                             "use result.simulate(data) with the inputs, or a fit without "
                             "process_noise.")
        times = forecast_times(self, times, horizon, n)
        out = self.impute(times, level=level, interval=interval)
        out.attrs["sysid_kind"] = "forecast"
        return out

    def _bands(self, ds, tf, mean, cov, level, interval):
        if interval not in ("confidence", "prediction"):
            raise ModelError(f"interval must be one of ['confidence', 'prediction']; "
                             f"received {interval!r}.")
        if not 0 < float(level) < 1:
            raise ModelError(f"level must be between 0 and 1 (e.g. 0.9); received {level!r}.")
        z = float(norm.ppf(0.5 + 0.5 * float(level)))
        space, names = self._space, self.model.state_names
        B, T, n = mean.shape
        sd = {s: np.sqrt(np.clip(cov[..., i, i], 0, None)) for i, s in enumerate(names)}
        with torch.no_grad():
            t = torch.as_tensor(np.broadcast_to(tf, (B, T)).reshape(-1).copy())
            x = torch.as_tensor(mean.reshape(B * T, n))
            u = self._problem.inputs(t.reshape(B, T)).reshape(B * T, -1)
            p = self._problem.field.parameter_values().unbind(0)
            _, H = space._observe(t, x, u, p)
            var = torch.einsum("bci,bij,bcj->bc", H, torch.as_tensor(cov.reshape(B * T, n, n)),
                               H).numpy().reshape(B, T, -1)
        for c, name in enumerate(self._bundle.channels):
            v = np.clip(var[..., c], 0, None)
            if interval == "prediction":
                v = v + self.noise_std[name] ** 2
            if name not in sd or interval == "prediction":
                sd[name] = np.sqrt(v)
        squeeze = (lambda a: a) if "trajectory" in ds.dims else (lambda a: a[0])
        kind = "smoothed-state" if interval == "confidence" else "prediction"
        for name, s in sd.items():
            center = ds[name].values
            label = ds[name].attrs.get("long_name", name)
            for suffix, vals in (("lower", center - z * squeeze(s)),
                                 ("upper", center + z * squeeze(s))):
                attrs = {k: v for k, v in ds[name].attrs.items() if k == "units"}
                attrs["long_name"] = f"{label}, {suffix} {100 * level:g} % {kind} bound"
                ds[f"{name}_{suffix}"] = (ds[name].dims, vals, attrs)
        ds.attrs["sysid_level"] = float(level)
        ds.attrs["sysid_interval"] = interval
        return ds

    # -- parameters ----------------------------------------------------------------------
    def parameter_table(self, level: float = 0.9, *, network: bool = True):
        """Value, standard error and normal ``level`` interval of each parameter, from
        the inverse Hessian of the Kalman negative log-likelihood in everything it was
        maximised over (raw parameters, initial states, learned noise levels). Intervals
        are computed on the raw (log for signed parameters) scale and mapped back.
        ``network`` is ignored (no network)."""
        if not 0 < float(level) < 1:
            raise ModelError(f"level must be between 0 and 1 (e.g. 0.9); received {level!r}.")
        cov = self._covariance()
        field = self._problem.field
        P = field.raw.numel()
        raw = field.raw.detach()
        se = torch.sqrt(torch.clamp(torch.diagonal(cov)[:P], min=0.0))
        z = float(norm.ppf(0.5 + 0.5 * float(level)))
        with torch.no_grad():
            value = field.transform.forward(raw)
            a, b = field.transform.forward(raw - z * se), field.transform.forward(raw + z * se)
            jac = torch.func.jacrev(field.transform.forward)(raw).diagonal()
        std = (jac.abs() * se).numpy()
        rel = std / np.abs(value.numpy())
        table = pd.DataFrame({
            "value": value.numpy(), "std_error": std,
            "lower": torch.minimum(a, b).numpy(), "upper": torch.maximum(a, b).numpy(),
            "rel_error": rel, "identifiable": np.isfinite(rel) & (rel <= 1.0),
            "scale": [_SCALES.get(k, k) for k in field.transform.kinds],
            "note": ["" if np.isfinite(r) and r <= 1 else "relative error above 100 %"
                     for r in rel]},
            index=pd.Index(self.model.parameter_names, name="parameter"))
        table.attrs.update(level=float(level), network=False,
                           n_observations=int(self._bundle.mask.sum()),
                           method="inverse Hessian of the Kalman likelihood")
        return table

    def parameter_correlation(self, *, network: bool = True) -> xr.DataArray:
        """Correlations of the raw parameters under the Kalman likelihood's inverse
        Hessian (see :meth:`parameter_table`)."""
        P = self._problem.field.raw.numel()
        c = self._covariance()[:P, :P].numpy()
        d = np.sqrt(np.clip(np.diag(c), 1e-300, None))
        names = self.model.parameter_names
        return xr.DataArray(c / np.outer(d, d), dims=("parameter", "parameter_"),
                            coords={"parameter": names, "parameter_": names})

    def _covariance(self) -> torch.Tensor:
        if getattr(self, "_cov", None) is None:
            space = self._space
            names = ["problem.field.raw", "problem.z0", "log_q", "log_sigma"]
            tensors = [t.detach() for t in space.tensors()]
            sizes = [t.numel() for t in tensors]
            grid, _ = Grid.from_bundle(self._bundle)

            def nll(flat):
                parts = torch.split(flat, sizes)
                values = {k: v.reshape(t.shape) for k, v, t in zip(names, parts, tensors)}
                return torch.func.functional_call(space, values, (grid,))

            hess = torch.autograd.functional.hessian(nll, torch.cat(
                [t.reshape(-1) for t in tensors]))
            self._cov = torch.linalg.pinv(0.5 * (hess + hess.T), hermitian=True)
        return self._cov

    # -- likelihood (sysid.results.compare's hooks) ------------------------------------------
    def _data_log_likelihood(self) -> float:
        """The extended Kalman filter's log-likelihood of the measurements (the fit's
        objective, constants included): a density of the same data as a deterministic
        fit's ``loglik``, which is its special case ``q = 0``."""
        grid, _ = Grid.from_bundle(self._bundle)
        with torch.no_grad():
            try:
                return -float(self._space(grid))
            except torch.linalg.LinAlgError:
                return -math.inf

    @property
    def parameter_counts(self) -> dict[str, int]:
        """Fitted quantities by kind: ``physical`` parameters, ``initial_states``,
        measurement ``noise`` levels and ``process_noise`` levels that were estimated
        (given ones are not counted), ``network`` (always 0)."""
        return {"physical": int(self._problem.field.raw.numel()),
                "initial_states": int(self._problem.z0.numel()),
                "noise": int(self._space.log_sigma.numel()),
                "process_noise": int(self._space.log_q.numel()), "network": 0}

    @property
    def effective_parameters(self) -> float:
        """Every fitted quantity counts fully (no network, nothing shrunk):
        :attr:`n_parameters`."""
        return float(self.n_parameters)

    # -- what this result does not do ------------------------------------------------------
    def save(self, path) -> None:
        """Not available for a process-noise fit yet: raises :class:`ModelError`."""
        raise ModelError("save() does not write process-noise fits yet (the file would "
                         "load as a deterministic fit). Keep result.parameters, "
                         "result.process_noise and result.impute() (netCDF) instead.")

    def symbolic(self, **options):
        """Not available: a process-noise fit has no network to summarise."""
        raise ModelError("symbolic() summarises a residual network; a process-noise fit "
                         "has none.")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v:.4g}" for k, v in self.parameters.items())
        q = ", ".join(f"{k}={v:.3g}" for k, v in self.process_noise.items())
        return f"KalmanResult({params}; process noise {q}; status={self.status.code})"


def fit_process_noise(model, data, process_noise, **options) -> KalmanResult:
    """:func:`sysid.fit` with ``process_noise``: see :mod:`sysid.training.kalman` and
    :mod:`sysid.training.kalman_fit`. A failed fit is reported as ``throw`` says, as for
    any fit."""
    trained, space = train_process_noise(model, data, process_noise, **options)
    result = KalmanResult(trained, space)
    report_failure(result, trained.options.throw)
    return result
