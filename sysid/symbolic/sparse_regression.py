"""Sparse regression for the symbolic summary: the one place sysid talks to pysindy.

Only two optimizers of pysindy 2.x are used: :class:`pysindy.optimizers.STLSQ`
(sequentially thresholded least squares, in :func:`stlsq` and :func:`threshold_path`) and
:class:`pysindy.optimizers.FROLS` (forward orthogonal least squares, in
:func:`forward_path`). The candidate library is built and evaluated by sysid itself (SymPy
terms compiled with :class:`sysid.model.compiler.CompiledExprs`), so nothing here depends on
pysindy's feature libraries or its ``SINDy`` estimator; a change of pysindy's API touches
these two call sites only.

Everything works in normalised units: each library column and the target have unit RMS on
the data, so a threshold is a fraction of the largest normalised coefficient.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["stlsq", "threshold_path", "forward_path", "least_squares", "inclusion",
           "PathStep"]

#: Ridge strength of the STLSQ iterations, relative to the (unit-RMS) column norms:
#: a light ridge tames nearly collinear polynomial columns; the final coefficients on
#: each support are an unpenalised least-squares refit (pysindy's ``unbias=True``).
RIDGE = 1e-6


def stlsq(theta: np.ndarray, y: np.ndarray, threshold: float, *, ridge: float = RIDGE,
          max_iter: int = 25) -> np.ndarray:
    """Sequentially thresholded least squares of ``y`` on the columns of ``theta``.

    Parameters
    ----------
    theta : ndarray, shape (n_samples, n_features)
        Library columns (normalised by the caller).
    y : ndarray, shape (n_samples,)
        Target.
    threshold : float
        Coefficients smaller than this in magnitude are set to zero, iteratively.
    ridge : float
        Ridge strength per sample (pysindy's ``alpha`` is ``ridge * n_samples``).
    max_iter : int
        Maximum thresholding iterations.

    Returns
    -------
    ndarray, shape (n_features,)
        Coefficients; zeros outside the support.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> theta = rng.normal(size=(200, 4))
    >>> y = 2.0 * theta[:, 1] + 1e-3 * rng.normal(size=200)
    >>> np.flatnonzero(stlsq(theta, y, threshold=0.1)).tolist()
    [1]
    """
    from pysindy.optimizers import STLSQ

    theta = np.asarray(theta, dtype=float)
    opt = STLSQ(threshold=float(threshold), alpha=float(ridge) * len(theta),
                max_iter=int(max_iter), normalize_columns=False, unbias=True)
    with warnings.catch_warnings():   # "eliminated all coefficients" is an expected outcome
        warnings.simplefilter("ignore")
        opt.fit(theta, np.asarray(y, dtype=float).reshape(-1, 1))
    return np.asarray(opt.coef_, dtype=float).reshape(-1)


@dataclass(frozen=True)
class PathStep:
    """One point of a threshold path: the relative threshold, support and coefficients."""

    threshold: float             # relative to the largest least-squares coefficient
    support: tuple[int, ...]     # indices of the selected (thresholded) columns
    coefficients: np.ndarray     # (n_features,) in normalised units, zeros elsewhere


def _project_out(theta, y, keep):
    """Free columns and target with the kept columns' span projected out (Frisch-Waugh-Lovell):
    coefficients of the free columns then equal those of a regression on all columns."""
    free = np.flatnonzero(~keep)
    A, b = theta[:, free], y
    if keep.any():
        q, _ = np.linalg.qr(theta[:, keep])
        A = A - q @ (q.T @ A)
        b = b - q @ (q.T @ b)
    return free, A, b


def _prepare(theta, y, keep):
    theta = np.asarray(theta, dtype=float)
    keep = np.zeros(theta.shape[1], dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    return theta, np.asarray(y, dtype=float), keep


def threshold_path(theta: np.ndarray, y: np.ndarray, thresholds, keep=None) -> list[PathStep]:
    """STLSQ over a path of relative thresholds, with some columns always kept.

    Parameters
    ----------
    theta : ndarray, shape (n_samples, n_features)
        Normalised library (unit-RMS columns).
    y : ndarray, shape (n_samples,)
        Normalised target (unit RMS).
    thresholds : sequence of float
        Thresholds relative to the largest least-squares coefficient (of the columns that
        are thresholded).
    keep : ndarray of bool, shape (n_features,), optional
        Columns that are never thresholded and never reported (terms the known physics
        already has). They are projected out of the target and of the other columns first,
        so a share of them carried by the target cannot leak into other terms.

    Returns
    -------
    list of PathStep
        One per threshold, in the order given; ``support`` and ``coefficients`` refer to
        all columns, with kept columns always zero.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> theta = rng.normal(size=(300, 3))
    >>> y = theta[:, 0] + 0.5 * theta[:, 2]
    >>> [s.support for s in threshold_path(theta, y, [0.1, 0.8])]
    [(0, 2), (0,)]
    """
    theta, y, keep = _prepare(theta, y, keep)
    free, A, b = _project_out(theta, y, keep)
    if len(free) == 0:
        return [PathStep(float(r), (), np.zeros(theta.shape[1])) for r in thresholds]
    w_ls = np.linalg.lstsq(A, b, rcond=None)[0]
    top = float(np.max(np.abs(w_ls)))
    steps = []
    for rel in thresholds:
        w = stlsq(A, b, float(rel) * top) if top > 0 else np.zeros(len(free))
        steps.append(_step(float(rel), free, np.flatnonzero(w), A, b, theta.shape[1]))
    return steps


def forward_path(theta: np.ndarray, y: np.ndarray, max_terms: int, keep=None) -> list[PathStep]:
    """Greedy forward selection (pysindy's FROLS): the best 1, 2, ... term supports.

    Each step adds the term that explains most of what the terms chosen so far leave
    unexplained (orthogonal least squares). Unlike thresholding, this does not rely on the
    least-squares coefficients of the whole library, which are meaningless when columns are
    nearly collinear along the data; the first term is the single best-fitting term.

    Parameters
    ----------
    theta, y, keep
        As for :func:`threshold_path`.
    max_terms : int
        Largest support size returned.

    Returns
    -------
    list of PathStep
        Supports of 1, 2, ..., ``max_terms`` terms (fewer if there are fewer columns),
        with least-squares coefficients; ``threshold`` is NaN.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> theta = rng.normal(size=(300, 4))
    >>> y = theta[:, 3] - 0.5 * theta[:, 1] + 0.01 * rng.normal(size=300)
    >>> [s.support for s in forward_path(theta, y, max_terms=2)]
    [(3,), (1, 3)]
    """
    from pysindy.optimizers import FROLS

    theta, y, keep = _prepare(theta, y, keep)
    free, A, b = _project_out(theta, y, keep)
    n = min(int(max_terms), len(free))
    if n == 0 or not np.any(b):
        return []
    opt = FROLS(alpha=RIDGE * len(A), max_iter=n, normalize_columns=False, unbias=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt.fit(A, b.reshape(-1, 1))
    by_size = {}
    for coef in opt.history_:     # history_[i] holds the coefficients of i selected terms
        idx = np.flatnonzero(np.asarray(coef).reshape(-1))
        by_size.setdefault(len(idx), idx)
    return [_step(float("nan"), free, by_size[k], A, b, theta.shape[1])
            for k in sorted(by_size) if 1 <= k <= n]


def single_terms(theta: np.ndarray, y: np.ndarray, n: int, keep=None) -> list[int]:
    """The ``n`` columns that each explain most of ``y`` on their own (after the kept
    columns), best first: the one-term supports worth trying beside the forward path's.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> theta = rng.normal(size=(200, 3))
    >>> single_terms(theta, 2 * theta[:, 2] + 0.5 * theta[:, 0], 2)
    [2, 0]
    """
    theta, y, keep = _prepare(theta, y, keep)
    free, A, b = _project_out(theta, y, keep)
    norms = np.einsum("ij,ij->j", A, A)
    ok = norms > 1e-12 * max(float(norms.max(initial=0.0)), 1e-300)
    explained = np.where(ok, (A.T @ b) ** 2 / np.where(ok, norms, 1.0), -np.inf)
    order = np.argsort(-explained, kind="stable")
    return [int(free[i]) for i in order[:int(n)] if np.isfinite(explained[i])]


def _step(threshold, free, selected, A, b, n_features) -> PathStep:
    """A path step with least-squares coefficients on the selected free columns."""
    full = np.zeros(n_features)
    if len(selected):
        full[free[selected]] = np.linalg.lstsq(A[:, selected], b, rcond=None)[0]
    return PathStep(threshold, tuple(int(i) for i in free[selected]), full)


def least_squares(theta: np.ndarray, y: np.ndarray, support, keep=None) -> np.ndarray:
    """Least-squares coefficients of ``y`` on the ``support`` columns together with the kept
    columns (the kept ones reported as zero), as a full-length vector.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> least_squares(theta, np.array([2.0, 0.0, 2.0]), (0,)).round(6).tolist()
    [2.0, 0.0]
    """
    theta, y, keep = _prepare(theta, y, keep)
    free, A, b = _project_out(theta, y, keep)
    position = {int(c): i for i, c in enumerate(free)}
    cols = [position[int(c)] for c in support]
    return _step(float("nan"), free, np.asarray(cols, dtype=int), A, b,
                 theta.shape[1]).coefficients


def inclusion(theta: np.ndarray, y: np.ndarray, n_terms: int, keep=None, *, n_models: int = 50,
              seed: int = 0) -> np.ndarray:
    """How often each column is among the best ``n_terms`` over bootstrap resamples.

    pysindy's :class:`~pysindy.optimizers.EnsembleOptimizer` bags (resamples the rows
    with replacement) forward selection (FROLS) of ``n_terms`` columns, ``n_models``
    times; the result is the fraction of the bagged supports that contain each column
    (ensemble SINDy's inclusion probability). Kept columns are projected out first, as in
    :func:`threshold_path`, and reported as 0, as are columns that nothing is left of
    after that projection. Where a resample still leaves linearly dependent columns (a
    term non-zero on a handful of samples only), forward selection cannot rank them and
    every free column's inclusion is NaN (unknown).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> theta = rng.normal(size=(300, 3))
    >>> y = theta[:, 2] + 0.01 * rng.normal(size=300)
    >>> inclusion(theta, y, 1, n_models=20).tolist()
    [0.0, 0.0, 1.0]
    """
    from pysindy.optimizers import FROLS, EnsembleOptimizer

    theta, y, keep = _prepare(theta, y, keep)
    free, A, b = _project_out(theta, y, keep)
    norms = np.linalg.norm(A, axis=0)
    left = norms > 1e-12 * max(float(norms.max(initial=0.0)), 1e-300)
    free, A = np.asarray(free)[left], A[:, left]
    out = np.zeros(theta.shape[1])
    n = min(int(n_terms), len(free))
    if n == 0 or n_models <= 0 or not np.any(b):
        return out
    state = np.random.get_state()     # pysindy draws the resamples from numpy's global RNG
    np.random.seed(int(seed))
    try:
        opt = EnsembleOptimizer(FROLS(alpha=RIDGE * len(A), max_iter=n, normalize_columns=False,
                                      unbias=False), bagging=True, n_models=int(n_models))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.fit(A, b.reshape(-1, 1))
    except ValueError as err:         # FROLS: "linearly dependent columns created NaNs"
        if "linearly dependent" not in str(err):
            raise
        out[free] = np.nan
        return out
    finally:
        np.random.set_state(state)
    hits = np.array([np.asarray(c).reshape(-1) != 0 for c in opt.coef_list])
    out[free] = hits.mean(axis=0)
    return out
