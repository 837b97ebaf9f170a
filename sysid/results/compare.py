"""Likelihood and information criteria of a fit, and :func:`compare`, a table of fits.

:class:`Likelihood` gives :class:`~sysid.FitResult` its ``loglik``, ``aic``, ``bic``,
``parameter_counts``, ``n_parameters``, ``n_observations``, ``effective_parameters``
and ``count_size`` (the negative binomial's); :func:`compare` (``sysid.compare``) ranks fits of the same data
by AIC with their Akaike weights.

The log-likelihood is that of the training measurements under the fitted model and its
noise model (:func:`sysid.problem.noise.log_likelihood`): a simulation over each whole
trajectory from its fitted initial state, every constant included, as a density of the
measured values themselves (a log-normal fit includes the Jacobian ``-sum log y``, so it
compares with a Gaussian fit of the same data; Poisson and negative-binomial fits give
the probability of the integer counts, which compares with a density as the density
over a unit-wide bin, to within the density's change over one count). An estimated
noise level enters at its maximum-likelihood value. With a network it is the
likelihood at the penalised optimum (residual penalty and weight decay), not the
maximum of the likelihood alone.

``k`` counts every fitted quantity: the free physical parameters, the learnable initial
state of every state of every trajectory (a field: of every grid point), the noise
parameters the fit estimated (a Gaussian, log-normal or Student-t level per channel
without ``attrs['noise_std']``, a negative-binomial size per channel; none for Poisson)
and every weight and bias of the network. Shooting-window starts are not counted: the
fit ends on whole trajectories. A network's raw weight count is a crude penalty: its
weights are shrunk by the residual penalty and weight decay and are far from free, so
AIC and BIC with it overstate its cost (a hybrid with 1,000 weights pays 2,000 AIC
units); ``effective_parameters`` (Laplace: ``tr(H^-1 J^T J)``, the data's share of the
curvature) is the alternative, ``compare(..., effective=True)``.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

from ..errors import DataError
from ..problem.noise import log_likelihood
from ..solve.integrate import SolverFailure
from ..uncertainty.laplace import laplace

__all__ = ["Likelihood", "compare"]


class Likelihood:
    """The likelihood members of :class:`~sysid.FitResult` (see the module docstring).

    Examples
    --------
    >>> import numpy as np, sympy as sp, xarray as xr, sysid
    >>> t = np.linspace(0.0, 4.0, 30)
    >>> y = 2.0 * np.exp(-0.7 * t) + np.random.default_rng(0).normal(0.0, 0.02, t.size)
    >>> data = xr.Dataset({"x": ("time", y)}, coords={"time": t})
    >>> x = sp.Symbol("x"); k = sp.Symbol("k", positive=True)
    >>> model = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 1.0})
    >>> result = sysid.fit(model, data, progress=False)
    >>> result.parameter_counts       # k, x(0) and the estimated noise level
    {'physical': 1, 'initial_states': 1, 'noise': 1, 'network': 0}
    >>> round(result.aic - (2 * 3 - 2 * result.loglik), 12)
    0.0
    """

    @property
    def loglik(self) -> float:
        """Log-likelihood of the training measurements at the fit (constants included;
        -inf where the fitted model cannot be integrated over the record)."""
        cache = self.__dict__.setdefault("_likelihood_cache", {})
        if "loglik" not in cache:
            value = self._data_log_likelihood()
            cache["loglik"] = float(value) if np.isfinite(value) else -math.inf
        return cache["loglik"]

    def _data_log_likelihood(self) -> float:
        """The deterministic fit's likelihood. A result of another likelihood (a process
        noise fit's Kalman filter) overrides this and :attr:`parameter_counts`."""
        self._deterministic_only()
        try:
            return log_likelihood(self._problem)
        except SolverFailure:
            return -math.inf

    def _deterministic_only(self) -> None:
        """Refuse a result whose likelihood is not the deterministic simulation's (a
        process-noise fit that does not override :meth:`_data_log_likelihood`)."""
        if getattr(self, "process_noise", None) and \
                type(self)._data_log_likelihood is Likelihood._data_log_likelihood:
            raise NotImplementedError(
                f"{type(self).__name__}: loglik, aic, bic and compare are not defined yet "
                f"for a process-noise (Kalman) fit: its likelihood is the filter's, not the "
                f"deterministic simulation's (result.stats['process_noise'] has its nll).")

    @property
    def parameter_counts(self) -> dict[str, int]:
        """Fitted quantities by kind: ``physical`` parameters, ``initial_states``,
        ``noise`` parameters and ``network`` weights and biases (all of them)."""
        self._deterministic_only()
        problem = self._problem
        net = problem.field.residual
        return {"physical": int(problem.field.raw.numel()),
                "initial_states": int(problem.z0.numel()),
                "noise": int(problem.noise.n_parameters),
                "network": 0 if net is None else int(sum(
                    p.numel() for p in net.parameters() if p.requires_grad))}

    @property
    def n_parameters(self) -> int:
        """``k``: the sum of :attr:`parameter_counts`."""
        return int(sum(self.parameter_counts.values()))

    @property
    def n_observations(self) -> int:
        """``n``: the observed values the fit was trained on (held-out ones excluded)."""
        return int(self._problem.noise.total)

    @property
    def aic(self) -> float:
        """Akaike's criterion ``2 k - 2 loglik`` (``k``: :attr:`n_parameters`)."""
        return 2.0 * self.n_parameters - 2.0 * self.loglik

    @property
    def bic(self) -> float:
        """The Bayesian criterion ``k log(n) - 2 loglik``."""
        return self.n_parameters * math.log(max(self.n_observations, 1)) - 2.0 * self.loglik

    @property
    def count_size(self) -> dict[str, float]:
        """``noise="negative_binomial"``: the fitted size ``r`` per channel (variance
        ``mu + mu^2 / r``; R's ``theta``; large is close to Poisson, ``1 / sqrt(r)`` the
        relative spread of large counts). Empty for other noise models."""
        noise = self._problem.noise
        if noise.name != "negative_binomial":
            return {}
        return {c: float(s) for c, s in zip(self._bundle.channels, noise.size.detach())}

    @property
    def effective_parameters(self) -> float:
        """The effective number of fitted quantities from the Laplace curvature,
        ``tr(H^-1 J^T J)`` over the parameters, initial states and network (each at most
        1, less where the penalties or the prior, not the data, fix it), plus the noise
        parameters. Needs the network's Jacobian (one backward pass per observation
        block): seconds for a small hybrid."""
        curv = laplace(self, network=True)
        used = curv.n_observations - curv.dof
        return float(used) + self.parameter_counts["noise"]


def fingerprint(result) -> dict:
    """What identifies the data a fit was trained on: its variables, times, number of
    training observations and a hash of their values and where they are."""
    bundle, problem = result._bundle, result._problem
    mask = problem.mask.numpy()
    digest = hashlib.sha256()
    for part in (np.asarray(bundle.times, dtype=np.float64), mask,
                 problem.y.numpy()[mask].astype(np.float64)):
        digest.update(np.ascontiguousarray(part).tobytes())
    return {"variables": tuple(bundle.channels), "times": np.asarray(bundle.times, float),
            "trajectories": int(bundle.n_trajectories), "n": int(mask.sum()),
            "hash": digest.hexdigest()}


def _different(a: dict, b: dict) -> str | None:
    if a["variables"] != b["variables"]:
        return f"variables {list(a['variables'])} against {list(b['variables'])}"
    if a["trajectories"] != b["trajectories"]:
        return f"{a['trajectories']} trajectories against {b['trajectories']}"
    if a["times"].shape != b["times"].shape or not np.array_equal(a["times"], b["times"]):
        return (f"different times ({a['times'].size} from {a['times'][0]:g} against "
                f"{b['times'].size} from {b['times'][0]:g})")
    if a["n"] != b["n"]:
        return (f"{a['n']} training observations against {b['n']} (a different "
                f"validation= split, or different missing values)")
    if a["hash"] != b["hash"]:
        return "the same variables and times, but different measured values"
    return None


def _check(results, names):
    if isinstance(results, dict):
        if names is not None:
            raise ValueError("compare(results, names): give the names either as the keys "
                             "of a dict or as names=, not both.")
        names, results = [str(k) for k in results], list(results.values())
    else:
        results = list(results)
        names = ([f"model {i}" for i in range(len(results))] if names is None
                 else [str(n) for n in names])
    if not results:
        raise ValueError("compare needs at least one fitted result; received none.")
    if len(names) != len(results):
        raise ValueError(f"compare: {len(names)} names for {len(results)} results.")
    if len(set(names)) != len(names):
        raise ValueError(f"compare: the names must differ; received {names}.")
    for name, r in zip(names, results):
        if not hasattr(r, "_problem") or not hasattr(r, "loglik"):
            raise TypeError(f"compare expects results of sysid.fit; {name!r} is a "
                            f"{type(r).__name__}.")
    return results, names


def compare(results, names=None, *, effective: bool = False) -> pd.DataFrame:
    """Rank fits of the same data by AIC: a table with the log-likelihood, ``k``, ``n``,
    AIC, BIC, their differences to the best and the Akaike weights.

    Parameters
    ----------
    results : list of FitResult, or dict {name: FitResult}
        Fits of the same data (same variables, times, trajectories and training
        observations: a validation split must be the same too), with any models and
        noise models.
    names : list of str, optional
        Row labels (default: the dict's keys, else ``"model 0"``, ``"model 1"``, ...).
    effective : bool, default False
        Count ``k`` as :attr:`~FitResult.effective_parameters` (Laplace) instead of every
        fitted quantity: fairer to a network, whose raw weight count is a crude penalty.

    Returns
    -------
    pandas.DataFrame
        One row per fit, sorted by AIC (best first), columns ``noise``, ``loglik``,
        ``k``, ``n``, ``aic``, ``bic``, ``delta_aic``, ``delta_bic`` and ``weight``
        (Akaike weight, ``exp(-delta_aic / 2)`` normalised: the relative support of each
        model among those compared).

    Raises
    ------
    sysid.errors.DataError
        The fits were made to different data (their likelihoods cannot be compared).

    Examples
    --------
    >>> import numpy as np, sympy as sp, xarray as xr, sysid
    >>> t = np.linspace(0.0, 4.0, 30)
    >>> y = 2.0 * np.exp(-0.7 * t) + np.random.default_rng(0).normal(0.0, 0.02, t.size)
    >>> data = xr.Dataset({"x": ("time", y)}, coords={"time": t})
    >>> x = sp.Symbol("x"); k, b = sp.symbols("k b", positive=True)
    >>> decay = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 1.0})
    >>> linear = sysid.HybridODE(states=[x], physics={x: -b}, parameters={b: 0.5})
    >>> table = sysid.compare({"decay": sysid.fit(decay, data, progress=False),
    ...                        "linear": sysid.fit(linear, data, progress=False)})
    >>> list(table.index), table["k"].tolist()
    (['decay', 'linear'], [3, 3])
    >>> bool(table.loc["decay", "weight"] > 0.99)
    True
    """
    results, names = _check(results, names)
    prints = [fingerprint(r) for r in results]
    for name, fp in zip(names[1:], prints[1:]):
        why = _different(prints[0], fp)
        if why is not None:
            raise DataError(f"compare needs fits of the same data; {names[0]!r} and "
                            f"{name!r} were fitted to different data ({why}). Fit every "
                            f"model to the same dataset (and the same validation= option).")
    rows = []
    for r in results:
        k = r.effective_parameters if effective else r.n_parameters
        n, ll = r.n_observations, r.loglik
        rows.append({"noise": r.options.noise, "loglik": ll, "k": k, "n": n,
                     "aic": 2.0 * k - 2.0 * ll, "bic": k * math.log(max(n, 1)) - 2.0 * ll})
    table = pd.DataFrame(rows, index=pd.Index(names, name="model"))
    for col in ("aic", "bic"):
        best = table[col].min()
        table[f"delta_{col}"] = table[col] - best if np.isfinite(best) else np.nan
    with np.errstate(invalid="ignore", over="ignore"):
        w = np.exp(-0.5 * table["delta_aic"].to_numpy(dtype=float))
        w = np.where(np.isfinite(w), w, 0.0)
        table["weight"] = w / w.sum() if w.sum() > 0 else np.nan
    return table.sort_values("aic", kind="stable")
