"""``SymbolicSummary``: the selected sparse equations of a neural residual, with their
coefficients, uncertainty, fidelity to the network and the candidates compared (the
search that builds it is :func:`sysid.symbolic.distill.summarize`).
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import ModelError
from .scoring import SCORE

__all__ = ["SymbolicSummary"]


class SymbolicSummary:
    r"""Sparse symbolic form of a hybrid model's neural residual, selected in data space.

    Returned by ``result.symbolic(...)`` (see :func:`sysid.symbolic.distill.summarize` for the
    options and the method).

    Attributes
    ----------
    equations : dict[str, sympy.Expr]
        Selected symbolic residual per state that has one (refit coefficients, and the
        refit ``K`` of rational terms, as Floats; ``0`` where no term was selected). A
        network that writes one rate into several states (``MLP(states={X: 1, S: -2})``)
        is distilled as one rate: the first state with coefficient +-1 carries its terms,
        the others the same times their coefficient ratio (its alternatives and
        :attr:`terms` are listed under the first).
    model_equations : dict[str, sympy.Expr]
        Known physics plus the symbolic residual, all fitted values substituted.
    coefficients : dict[str, float]
        Refit coefficient of each selected term (``c_<state>_<j>``).
    parameters : dict[str, float]
        Every refit parameter: physical parameters (refit together with the terms),
        coefficients and the half-saturation constant ``K_<state>_<j>`` of each rational
        term (``result.symbolic(rational=True)``).
    fidelity : dict[str, float]
        Per state, R^2 of the distilled model against the network on the evaluation
        samples: how much of the network residual's variance the symbolic terms (plus the
        change of the physical parameters in the refit) reproduce.
    domain : dict[str, tuple[float, float]]
        Range of each state and input along the fitted trajectories: where the summary is
        supported by data. Outside it, the equations are an extrapolation.
    warnings : list[str]
        In plain words, each with what to do next: equations the data cannot tell apart
        (one sentence per alternative), equations that reproduce the network poorly,
        collinear candidate terms, refit problems.
    alternatives : dict[str, list[dict]]
        Per state, the other supports that the data support about as well: every
        candidate whose EBIC is within ``ALTERNATIVE_GAP`` (6) units of the selected one
        (supersets of the selected support that score worse left out), closest first,
        each with ``terms``, ``expression``, ``equation``, ``coefficients``, ``gap``
        (EBIC above the selected), ``candidate`` (row of :attr:`path`), ``refit`` and
        ``where`` (the time and states where it differs most from the selected equation
        along the data), ``holdout`` (its and the selected one's held-out errors) and,
        where the selected model blows up past the data, ``bounded``. Empty lists where
        the data decide.
    stability : dict or None
        The selected model run from its fitted starts over the data and three spans of
        the data past their end (:mod:`sysid.symbolic.stability`): ``bounded`` (False where a
        state leaves its range over the data by more than 100x, or the solve fails),
        ``horizon`` and ``detail``; a model that blows up is named in :attr:`warnings`
        with the alternatives that stay bounded. None for models with inputs (their
        future inputs are unknown).
    path : pandas.DataFrame
        Every candidate: ``method`` that proposed it (``forward``, ``STLSQ``, ``search``),
        relative STLSQ ``threshold``, ``support_<state>``, ``n_terms``, ``complexity``
        (operations in the terms, plus one per term), ``k`` (learnable
        parameters), ``BIC``, ``EBIC``, ``dEBIC`` (EBIC above the lowest), ``AICc``, ``holdout``
        (standardised error on held-out windows, for the best few), refit ``loss``,
        ``status``, ``refit`` (``quick`` or ``full`` budget), ``seconds``, ``selected``.
    terms : pandas.DataFrame
        Every candidate term of every state: ``selected``, its ``coefficient`` name,
        ``inclusion`` (share of bootstrap-resampled sparse regressions of the network, at
        the selected number of terms, that contain it: ensemble SINDy) and ``weight``
        (share of the data-space BIC weight ``exp(-BIC/2)`` of the refit candidates that
        contain it).
    result : FitResult
        The refit of the selected distilled model to the original data.
    model : HybridODE
        The selected distilled model (no network), fitted values as initial guesses.
    library : dict[str, list[sympy.Expr]]
        Candidate terms per state (terms of the known physics left out); a rational
        term's ``K`` is a placeholder symbol (``S*X/(K_S_X + S)``).

    Examples
    --------
    Lotka-Volterra with the prey's predation term left to a network:

    >>> import sympy as sp, sysid
    >>> data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=1)
    >>> x, y = sp.symbols("x y")
    >>> a, c, d = sp.symbols("a c d", positive=True)
    >>> model = sysid.HybridODE(
    ...     states=[x, y], physics={x: a * x, y: c * x * y - d * y},
    ...     parameters={a: 1.0, c: 1.0, d: 1.0},
    ...     residual=sysid.MLP(width=16, depth=1, states=[x]))
    >>> result = sysid.fit(model, data, progress=False,
    ...                    epochs=30, lbfgs_iterations=60, polish_iterations=5)

    A small summary (quadratic candidates, no bootstrap, local search or held-out
    scoring) names the missing term; the refit gives the share of ``a`` that the network
    had taken back to the physics (truth: ``1.3*x - 0.9*x*y``):

    >>> summary = result.symbolic(degree=2, ensemble=0, holdout=0, refine=0)
    >>> summary.equations
    {'x': -0.899*x*y}
    >>> summary.model_equations["x"]
    -0.899...*x*y + 1.30...*x
    >>> summary.parameter_table()[["kind", "term", "value", "std_error"]].round(3)
               kind term  value  std_error
    name
    a       physics        1.302      0.004
    c       physics        0.875      0.074
    d       physics        1.820      0.018
    c_x_0  residual  x*y -0.899      0.006
    >>> print(summary.to_latex())
    \begin{align}
    \frac{d x}{d t} &= \left(1.3016 \pm 0.0044\right) x - \left(0.8990 \pm 0.0057\right) x y \\
    \frac{d y}{d t} &= -\left(1.820 \pm 0.018\right) y + \left(0.875 \pm 0.074\right) x y
    \end{align}

    The distilled model (no network) refit to another experiment:

    >>> other = sysid.datasets.simulate("lotka_volterra", x0=[1.0, 2.0], noise=0.01, seed=7)
    >>> refit = summary.refit(other)
    >>> refit.model.residual is None
    True
    >>> refit.parameters
    {'a': 1.3, 'c': 0.8, 'd': 1.8, 'c_x_0': -0.9}
    """

    def __init__(self, *, equations, model_equations, coefficients, fidelity, domain,
                 warnings, path, result, model, library, options, terms=None,
                 uncertainty=None, fit_from=None, alternatives=None, stability=None):
        self.equations = equations
        self.model_equations = model_equations
        self.coefficients = coefficients
        self.fidelity = fidelity
        self.domain = domain
        self.warnings = warnings
        self.path = path
        self.result = result
        self.model = model
        self.library = library
        self.terms = terms
        self.alternatives = alternatives if alternatives is not None else \
            {name: [] for name in equations}
        self._uncertainty = uncertainty
        self.stability = stability
        self._options = dict(options)
        self._fit_from = fit_from

    @property
    def parameters(self) -> dict[str, float]:
        return dict(self.result.parameters)

    def std_errors(self) -> dict[str, float]:
        """Standard error of each refit parameter (NaN where unavailable)."""
        u = self._uncertainty
        return {n: (u.std_error(n) if u is not None and n in u.names else float("nan"))
                for n in self.parameters}

    def parameter_table(self, level: float = 0.95):
        """Refit parameters and coefficients with standard errors and intervals.

        The standard errors come from the curvature of the likelihood of the distilled
        model at its refit optimum (Gauss-Newton, initial states included as nuisance
        parameters); the interval is ``value +- z * std_error`` at ``level``.

        Returns
        -------
        pandas.DataFrame
            Indexed by name: ``kind`` (``physics`` or ``residual``), ``state`` and
            ``term`` (for residual coefficients), ``value``, ``std_error``, ``lower``,
            ``upper``, ``inclusion`` and ``weight`` (see :attr:`terms`).

        Examples
        --------
        See the examples of :class:`SymbolicSummary`.
        """
        import pandas as pd
        from scipy.stats import norm

        if not 0.0 < float(level) < 1.0:
            raise ModelError(f"level must be between 0 and 1 (e.g. 0.95); received {level!r}.")
        z = float(norm.ppf(0.5 + float(level) / 2))
        se = self.std_errors()
        terms = self.terms.set_index("coefficient") if self.terms is not None else None
        rows = []
        for name, value in self.parameters.items():
            row = {"kind": "physics", "state": "", "term": "", "value": value,
                   "std_error": se[name], "lower": value - z * se[name],
                   "upper": value + z * se[name], "inclusion": np.nan, "weight": np.nan}
            if name in self.coefficients and terms is not None and name in terms.index:
                t = terms.loc[name]
                row.update(kind="residual", state=t["state"], term=t["term"],
                           inclusion=t["inclusion"], weight=t["weight"])
            rows.append({"name": name, **row})
        return pd.DataFrame(rows).set_index("name")

    def refit(self, data, **options):
        """Fit the selected distilled model (physics + symbolic terms, no network) to ``data``.

        Parameters
        ----------
        data : xarray.Dataset
            Measurements, as for :func:`sysid.fit`.
        **options
            :func:`sysid.fit` options; by default those of the summary's own refits
            (``epochs=0, lbfgs_iterations=100``, the hybrid fit's solver and noise model),
            raising :class:`sysid.errors.FitError` if training fails.

        Returns
        -------
        FitResult
            Starting from the summary's fitted values; it forecasts, imputes and saves
            like any result.

        Examples
        --------
        See the examples of :class:`SymbolicSummary`.
        """
        if self._fit_from is None:
            raise TypeError("This SymbolicSummary was built without a way to fit "
                            "(fit_from=None); get summaries from result.symbolic().")
        return self._fit_from(self.model, data, None,
                              **{**self._options, "throw": True, **options})

    def to_latex(self, uncertainty: bool = True, digits: int = 4,
                 alternatives: bool = True) -> str:
        r"""The model equations as a LaTeX ``align`` block.

        With ``alternatives=True`` the terms the data support about as well
        (:attr:`alternatives`) follow the block as LaTeX comments (``%`` lines), which
        a document ignores and a reader of the source sees.

        Every fitted number is rounded to the precision its standard error supports (two
        significant figures of the standard error), so the rounding never hides the
        uncertainty nor claims more than the data give; with ``uncertainty=True`` each is
        written as ``(value \pm standard error)``. Numbers without a standard error keep
        ``digits`` significant figures.

        Examples
        --------
        See the examples of :class:`SymbolicSummary`.
        """
        model = self.model
        values, se = self.parameters, self.std_errors()
        variables = [*model.states, *model.inputs, sp.Symbol("t")]
        tags, texts = {}, {}
        for k, p in enumerate(model.parameters):
            tag = "ZQ" + "".join(chr(65 + int(d)) for d in f"{k:03d}")
            tags[p] = (-1 if values[p.name] < 0 else 1) * sp.Symbol(tag, positive=True)
            texts[tag] = _number(abs(values[p.name]), se[p.name], digits, uncertainty)
        numeric = {p: sp.Float(values[p.name]) for p in model.parameters}
        lines = []
        for s in model.states:
            rhs = sp.expand(sp.sympify(model.physics.get(s, 0)).subs(model.fixed))
            body = ""
            for term in sp.Add.make_args(rhs):
                coeff, rest = term.as_independent(*variables, as_Add=False)
                value = complex(coeff.xreplace(numeric).evalf())
                sign = "-" if value.real < 0 else "+"
                if coeff.free_symbols:
                    mag = coeff.xreplace(tags)
                    mag = -mag if mag.could_extract_minus_sign() else mag
                    text = sp.latex(mag)
                    for tag, number in texts.items():
                        text = text.replace(tag, number)
                else:
                    text = _number(abs(float(coeff)), float("nan"), digits, False)
                if rest != 1:     # a fitted K inside a rational term: its number too
                    shape = sp.latex(rest.xreplace(tags))
                    for tag, number in texts.items():
                        shape = shape.replace(tag, number)
                    text = shape if text == "1" else f"{text} {shape}"
                body += (f"{'-' if sign == '-' else ''}{text}" if not body
                         else f" {sign} {text}")
            lines.append(rf"\frac{{d {sp.latex(s)}}}{{d t}} &= {body or '0'}")
        text = "\\begin{align}\n" + " \\\\\n".join(lines) + "\n\\end{align}"
        notes = [f"% alternative for d{name}/dt (EBIC {a['gap']:+.1f}): residual "
                 f"{_rounded(a['expression'], 3)} instead of {_rounded(self.equations[name], 3)}"
                 for name, alts in self.alternatives.items() for a in alts] \
            if alternatives else []
        return text + ("\n% the data support these about as well:\n" + "\n".join(notes)
                       if notes else "")

    def plot(self, ax=None):
        """The selection path: BIC of every refit candidate against its number of terms,
        the selected one marked; returns the matplotlib Figure."""
        import matplotlib.pyplot as plt

        path = self.path[np.isfinite(self.path[SCORE])]
        fig, ax = (plt.subplots(figsize=(6, 4)) if ax is None else (ax.figure, ax))
        for method, marker in (("forward", "o"), ("STLSQ", "s"), ("search", "^"),
                               ("physics only", "D")):
            sel = path[path["method"].str.split(", ").str[0] == method]
            ax.scatter(sel["n_terms"], sel["dEBIC"], marker=marker, label=method, alpha=0.8)
        best = path[path["selected"]].iloc[0]
        ax.scatter([best["n_terms"]], [best["dEBIC"]], s=200, facecolors="none",
                   edgecolors="k", linewidths=2, label="selected")
        ax.set_yscale("symlog", linthresh=10.0)
        ax.set_xlabel("number of residual terms")
        ax.set_ylabel("EBIC above the lowest")
        ax.set_title("Symbolic summary: candidates refit to the data")
        ax.legend(fontsize="small")
        fig.tight_layout()
        return fig

    def __repr__(self) -> str:
        eqs = [f"d{n}/dt = {_rounded(e, 4)}" for n, e in self.model_equations.items()]
        res = [f"{n}: {_rounded(e, 4)} (R^2 vs network {self.fidelity[n]:.3f})"
               for n, e in self.equations.items()]
        row = self.path[self.path["selected"]].iloc[0]
        alts = [f"  alternative for {n}: {_rounded(a['expression'], 4) or 0} "
                f"(EBIC {a['gap']:+.1f})" for n, al in self.alternatives.items() for a in al]
        lines = eqs + ["symbolic residual: " + "; ".join(res)] + alts + [
                       f"selected by {SCORE} = {row[SCORE]:.1f} among {len(self.path)} "
                       f"candidates"
                       + (f"; {len(self.warnings)} warning(s)" if self.warnings else "")]
        return "SymbolicSummary(\n  " + "\n  ".join(lines) + "\n)"


def _number(value: float, se: float, digits: int, uncertainty: bool) -> str:
    """``value`` (>= 0) rounded to two significant figures of ``se``, as LaTeX."""
    if not (np.isfinite(se) and se > 0):
        return f"{float(f'{value:.{digits}g}'):g}"
    decimals = max(0, 1 - int(np.floor(np.log10(se))))
    if value != 0 and np.log10(abs(value)) - np.log10(se) > 8:   # far beyond the noise
        return f"{float(f'{value:.{digits}g}'):g}"
    v, e = f"{value:.{decimals}f}", f"{se:.{decimals}f}"
    return rf"\left({v} \pm {e}\right)" if uncertainty else v


def _rounded(expr, digits: int):
    """A copy of ``expr`` with every float rounded to ``digits`` significant figures."""
    return expr.xreplace({f: sp.Float(float(f"{float(f):.{digits}g}"), digits)
                          for f in expr.atoms(sp.Float)})
