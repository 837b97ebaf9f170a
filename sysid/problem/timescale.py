"""The time scale of the measured dynamics, from the data alone.

The residual network's output is a rate of change. Its unit (``ResidualNet.out_scale``)
is a state's spread per this time scale, so that an output of order one is a correction of
the size of the state's own rate, whatever the record's length or the system's speed: a
400-oscillation record and a half-period one get networks that start on the same footing.

The rate is estimated from differences of consecutive observations, with the measurement
noise taken out: over pairs of samples ``k = 1, 2, 3`` apart, the squared difference of a
smooth signal in white noise is ``2 sigma^2 + r^2 dt^2`` on average (``r`` the rate's RMS),
so a least-squares line through ``(dt^2, dy^2)`` gives ``r^2`` as its slope, for any
sampling (irregular times, gaps); each point is weighted by the inverse of the line's mean
there (a squared difference scatters in proportion to it). Where the signal is not resolved by the sampling (the
slope is not positive), the plain lag-1 difference is the bound used.
"""

from __future__ import annotations

import numpy as np

__all__ = ["channel_time_scales", "dynamics_time_scale", "residual_time_unit",
           "guess_speed", "time_unit_note", "FAST_GUESS"]

#: A guessed model that moves every directly measured state this many times faster at
#: the trajectories' starts than the data do is named in a warning (guesses in another
#: time unit than the data's are 60, 1000 or 3600 times off).
FAST_GUESS = 100.0

_LAGS = (1, 2, 3)


def _robust_std(a) -> float:
    a = np.asarray(a, dtype=float)
    a = a[np.isfinite(a)]
    s = float(np.std(a)) if a.size > 1 else 0.0
    if s > 0:
        return s
    m = float(np.max(np.abs(a))) if a.size else 0.0
    return m if m > 0 else 1.0


def _pairs(times, values, lag):
    """Differences of observations ``lag`` valid samples apart (one record)."""
    ok = np.isfinite(values)
    t, v = times[ok], values[ok]
    if t.size <= lag:
        return np.zeros(0), np.zeros(0)
    return t[lag:] - t[:-lag], v[lag:] - v[:-lag]


def _channel_rate(times, series) -> float | None:
    """RMS rate of change of one channel over all records, noise removed; None if it
    has too few samples to say."""
    dts, dys = [], []
    for lag in _LAGS:
        for row in series:
            dt, dy = _pairs(times, row, lag)
            keep = dt > 0
            dts.append(dt[keep])
            dys.append(dy[keep])
    lag1 = sum(_pairs(times, row, 1)[0].size for row in series)
    if lag1 < 3:
        return None
    dt2 = np.concatenate(dts) ** 2
    dy2 = np.concatenate(dys) ** 2
    a = np.stack([np.ones_like(dt2), dt2], axis=1)
    # a squared difference scatters about in proportion to its mean: weighted least
    # squares by the first (unweighted) line's mean, once
    coef, *_ = np.linalg.lstsq(a, dy2, rcond=None)
    mean = np.maximum(a @ np.maximum(coef, 0.0), 1e-300)
    if np.all(np.isfinite(mean)) and mean.max() > 1e-300:
        w = 1.0 / np.maximum(mean, 1e-12 * mean.max())
        coef, *_ = np.linalg.lstsq(a * w[:, None], dy2 * w, rcond=None)
    if np.isfinite(coef[1]) and coef[1] > 0:
        return float(np.sqrt(coef[1]))
    d1, y1 = [], []
    for row in series:
        dt, dy = _pairs(times, row, 1)
        d1.append(dt[dt > 0])
        y1.append(dy[dt > 0])
    rate = np.sqrt(np.mean((np.concatenate(y1) / np.concatenate(d1)) ** 2))
    return float(rate) if np.isfinite(rate) and rate > 0 else None


def channel_time_scales(bundle) -> list[float | None]:
    """Per observed channel, its spread over its RMS rate of change (None where the data
    cannot tell: fewer than 3 consecutive pairs, or a constant channel)."""
    out = []
    for c in range(len(bundle.channels)):
        series = np.where(bundle.mask[..., c], bundle.y[..., c], np.nan)
        rate = _channel_rate(np.asarray(bundle.times, float), series)
        spread = _robust_std(series)
        out.append(spread / rate if rate else None)
    return out


def dynamics_time_scale(bundle) -> float:
    """One time scale for the measured dynamics: the geometric mean of the channels'
    scales, kept between the median sample interval and a tenth of the record's span
    (the unit used before, and the fallback when no channel can tell)."""
    times = np.asarray(bundle.times, float)
    span = float(times[-1] - times[0]) if times.size > 1 else 1.0
    span = span if span > 0 else 1.0
    longest = span / 10.0
    scales = [s for s in channel_time_scales(bundle) if s is not None and np.isfinite(s)
              and s > 0]
    if not scales:
        return longest
    tau = float(np.exp(np.mean(np.log(scales))))
    steps = np.diff(times)
    steps = steps[steps > 0]
    shortest = float(np.median(steps)) if steps.size else 0.0
    return float(min(max(tau, shortest), longest))


def residual_time_unit(bundle) -> float:
    """The time unit of the residual network's output: :func:`dynamics_time_scale` (the
    radian time scale of the measured dynamics, ``1 / omega`` for a sine).

    Measured against the dominant period (``2 pi`` times it, capped at a tenth of the
    span, which restores the older unit on records of fewer than about ten periods):
    Silverbox 1.08 against 1.16 mV, Cascaded Tanks 0.232 against 0.228 V, EMPS 6.42
    against 5.94 mm, the 25-trajectory pendulum's omega0 back to about 1.2 % from 6 %,
    but the lynx-hare demo's summary then selected lynx**2 and hare**2 for the
    interactions instead of hare*lynx (as with a tenth of the span before issue 24). The
    scale itself is kept; the pendulum's and the demo's sensitivity to a 1.1-1.6x change
    of the unit is a fragility left to issue 27."""
    return dynamics_time_scale(bundle)


# -- guesses in another time unit --------------------------------------------------------
#
# Nothing in a fit depends on the unit of the time coordinate: the solver integrates each
# sample interval on its own clock (0 to 1), parameters are searched relative to their
# guesses, states and the network's output are scaled by the data, and every time scale
# above is a ratio of the data's own times. A decay fitted with time in s, ms, hours,
# integer days or datetime64 gives the same rate to about 1e-12 once converted
# (tests/test_units.py). What a unit does change is the meaning of the guesses: a rate
# guessed per second for data in milliseconds is 1000 times too fast. The check below
# compares the guessed physics with the data at the trajectories' starts.

def _start_slope(times, values) -> float | None:
    """|slope| of a straight line through the first (up to) four valid samples."""
    ok = np.isfinite(values)
    t, v = times[ok][:4], values[ok][:4]
    if t.size < 2 or t[-1] <= t[0]:
        return None
    return abs(float(np.polyfit(t - t[0], v, 1)[0]))


def guess_speed(model, field, bundle, x0) -> tuple[float, list] | None:
    """How many times faster the guessed physics moves the directly measured states at
    each trajectory's start than the data do, and per state ``(name, model rate, data
    rate)``; the ratio is the smallest over those states (each the median over
    trajectories). The data's rate of a channel is the larger of its slope over its first
    samples and its RMS rate over the record (a fast start, e.g. log-spaced kinetics, is
    not mistaken for a slow record). None where no measured state tells."""
    import torch

    times = np.asarray(bundle.times, float)
    x = torch.as_tensor(np.nan_to_num(np.asarray(x0, float)), dtype=torch.float64)
    t = torch.as_tensor(times[bundle.t_first], dtype=torch.float64)
    u = torch.as_tensor(np.nan_to_num(bundle.u[np.arange(len(x)), bundle.t_first]),
                        dtype=torch.float64)
    try:
        with torch.no_grad():
            rates = np.abs(field.physics(t, x, u).numpy())
    except Exception:          # a guess the physics cannot evaluate: the fit will say so
        return None
    ratios, rows = [], []
    for i, sym in enumerate(model.states):
        chans = [c for c, ch in enumerate(bundle.channels) if model.channels.get(ch) == sym]
        if not chans:
            continue
        c = chans[0]
        series = np.where(bundle.mask[..., c], bundle.y[..., c], np.nan)
        overall = _channel_rate(times, series) or 0.0
        per = []
        for b in range(len(x)):
            start = _start_slope(times, series[b]) or 0.0
            data = max(start, overall)
            if data > 0 and np.isfinite(rates[b, i]):
                per.append((rates[b, i], data))
        if not per:
            continue
        model_rate = float(np.median([m for m, _ in per]))
        data_rate = float(np.median([d for _, d in per]))
        ratios.append(float(np.median([m / d for m, d in per])))
        rows.append((sym.name, model_rate, data_rate))
    if not ratios:
        return None
    return min(ratios), rows


def _unit_words(bundle) -> str:
    a = bundle.time_attrs
    if bundle.datetime:
        return (f"'{a.get('time_unit')}' (the time coordinate is datetime64; choose the unit "
                f"with sysid.fit(..., time_unit='s'|'min'|'h'|'D'))")
    units = a.get("units")
    return f"{units!r}, the time coordinate's units" if units else \
        "the unit of the time coordinate's numbers"


def time_unit_note(model, field, bundle, x0) -> str | None:
    """A warning's text where the guessed physics is :data:`FAST_GUESS` times faster
    than the data at their start (see :func:`guess_speed`), else None."""
    found = guess_speed(model, field, bundle, x0)
    if found is None or not found[0] > FAST_GUESS:
        return None
    ratio, rows = found
    rates = "; ".join(f"d{n}/dt {m:.3g} against {d:.3g}" for n, m, d in rows)
    guesses = ", ".join(f"{s.name}={float(v):.4g}" for s, v in model.parameters.items())
    return (f"With the parameter guesses ({guesses}), the model moves the measured states "
            f"about {ratio:.3g} times faster at the data's start than the data do ({rates}, "
            f"per time unit). Parameters and their guesses are in the data's time unit: "
            f"{_unit_words(bundle)}. If the guesses were written for another unit (a rate "
            f"per second is 1000 times a rate per millisecond, 1/3600 of one per hour), "
            f"convert them; otherwise the fit may stop far from the data.")
