"""``FitCollection``: the members of many independent fits, indexed by what varied (data
set, option value, seed), with their parameters, statuses and stacked predictions.
"""

from __future__ import annotations


import numpy as np
import xarray as xr

from ..errors import FitError, suggest
from .execution import _rebuild

__all__ = ["FitCollection"]


# -- the collection -----------------------------------------------------------------------------
class FitCollection:
    """Independent fits, one per label along the dimension :attr:`dim`.

    Returned by :func:`sysid.fit_many` (one member per dataset or site) and
    :func:`sysid.sweep` (one member per option setting). A member that failed never
    stops the others: it is listed in :attr:`failed` with its error message.

    Attributes
    ----------
    dim : str
        Name of the member dimension ("site", "config", ...).
    labels : list
        Member labels, in the order given.
    configs : dict
        Label -> the options that differ between members (sweeps), else empty dicts.

    Examples
    --------
    Three sites of exponential decay, one with a misnamed variable. The examples run the
    members one after the other (``scheduler="serial"``) to stay quick; the default runs
    them on a Dask ``LocalCluster`` with identical results.

    >>> import numpy as np, sympy as sp, sysid, xarray as xr
    >>> t = np.linspace(0.0, 5.0, 26)
    >>> rng = np.random.default_rng(0)
    >>> def decay(rate):          # one site: x(t) = 2 exp(-rate t), 1 % noise
    ...     x = 2.0 * np.exp(-rate * t) + 0.01 * rng.standard_normal(t.size)
    ...     return xr.Dataset({"x": ("time", x)}, coords={"time": t})
    >>> x = sp.Symbol("x")
    >>> k = sp.Symbol("k", positive=True)
    >>> model = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 1.0})
    >>> sites = {"north": decay(0.3), "south": decay(0.6), "east": decay(0.5).rename(x="y")}
    >>> fits = sysid.fit_many(model, sites, scheduler="serial", progress=False)
    >>> fits
    FitCollection(3 members along 'site': 2 fitted, 1 failed)
      status: converged 2, failed 1
      k: median 0.4467, range [0.3007, 0.5927]
      failed 'east': DataError: Data variable 'y' matches no state, observation or input ...
    >>> fits.parameters["k"].values.round(2)          # NaN where the fit failed
    array([0.3 , 0.59,  nan])
    >>> fits["south"].parameters                      # each member is a FitResult
    {'k': 0.593}
    >>> fits.impute()["x"].dims                       # stacked along the member dimension
    ('site', 'time')
    """

    def __init__(self, model, dim: str, outcomes: dict, configs: dict | None = None,
                 inputs: dict | None = None):
        self.model = model
        self._inputs = inputs or {}           # label -> (spec, data) to rebuild results
        self.dim = dim
        self.labels = list(outcomes)
        self.configs = configs or {label: {} for label in self.labels}
        self._outcomes = outcomes
        self._loaded: dict = {}

    # -- members -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):
        return iter(self.labels)

    def __contains__(self, label) -> bool:
        return label in self._outcomes

    def __getitem__(self, label):
        """The :class:`FitResult` of member ``label`` (rebuilt on first use)."""
        if label not in self._outcomes:
            raise KeyError(f"No member {label!r}.{suggest(str(label), map(str, self.labels))} "
                           f"Members: {self.labels[:10]}{'...' if len(self) > 10 else ''}.")
        outcome = self._outcomes[label]
        if not outcome["ok"]:
            raise FitError(f"Member {label!r} failed: {outcome['error']}")
        if label not in self._loaded:
            raw = outcome["result"]
            self._loaded[label] = _rebuild(*self._inputs[label], raw) \
                if isinstance(raw, dict) else raw
        return self._loaded[label]

    @property
    def succeeded(self) -> list:
        """Labels of the members that were fitted."""
        return [k for k in self.labels if self._outcomes[k]["ok"]]

    @property
    def results(self) -> dict:
        """{label: FitResult} of every member that was fitted."""
        return {k: self[k] for k in self.succeeded}

    @property
    def failed(self) -> dict:
        """{label: error message} of every member that raised."""
        return {k: o["error"] for k, o in self._outcomes.items() if not o["ok"]}

    @property
    def tracebacks(self) -> dict:
        """{label: full traceback text} of every member that raised."""
        return {k: o["traceback"] for k, o in self._outcomes.items() if not o["ok"]}

    # -- tables --------------------------------------------------------------------------------
    def _coords(self) -> dict:
        coords = {self.dim: _index_values(self.labels)}
        keys = list(dict.fromkeys(k for c in self.configs.values() for k in c))
        for key in keys:
            coords[key] = (self.dim, _index_values([self.configs[lab].get(key) for lab
                                                    in self.labels]))
        return coords

    @property
    def parameters(self) -> xr.Dataset:
        """Fitted parameters over the member dimension (NaN where a member failed)."""
        data = {}
        for name in self.model.parameter_names:
            values = [self._outcomes[k]["summary"]["parameters"][name]
                      if self._outcomes[k]["ok"] else np.nan for k in self.labels]
            data[name] = (self.dim, np.asarray(values, dtype=float))
        return xr.Dataset(data, coords=self._coords())

    def parameter_table(self):
        """Parameters as a ``pandas.DataFrame``: one row per member, NaN where it failed."""
        return self.parameters.to_dataframe()

    @property
    def status(self):
        """Status code per member (``pandas.Series``): the fit's code, or "failed"."""
        import pandas as pd
        return pd.Series([self._outcomes[k]["summary"]["status"] if self._outcomes[k]["ok"]
                          else "failed" for k in self.labels],
                         index=pd.Index(self.labels, name=self.dim), name="status")

    def summary(self):
        """One row per member: options that vary, status, final loss, held-out score
        (when ``validation`` was set), wall time, observations, error."""
        import pandas as pd
        rows = []
        for k in self.labels:
            o = self._outcomes[k]
            row = dict(self.configs[k])
            if o["ok"]:
                s = o["summary"]
                row.update(status=s["status"], loss=s["stats"].get("loss", np.nan),
                           validation=s.get("validation", np.nan),
                           wall_time_s=s["stats"].get("wall_time_s", np.nan),
                           n_observations=s["stats"].get("n_observations", np.nan), error="")
            else:
                row.update(status="failed", loss=np.nan, validation=np.nan,
                           wall_time_s=np.nan, n_observations=np.nan, error=o["error"])
            rows.append(row)
        return pd.DataFrame(rows, index=pd.Index(self.labels, name=self.dim))

    def best(self, by: str = "validation"):
        """Label of the member with the lowest ``by`` ("validation": held-out score, needs
        the fit option ``validation``; or "loss"). Losses compare only members whose
        options weigh the loss alike (same penalties)."""
        table = self.summary()
        if by not in ("validation", "loss"):
            raise ValueError(f"best(by=...) takes 'validation' or 'loss'; received {by!r}.")
        scores = table[by].astype(float)
        if not np.isfinite(scores).any():
            hint = " Set the fit option validation=0.2 (a fraction of windows held out)." \
                if by == "validation" else ""
            raise ValueError(f"No member has a finite {by} score.{hint}")
        return scores.idxmin()

    # -- trajectories ------------------------------------------------------------------------
    def impute(self, times=None, **kwargs) -> xr.Dataset:
        """Every fitted member's :meth:`FitResult.impute`, stacked along :attr:`dim`."""
        return self._stack([self[k].impute(times, **kwargs) for k in self.succeeded])

    def forecast(self, times=None, **kwargs) -> xr.Dataset:
        """Every fitted member's :meth:`FitResult.forecast`, stacked along :attr:`dim`."""
        return self._stack([self[k].forecast(times, **kwargs) for k in self.succeeded])

    def _stack(self, parts):
        if not parts:
            raise FitError(f"No member was fitted; see .failed: {self.failed}")
        out = xr.concat(parts, dim=self.dim, join="outer", combine_attrs="drop_conflicts")
        return out.assign_coords({self.dim: _index_values(self.succeeded)})

    def __repr__(self) -> str:
        n_ok = len(self.succeeded)
        lines = [f"FitCollection({len(self)} members along {self.dim!r}: {n_ok} fitted, "
                 f"{len(self) - n_ok} failed)"]
        codes = self.status.value_counts()
        lines.append("  status: " + ", ".join(f"{k} {v}" for k, v in codes.items()))
        params = self.parameters
        for name in self.model.parameter_names:
            v = params[name].values
            v = v[np.isfinite(v)]
            if v.size:
                lines.append(f"  {name}: median {np.median(v):.4g}, range "
                             f"[{v.min():.4g}, {v.max():.4g}]")
        for label, err in list(self.failed.items())[:5]:
            lines.append(f"  failed {label!r}: {err.splitlines()[0][:120]}")
        if len(self.failed) > 5:
            lines.append(f"  ... {len(self.failed) - 5} more failures in .failed")
        return "\n".join(lines)


def _index_values(values) -> np.ndarray:
    """Labels as a numpy array: numbers stay numbers, anything mixed becomes text."""
    vals = list(values)
    if all(isinstance(v, (bool, np.bool_)) for v in vals):
        return np.asarray(vals, dtype=bool)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
        return np.asarray(vals, dtype=np.int64)
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in vals):
        return np.asarray(vals, dtype=float)
    return np.asarray([v if isinstance(v, str) else str(v) for v in vals])
