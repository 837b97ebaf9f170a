"""Integration: many segments on their own irregular time grids, with known inputs.

Owns the Runge-Kutta solvers (:mod:`~sysid.solve.runge_kutta`: adaptive dopri5, bosh3,
dopri8 and fixed-step rk4, interval by interval on each segment's sample grid) and the
batched integration around them (:mod:`~sysid.solve.integrate`: solver options and
failures, interpolated input signals, solutions at arbitrary times, adjoint gradients),
and the native hot path (:mod:`~sysid.solve.native`, with the C source of
:mod:`~sysid.solve.native_source` and :mod:`~sysid.solve.native_solvers`): dopri5 and rk4
with their discrete adjoints in C generated from the model, where it applies.

May import: :mod:`sysid.errors`, :mod:`sysid.runtime`, :mod:`sysid.model`.
"""

from .integrate import InputSignal, SolverFailure, SolverOptions, solve_at_times, solve_segments

__all__ = ["InputSignal", "SolverFailure", "SolverOptions", "solve_at_times",
           "solve_segments"]
