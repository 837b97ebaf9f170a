"""The candidate library of a symbolic summary: terms over the variables the network reads,
evaluated along the fitted trajectories, and the candidate supports that the sparse
regressions propose.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import sympy as sp
import torch

from ..errors import ModelError, suggest
from ..model.compiler import CompiledExprs


#: Forward selection (FROLS) proposes the best supports of 1 .. FORWARD_TERMS terms per state.
FORWARD_TERMS = 3
#: One-term supports tried per state: the network's regression ranks the library terms by
#: how much of its output each explains alone, but the network is fitted to noisy data and
#: its best single term is not always the data's (Lotka-Volterra at 5 % noise: y**2 where the
#: truth has x*y). Combinations of each state's best few are refit (at most this squared).
SINGLE_TERMS = 3
#: Pairs of library columns more correlated than this on the data are reported.
COLLINEAR = 0.999
#: A normalised library whose smallest/largest singular value falls below this is reported.
RANK_TOL = 1e-7


#: Functions that ``functions=`` accepts by name, applied to each variable the network reads.
FUNCTIONS = {"sin": sp.sin, "cos": sp.cos, "exp": sp.exp, "tanh": sp.tanh, "log": sp.log,
             "sqrt": sp.sqrt, "abs": sp.Abs, "sign": sp.sign}


def _functions(functions, variables) -> list[sp.Expr]:
    """``f(v)`` for each requested function ``f`` and each variable ``v``."""
    if isinstance(functions, str) or not hasattr(functions, "__iter__"):
        functions = [functions]
    out = []
    for f in functions:
        name = f if isinstance(f, str) else getattr(f, "__name__", None)
        if name not in FUNCTIONS or (not isinstance(f, str) and f is not FUNCTIONS[name]):
            raise ModelError(
                f"functions must name functions to apply to each variable the network reads, "
                f"from {sorted(FUNCTIONS)} (strings or the SymPy functions, e.g. "
                f"functions=['sin', 'cos']); received {f!r}. Pass other terms as "
                f"library=[...] SymPy expressions.")
        out += [FUNCTIONS[name](v) for v in variables]
    return out


def _symbol_of(model, name: str) -> sp.Symbol:
    return {s.name: s for s in model.states + model.inputs}[name]


def _library_terms(model, variables, degree, library) -> list[sp.Expr]:
    """Monomials up to ``degree`` (constant first, by degree) plus the user's terms."""
    def order(m):
        exps = sp.Poly(m, *variables).monoms()[0]
        return sum(exps), tuple(-e for e in exps)

    terms = sorted(sp.itermonomials(variables, degree), key=order)
    by_name = {v.name: v for v in variables}
    for raw in library or ():
        if not isinstance(raw, sp.Expr):
            raise ModelError(
                f"library terms must be SymPy expressions; received {raw!r} of type "
                f"{type(raw).__name__}. Build them from symbols named like the model's "
                f"variables, e.g. sympy.sin(sympy.Symbol('{variables[0].name}')).")
        unknown = sorted(s.name for s in raw.free_symbols if s.name not in by_name)
        if unknown:
            raise ModelError(
                f"library term {raw} uses {unknown}, which the network does not read."
                f"{suggest(unknown[0], by_name)} Candidate terms may only use the network's "
                f"inputs {list(by_name)}.")
        term = raw.xreplace({s: by_name[s.name] for s in raw.free_symbols})
        term = term.as_coeff_Mul()[1] if term.free_symbols else sp.Integer(1)
        terms.append(term)
    unique = []
    for term in terms:
        if term not in unique:
            unique.append(term)
    return unique


def _physics_mask(model, state, terms, variables) -> np.ndarray:
    """True for terms the state's known physics has with a parameter coefficient."""
    expr = sp.expand(sp.sympify(model.physics.get(state, 0)).subs(model.fixed))
    params, allowed = set(model.parameters), set(variables)
    known = set()
    for term in sp.Add.make_args(expr):
        coeff = [f for f in sp.Mul.make_args(term) if f.free_symbols <= params]
        rest = [f for f in sp.Mul.make_args(term) if not f.free_symbols <= params]
        if sp.Mul(*coeff).free_symbols and sp.Mul(*rest).free_symbols <= allowed:
            known.add(sp.Mul(*rest))
    return np.array([t in known for t in terms], dtype=bool)


def _residual_states(model) -> list[sp.Symbol]:
    """The states whose residual the summary distils: every residual state, or, where
    the network writes one shared rate into several states (``MLP(states={X: 1, S: -2})``),
    the one that carries the rate itself: the first with coefficient +-1, else the first.
    The others receive the same terms times their coefficient ratio (:func:`_tied`)."""
    names = list(model.residual_states)
    nu = getattr(model, "residual_coefficients", None)
    if nu is not None and len(names) > 1:
        unit = [n for n, c in zip(names, nu) if abs(abs(float(c)) - 1.0) < 1e-12]
        names = [unit[0] if unit else names[0]]
    return [_symbol_of(model, n) for n in names]


def _tied(model, state) -> list[tuple[sp.Symbol, sp.Expr]]:
    """``[(state, factor), ...]``: where the residual terms of ``state`` are written, and
    times what: ``[(state, 1)]``, or for a shared rate every state it is written into,
    times its coefficient over ``state``'s (``state`` first)."""
    nu = getattr(model, "residual_coefficients", None)
    names = list(model.residual_states)
    if nu is None or state.name not in names or len(names) == 1:
        return [(state, sp.Integer(1))]
    own = float(nu[names.index(state.name)])
    out = [(state, sp.Integer(1))]
    for n, c in zip(names, nu):
        if n != state.name:
            f = float(c) / own
            out.append((_symbol_of(model, n),
                        sp.Integer(int(f)) if float(f).is_integer() else sp.Float(f, 15)))
    return out


def _name(state, j, model) -> str:
    taken = {s.name for s in (*model.states, *model.inputs, *model.parameters, *model.fixed)}
    name = f"c_{state.name}_{j}"
    while name in taken | {"t"}:
        name += "_"
    return name


# -- evaluation --------------------------------------------------------------------------
@dataclass
class _Samples:
    t: np.ndarray           # (N,)
    x: np.ndarray           # (N, n) states
    u: np.ndarray           # (N, m) inputs
    residual: np.ndarray    # (N, n) network output added to d(state)/dt
    physics: np.ndarray     # (N, n) hybrid model's known physics
    domain: dict


def _samples(result, n_points: int) -> _Samples:
    """States and inputs on a dense grid inside each trajectory's data span."""
    model, bundle = result.model, result._bundle
    lo, hi = bundle.times[bundle.t_first], bundle.times[bundle.t_last]
    grid = np.linspace(lo.min(), hi.max(), n_points)
    imp = result.impute(result._to_datetime(grid) if result._is_datetime() else grid)
    B = bundle.n_trajectories

    def values(name):
        return np.asarray(imp[name].transpose(..., "time").values, dtype=float).reshape(B, -1)

    x = np.stack([values(n) for n in model.state_names], axis=-1)
    u = np.stack([values(n) for n in model.input_names], axis=-1) if model.inputs \
        else np.zeros(x.shape[:2] + (0,))
    inside = (grid >= lo[:, None]) & (grid <= hi[:, None])
    inside &= np.isfinite(x).all(-1) & np.isfinite(u).all(-1)
    t = np.broadcast_to(grid, inside.shape)[inside]
    x, u = x[inside], u[inside]
    field = result._problem.field
    with torch.no_grad():
        tt, xt, ut = (torch.as_tensor(a, dtype=torch.float64) for a in (t, x, u))
        residual = field.residual_term(xt, ut).numpy()
        physics = field.physics(tt, xt, ut).numpy()
    names = model.state_names + model.input_names
    columns = np.concatenate([x, u], axis=1)
    domain = {n: (float(columns[:, i].min()), float(columns[:, i].max()))
              for i, n in enumerate(names)}
    return _Samples(t, x, u, residual, physics, domain)


def _evaluate(terms, model, samples, shapes=None):
    """Library columns on the samples; drops (and reports) unusable terms. ``shapes``
    gives the values of the placeholders of rational terms (:mod:`.rational`)."""
    compiled = CompiledExprs([t.xreplace(shapes or {}) for t in terms],
                             list(model.states) + list(model.inputs))
    args = [torch.as_tensor(c) for c in np.concatenate([samples.x, samples.u], axis=1).T]
    with torch.no_grad():
        theta = np.stack([c.numpy() for c in compiled(args)], axis=1)
    finite = np.isfinite(theta).all(0)
    good = finite & (np.abs(np.where(np.isfinite(theta), theta, 0.0)).max(0) > 0)
    why = ["is zero everywhere on", "is not finite (NaN or inf) at some samples of"]
    notes = [f"The candidate term {t} {why[not finite[i]]} the data and was left out."
             for i, t in enumerate(terms) if not good[i]]
    if good.sum() > len(theta):
        raise ModelError(
            f"The library has {int(good.sum())} usable candidate terms but only "
            f"{len(theta)} evaluation samples to regress them on; lower the degree or raise "
            f"n_points.")
    return theta[:, good], [t for t, g in zip(terms, good) if g], notes


def _conditioning(theta_n, terms) -> list[str]:
    """Report (near-)collinear candidate terms on the data (columns have unit RMS)."""
    notes = []
    N = len(theta_n)
    centred = theta_n - theta_n.mean(0)
    sd = np.sqrt(np.mean(centred ** 2, axis=0))
    varying = sd > 1e-12
    corr = np.zeros((len(terms), len(terms)))
    v = np.flatnonzero(varying)
    corr[np.ix_(v, v)] = np.abs(centred[:, v].T @ centred[:, v]) / (N * np.outer(sd[v], sd[v]))
    for c in (i for i, t in enumerate(terms) if t == 1):   # cosine with the constant column
        corr[c, :] = corr[:, c] = np.sqrt(np.clip(1.0 - sd ** 2, 0.0, None))
    i, j = np.nonzero(np.triu(corr > COLLINEAR, k=1))
    pairs = [f"{terms[a]} and {terms[b]} ({corr[a, b]:.5f})" for a, b in zip(i, j)]
    if pairs:
        more = f" and {len(pairs) - 5} more pairs" if len(pairs) > 5 else ""
        notes.append(
            f"Some candidate terms have almost the same shape along these data "
            f"(|correlation| > {COLLINEAR}): {'; '.join(pairs[:5])}{more}. The data cannot "
            f"tell such terms apart, so where the summary uses one its coefficient is poorly "
            f"determined. Data over a wider range of the states would separate them; a "
            f"lower degree leaves the higher powers out.")
    s = np.linalg.svd(theta_n / np.sqrt(N), compute_uv=False)
    if len(s) and s[-1] < RANK_TOL * s[0]:
        notes.append(
            f"Some combination of the candidate terms is almost zero along these data "
            f"(the library is nearly rank deficient: smallest/largest singular value "
            f"{s[-1] / s[0]:.1e}), so the data cannot identify it. Data over a wider range "
            f"of the states would; a lower degree leaves the higher powers out.")
    return notes


# -- candidates and refits ---------------------------------------------------------------
def _candidates(states, paths, thresholds) -> list[dict]:
    """Combinations of per-state supports proposed by the sparse regressions: physics only,
    the forward path by number of terms, then the STLSQ path by threshold index."""
    def support(step):
        return step.support if step is not None else ()

    out = [{"method": "physics only", "threshold": np.nan,
            "supports": {s: () for s in states}}]
    ranked = sorted(itertools.product(*[range(len(paths[s][4])) for s in states]),
                    key=lambda ranks: (sum(ranks), ranks))
    for ranks in ranked[:SINGLE_TERMS ** 2]:
        out.append({"method": "single terms", "threshold": np.nan,
                    "supports": {s: (paths[s][4][r],) for s, r in zip(states, ranks)}})
    for n in range(1, FORWARD_TERMS + 1):
        out.append({"method": "forward", "threshold": np.nan,
                    "supports": {s: support(paths[s][1][min(n, len(paths[s][1])) - 1]
                                            if paths[s][1] else None) for s in states}})
    for k, rel in enumerate(thresholds):
        out.append({"method": "STLSQ", "threshold": rel,
                    "supports": {s: support(paths[s][0][k]) for s in states}})
    return out
