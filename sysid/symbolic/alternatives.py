"""What the data cannot decide: the candidate supports of each equation that score close to
the selected one, and a plain sentence saying so.

An alternative of an equation is another support for that state whose candidate (refit to
the data like the selected one) scores within :data:`ALTERNATIVE_GAP` EBIC units of the
selected candidate. A support that only adds terms to the selected one and scores worse is
not an alternative: its extra terms are ones the data do not need. Each state lists each
distinct support once, from its best-scoring candidate, closest first.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch

from ..model.compiler import CompiledExprs
from .library import _name
from .rational import filled
from .scoring import BIC_TIE, SCORE

__all__ = ["ALTERNATIVE_GAP", "alternatives", "describe"]

#: EBIC units within which another support is reported as an alternative: differences
#: below 6 are at most "positive" evidence, from 6 on "strong" (the scale of twice the
#: log Bayes factor, Kass & Raftery 1995, J. Am. Stat. Assoc. 90:773, table in section 3.2).
ALTERNATIVE_GAP = 6.0


def alternatives(rows, fits, best, states, terms, model, samples, time_of=None) -> dict:
    """``{state: [alternative, ...]}`` for every residual state (empty lists where none).

    Each alternative is a dict: ``terms`` (text), ``expression`` (its residual terms with
    the candidate's coefficients, SymPy), ``equation`` (its whole right-hand side, physics
    included, with the candidate's values), ``coefficients`` (term -> value), ``gap``
    (EBIC above the selected candidate; negative for a denser one within the tie margin),
    ``candidate`` (its row in ``.path``), ``refit`` (``quick`` or ``full`` budget) and
    ``where`` (the time and values where it and the selected equation differ most along
    the data, see :func:`_where`).
    """
    score = np.array([r[SCORE] for r in rows], dtype=float)
    chosen = fits[best][2]
    order = [i for i in np.argsort(score, kind="stable")
             if i != best and np.isfinite(score[i]) and score[i] - score[best] <= ALTERNATIVE_GAP]
    selected_rhs = {s: _equation(fits[best], s, model) for s in states}
    out = {}
    for s in states:
        found = {}
        for i in order:
            support = tuple(fits[i][2][s])
            if support == tuple(chosen[s]) or support in found:
                continue
            if set(support) > set(chosen[s]) and score[i] >= score[best]:
                continue
            values = fits[i][1].parameters
            shown = [filled(terms[col], s, j, model, values) for j, col in enumerate(support)]
            coefficients = {str(term): float(values[_name(s, j, model)])
                            for j, term in enumerate(shown)}
            expression = sp.Add(*[sp.Float(v, 15) * term
                                  for v, term in zip(coefficients.values(), shown)])
            equation = _equation(fits[i], s, model)
            found[support] = {
                "terms": ", ".join(coefficients) or "-", "expression": expression,
                "equation": equation, "coefficients": coefficients,
                "gap": float(score[i] - score[best]), "candidate": int(i),
                "refit": rows[i].get("refit", "quick"),
                "holdout": (float(rows[i].get("holdout", np.nan)),
                            float(rows[best].get("holdout", np.nan))),
                "where": _where(selected_rhs[s], equation, model, samples, time_of)}
        out[s.name] = list(found.values())
    return out


def _equation(fit, state, model):
    """The whole right-hand side of ``state`` in a candidate, its values substituted."""
    distilled, refit, _ = fit
    values = refit.parameters
    rhs = sp.sympify(distilled.physics.get(state, 0)).subs(distilled.fixed)
    return rhs.xreplace({p: sp.Float(values[p.name], 15) for p in distilled.parameters})


def _where(selected, other, model, samples, time_of) -> dict | None:
    """Where along the fitted trajectories the two right-hand sides differ most:
    ``{"time": ..., state or input: value, ...}``, or None where they cannot be evaluated."""
    t = sp.Symbol("t")
    variables = list(model.states) + list(model.inputs) + [t]
    try:
        compiled = CompiledExprs([selected - other], variables)
        args = [torch.as_tensor(c) for c in
                np.concatenate([samples.x, samples.u, samples.t[:, None]], axis=1).T]
        with torch.no_grad():
            diff = np.broadcast_to(compiled(args)[0].numpy(), samples.t.shape)
    except (TypeError, ValueError, RuntimeError, NotImplementedError):
        return None
    if not np.isfinite(diff).any():
        return None
    k = int(np.nanargmax(np.abs(diff)))
    where = {"time": time_of(samples.t[k]) if time_of is not None else float(samples.t[k])}
    names = model.state_names + model.input_names
    row = np.concatenate([samples.x[k], samples.u[k]])
    where.update({n: float(v) for n, v in zip(names, row)})
    return where


def _number(value: float) -> str:
    return f"{float(f'{value:.3g}'):g}"


def describe(state: str, selected, alternative: dict) -> str:
    """One sentence: which terms the data cannot tell apart, by how much, and what data
    would separate them.

    >>> import sympy as sp
    >>> x, y = sp.symbols("x y")
    >>> alt = {"expression": 0.0965 * y**2, "gap": 1.7,
    ...        "where": {"time": 12.5, "x": 0.41, "y": 2.3}}
    >>> print(describe("y", 0.8 * x * y, alt))
    For y, 0.8*x*y and 0.0965*y**2 explain the data about equally well (a difference of 1.7 in EBIC; 6 or more would be strong evidence). They differ most near time 12.5, where x = 0.41, y = 2.3: more measurements there, or an experiment that starts elsewhere, would separate them.
    """
    gap = alternative["gap"]
    sel = _rounded(selected) or 0
    alt = _rounded(alternative["expression"]) or 0
    strong = f"{ALTERNATIVE_GAP:g} or more would be strong evidence"
    held = alternative.get("holdout", (np.nan, np.nan))
    if gap < 0 and all(np.isfinite(held)) and held[1] < held[0]:
        text = (f"For {state}, {alt} explains the data slightly better than the selected "
                f"{sel} (by {-gap:.1f} in EBIC, within the margin of {BIC_TIE:g}), but the "
                f"selected one predicts data that the refits did not see better (held-out "
                f"error {held[1]:.3g} against {held[0]:.3g}; {strong}).")
    elif gap < 0:
        text = (f"For {state}, {alt} explains the data slightly better than the selected "
                f"{sel} (by {-gap:.1f} in EBIC, within the margin of {BIC_TIE:g} where the "
                f"simpler terms are kept; {strong}).")
    elif gap < BIC_TIE:
        text = (f"For {state}, {sel} and {alt} explain the data about equally well (a "
                f"difference of {gap:.1f} in EBIC; {strong}).")
    else:
        text = (f"For {state}, {alt} explains the data almost as well as the selected "
                f"{sel} (a difference of {gap:.1f} in EBIC; {strong}).")
    where = alternative.get("where")
    if where:
        used = {s.name for s in sp.sympify(selected).free_symbols
                | alternative["expression"].free_symbols}      # the variables of the terms
        shown = [n for n in where if n in used] or [n for n in where if n != "time"]
        values = ", ".join(f"{n} = {_number(where[n])}" for n in shown)
        when = where["time"]
        when = _number(when) if isinstance(when, (float, int, np.floating)) else str(when)
        text += (f" They differ most near time {when}, where {values}: more measurements "
                 f"there, or an experiment that starts elsewhere, would separate them.")
    return text


def _rounded(expr, digits: int = 3):
    expr = sp.sympify(expr)
    return expr.xreplace({f: sp.Float(float(f"{float(f):.{digits}g}"), digits)
                          for f in expr.atoms(sp.Float)})
