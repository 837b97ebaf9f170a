"""Rational candidate terms: saturating rate laws (Michaelis-Menten, Monod, Hill).

A *form* is ``m * v**n / (K**n + v**n)``: a variable ``v`` that the network reads and is
positive along the data, a Hill exponent ``n`` (1: Michaelis-Menten or Monod), a
multiplier ``m`` (1 or one of the network's variables: ``S*X/(K + S)`` is Monod growth of
a biomass ``X`` on a substrate ``S``) and a half-saturation constant ``K > 0``.

``K`` enters non-linearly, so it cannot be a column of a linear regression. Each form's
``K`` is *profiled* on the network's output instead: the value at which the form alone
explains most of the network's residual (summed over the residual states, after the
terms of the known physics are projected out), on a log grid of :data:`K_GRID` times the
variable's median along the data, then refined between the neighbouring grid points. The
form then is one library column, that ``K`` substituted, in the sparse regressions. A
form whose best ``K`` lies on the edge of the grid shows no saturation along the data
(it is a monomial there, already a candidate) and is left out. In a candidate model each
rational term has its own learnable ``K`` (``positive``), started from the profiled value
and refit with the coefficients on the data.

In a library term ``K`` is a placeholder symbol (``K_S_X`` for ``S*X/(K + S)``), not a
variable of the model; :func:`shape_symbols` finds it and :func:`bind` replaces it by the
candidate's own parameter (``K_X_0``: the shape of term 0 of ``dX/dt``).
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import ModelError, suggest

__all__ = ["K_GRID", "forms", "profile", "unseen", "rational_spec", "shape_symbols", "bind",
           "shape_name", "filled"]

#: Half-saturation constants tried for each form, relative to the median of its variable
#: along the data: saturation is visible where K is within the data's range, and a K far
#: below or above it makes the form a monomial (m, or m * v**n / K**n).
K_GRID = np.geomspace(1e-2, 1e2, 41)


def rational_spec(rational, variables, columns) -> list[tuple[sp.Symbol, int]]:
    """``[(variable, Hill exponent), ...]`` from the ``rational=`` option.

    ``True``: exponent 1 for every variable the network reads that is positive along the
    data; a list of names: exponent 1 for each; a dict ``{name: n or [n, ...]}``: those
    exponents. ``columns`` maps each variable name to its values along the data.
    """
    if rational is None or rational is False:
        return []
    by_name = {v.name: v for v in variables}
    if rational is True:
        return [(v, 1) for v in variables if np.all(columns[v.name] > 0)]
    if isinstance(rational, (str, sp.Basic)) or not hasattr(rational, "__iter__"):
        raise ModelError(
            f"rational must be True, a list of the network's variables, or a dict of Hill "
            f"exponents (e.g. rational=True, rational=['S'] or rational={{'S': [1, 2]}}); "
            f"received {rational!r}.")
    items = rational.items() if isinstance(rational, dict) else ((r, 1) for r in rational)
    out = []
    for raw, orders in items:
        name = raw.name if isinstance(raw, sp.Symbol) else raw
        if name not in by_name:
            raise ModelError(
                f"rational names {raw!r}, which the network does not read."
                f"{suggest(str(name), by_name)} Saturating terms can only be built on the "
                f"network's inputs {list(by_name)}.")
        if not np.all(columns[name] > 0):
            raise ModelError(
                f"rational names {name}, but {name} is not positive everywhere along the "
                f"data (smallest value {float(np.min(columns[name])):.3g}), so K + {name} "
                f"could vanish. Saturating terms need a positive variable (a concentration).")
        orders = [orders] if np.isscalar(orders) else list(orders)
        for n in orders:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 4:
                raise ModelError(
                    f"Hill exponents in rational must be integers from 1 to 4; received "
                    f"{n!r} for {name}.")
            if (by_name[name], int(n)) not in out:
                out.append((by_name[name], int(n)))
    return out


def forms(spec, variables, taken) -> list[tuple]:
    """``[(term, K, v, n, m), ...]``: the form ``m * v**n / (K**n + v**n)`` for each
    (v, n) of ``spec`` and each multiplier ``m`` in 1 and ``variables``; ``K`` a positive
    placeholder whose name is not in ``taken``."""
    out, used = [], set(taken)
    for v, n in spec:
        for m in [sp.Integer(1), *variables]:
            name = f"K{n if n > 1 else ''}_{v.name}" + (f"_{m}" if m != 1 else "")
            while name in used:
                name += "_"
            used.add(name)
            K = sp.Symbol(name, positive=True)
            out.append((m * v ** n / (K ** n + v ** n), K, v, n, m))
    return out


def _explained(a, targets) -> float:
    """Sum over targets (each ``(q, b)``: basis of the kept columns, projected target)
    of the share of ``b`` that the column ``a`` explains alone."""
    total = 0.0
    for q, b in targets:
        ap = a - q @ (q.T @ a) if q is not None else a
        aa, bb = float(ap @ ap), float(b @ b)
        if aa > 1e-300 and bb > 0:
            total += float(ap @ b) ** 2 / (aa * bb)
    return total


def profile(form_list, columns, targets) -> tuple[list, dict, list]:
    """Profile each form's K on the targets; returns the kept forms' terms, their values
    ``{K: value}`` and the ``(v, n)`` of each form left out (its best K on the grid's
    edge).

    Parameters
    ----------
    form_list : list of (Expr, Symbol)
        From :func:`forms`.
    columns : dict {name: ndarray (N,)}
        Each variable along the data.
    targets : list of (ndarray or None, ndarray)
        Per residual state: an orthonormal basis (N, k) of the columns that state's known
        physics has (None: none) and the network's residual with them projected out.

    Examples
    --------
    >>> import numpy as np, sympy as sp
    >>> S, X = sp.symbols("S X")
    >>> rng = np.random.default_rng(0)
    >>> cols = {"S": rng.uniform(0.1, 10, 300), "X": rng.uniform(0.5, 4, 300)}
    >>> y = 0.5 * cols["S"] * cols["X"] / (2.0 + cols["S"])
    >>> terms, shapes, _ = profile(forms([(S, 1)], [S, X], set()), cols, [(None, y)])
    >>> {str(k): round(v, 6) for k, v in shapes.items()}["K_S_X"]
    2.0
    """
    kept, shapes, dropped = [], {}, []
    for term, K, v, n, m in form_list:
        scale = float(np.median(columns[v.name]))
        vn = columns[v.name] ** n
        mult = columns[m.name] if m != 1 else 1.0

        def score(logk):
            col = mult * vn / (np.exp(n * logk) + vn)
            return _explained(col, targets) if np.all(np.isfinite(col)) else -np.inf

        grid = np.log(scale * K_GRID)
        values = np.array([score(g) for g in grid])
        best = int(np.argmax(values))
        if best in (0, len(grid) - 1) or not np.isfinite(values[best]):
            dropped.append((v, n))
            continue
        from scipy.optimize import minimize_scalar

        found = minimize_scalar(lambda g: -score(g), bounds=(grid[best - 1], grid[best + 1]),
                                method="bounded", options={"xatol": 1e-10})
        logk = float(found.x) if -found.fun >= values[best] else float(grid[best])
        kept.append(term)
        shapes[K] = float(np.exp(logk))
    return kept, shapes, dropped


def unseen(spec, dropped, n_multipliers) -> list[str]:
    """A note for each requested (v, n) all of whose forms were left out."""
    return [f"rational named {v.name}{f' (Hill exponent {n})' if n > 1 else ''}, but the "
            f"network's output shows no saturation in {v.name} along the data (for every "
            f"form the best K lies at the edge of the range tried, {K_GRID[0]:g} to "
            f"{K_GRID[-1]:g} times the median of {v.name}), so no saturating term in "
            f"{v.name} is a candidate." for v, n in spec if dropped.count((v, n)) == n_multipliers]


def shape_symbols(term, variables) -> list[sp.Symbol]:
    """The placeholders of ``term`` (its symbols that are not model variables), by name."""
    names = {v.name for v in variables}
    return sorted((s for s in term.free_symbols if s.name not in names), key=str)


def shape_name(state, j, model) -> str:
    """Name of the learnable K of term ``j`` of ``state``'s residual: ``K_<state>_<j>``."""
    taken = {s.name for s in (*model.states, *model.inputs, *model.parameters, *model.fixed)}
    name = f"K_{state.name}_{j}"
    while name in taken | {"t"}:
        name += "_"
    return name


def bind(term, state, j, model) -> tuple[sp.Expr, list[sp.Symbol]]:
    """``term`` with its placeholder replaced by the candidate's own positive parameter,
    and that parameter (an empty list for terms without one)."""
    found = shape_symbols(term, [*model.states, *model.inputs])
    if not found:
        return term, []
    K = sp.Symbol(shape_name(state, j, model), positive=True)
    return term.xreplace({found[0]: K}), [K]


def filled(term, state, j, model, values) -> sp.Expr:
    """``term`` with its placeholder replaced by the value ``values`` give its parameter
    (a Float), as it appears in an equation."""
    bound, shape = bind(term, state, j, model)
    return bound.xreplace({K: sp.Float(values[K.name], 15) for K in shape})
