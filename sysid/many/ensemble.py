"""``fit_ensemble`` and ``Ensemble``: one model fit many times, over seeds or over
resampled windows or trajectories of the data, and the spread of its parameters and
predictions.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from ..errors import DataError, FitError, suggest
from .collection import FitCollection
from .execution import _check_options, _execute, _inputs, _model_spec

__all__ = ["fit_ensemble", "Ensemble"]


_SCHEMES = ("seeds", "windows", "trajectories")


# -- ensembles ----------------------------------------------------------------------------------
def _channels(model, data) -> list[str]:
    return [name for name in model.channels if name in data.data_vars]


def _observed(model, data) -> tuple[np.ndarray, list[str]]:
    """(B, T) True where any channel is measured, and the channel names."""
    names = _channels(model, data)
    if not names:
        raise DataError(f"The data have no measured channel of the model (channels: "
                        f"{list(model.channels)}; variables: {list(data.data_vars)}).")
    order = ("trajectory", "time") if "trajectory" in data.dims else ("time",)
    grid = xr.DataArray(np.zeros([data.sizes[d] for d in order], dtype=bool), dims=order)
    obs = grid
    for name in names:
        extra = [d for d in data[name].dims if d not in order]
        if extra:
            raise DataError(f"{name!r} has dimensions {data[name].dims}; expected {order}.")
        obs = obs | data[name].notnull()
    obs = xr.broadcast(obs, grid)[0].transpose(*order).values
    return np.asarray(obs, dtype=bool).reshape(-1, data.sizes["time"]), names


def _blocks(idx: np.ndarray, block: int) -> list[np.ndarray]:
    """Consecutive runs of ``block`` observed samples (the last one may be shorter)."""
    return [idx[i:i + block] for i in range(0, len(idx), block)]


def _auto_block(obs: np.ndarray, block) -> int:
    if block not in (None, "auto"):
        if not isinstance(block, (int, np.integer)) or block < 1:
            raise ValueError(f"block must be 'auto' or a number of samples >= 1; received "
                             f"{block!r}.")
        return int(block)
    shortest = int(obs.sum(axis=1).min())
    return max(2, math.ceil(shortest / 10))


def _resample_mask(obs: np.ndarray, scheme: str, block: int, rng) -> np.ndarray:
    """Samples a member keeps, (B, T). "windows": a random half of the blocks of each
    trajectory (a trajectory whose first block is dropped is imputed backwards from its
    first kept sample). "trajectories": a random half of the trajectories whole, the
    others only their first block (for their initial states)."""
    keep = obs.copy()
    B = obs.shape[0]
    if scheme == "windows":
        for b in range(B):
            blocks = _blocks(np.flatnonzero(obs[b]), block)
            if len(blocks) < 4:
                raise DataError(f"resample='windows' needs at least 4 blocks of {block} "
                                f"observed samples per trajectory; trajectory {b} has "
                                f"{int(obs[b].sum())} samples. Use a smaller block=... .")
            for j in rng.permutation(len(blocks))[:len(blocks) // 2]:
                keep[b, blocks[j]] = False
    elif scheme == "trajectories":
        if B < 2:
            raise DataError("resample='trajectories' needs at least 2 trajectories; the data "
                            "have 1. Use resample='windows' (blocks of time) instead.")
        for b in rng.permutation(B)[:B // 2]:
            idx = np.flatnonzero(obs[b])
            keep[b, idx[block:]] = False
    return keep


def _masked(data: xr.Dataset, names: list[str], keep: np.ndarray) -> xr.Dataset:
    """``data`` with the channels ``names`` set to NaN where ``keep`` is False."""
    has_traj = "trajectory" in data.dims
    keep_da = xr.DataArray(keep if has_traj else keep[0],
                           dims=("trajectory", "time") if has_traj else ("time",))
    out = data.copy()
    for name in names:
        masked = data[name].where(keep_da).transpose(*data[name].dims, ...)
        masked.attrs = dict(data[name].attrs)
        out[name] = masked
    return out


class Ensemble:
    """An ensemble of fits of one model to (resampled) data, for intervals.

    Returned by :func:`sysid.fit_ensemble`. Its intervals combine the spread of the
    members (scaled for the half-sampling of ``resample="windows"`` or
    ``"trajectories"``) with, on request, the fitted measurement noise.

    Attributes
    ----------
    members : list[FitResult]
        The member fits that succeeded.
    reference : FitResult or None
        The fit to the full data (resampling schemes): the centre of the intervals.
    failed : dict
        {member: error message} of members that raised (left out of the intervals).
    scale : float
        Factor applied to the members' deviations: 1 for ``"seeds"``, ``sqrt(f/(1-f))``
        for half-sampling with kept fraction ``f`` of the observed values (the spread of
        estimates from a fraction ``f`` of the data is ``(1-f)/f`` times the variance of
        the full-data estimate).
    resample : str
    collection : FitCollection
        Every fit (labels 0..n-1, and "reference").

    Examples
    --------
    >>> import numpy as np, sympy as sp, sysid, xarray as xr
    >>> t = np.linspace(0.0, 5.0, 26)
    >>> rng = np.random.default_rng(0)
    >>> def decay(rate):          # one site: x(t) = 2 exp(-rate t), 1 % noise
    ...     x = 2.0 * np.exp(-rate * t) + 0.01 * rng.standard_normal(t.size)
    ...     return xr.Dataset({"x": ("time", x)}, coords={"time": t})
    >>> x = sp.Symbol("x")
    >>> k = sp.Symbol("k", positive=True)
    >>> model = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 1.0})
    >>> ens = sysid.fit_ensemble(model, decay(0.5), n=8, scheduler="serial", progress=False,
    ...                          epochs=0, lbfgs_iterations=15, shooting="single")
    >>> ens
    Ensemble(8 members, resample='windows'; 90 % intervals: k=0.502 [0.4927, 0.5113])
    >>> len(ens.members), ens.reference.parameters              # truth: k = 0.5
    (8, {'k': 0.502})
    >>> ens.parameters["k"].dims
    ('member',)
    """

    def __init__(self, model, collection: FitCollection, resample: str, kept: list[float]):
        self.model = model
        self.collection = collection
        self.resample = resample
        labels = [k for k in collection.labels if k != "reference"]
        self._labels = [k for k in labels if collection._outcomes[k]["ok"]]
        self.failed = {k: v for k, v in collection.failed.items()}
        if len(self._labels) < 2:
            raise FitError(f"Fewer than 2 ensemble members were fitted; failures: {self.failed}")
        if resample == "seeds":
            self.scale = 1.0
        else:
            f = float(np.mean([kept[k] for k in self._labels]))
            self.scale = math.sqrt(f / (1.0 - f)) if f < 1 else 1.0
        self.kept_fraction = float(np.mean([kept[k] for k in self._labels]))

    @property
    def members(self) -> list:
        return [self.collection[k] for k in self._labels]

    @property
    def reference(self):
        if "reference" in self.collection and self.collection._outcomes["reference"]["ok"]:
            return self.collection["reference"]
        return None

    @property
    def parameters(self) -> xr.Dataset:
        """Every fitted member's parameters over the dimension ``member``."""
        values = {n: ("member", np.array([self.collection._outcomes[k]["summary"]
                                          ["parameters"][n] for k in self._labels]))
                  for n in self.model.parameter_names}
        return xr.Dataset(values, coords={"member": np.asarray(self._labels)})

    def __len__(self) -> int:
        return len(self._labels)

    def parameter_table(self, level: float = 0.9):
        """Per parameter: ``value`` (the full-data fit, or the members' median for
        ``"seeds"``), the members' ``mean``, ``std`` (their spread, scaled: see
        :attr:`scale`), the ``level`` interval ``lower``/``upper`` = ``value`` -/+ t * std
        (t: Student-t quantile with members - 1 degrees of freedom, which allows for a
        spread estimated from few members), and ``q_lower``/``q_upper``: the (scaled)
        quantiles of the members' deviations from their median, around ``value`` (no
        normal assumption; needs 20+ members to mean much). ``DataFrame.attrs["level"]``."""
        import pandas as pd
        q_lo, q_hi = _quantiles(level)
        names = self.model.parameter_names
        values = np.array([[self.collection._outcomes[k]["summary"]["parameters"][n]
                            for n in names] for k in self._labels],
                          dtype=float).reshape(len(self._labels), len(names))
        ref = self._reference_summary()
        centre = np.array([ref["parameters"][n] for n in names]) if ref is not None \
            else np.median(values, axis=0)
        dev = values - np.median(values, axis=0)
        std = self.scale * values.std(axis=0, ddof=1)
        half = self._multiplier(level) * std
        table = pd.DataFrame({
            "value": centre, "mean": values.mean(axis=0), "std": std,
            "lower": centre - half, "upper": centre + half,
            "q_lower": centre + self.scale * np.quantile(dev, q_lo, axis=0),
            "q_upper": centre + self.scale * np.quantile(dev, q_hi, axis=0),
        }, index=pd.Index(names, name="parameter"))
        table.attrs.update(level=level, members=len(self), resample=self.resample)
        return table

    def _reference_summary(self):
        if self.resample == "seeds" or "reference" not in self.collection:
            return None
        o = self.collection._outcomes["reference"]
        return o["summary"] if o["ok"] else None

    # -- intervals on trajectories -------------------------------------------------------
    def impute(self, times=None, *, level: float = 0.9, interval: str = "confidence") -> xr.Dataset:
        """:meth:`FitResult.impute` with intervals: each state and channel ``name`` at
        ``times`` (the centre: the full-data fit, or the members' median for "seeds")
        plus ``name_lower`` and ``name_upper``.

        ``interval="confidence"``: the model's uncertainty (the members' spread);
        ``interval="prediction"``: for measured channels also the measurement noise (where a
        new measurement would fall). ``attrs["sysid_level"]`` and ``attrs["sysid_interval"]`` record them.
        """
        return self._with_bands(lambda r: r.impute(times), level, interval)

    def forecast(self, times=None, *, horizon=None, n: int = 200, inputs=None,
                 level: float = 0.9, interval: str = "confidence") -> xr.Dataset:
        """:meth:`FitResult.forecast` with intervals (see :meth:`impute`)."""
        return self._with_bands(lambda r: r.forecast(times, horizon=horizon, n=n, inputs=inputs),
                                level, interval)

    def simulate(self, data: xr.Dataset, *, n_init: int = 10, level: float = 0.9,
                 interval: str = "confidence") -> xr.Dataset:
        """:meth:`FitResult.simulate` with intervals (see :meth:`impute`): every member
        runs free on the new record from its own initial state, fitted to the first
        ``n_init`` samples.

        With ``resample="seeds"`` the centre is the members' pointwise median: a seed
        whose network strays off the training data moves it less than a mean, which
        makes the ensemble's simulation the remedy for a fit that depends on its seed
        (``benchmarks/real.py``)."""
        return self._with_bands(lambda r: r.simulate(data, n_init=n_init), level, interval)

    def _multiplier(self, level: float) -> float:
        """Student-t quantile for a ``level`` interval from a spread of len(self) members."""
        from scipy.stats import t as student
        _quantiles(level)
        return float(student.ppf(0.5 + level / 2, df=len(self) - 1))

    def _with_bands(self, run, level, interval) -> xr.Dataset:
        if interval not in ("confidence", "prediction"):
            raise ValueError(f"interval must be 'confidence' or 'prediction'; received {interval!r}.")
        if not 0 < level < 1:
            raise ValueError(f"level must be between 0 and 1 (e.g. 0.9); received {level!r}.")
        members = [run(r) for r in self.members]
        ref = self.reference if self.resample != "seeds" else None
        centre_ds = run(ref) if ref is not None else members[0].copy()
        z = self._multiplier(level)
        noise_kind = (ref or self.members[0]).options.noise
        channels = set((ref or self.members[0])._bundle.channels)
        sigma = self._noise_levels()
        out = centre_ds.copy()
        skip = set(self.model.input_names)
        for name in list(centre_ds.data_vars):
            if name in skip:
                continue
            stack = np.stack([m[name].values for m in members])
            centre = centre_ds[name].values if ref is not None else np.median(stack, axis=0)
            log = interval == "prediction" and name in channels and noise_kind == "lognormal"
            if log:
                spread = self.scale * np.log(np.clip(stack, 1e-300, None)).std(axis=0, ddof=1)
            else:
                spread = self.scale * stack.std(axis=0, ddof=1)
            if interval == "prediction" and name in channels:
                spread = np.sqrt(spread ** 2 + sigma.get(name, 0.0) ** 2)
            if log:
                lc = np.log(np.clip(centre, 1e-300, None))
                lower, upper = np.exp(lc - z * spread), np.exp(lc + z * spread)
            else:
                lower, upper = centre - z * spread, centre + z * spread
            attrs = dict(centre_ds[name].attrs)
            label = attrs.get("long_name", name)
            out[name] = (centre_ds[name].dims, centre, attrs)
            pct = f"{100 * level:g} %"
            out[f"{name}_lower"] = (centre_ds[name].dims, lower,
                                    dict(attrs, long_name=f"{label}, lower {pct} {interval} bound"))
            out[f"{name}_upper"] = (centre_ds[name].dims, upper,
                                    dict(attrs, long_name=f"{label}, upper {pct} {interval} bound"))
        out.attrs.update(sysid_level=level, sysid_interval=interval, interval_method=(
            f"ensemble of {len(self)} fits (resample={self.resample!r}, spread x "
            f"{self.scale:.3g}), centre -/+ Student-t quantile x spread"))
        return out

    def _noise_levels(self) -> dict:
        """Measurement noise per channel: the full-data fit's, or the members' RMS level."""
        ref = self.reference if self.resample != "seeds" else None
        if ref is not None:
            return {k: float(v) for k, v in ref.noise_std.items() if np.isfinite(v)}
        levels = {}
        for k in self._labels:
            for c, v in self.collection._outcomes[k]["summary"]["noise_std"].items():
                if np.isfinite(v):
                    levels.setdefault(c, []).append(v ** 2)
        return {c: float(np.sqrt(np.mean(v))) for c, v in levels.items()}

    def __repr__(self) -> str:
        table = self.parameter_table()
        rows = ", ".join(f"{n}={r.value:.4g} [{r.lower:.4g}, {r.upper:.4g}]"
                         for n, r in table.iterrows())
        extra = f", {len(self.failed)} failed" if self.failed else ""
        return (f"Ensemble({len(self)} members, resample={self.resample!r}{extra}; 90 % "
                f"intervals: {rows or 'no physical parameters'})")


def _quantiles(level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.9); received {level!r}.")
    return 0.5 - level / 2, 0.5 + level / 2


def fit_ensemble(model, data: xr.Dataset, *, n: int = 8, resample: str = "windows",
                 seed: int = 0, block="auto", client=None, scheduler: str = "dask",
                 progress=None, workers: int | None = None, **fit_options) -> Ensemble:
    """Fit an ensemble of ``n`` models for intervals on parameters, imputations, forecasts.

    Parameters
    ----------
    model : HybridODE
    data : xarray.Dataset
    n : int, default 8
        Members (at least 2; 20 or more for steady 90 % intervals).
    resample : {"windows", "trajectories", "seeds"}
        How members differ. Every member ``i`` is fitted with seed ``seed + i`` (the
        network's initialisation), and:

        - ``"seeds"``: on the full data; the spread is that of the training alone (zero
          for a model without network).
        - ``"windows"``: a block half-sample of each trajectory: its observed samples are
          cut into blocks of ``block`` samples and half of the blocks, drawn at random,
          are set to NaN (a member whose first block is dropped starts its trajectory at
          its first kept sample and imputes the earlier times backwards).
        - ``"trajectories"``: half of the trajectories are kept whole; the others keep
          only their first block (for their initial states, so that every member can
          impute every trajectory).

        The resampling schemes add a fit to the full data (``seed``), the centre of the
        intervals; the members' deviations are scaled by ``sqrt(f / (1 - f))`` (``f``:
        kept fraction of the values), the half-sampling estimate of the full-data
        estimate's spread.
    seed : int
        Seeds the resampling and the member fits; the same seed gives the same ensemble.
    block : "auto" or int
        Samples per block ("auto": a tenth of the shortest trajectory, at least 2).
    client, scheduler, progress, workers
        As in :func:`fit_many`.
    **fit_options
        Options of :func:`sysid.fit` for every member.

    Returns
    -------
    Ensemble
        ``.parameter_table(level)``, ``.impute(times, level=, interval=)``,
        ``.forecast(..., level=, interval=)`` (the same Dataset as the FitResult's plus
        ``<name>_lower``/``<name>_upper``), ``.members``, ``.failed``.

    Examples
    --------
    Eight block half-samples of a decay record (serially and with a small budget, to stay
    quick; 20 or more members give steadier intervals):

    >>> import numpy as np, sympy as sp, sysid, xarray as xr
    >>> t = np.linspace(0.0, 5.0, 26)
    >>> rng = np.random.default_rng(0)
    >>> def decay(rate):          # one site: x(t) = 2 exp(-rate t), 1 % noise
    ...     x = 2.0 * np.exp(-rate * t) + 0.01 * rng.standard_normal(t.size)
    ...     return xr.Dataset({"x": ("time", x)}, coords={"time": t})
    >>> x = sp.Symbol("x")
    >>> k = sp.Symbol("k", positive=True)
    >>> model = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 1.0})
    >>> ens = sysid.fit_ensemble(model, decay(0.5), n=8, scheduler="serial", progress=False,
    ...                          epochs=0, lbfgs_iterations=15, shooting="single")
    >>> ens.parameter_table(level=0.9)[["value", "std", "lower", "upper"]].round(3)
               value    std  lower  upper
    parameter
    k          0.502  0.005  0.493  0.511
    >>> bands = ens.impute(level=0.9, interval="prediction")
    >>> sorted(bands.data_vars)
    ['x', 'x_lower', 'x_upper']
    >>> bool((bands["x_lower"] < bands["x"]).all() and (bands["x"] < bands["x_upper"]).all())
    True
    """
    if not isinstance(data, xr.Dataset):
        raise DataError(f"fit_ensemble fits one xarray.Dataset; received {type(data).__name__}.")
    if resample not in _SCHEMES:
        raise ValueError(f"resample must be one of {_SCHEMES}; received {resample!r}."
                         f"{suggest(str(resample), _SCHEMES)}")
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (ensemble members); received {n!r}.")
    spec = _model_spec(model)
    if "seed" in fit_options:
        raise TypeError("fit_ensemble takes seed= for the whole ensemble (member i is fitted "
                        "with seed + i); pass it once.")
    options = _check_options(fit_options)
    tasks, kept = [], {}
    if resample == "seeds":
        for i in range(n):
            tasks.append((i, spec, data, dict(options, seed=int(seed) + i)))
            kept[i] = 1.0
    else:
        obs, names = _observed(model, data)
        size = _auto_block(obs, block)
        counts = _channel_counts(data, names)
        tasks.append(("reference", spec, data, dict(options, seed=int(seed))))
        for i in range(n):
            rng = np.random.default_rng([int(seed), i])
            keep = _resample_mask(obs, resample, size, rng)
            member = _masked(data, names, keep)
            kept[i] = _channel_counts(member, names) / counts
            tasks.append((i, spec, member, dict(options, seed=int(seed) + i)))
    outcomes = _execute(tasks, client=client, scheduler=scheduler, progress=progress,
                        workers=workers, desc="sysid.fit_ensemble")
    collection = FitCollection(model, "member", outcomes, inputs=_inputs(tasks))
    return Ensemble(model, collection, resample, kept)


def _channel_counts(data, names) -> int:
    return int(sum(int(data[name].notnull().sum()) for name in names))
