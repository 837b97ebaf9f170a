"""The symbolic summary of a field's local residual: sparse terms in the field and its
derivatives, each candidate refit on the sensors' data and selected by BIC.

The local network is one function of the features it reads at a grid point (``u``,
``u_x``...), so its summary is one sparse expression per field over monomials of those
features (a constant included: a source). Sparse regression (STLSQ over a path of
thresholds, and forward selection; :mod:`sysid.symbolic.sparse_regression`) on the
network's output over the fitted field proposes supports; each support becomes physics
(the known part plus one coefficient per term, started from the regression's values),
refit on the data by the same fit as any physics-only model, and the supports are
compared by the refits' Bayesian information criterion. The selected refit is the
distilled model; supports within 2 units of BIC are reported as alternatives the data
cannot separate.
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy as sp
import torch

from ..errors import ModelError
from .sparse_regression import forward_path, least_squares, threshold_path

__all__ = ["FieldSummary", "summarize_field"]

THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7)
#: BIC gap within which another support is reported as an alternative.
CLOSE = 2.0


class FieldSummary:
    """Sparse equations of a field's local residual (see the module docstring).

    Attributes
    ----------
    equations : dict {field: Expr}
        The distilled residual terms, coefficients refit on the data.
    model_equations : dict {field: Expr}
        Known physics plus those terms, with spatial derivatives.
    result : FieldResult
        The distilled model's fit (no network); its ``parameter_table()`` gives the
        coefficients' uncertainty.
    candidates : list of dict
        Every support refit: its terms, BIC and gap to the selected one.
    alternatives : dict {field: list of dict}
        Other supports within ``CLOSE`` units of BIC of the selected one.
    """

    def __init__(self, equations, result, candidates, alternatives, fidelity):
        self.equations = equations
        self.result = result
        self.model_equations = result.equations
        self.candidates = candidates
        self.alternatives = alternatives
        self.fidelity = fidelity

    @property
    def parameters(self) -> dict[str, float]:
        return dict(self.result.parameters)

    def parameter_table(self, level: float = 0.95):
        return self.result.parameter_table(level)

    def refit(self, data):
        """Fit the distilled model (physics plus the selected terms) to ``data``."""
        return self.result._refit(self.result.model, data)

    def to_latex(self) -> str:
        """The distilled model as a LaTeX ``align`` block."""
        # the field's own notation: u, u_x, u_xx (subscripts), not d/dx of u(x)
        plain = {f: s for s, f in self.result.model.feature_functions().items()}
        lines = []
        for name, expr in self.model_equations.items():
            text = sp.latex(expr.xreplace(plain))
            lines.append(rf"\frac{{\partial {name}}}{{\partial t}} &= {text}")
        return "\\begin{align}\n" + " \\\\\n".join(lines) + "\n\\end{align}"

    def __repr__(self) -> str:
        rows = [f"  d{k}/dt += {sp.sstr(sp.N(e, 4))}" for k, e in self.equations.items()]
        for k, alts in self.alternatives.items():
            for a in alts:
                rows.append(f"    (alternative for {k}: {a['terms']}, BIC +{a['gap']:.1f})")
        return "FieldSummary(\n" + "\n".join(rows) + "\n)"


def _monomials(symbols, degree):
    """Monomials of ``symbols`` up to ``degree``, constant first, as exponent tuples."""
    out = []
    for total in range(degree + 1):
        for combo in itertools.combinations_with_replacement(range(len(symbols)), total):
            e = [0] * len(symbols)
            for i in combo:
                e[i] += 1
            out.append(tuple(e))
    return out


def _samples(result, n_points: int, seed: int):
    """Features (N, F) and the network's output per field (N, n_fields) at up to
    ``n_points`` (time, grid point) pairs of the fitted field at the data's times."""
    problem = result._problem
    net = problem.field.residual
    with torch.no_grad():
        xs = problem.states(problem.single)                    # (B, K, n)
        feats = net.features(xs)                               # (B, K, F, *shape)
        out = net._on(feats) * net.out_scale.reshape((-1,) + (1,) * len(net.lattice.shape))
    valid = problem.single.valid.numpy()                       # (B, K)
    f = feats.movedim(2, -1).numpy()[valid].reshape(-1, feats.shape[2])
    y = out.movedim(2, -1).numpy()[valid].reshape(-1, out.shape[2])
    rng = np.random.default_rng(seed)
    if f.shape[0] > n_points:
        pick = np.sort(rng.choice(f.shape[0], size=n_points, replace=False))
        f, y = f[pick], y[pick]
    return f, y


def _supports(theta, target, max_terms):
    """Distinct supports proposed by the threshold path and forward selection."""
    found = []
    steps = threshold_path(theta, target, THRESHOLDS) + forward_path(theta, target, max_terms)
    for step in steps:
        support = tuple(sorted(step.support))
        if 0 < len(support) <= max_terms and support not in found:
            found.append(support)
    return sorted(found, key=len)


def summarize_field(result, *, fit_from, degree: int = 2, max_terms: int = 4,
                    n_points: int = 4000, max_candidates: int = 6, seed: int = 0,
                    **fit_options) -> FieldSummary:
    """The :class:`FieldSummary` of ``result`` (a fitted :class:`~sysid.HybridPDE` with a
    local residual); ``fit_from`` refits a candidate model on ``result.data``."""
    model = result.model
    net = result._problem.field.residual
    if net is None or not getattr(net, "local", False):
        raise ModelError("symbolic() of a field summarises its local residual; this model "
                         "has none (residual=sysid.MLP(..., local=True)).")
    if not isinstance(degree, int) or degree < 1 or degree > 4:
        raise ValueError(f"degree must be an integer from 1 to 4; received {degree!r}.")
    names = list(net.feature_names)
    symbols = [sp.Symbol(n) for n in names]
    exps = _monomials(symbols, degree)
    terms = [sp.Mul(*(s ** e for s, e in zip(symbols, ex))) for ex in exps]
    f, y = _samples(result, n_points, seed)
    theta = np.stack([np.prod(f ** np.array(ex)[None, :], axis=1) for ex in exps], axis=1)
    col = np.sqrt((theta ** 2).mean(0))
    col[col == 0] = 1.0
    options = {"progress": False, "throw": False, **fit_options}
    fields = model.field_names
    per_field = []
    for k in range(len(fields)):
        rms = float(np.sqrt((y[:, k] ** 2).mean())) or 1.0
        sups = _supports(theta / col, y[:, k] / rms, max_terms)[:max_candidates]
        per_field.append([(s, least_squares(theta, y[:, k], s)) for s in sups])
    # the fields' candidates side by side (the i-th of each, the last one repeated)
    n_cand = max(len(c) for c in per_field)
    rows = []
    for i in range(n_cand):
        chosen = [c[min(i, len(c) - 1)] if c else ((), np.zeros(len(terms))) for c in per_field]
        distilled = _distilled(model, chosen, terms, names)
        refit = fit_from(distilled, result.data, None, like=result, **options)
        k = sum(len(s) for s, _ in chosen)
        n_obs = int(refit._problem.mask.sum())
        with torch.no_grad():
            nll = float(refit._problem.loss(0.0, 0.0)[1]["nll"]) * refit._problem.noise.total
        bic = 2.0 * nll + k * np.log(n_obs)
        rows.append({"supports": [s for s, _ in chosen], "bic": bic, "result": refit,
                     "terms": {fields[j]: [sp.sstr(terms[t]) for t in s]
                               for j, (s, _) in enumerate(chosen)}})
    best = int(np.argmin([r["bic"] for r in rows]))
    for r in rows:
        r["gap"] = r["bic"] - rows[best]["bic"]
    chosen = rows[best]["result"]
    equations = _residual_terms(model, chosen)
    alternatives = {fields[j]: [{"terms": r["terms"][fields[j]], "gap": r["gap"]}
                                for i, r in enumerate(rows)
                                if i != best and r["gap"] <= CLOSE
                                and r["supports"][j] != rows[best]["supports"][j]]
                    for j in range(len(fields))}
    fidelity = {}
    for k, name in enumerate(fields):
        s, w = per_field[k][0] if per_field[k] else ((), None)
        fidelity[name] = float(1 - ((y[:, k] - theta @ w) ** 2).mean() / max(y[:, k].var(), 1e-300)) \
            if w is not None else 0.0
    candidates = [{k: v for k, v in r.items() if k != "result"} for r in rows]
    return FieldSummary(equations, chosen, candidates, alternatives, fidelity)


def _distilled(model, chosen, terms, names):
    """A physics-only copy of ``model`` whose physics has, per field, the known part plus
    one coefficient (a new parameter, guessed from the regression) per selected term."""
    pointwise, params = {}, dict(model.parameters)
    for k, (support, coefs) in enumerate(chosen):
        field = model.fields[k]
        extra = sp.Integer(0)
        for t in support:
            c = sp.Symbol(f"c_{model.field_names[k]}_{len(params)}")
            params[c] = float(coefs[t])
            extra += c * terms[t]
        pointwise[field] = model.pointwise.get(field, sp.Integer(0)) + extra
    return model.with_physics(pointwise, params, names)


def _residual_terms(model, refit) -> dict[str, sp.Expr]:
    """Per field, the distilled terms (the refit's physics minus the original model's
    known part, both with the refit's values), with spatial derivatives."""
    full = refit.equations
    known = model.field_equations(refit.parameters)
    return {n: sp.expand(full[n] - known[n]) for n in model.field_names}
