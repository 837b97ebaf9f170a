"""What the data can determine, read from the model's structure alone.

A state that is not measured and acts on nothing that is measured (no observation involves
it, and no equation of a state that reaches an observation does) leaves the data unchanged
whatever its initial value: that value is not an estimate but the starting guess. The same
holds for a parameter that appears only in such states' equations. SIR measured on the
infected fraction alone is the everyday case: ``dR/dt = gamma I`` never feeds back, so
``R(0)`` is undetermined (and with it every imputed ``R``).
"""

from __future__ import annotations

import sympy as sp

__all__ = ["undetermined", "undetermined_message"]


def _reads(model) -> dict[str, set[str]]:
    """Per state, the states its derivative reads (physics and residual)."""
    names = set(model.state_names)
    reads = {s: set() for s in model.state_names}
    for sym, expr in model.physics.items():
        reads[sym.name] |= {q.name for q in sp.sympify(expr).free_symbols if q.name in names}
    if model.residual is not None:
        taken = [q for q in model.residual_inputs if q in names]
        for s in model.residual_states:
            reads[s] |= set(taken)
    return reads


def undetermined(model, channels) -> tuple[list[str], list[str]]:
    """States whose initial values, and parameters whose values, the measured ``channels``
    (data variable names) cannot depend on, whatever the data: ``(states, parameters)``."""
    names = set(model.state_names)
    seen = set()
    todo = []
    for name, expr in model.channels.items():
        if name in channels:
            todo += [q.name for q in sp.sympify(expr).free_symbols if q.name in names]
    reads = _reads(model)
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo += list(reads[s])
    states = [s for s in model.state_names if s not in seen]
    used = set()
    for sym, expr in model.physics.items():
        if sym.name in seen:
            used |= {q.name for q in sp.sympify(expr).free_symbols}
    for name, expr in model.channels.items():
        if name in channels:
            used |= {q.name for q in sp.sympify(expr).free_symbols}
    params = [p for p in model.parameter_names if p not in used]
    return states, params


def undetermined_message(states, params) -> str:
    what = ", ".join(f"{s}(0)" for s in states)
    lines = [f"The data cannot determine the initial value of {', '.join(states)} "
             f"({what}): {'it is' if len(states) == 1 else 'they are'} not measured and "
             f"nothing measured depends on {'it' if len(states) == 1 else 'them'} (no "
             f"observation involves {'it' if len(states) == 1 else 'them'}, and no "
             f"equation of a state that reaches an observation reads "
             f"{'it' if len(states) == 1 else 'them'})."]
    if params:
        lines.append(f"Parameters {', '.join(params)} appear only in those equations and are "
                     f"not determined either.")
    lines.append(f"{'Its' if len(states) == 1 else 'Their'} fitted and imputed values "
                 f"follow from the starting guess, not from the data. To determine "
                 f"{'it' if len(states) == 1 else 'them'}: measure the state (a data variable named "
                 "after it, or an observation involving it), or write what fixes it into "
                 "the model: a conservation law such as S + I + R = 1 eliminates a state "
                 "(replace R by 1 - S - I wherever it appears and drop its equation).")
    return " ".join(lines)
