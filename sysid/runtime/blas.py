"""Threads of the BLAS behind NumPy, for sysid's own dense linear algebra.

sysid's matrices are mostly small: Levenberg-Marquardt's normal equations (parameters and
window starts, a few hundred columns), the candidate libraries of the symbolic summary
(tens of columns), the Laplace Hessians of physical parameters. On such sizes OpenBLAS's
threads cost more than they give, and on a busy machine far more: with both cores of a
2-core machine loaded, one 202 x 202 ``np.linalg.solve`` took 42 ms on two threads and
0.35 ms on one; a damped pendulum's symbolic summary spent a fifth of its time there.
:func:`blas_threads` runs a block on one BLAS thread when its matrices are small, and
leaves the user's setting alone otherwise.
"""

from __future__ import annotations

import contextlib
import functools

from threadpoolctl import threadpool_limits

__all__ = ["blas_threads", "one_blas_thread", "SMALL_COLUMNS"]

#: Matrices with fewer columns than this are factorised on one BLAS thread.
SMALL_COLUMNS = 2000


def blas_threads(columns: int = 0):
    """A context manager: one BLAS thread inside it if ``columns < SMALL_COLUMNS``, else
    the current setting (a no-op). Nested blocks are fine: the innermost limit holds.

    >>> import numpy as np
    >>> with blas_threads(10):
    ...     float(np.linalg.solve(np.eye(2), np.ones(2)).sum())
    2.0
    """
    if columns >= SMALL_COLUMNS:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def one_blas_thread(func):
    """Decorator: ``func`` runs on one BLAS thread (all its matrices are small)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with blas_threads(0):
            return func(*args, **kwargs)
    return wrapper
