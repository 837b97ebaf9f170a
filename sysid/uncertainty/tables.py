"""What a result reports of its uncertainty: the parameter table (values, standard errors,
intervals, identifiability) and the correlation matrix, from the Laplace approximation.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import IdentifiabilityWarning, ModelError
from .laplace import Curvature, laplace


#: Identifiability thresholds: relative standard error, absolute correlation, and the
#: smallest eigenvalue of the physical parameters' correlation matrix.
REL_ERROR_LIMIT = 1.0
CORRELATION_LIMIT = 0.99
EIGEN_LIMIT = 1e-3
#: A parameter whose standard error without the residual penalty is this many times its
#: standard error with it is confounded with the network (the penalty, not the data, sets it).
CONFOUND_LIMIT = 3.0


# -- the parameter table ----------------------------------------------------------------------
def _check_level(level) -> float:
    try:
        value = float(level)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise ModelError(f"level must be a probability between 0 and 1 (e.g. 0.9 for a "
                         f"90 % interval); received {level!r}.")
    return value


def _quantile(level: float, dof: float) -> float:
    """The two-sided ``level`` quantile of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t as student_t

    q = 0.5 + 0.5 * level
    return float(student_t.ppf(q, dof)) if np.isfinite(dof) else float(
        student_t.ppf(q, 1e12))


def identifiability(curv: Curvature) -> list[str]:
    """Per parameter, why the data do not identify it ("" where they do)."""
    P = len(curv.names)
    notes = [[] for _ in range(P)]
    if P == 0:
        return []
    se = curv.std_errors
    rel = se / np.maximum(np.abs(curv.values), 1e-300)
    for i in range(P):
        if not np.isfinite(rel[i]) or rel[i] > REL_ERROR_LIMIT:
            notes[i].append(f"standard error {_pct(rel[i])}")
    corr = curv.correlation
    for i in range(P):
        for j in range(P):
            if i != j and abs(corr[i, j]) > CORRELATION_LIMIT:
                notes[i].append(f"correlation {corr[i, j]:+.3f} with {curv.names[j]}")
    share = curv.penalty_share
    for i in range(min(P, len(share))):
        if share[i] > CONFOUND_LIMIT:
            notes[i].append(f"confounded with the residual: the network can take over its "
                            f"term (without the residual penalty its standard error is "
                            f"{share[i]:.3g}x larger), so the penalty, not the data, sets its "
                            f"value; result.symbolic() writes the network's term out and "
                            f"refits the parameter with it")
    if P > 2:
        lam, vec = np.linalg.eigh(np.nan_to_num(corr))
        for k in np.flatnonzero(lam < EIGEN_LIMIT):
            involved = np.flatnonzero(np.abs(vec[:, k]) > 0.3)
            if len(involved) > 2:
                group = ", ".join(curv.names[i] for i in involved)
                for i in involved:
                    notes[i].append(f"a near-flat direction shared by {group}")
    return ["; ".join(n) for n in notes]


def _pct(x: float) -> str:
    if not np.isfinite(x):
        return "infinite"
    return f"{100 * x:.3g} % of its value" if x < 1e4 else f"{x:.1e} times its value"


def parameter_table(result, level: float = 0.9, *, network: bool = True, warn: bool = True):
    """The table behind :meth:`FitResult.parameter_table` (see there)."""
    import pandas as pd

    level = _check_level(level)
    curv = laplace(result, network=network)
    z = _quantile(level, curv.dof)
    se = curv.std_errors
    raw_se = curv.raw_std_errors
    lower, upper = np.empty(len(se)), np.empty(len(se))
    with np.errstate(over="ignore"):
        for i, kind in enumerate(curv.kinds):
            if kind == "linear":
                lower[i], upper[i] = curv.values[i] - z * se[i], curv.values[i] + z * se[i]
            elif curv.transform is not None:   # made in the raw space, mapped back:
                a = curv.transform.value(i, curv.raw_values[i] - z * raw_se[i])  # inside
                b = curv.transform.value(i, curv.raw_values[i] + z * raw_se[i])  # its bounds
                lower[i], upper[i] = min(a, b), max(a, b)
            else:           # log scale, mapped back: stays on its side of 0
                sign = -1.0 if kind == "negative" else 1.0
                a = sign * np.exp(curv.raw_values[i] - z * raw_se[i])
                b = sign * np.exp(curv.raw_values[i] + z * raw_se[i])
                lower[i], upper[i] = min(a, b), max(a, b)
    notes = identifiability(curv)
    table = pd.DataFrame({
        "value": curv.values, "std_error": se, "lower": lower, "upper": upper,
        "rel_error": se / np.maximum(np.abs(curv.values), 1e-300),
        "identifiable": [not n for n in notes],
        "scale": [{"linear": "linear", "bounded": "logit"}.get(k, "log") for k in curv.kinds],
        "note": notes,
    }, index=pd.Index(curv.names, name="parameter"))
    table.attrs.update(level=level, network=curv.network, dof=curv.dof,
                       n_observations=curv.n_observations)
    bad = [n for n, note in zip(curv.names, notes) if note]
    if warn and bad:
        warnings.warn(_warning_text(bad, notes, curv), IdentifiabilityWarning, stacklevel=3)
    return table


def _warning_text(bad, notes, curv) -> str:
    one = len(bad) == 1
    what = ("parameter", "its standard error and interval are") if one else \
        ("parameters", "their standard errors and intervals are")
    lines = [f"The data do not identify {what[0]} {', '.join(bad)} of this model: {what[1]} "
             f"not meaningful."]
    for name, note in zip(curv.names, notes):
        if note:
            lines.append(f"  {name}: {note}.")
    lines.append("A correlation near +-1 means only a combination of the parameters is "
                 "determined (e.g. their product); a huge relative error means the data "
                 "barely depend on the parameter, or it is consistent with 0. To fix: give "
                 "one of them a known value (HybridODE(..., fixed={symbol: value})), add "
                 "data that separate them (measure another state, other initial conditions "
                 "or inputs, a longer record), or reparametrise (estimate the combination "
                 "as one parameter).")
    if curv.network:
        lines.append("With a neural residual, the network may be able to take over the "
                     "parameter's term: constrain what the residual reads or writes "
                     "(sysid.MLP(states=..., inputs=...)) or raise residual_penalty.")
    return "\n".join(lines)


def parameter_correlation(result, *, network: bool = True):
    """The table behind :meth:`FitResult.parameter_correlation` (see there)."""
    import xarray as xr

    curv = laplace(result, network=network)
    return xr.DataArray(curv.correlation, dims=("parameter", "parameter_"),
                        coords={"parameter": list(curv.names),
                                "parameter_": list(curv.names)},
                        name="correlation",
                        attrs={"long_name": "correlation of the fitted parameters "
                                            "(Laplace approximation, raw scale)"})
