"""The time grids of a problem: padded segments of each trajectory, shooting windows and
their lengths, held-out windows, and the sample interval the data imply.
"""

from __future__ import annotations


import numpy as np
import torch

from ..data.bundle import DataBundle
from ..solve.integrate import InputSignal


def observed_rows(bundle: DataBundle) -> list[np.ndarray]:
    """Per trajectory, the time indices where it has at least one observation."""
    any_obs = bundle.mask.any(axis=-1)
    return [np.flatnonzero(any_obs[b]) for b in range(bundle.n_trajectories)]


def sample_interval(bundle: DataBundle) -> float | None:
    """The median interval between a trajectory's consecutive observed samples: the
    interval the fit integrated across (with ``rk4``, in ``substeps`` steps). Each
    trajectory counts its own samples: the shared time grid of several irregular
    trajectories is finer than any of them. None without two samples."""
    gaps = np.concatenate([np.diff(bundle.times[r]) for r in observed_rows(bundle)])
    gaps = gaps[np.isfinite(gaps) & (gaps > 0)]
    return float(np.median(gaps)) if gaps.size else None


def _pad_rows(rows) -> np.ndarray:
    K = max(len(r) for r in rows)
    return np.stack([np.concatenate([r, np.full(K - len(r), r[-1])]) for r in rows])


def segment_grid(bundle: DataBundle) -> np.ndarray:
    """Per trajectory, the indices of its observed times, padded by repeating the last."""
    return _pad_rows(observed_rows(bundle))


def _padding(idx) -> np.ndarray:
    pad = np.zeros(idx.shape, dtype=bool)
    pad[:, 1:] = idx[:, 1:] == idx[:, :-1]
    return pad


def segment_tensors(bundle: DataBundle, idx, traj=None):
    """Times, observations, mask and inputs on the segment grid ``idx`` (S, K)."""
    b = (np.arange(bundle.n_trajectories) if traj is None else np.asarray(traj))[:, None]
    mask = bundle.mask[b, idx] & ~_padding(idx)[..., None]
    return (torch.as_tensor(bundle.times[idx], dtype=torch.float64),
            torch.as_tensor(np.nan_to_num(bundle.y[b, idx]), dtype=torch.float64),
            torch.as_tensor(mask),
            torch.as_tensor(np.nan_to_num(bundle.u[b, idx]), dtype=torch.float64))


def shooting_windows(bundle: DataBundle, length: int):
    """Split each trajectory's samples into windows of ``length`` samples that share
    their end points; return (indices (S, W), trajectory of each window, first-window flag)."""
    rows, traj, first = [], [], []
    for b, r in enumerate(observed_rows(bundle)):
        p = 0
        while True:
            stop = p + length
            if len(r) - stop < max(2, length // 3):   # fold a short tail into this window
                stop = len(r)
            rows.append(r[p:stop])
            traj.append(b)
            first.append(p == 0)
            if stop >= len(r):
                break
            p = stop - 1
    return _pad_rows(rows), np.array(traj), np.array(first)


class Segments:
    """Tensors of a batch of segments (trajectories or shooting windows).

    ``mask`` marks the observations that train the model; ``val`` those held out
    (``holdout``, a (trajectory, time index) boolean array) to score it.
    """

    def __init__(self, bundle, idx, traj, inputs: InputSignal, skip_first=None, holdout=None):
        self.idx = idx
        self.traj = torch.as_tensor(traj, dtype=torch.long)
        self.tau, self.y, self.mask, self.u_grid = segment_tensors(bundle, idx, traj)
        if skip_first is not None:           # a shared end point is counted once
            self.mask[torch.as_tensor(skip_first), 0] = False
        self.val = None
        if holdout is not None:
            held = torch.as_tensor(holdout[np.asarray(traj)[:, None], idx])[..., None]
            self.val = self.mask & held
            self.mask = self.mask & ~held
        self.valid = torch.as_tensor(~_padding(idx))
        self.last = self.valid.long().sum(1) - 1
        self.inputs = inputs.select(self.traj)


def holdout_windows(windows, n_samples: tuple, fraction: float) -> np.ndarray:
    """Hold out about ``fraction`` of the shooting windows: never a trajectory's first
    or last window, never two in a row; the rest of the data trains the model. Returns
    a (trajectory, time index) boolean array of held-out observations.

    Every ``round(1 / fraction)``-th inner window, whatever the fit's seed: fits that
    differ in their seed (or any other option) are scored on the same held-out data, so
    that their validation errors compare (``FitCollection.best("validation")``)."""
    idx, traj, first = windows
    last = np.r_[traj[1:] != traj[:-1], True]
    inner = np.flatnonzero(~first & ~last)
    k = max(2, int(round(1.0 / fraction)))
    chosen = inner[np.arange(len(inner)) % k == 0]
    held = np.zeros(n_samples, dtype=bool)
    for j in chosen:
        held[traj[j], idx[j, 1:]] = True        # its first sample ends the window before
    return held


def later_starts(windows) -> list[tuple[int, int]]:
    """(trajectory, sample) where each shooting window after a trajectory's first starts:
    the windows with a learnable start state of their own."""
    idx, traj, first = windows
    return [(int(b), int(i[0])) for i, b, f in zip(idx, traj, first) if not f]


def window_length(bundle: DataBundle, shooting, field: bool = False) -> int | None:
    """Samples per shooting window: ``shooting`` as given, or chosen from the data.

    "auto": trajectories of more than 10 samples are cut into windows of 5 samples, or
    fewer (down to 3) where 5 samples would span more than half an oscillation of the
    data (sparsely sampled oscillations; see :func:`samples_per_period`). Short windows
    keep the loss surface of long or oscillating records well-behaved (measured:
    Lotka-Volterra on the 21 lynx-hare samples lands in a local minimum with noise level
    0.57 by single shooting, and reaches the Stan reference, 0.22, with windows of 4 or 5
    samples) and batch the work across windows.

    A field (``field=True``, a :class:`~sysid.HybridPDE`) is fitted by single shooting:
    its window starts are mostly unmeasured grid points (56 of 64 on the Fisher-KPP
    benchmark, 560 numbers over 10 windows) that only the continuity penalty determines,
    and a hybrid fit on windows imputed the field with 20 % error against 3.7 % by single
    shooting (the dissipative dynamics of diffusion keep single shooting well-behaved).

    So is a record sampled over decades of time (:func:`spans_decades`, e.g. log-spaced
    kinetics): the continuity penalty measures each state's gaps in one scale, which lets
    a state that varies over decades (Robertson's y2: 1e-8 late, 3.6e-5 at its peak) jump
    between windows; Robertson from 2x-off guesses fitted k1 14.8 % off on windows, 6.8 %
    by single shooting (``benchmarks/results/stiff.md``).
    """
    longest = max(len(r) for r in observed_rows(bundle))
    if shooting == "single" or (shooting == "auto" and (field or spans_decades(bundle))):
        return None
    if shooting == "auto":
        if longest <= 10:
            return None
        spp = samples_per_period(bundle)
        return 5 if spp is None else int(np.clip(1 + spp // 2, 3, 5))
    return int(shooting) if int(shooting) < longest else None


def spans_decades(bundle: DataBundle, ratio: float = 100.0) -> bool:
    """Whether the sampling grows over decades: the median interval of the last quarter of
    a trajectory's samples is more than ``ratio`` times that of the first quarter (1 for
    regular or uniformly random sampling; 1e4 for 40 log-spaced times over 9 decades)."""
    for rows in observed_rows(bundle):
        gaps = np.diff(bundle.times[rows])
        q = len(gaps) // 4
        if q >= 2:
            first, last = np.median(gaps[:q]), np.median(gaps[-q:])
            if first > 0 and last / first > ratio:
                return True
    return False


def samples_per_period(bundle: DataBundle) -> float | None:
    """The fewest samples per oscillation among the observed channels (median over
    trajectories), or None where no channel oscillates (fewer than two full cycles).

    Cycles are counted as crossings of a band of +-0.25 standard deviations around the
    channel's mean (a crossing counts only once the series has left the band on the
    other side), so measurement noise around the mean does not add crossings.
    """
    rows = observed_rows(bundle)
    best = None
    for c in range(len(bundle.channels)):
        per = []
        for b, r in enumerate(rows):
            keep = r[bundle.mask[b, r, c]]
            v = bundle.y[b, keep, c]
            if len(v) < 8:
                continue
            z = (v - v.mean()) / (v.std() or 1.0)
            side, crossings = 0, 0
            for value in z:
                now = 1 if value > 0.25 else (-1 if value < -0.25 else 0)
                if now and side and now != side:
                    crossings += 1
                side = now or side
            if crossings >= 4:                  # two full cycles
                per.append(2 * len(v) / crossings)
        if per:
            spp = float(np.median(per))
            best = spp if best is None else min(best, spp)
    return best
