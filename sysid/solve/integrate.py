"""Batched integration of many segments, each on its own (irregular) time grid.

torchdiffeq's ``odeint`` shares one output grid across the batch; on the union of many
irregular sample times its cost grows with the size of that union. We avoid the union:
segment ``b`` with sample times ``tau[b, 0] < ... < tau[b, K-1]`` is integrated in a
*segment clock* ``s`` in which sample ``k`` sits at ``s = k`` for every segment::

    t_b(s) = tau[b, k] + (s - k) * delta[b, k],   k = floor(s)
    dx/ds  = f(t_b(s), x, u_b(t_b(s))) * delta[b, k]

so all segments share the output grid ``s = 0, 1, ..., K-1`` whatever their own times are.
Segments shorter than K are padded with zero-length intervals (``delta = 0``), where the
state simply stays put. Backward-in-time segments (``delta < 0``) work the same way.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from .runge_kutta import solve_intervals
from ..errors import SolverError

__all__ = ["SolverOptions", "SolverFailure", "InputSignal", "solve_segments", "solve_at_times",
           "threads_for", "backward", "solver_limits", "fixed_step_error", "FIXED_STEP_LIMIT"]

#: The most a fixed-step (rk4) solution may move, as a fraction of each state's range over
#: the record, when the steps are halved (:func:`fixed_step_error`).
FIXED_STEP_LIMIT = 0.01


@contextmanager
def threads_for(batch_elements: int, threads: int | None = None):
    """Intra-op threads for a solve of this size (restored afterwards).

    ODE right-hand sides of small batches are chains of tiny tensor ops: extra threads
    only add synchronisation, which on a busy machine costs milliseconds per matrix
    product (measured: a 4x32 @ 32x32 float64 product took 2.1 ms with 2 threads on a
    loaded 2-core machine, 0.013 ms with 1). Small batches therefore run on one thread.
    """
    before = torch.get_num_threads()
    wanted = threads if threads is not None else (1 if batch_elements < 100_000 else before)
    torch.set_num_threads(max(1, int(wanted)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class SolverOptions:
    """How to integrate: ``method`` "dopri5" (adaptive, default) or "rk4" (fixed step)."""

    method: str = "dopri5"
    rtol: float = 1e-6
    atol: float = 1e-8
    max_steps: int = 5_000
    substeps: int = 4          # rk4: steps per sample interval
    max_step: float | None = None  # rk4: and at least enough that none is longer than this
    adjoint: bool = False
    compiled: bool = False     # dopri5 in generated C where it applies (sysid.solve.native)


class SolverFailure(SolverError):
    """The integrator could not finish (too many steps, step-size underflow, non-finite).
    A :class:`sysid.errors.SolverError` (and a ``RuntimeError``)."""


@contextmanager
def solver_limits(what: str = ""):
    """Report torchdiffeq's limits (signalled by ``assert``, or a RuntimeError naming an
    underflow or the step limit) as :class:`SolverFailure`."""
    try:
        yield
    except AssertionError as err:
        raise SolverFailure(what + str(err)) from None
    except RuntimeError as err:
        if not isinstance(err, SolverFailure) and (
                "underflow" in str(err) or "max_num_steps" in str(err)):
            raise SolverFailure(what + str(err)) from None
        raise


def backward(loss: torch.Tensor) -> None:
    """``loss.backward()``; with ``adjoint=True`` it integrates backwards in time, and a
    step limit or underflow there is a :class:`SolverFailure` like one in the forward solve."""
    with solver_limits("adjoint (backward) solve: "):
        loss.backward()


class InputSignal:
    """Exogenous inputs sampled at ``times`` (M,), values (B, M, m), interpolated in time.

    ``kind`` is "linear" or "zoh" (zero-order hold). Outside the sampled range the
    nearest sample is held.

    The solvers call it at every evaluation of the vector field, so it is built for few
    tensor operations per call: each sample interval's start value and slope sit in one
    flat table, read by a single ``index_select`` (on a 3-trajectory record this halved
    the cost of a call against indexing ``values`` with broadcast row and time indices).
    """

    def __init__(self, times: torch.Tensor, values: torch.Tensor, kind: str = "linear"):
        self.times = times
        self.values = values
        self.kind = kind
        B, M, m = values.shape
        self.m = m
        self._lo, self._hi = (float(times[0]), float(times[-1])) if M else (0.0, 0.0)
        if M < 2 or m == 0:
            return
        self._edges = times[1:-1].contiguous() if kind != "zoh" else times[1:].contiguous()
        self._rows = torch.arange(B, device=values.device) * (M - 1 if kind != "zoh" else M)
        if kind == "zoh":
            self._table = values.reshape(B * M, m)
        else:
            dt = times[1:] - times[:-1]
            slope = (values[:, 1:] - values[:, :-1]) / torch.where(dt > 0, dt, 1.0).view(1, -1, 1)
            self._table = torch.cat([values[:, :-1], slope], dim=-1).reshape(B * (M - 1), 2 * m)

    def select(self, index: torch.Tensor) -> "InputSignal":
        return InputSignal(self.times, self.values[index], self.kind)

    def on_intervals(self, tau: torch.Tensor):
        """The inputs along each interval between the times ``tau`` (B, K), as straight
        lines in the interval's unit clock ``sigma`` (0 at ``tau[:, k]``, 1 at
        ``tau[:, k + 1]``): ``(start, rise, exact)`` with ``u = start[:, k] + sigma *
        rise[:, k]`` ((B, K-1, m) each; ``rise`` is None for zero-order hold, whose value
        is constant inside an interval). ``exact[k]`` is True where no input sample lies
        strictly inside interval ``k`` for any row, so that the line is the interpolated
        input itself; elsewhere the caller reads the input at each time.

        Read once per solve, this replaces a table lookup at every evaluation of the
        vector field by one multiply-add (the solvers evaluate it 4-7 times per step)."""
        t0, t1 = tau[:, :-1].detach(), tau[:, 1:].detach()
        lo, hi = torch.minimum(t0, t1).contiguous(), torch.maximum(t0, t1).contiguous()
        between = torch.searchsorted(self.times, hi, right=False) - \
            torch.searchsorted(self.times, lo, right=True)
        exact = ~(between > 0).any(dim=0)
        if self.kind == "zoh":      # the value held just inside the interval
            return self(torch.nextafter(t0, t1)), None, exact
        values = self(tau)
        return values[:, :-1], values[:, 1:] - values[:, :-1], exact

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        """Inputs at times t (B,) or (B, T) -> (B, m) or (B, T, m)."""
        if self.m == 0:
            return t.new_zeros(t.shape + (0,))
        if self.times.shape[0] == 1:
            first = self.values[:, 0].view((-1,) + (1,) * (t.dim() - 1) + (self.m,))
            return first.expand(t.shape + (self.m,))
        rows = self._rows if t.dim() == 1 else self._rows.view((-1,) + (1,) * (t.dim() - 1))
        if self.kind == "zoh":      # the last sample at or before t (the first before it)
            idx = torch.searchsorted(self._edges, t.detach().contiguous(), right=True)
            return self._table.index_select(0, (idx + rows).flatten()).view(t.shape + (self.m,))
        tc = t.clamp(self._lo, self._hi)        # outside the samples: the nearest one held
        idx = torch.searchsorted(self._edges, tc.detach().contiguous(), right=True)
        row = self._table.index_select(0, (idx + rows).flatten()).view(t.shape + (2 * self.m,))
        return row[..., :self.m] + row[..., self.m:] * (tc - self.times[idx]).unsqueeze(-1)


class _SegmentClock(nn.Module):
    """The vector field in the segment clock s (see the module docstring)."""

    def __init__(self, field, tau: torch.Tensor, inputs: InputSignal | None):
        super().__init__()
        self.field = field
        self.tau = tau
        self.delta = tau[:, 1:] - tau[:, :-1]
        self.inputs = inputs
        self.K = tau.shape[1]

    def time(self, s):
        k = torch.clamp(torch.floor(s).long(), 0, self.K - 2)
        d = self.delta[:, k]
        return self.tau[:, k] + (s - k) * d, d

    def _no_inputs(self, x):
        if getattr(self, "_empty", None) is None or self._empty.shape[0] != x.shape[0]:
            self._empty = x.new_zeros(x.shape[0], 0)
        return self._empty

    def forward(self, s, x, perturb=None):
        t, d = self.time(s)
        u = self.inputs(t) if self.inputs is not None else self._no_inputs(x)
        return self.field(t, x, u) * d.unsqueeze(-1)


def _jump_points(tau: torch.Tensor, has_inputs: bool) -> torch.Tensor | None:
    """Interior sample indices where the clock's speed changes (kinks in dx/ds)."""
    K = tau.shape[1]
    if K < 3:
        return None
    delta = tau[:, 1:] - tau[:, :-1]
    if has_inputs:
        change = torch.ones(K - 2, dtype=torch.bool)
    else:
        scale = delta.abs().amax().clamp_min(1e-300)
        change = ((delta[:, 1:] - delta[:, :-1]).abs() > 1e-12 * scale).any(dim=0)
    points = torch.nonzero(change).flatten() + 1
    return points.to(tau.dtype) if points.numel() else None


def solve_segments(field, x0: torch.Tensor, tau: torch.Tensor, inputs: InputSignal | None,
                   options: SolverOptions) -> torch.Tensor:
    """Integrate segments from ``x0`` (B, n) at ``tau[:, 0]``; return states (B, K, n)."""
    with threads_for(x0.numel()):
        return _solve(field, x0, tau, inputs, options)


def fixed_step_error(field, x0: torch.Tensor, tau: torch.Tensor, inputs: InputSignal | None,
                     options: SolverOptions) -> tuple[float, int]:
    """Step doubling for a fixed-step (``rk4``) solve: the segments are solved with the
    options' steps, then every sample interval again from the solution's state at its
    start, once with the same steps and once with twice as many (``substeps`` doubled,
    ``max_step`` halved), through the same path (the C solver where the fit uses it).
    The difference is the local error of each interval (rk4's error shrinks 16-fold when
    its steps are halved); summed over a segment's intervals it bounds the error that
    the steps add up to, without the growth that a chaotic system gives any difference
    (a 20-unit Lorenz record: its whole-record doubling differs by the attractor's size
    with accurate steps). Returns the largest sum, as a fraction of the state's range
    over the solve (of its largest magnitude where it is constant), and that state's
    index; ``inf`` where a solve fails or is not finite. An unstable solve (a stiff
    system at steps beyond rk4's stability limit) gives about its whole range or more."""
    B, K = tau.shape
    n = x0.shape[-1]
    if K < 2:
        return 0.0, 0
    finer = dataclasses.replace(options, substeps=2 * int(options.substeps),
                                max_step=None if options.max_step is None
                                else 0.5 * options.max_step)
    rows = torch.arange(B, device=tau.device).repeat_interleave(K - 1)
    pairs = torch.stack([tau[:, :-1].reshape(-1), tau[:, 1:].reshape(-1)], dim=-1)
    part = inputs.select(rows) if inputs is not None else None
    try:
        with torch.no_grad():
            xs = solve_segments(field, x0, tau, inputs, options)
            starts = xs[:, :-1].reshape(-1, n)
            coarse = solve_segments(field, starts, pairs, part, options)[:, -1]
            fine = solve_segments(field, starts, pairs, part, finer)[:, -1]
    except SolverFailure:
        return float("inf"), 0
    finite = torch.isfinite(xs).all(dim=(0, 1)) & torch.isfinite(coarse).all(dim=0) \
        & torch.isfinite(fine).all(dim=0)
    if not bool(finite.all()):
        return float("inf"), int(torch.nonzero(~finite)[0, 0])
    flat = xs.reshape(-1, n)
    spread = flat.amax(dim=0) - flat.amin(dim=0)
    size = torch.where(spread > 0, spread, flat.abs().amax(dim=0))
    added = (coarse - fine).abs().reshape(B, K - 1, n).sum(dim=1).amax(dim=0)     # (n,)
    ratio = torch.where(size > 0, added / torch.where(size > 0, size, 1.0),
                        torch.where(added > 0, float("inf"), 0.0))
    j = int(torch.argmax(ratio))
    return float(ratio[j]), j


def _solve(field, x0, tau, inputs, options):
    K = tau.shape[1]
    if K == 1:
        return x0.unsqueeze(1)
    clock = _SegmentClock(field, tau, inputs)
    s = torch.arange(K, dtype=tau.dtype, device=tau.device)
    integrate = odeint_adjoint if options.adjoint else odeint
    kwargs = {}
    if options.adjoint:
        kwargs["adjoint_params"] = tuple(field.parameters())
    if not options.adjoint:
        field.freeze_parameters(True)
    try:
        if options.method in ("dopri5", "rk4", "rosenbrock23") and not options.adjoint:
            return solve_intervals(field, x0, tau, inputs, method=options.method,
                                   rtol=options.rtol, atol=options.atol,
                                   max_steps=options.max_steps, substeps=options.substeps,
                                   failure=SolverFailure, compiled=options.compiled,
                                   max_step=options.max_step)
        with solver_limits():
            if options.method == "rk4":
                xs = integrate(clock, x0, s, method="rk4", options={
                    "step_size": 1.0 / options.substeps, "perturb": True}, **kwargs)
            else:
                opts = {"max_num_steps": options.max_steps}
                jumps = _jump_points(tau, inputs is not None and inputs.m > 0)
                if jumps is not None:
                    opts["jump_t"] = jumps
                xs = integrate(clock, x0, s, method=options.method, rtol=options.rtol,
                               atol=options.atol, options=opts, **kwargs)
    finally:
        field.freeze_parameters(False)
    return xs.transpose(0, 1)


def solve_at_times(field, x0: torch.Tensor, t0, times, inputs: InputSignal | None,
                   options: SolverOptions, max_interval: float | None = None) -> torch.Tensor:
    """States (B, T, n) at the float ``times`` (T,), integrating each trajectory forwards
    and backwards from ``x0`` (B, n) at its own start time ``t0`` (B,). Differentiable
    (the graph is kept unless called under ``torch.no_grad()``).

    ``max_interval``: for the fixed-step ``rk4``, whose steps are a fraction
    (``1/substeps``) of each interval between the times asked for, the longest interval
    to integrate across in one go; longer ones are split evenly (the fit passes its
    data's typical sample interval, the step its training was stable and accurate at).
    Without it, a grid coarser than the data (400 points over Silverbox's 4,000 samples
    of a 69 Hz resonance) gave rk4 steps past its stability limit and states of 1e150.
    """
    import numpy as np

    B, n = x0.shape
    times = np.asarray(times, dtype=float)
    t0 = np.asarray(t0, dtype=float)
    if max_interval is not None and options.method == "rk4" and times.size:
        points = np.concatenate([times, t0])
        grid = refined_grid(points, float(max_interval))
        if grid.size > np.unique(points[np.isfinite(points)]).size:     # some gap was split
            full = solve_at_times(field, x0, t0, grid, inputs, options)
            return full[:, torch.as_tensor(np.searchsorted(grid, times))]
    rows, cols, vals = [], [], []
    for forward in (True, False):
        sel = [np.flatnonzero(times >= t0[b]) if forward
               else np.flatnonzero(times < t0[b])[::-1] for b in range(B)]
        K = max(len(s) for s in sel)
        if K == 0:
            continue
        tau = np.empty((B, K + 1))
        for b in range(B):
            tt = times[sel[b]] if len(sel[b]) else np.array([t0[b]])
            tau[b] = np.concatenate([[t0[b]], tt, np.full(K - len(tt), tt[-1])])
        xs = solve_segments(field, x0, torch.as_tensor(tau), inputs, options)
        for b in range(B):
            k = len(sel[b])
            if k:
                rows.append(np.full(k, b))
                cols.append(sel[b])
                vals.append(xs[b, 1:k + 1])
    out = x0.new_zeros(B, len(times), n)
    if not vals:
        return out
    index = (torch.as_tensor(np.concatenate(rows)), torch.as_tensor(np.concatenate(cols)))
    return out.index_put(index, torch.cat(vals))


def refined_grid(points, max_interval: float):
    """The sorted distinct finite ``points``, with every gap longer than ``max_interval``
    split into equal parts no longer than it."""
    import numpy as np

    pts = np.unique(np.asarray(points, dtype=float))
    pts = pts[np.isfinite(pts)]
    if pts.size < 2 or not max_interval > 0:
        return pts
    gaps = np.diff(pts)
    parts = np.maximum(np.ceil(gaps / max_interval - 1e-9), 1).astype(int)
    pieces = [np.linspace(a, b, k + 1)[:-1] for a, b, k in zip(pts[:-1], pts[1:], parts)]
    return np.concatenate(pieces + [pts[-1:]])
