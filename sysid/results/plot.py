"""Figures of a fit: data, fitted and imputed states, forecast; labelled from attrs."""

from __future__ import annotations

import numpy as np

from ..problem.segments import spans_decades
from .outputs import measured_by

__all__ = ["plot_result", "label"]


def label(attrs: dict, name: str, width: int = 28) -> str:
    """Axis label from ``long_name`` and ``units`` attrs, wrapped to ``width`` characters."""
    import textwrap

    text = attrs.get("long_name", name)
    units = attrs.get("units")
    text = f"{text} [{units}]" if units else text
    return "\n".join(textwrap.wrap(text, width)) or name


#: units of a time coordinate counted in years
_YEARS = ("year", "years", "yr", "yrs", "a")


def calendar_offset(attrs: dict) -> float | None:
    """The calendar year at time 0 of a float time coordinate counted in years from a year
    (``units`` "years" and ``time_origin`` "1900" or "1900-01-01"), else None: then the
    axis shows the years themselves.

    >>> calendar_offset({"units": "years", "time_origin": "1900"})
    1900.0
    >>> calendar_offset({"units": "days", "time_origin": "1900"}) is None
    True
    """
    if str(attrs.get("units", "")).strip().lower() not in _YEARS:
        return None
    origin = str(attrs.get("time_origin", "")).strip()
    head = origin.split("-")[0] if origin[:1].isdigit() else ""
    if not (head.isdigit() and len(head) == 4):
        return None
    try:
        start = np.datetime64(origin, "D")
    except ValueError:
        return None
    year = np.datetime64(head, "Y")
    days = (start - year.astype("datetime64[D]")).astype(float)
    length = ((year + 1).astype("datetime64[D]") - year.astype("datetime64[D]")).astype(float)
    return float(float(head) + days / length)


def plot_result(result, *, forecast=None, states=None, figsize=None, summary=None,
                inputs=None):
    """One panel per state (and per observed channel that is not a state); ``summary``: a
    :class:`~sysid.symbolic.summary.SymbolicSummary` whose distilled model is drawn too;
    ``inputs``: the future inputs of an input-driven model's forecast."""
    import matplotlib.pyplot as plt

    data, bundle = result.data, result._bundle
    times = bundle.times
    # a record sampled over decades (log-spaced kinetics) is drawn on a log time axis
    log_time = (not result._is_datetime() and times[0] > 0 and spans_decades(bundle))
    grid = np.geomspace if log_time else np.linspace
    dense = grid(times[0], times[-1], max(200, 4 * len(times)))
    if result._is_datetime():
        dense = result._to_datetime(dense)
    fit = result.impute(dense)
    fc = result.forecast(horizon=forecast, inputs=inputs) if forecast else None
    distilled = _distilled_curves(summary, dense, forecast, inputs)
    shift = None if result._is_datetime() else calendar_offset(dict(data["time"].attrs))

    def when(values):
        return values + shift if shift is not None else values
    names = list(states) if states is not None else result.model.state_names + [
        c for c in bundle.channels if c not in result.model.state_names]
    has_traj = "trajectory" in data.dims
    n_traj = data.sizes.get("trajectory", 1)
    fig, axes = plt.subplots(len(names), 1, sharex=True, squeeze=False,
                             figsize=figsize or (8, 2.4 * len(names) + 0.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # a state's panel shows the data that measure it: its own variable, or a channel whose
    # observation is the state itself (observations={"y": x2}); then its curve is a fit
    how = measured_by(result.model, bundle.channels)
    for ax, name in zip(axes[:, 0], names):
        direct = how[name][0] if name in how else ([name] if name in bundle.channels else [])
        shown = [c for c in direct if c in data] or ([name] if name in data else [])
        for b in range(min(n_traj, 10)):
            color = colors[b % len(colors)]
            sel = {"trajectory": b} if has_traj else {}
            tag = f" (trajectory {data['trajectory'].values[b]})" if has_traj else ""
            for c in shown:
                what = "data" if c == name else f"data ({c})"
                ax.plot(when(data["time"].values), data[c].isel(sel).values, "o", ms=3.5,
                        color=color, alpha=0.7, label=f"{what}{tag}" if b < 3 else None)
            measured = bool(direct)
            what = "hybrid fit" if distilled else "fit"
            ax.plot(when(fit["time"].values), fit[name].isel(sel).values, "-", color=color,
                    lw=1.6, label=(what if measured else "imputed") + tag if b < 3 else None)
            if fc is not None:
                ax.plot(when(fc["time"].values), fc[name].isel(sel).values, "--", color=color,
                        lw=1.4, label=f"forecast{tag}" if b < 3 else None)
            for k, curve in enumerate(distilled):
                if name in curve:
                    ax.plot(when(curve["time"].values), curve[name].isel(sel).values,
                            ":" if k else "-.", color="0.25", lw=1.4,
                            label=(("distilled equations" if not k else
                                    "distilled, forecast") + tag) if b < 3 else None)
        attrs = fit[name].attrs if name in fit else {}
        ax.set_ylabel(label(attrs, name))
        if log_time:
            ax.set_xscale("log")
            if _spans_decades_in_value(ax):
                ax.set_yscale("log")
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("year" if shift is not None
                           else label(dict(data["time"].attrs), "time"))
    fig.suptitle(f"sysid fit ({result.status.code})", fontsize=10)
    fig.tight_layout()
    return fig


def _distilled_curves(summary, dense, forecast, inputs=None) -> list:
    """The distilled model's states over the data (and its forecast), or [] where there
    is no summary or its model cannot be simulated."""
    if summary is None:
        return []
    fitted = summary.result
    try:
        curves = [fitted.impute(dense)]
        if forecast:
            curves.append(fitted.forecast(horizon=forecast, inputs=inputs))
    except (RuntimeError, ValueError):      # a distilled model that blows up: not drawn
        return []
    return curves


def _spans_decades_in_value(ax, decades: float = 3.0) -> bool:
    """Whether everything drawn on ``ax`` is positive and spans more than ``decades``
    decades (then a log value axis shows it; a linear one hides all but the largest)."""
    values = np.concatenate([np.asarray(line.get_ydata(), dtype=float).ravel()
                             for line in ax.get_lines()] or [np.zeros(0)])
    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() <= 0:
        return False
    return bool(np.log10(values.max() / values.min()) > decades)
