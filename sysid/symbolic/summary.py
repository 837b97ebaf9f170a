"""``SymbolicSummary``: a sparse symbolic form of the neural residual, selected in data space.

:func:`summarize` (reached as ``result.symbolic(...)``) works in five steps:

1. *Where to look.* The trained network is evaluated along the fitted trajectories only
   (a dense grid inside each trajectory's data span): that is where the data constrain it,
   and the range of the states there is reported as the validity domain.
2. *Candidates.* A library of SymPy terms over the variables the network reads (monomials
   up to ``degree``, functions of each variable, user terms), evaluated with sysid's own compiler and normalised to
   unit RMS so that thresholds mean the same for every term.
3. *Sparse regression* of the network's output on the library (:mod:`sysid.symbolic.sparse_regression`):
   STLSQ over a path of thresholds, plus greedy forward selection (FROLS) of the best 1, 2
   and 3 terms. Thresholding alone misses the true support when library columns are nearly
   collinear along a trajectory (which polynomial columns usually are); forward selection
   does not rely on the full least-squares coefficients.
4. *Selection in data space.* Each distinct support becomes a distilled model -- the known
   physics plus learnable coefficients times the terms, no network -- refit to the data and
   scored on the observations by EBIC (BIC plus the log of the number of supports of each
   size the library allows); a local search then swaps, drops or adds single terms around
   the best support, ranked by a linearisation of the residuals in data space, because the
   network was itself fitted to noisy data and may prefer a term the data do not. The
   sparsest model within 2 units of the best is selected, the
   best few are also scored on held-out windows. Information criteria computed on the
   network's outputs always favour the densest model; re-simulating against the data
   does not.
5. *Uncertainty.* Standard errors of the refit coefficients and physical parameters from
   the curvature of the likelihood (:mod:`sysid.uncertainty.laplace`); inclusion probabilities
   of each term from bagged sparse regressions (pysindy's ensembles) and from the
   candidates' EBIC weights.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
import sympy as sp
import torch

from ..errors import FitError, ModelError, suggest, SysidError
from ..model.compiler import CompiledExprs
from ..model.hybrid import HybridODE
from ..problem.jacobian import linearise
from ..runtime.blas import one_blas_thread
from ..uncertainty.laplace import gauss_newton
from .sparse_regression import (forward_path, inclusion, least_squares, single_terms, threshold_path)

__all__ = ["SymbolicSummary", "summarize"]

#: Default path of STLSQ thresholds, relative to the largest normalised least-squares
#: coefficient of each state's regression.
DEFAULT_THRESHOLDS = tuple(float(v) for v in np.geomspace(1e-3, 0.9, 12))
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
#: The criterion that ranks candidates: BIC extended by the size of the search space
#: (EBIC with gamma = 1, Chen & Chen 2008, Biometrika 95:759). Plain BIC ignores how many
#: supports were tried; with a library of ten terms per state, a search then adds a
#: spurious term to a noisy orbit segment far more often than BIC's nominal rate.
SCORE = "EBIC"
#: Candidates within this many BIC units of the lowest are treated as equally supported;
#: the sparsest of them is selected (a Bayes factor below e is not evidence for more terms).
BIC_TIE = 2.0
#: Candidates scored on held-out windows (the lowest-BIC ones).
HOLDOUT_TOP = 3
#: Local searches: from the best candidate and the best of each smaller size, this many.
REFINE_STARTS = 3
#: Budget of each candidate's refits, with the hybrid fit's shooting: Levenberg-Marquardt
#: iterations on the shooting windows (robust to the local minima of a long or
#: oscillating record: single shooting from the hybrid fit's initial states stalled the
#: lynx-hare demo's correct candidate at a poor optimum), then a few on whole trajectories,
#: which is what the score simulates. A model without a network is fitted by
#: Levenberg-Marquardt (``gauss_newton``): a few batched Jacobians per candidate. The quick
#: refit ranks every candidate; the best few get the full budget. The polish (5 steps) is
#: most of a quick refit's time on long records -- a whole trajectory is solved interval
#: after interval, the windows all at once -- but fewer steps are not enough: the windows'
#: optimum can simulate poorly over whole trajectories (Lotka-Volterra with a sparsely
#: measured predator: the true support scored -273 after 0 steps, -341 after the polish;
#: the lynx-hare demo's true support -10 after 1 step, -89 after 5). A quick refit starts
#: from initial states and window starts guessed from the data for the candidate's own
#: physics; starting it from the hybrid fit's trajectories (``like``) changed the lynx-hare
#: demo's selection, so only the refits that follow a candidate's own refit do that.
QUICK_OPTIONS = {"epochs": 0, "lbfgs_iterations": 10, "polish_iterations": 5}
#: The quick refits, and the linearisation that ranks the local search's moves, solve the
#: ODE to this tolerance at most (the fit's own, if tighter, is kept for the full refits
#: that decide): on the damped pendulum it cut a quick refit's time by 40 % and moved its
#: score by 0.1-0.4 units, against a tie margin of BIC_TIE.
QUICK_TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}
REFIT_OPTIONS = {"epochs": 0, "lbfgs_iterations": 100}
#: Budget of the held-out refits (multiple shooting: the held-out samples are whole windows),
#: at the quick refits' tolerance (the held-out errors are reported, not selected on).
HOLDOUT_OPTIONS = {"epochs": 0, "lbfgs_iterations": 30, "polish_iterations": 3}
#: Candidates within this many BIC units of the best quick score (at most HOLDOUT_TOP of
#: them) are refit with the full budget, and scored on held-out windows.
CONFIRM_DBIC = 10.0
_CARRIED = ("solver", "rtol", "atol", "max_steps", "substeps", "interpolation", "time_unit",
            "shooting", "continuity", "polish_iterations", "noise")
_OPTIONS = ("degree", "functions", "library", "thresholds", "n_points", "seed", "max_terms",
            "refine", "holdout", "ensemble")


@one_blas_thread
def summarize(result, *, fit_from, degree=3, functions=(), library=None, thresholds=None, n_points=400,
              seed=0, max_terms=8, refine=10, holdout=0.2, ensemble=50,
              **unknown) -> "SymbolicSummary":
    """Distil the neural residual of a fitted hybrid model into sparse equations.

    Parameters
    ----------
    result : FitResult
        A fit of a model with a neural residual.
    fit_from : callable
        ``fit_from(model, data, x0, like=None, **options) -> FitResult``: how a candidate
        model is refit to the data (:meth:`sysid.FitResult.symbolic` passes
        :func:`sysid.results.result.fit_from`); the summary keeps it for
        :meth:`SymbolicSummary.refit`.
    degree : int, default 3
        Highest total degree of the candidate monomials (the constant is included).
    functions : sequence of str, optional
        Functions applied to each variable the network reads, added as candidates:
        any of ``"sin", "cos", "exp", "tanh", "log", "sqrt", "abs", "sign"`` (or the
        SymPy functions themselves), e.g. ``functions=["sin", "cos"]``.
    library : sequence of sympy.Expr, optional
        Extra candidate terms over the variables the network reads, e.g.
        ``[sympy.sin(theta)]``. A numeric factor is ignored (``2*sin(theta)`` is
        ``sin(theta)``).
    thresholds : sequence of float, optional
        STLSQ thresholds relative to the largest normalised least-squares coefficient of
        each state (default: 12 values from 1e-3 to 0.9, log-spaced). Fewer thresholds
        mean fewer candidate refits, hence a faster summary.
    n_points : int, default 400
        Evaluation times, evenly spaced over the data's time span; each trajectory is
        evaluated at the times inside its own span.
    seed : int, default 0
        Seed of the candidate refits.
    max_terms : int, default 8
        Candidates with more residual terms than this (summed over states) are listed in
        ``.path`` but not refit: dense supports cost the most to refit and a sparse
        summary is the goal. Raise it to score them too.
    refine : int, default 10
        Budget of each local search (refits of neighbouring supports); 0 switches the
        search off.
    holdout : float, default 0.2
        Fraction of shooting windows held out to score the best few candidates (refit
        without them, error on them); 0 switches it off.
    ensemble : int, default 50
        Bootstrap resamples of the sparse regression for the inclusion probabilities in
        ``.terms``; 0 switches them off.

    Returns
    -------
    SymbolicSummary

    Raises
    ------
    ModelError
        The model has no neural residual, or the options are invalid.
    FitError
        No candidate model could be refit to the data.

    Notes
    -----
    Candidates are: the physics alone; one term per state, combining each state's 3
    library terms that best match the network's residual alone (at most 9 combinations);
    the best 1, 2 and 3 terms per state by forward selection; and the STLSQ support at each
    threshold (per-state supports combined along the path index). Each is refit once with
    a quick budget (``epochs=0, lbfgs_iterations=10, polish_iterations=5``, solver
    tolerances ``rtol=1e-4, atol=1e-6`` unless the fit's are looser, the fit's other
    options: Levenberg-Marquardt on the fit's shooting windows, then on whole
    trajectories), starting from the hybrid fit's parameters and the network regression's
    coefficients. Greedy local
    searches then try, from the best support and from the best of each smaller number of
    terms (3 starts at most), to swap one term of a state for another, drop one or add
    one, moving whenever the score improves, within ``refine`` refits each.
    The moves are ranked by the change of the score that a linearisation in data space
    predicts (the Jacobian of the residuals at the current refit, every other term added
    at zero: Rao's score test for additions), and only those predicted within 2 units of
    an improvement are refit, so a search from the right support costs few refits.
    The best few (at most 3, within 10 units) are refit with the full budget
    (``lbfgs_iterations=100`` and the single-shooting polish) and scored on held-out
    windows.

    A term that the known physics of a state already has with a parameter coefficient
    (``a*x`` in ``dx/dt = a*x + NN``) is not a candidate residual term of that state:
    it is held in the regression without thresholding (projected out, so a share of it
    carried by the network cannot leak into other terms), and the physical parameters are
    refit together with the residual coefficients, so that share returns to the parameter.

    The score is ``EBIC = sum_c (n_c log v_c + RSS_c / v_c - n_c) + k log(n) +
    2 sum_s log C(p_s, k_s)`` over observed channels ``c``, from a simulation of the refit
    model over each whole trajectory (residuals in log space for ``noise="lognormal"``),
    with ``v_c`` the channel's noise variance: the given ``noise_std`` squared, else the
    candidate's own ``RSS_c / n_c`` (the profiled likelihood, ``n_c log(RSS_c / n_c)``)
    but at least the hybrid fit's mean squared residual, so that a dense candidate
    cannot gain without bound by interpolating a sparsely measured channel. ``k`` counts
    the learnable parameters (initial states are fitted by every candidate alike and not
    counted), ``p_s`` is the library size and ``k_s`` the number of terms of state ``s``.
    The last term accounts for the many supports a search compares. Among the candidates
    within 2 units of the lowest, the one with the fewest parameters is selected (between
    equals, the one with the simplest terms: fewest operations), and the others are named
    in ``warnings``. Plain ``BIC`` and ``AICc`` are in ``.path`` too.

    Examples
    --------
    See :meth:`sysid.FitResult.symbolic` and :class:`SymbolicSummary`.
    """
    model = result.model
    if model.residual is None:
        raise ModelError(
            "result.symbolic() summarises the neural residual, but this model has none "
            "(it was built with residual=None, so its equations are already symbolic: see "
            "result.equations). Fit a model with residual=sysid.MLP(...) to distil a network.")
    thresholds = _check_options(degree, library, thresholds, n_points, seed, unknown)
    _check_counts(max_terms=max_terms, refine=refine, ensemble=ensemble)
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float, np.number)) \
            or not 0.0 <= float(holdout) <= 0.5:
        raise ModelError(f"symbolic option holdout must be a fraction of the shooting windows "
                         f"in [0, 0.5] (0 switches held-out scoring off); received "
                         f"{holdout!r}.")
    variables = [_symbol_of(model, n) for n in model.residual_inputs]
    terms = _library_terms(model, variables, int(degree), _functions(functions, variables)
                           + list(library or ()))
    samples = _samples(result, int(n_points))
    theta, terms, notes = _evaluate(terms, model, samples)
    rms = np.sqrt(np.mean(theta ** 2, axis=0))
    theta_n = theta / rms
    notes += _conditioning(theta_n, terms)
    if not result.status.success:
        notes.insert(0, f"The hybrid fit did not succeed ({result.status.code}): the network "
                        f"summarised here may not describe the data. {result.status.advice}")

    states = [_symbol_of(model, s) for s in model.residual_states]
    keep = {s: _physics_mask(model, s, terms, variables) for s in states}
    paths = {}
    for s in states:
        target = samples.residual[:, model.state_names.index(s.name)]
        scale = float(np.sqrt(np.mean(target ** 2)))
        if not scale > 0.0:
            notes.append(f"The network residual of {s.name} is zero on the data; no terms "
                         f"are proposed for it.")
            scale = 1.0
        paths[s] = (threshold_path(theta_n, target / scale, thresholds, keep[s]),
                    forward_path(theta_n, target / scale, FORWARD_TERMS, keep[s]),
                    scale / rms, target / scale,
                    single_terms(theta_n, target / scale, SINGLE_TERMS, keep[s]))

    options = {k: getattr(result.options, k) for k in _CARRIED if hasattr(result.options, k)}
    options.update(seed=int(seed), progress=False, throw=False)
    search = _Search(fit_from, result, states, terms, theta_n, keep, paths, options, int(max_terms))
    for cand in _candidates(states, paths, thresholds):
        search.evaluate(cand["method"], cand["threshold"], cand["supports"])
    search.refine(int(refine))
    search.confirm(float(holdout), int(seed))
    return _package(result, states, terms, keep, search, samples, options, notes,
                    int(ensemble))


# -- options and library -----------------------------------------------------------------
def _check_options(degree, library, thresholds, n_points, seed, unknown) -> list[float]:
    if unknown:
        key = next(iter(unknown))
        raise TypeError(f"result.symbolic() got an unknown option {key!r}."
                        f"{suggest(key, _OPTIONS)} Options: {', '.join(_OPTIONS)}.")
    for name, value, low in (("degree", degree, 1), ("n_points", n_points, 10), ("seed", seed, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ModelError(f"symbolic option {name} must be an integer >= {low}; received "
                             f"{value!r}.")
    if library is not None and (isinstance(library, (str, sp.Basic))
                                or not hasattr(library, "__iter__")):
        raise ModelError(f"library must be a list of SymPy expressions, e.g. "
                         f"[sympy.sin(theta)]; received {library!r}.")
    values = DEFAULT_THRESHOLDS if thresholds is None else thresholds
    try:
        values = sorted(float(v) for v in values)
    except (TypeError, ValueError):
        values = None
    if not values or not all(np.isfinite(v) and v > 0 for v in values):
        raise ModelError(
            f"thresholds must be a non-empty list of positive numbers (relative to the largest "
            f"normalised coefficient, e.g. [0.01, 0.1, 0.5]); received {thresholds!r}.")
    return values


def _check_counts(**values) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ModelError(f"symbolic option {name} must be an integer >= 0; received "
                             f"{value!r}.")


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


def _evaluate(terms, model, samples):
    """Library columns on the samples; drops (and reports) unusable terms."""
    compiled = CompiledExprs(terms, list(model.states) + list(model.inputs))
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
            f"Nearly collinear candidate terms on the data (|correlation| > {COLLINEAR}): "
            f"{'; '.join(pairs[:5])}{more}. Their coefficients are poorly determined by these "
            f"trajectories; lower the degree or add more varied data.")
    s = np.linalg.svd(theta_n / np.sqrt(N), compute_uv=False)
    if len(s) and s[-1] < RANK_TOL * s[0]:
        notes.append(
            f"The candidate library is nearly rank deficient on the data (smallest/largest "
            f"singular value {s[-1] / s[0]:.1e}): some combination of terms is almost zero "
            f"along the trajectories, so it cannot be identified there; lower the degree.")
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


class _Search:
    """Refits candidate supports in data space and keeps the table of results.

    ``evaluate`` refits one joint support (once: repeats only add their method's name);
    ``refine`` then searches around the best support -- swapping, dropping or adding one
    term of one state, in the order the network's regression ranks them -- because the
    network is fitted to noisy data and may prefer a wrong term that the data do not;
    ``hold_out`` scores the best few on held-out windows.
    """

    def __init__(self, fit, result, states, terms, theta_n, keep, paths, options, max_terms):
        self.fit, self.result, self.states, self.terms = fit, result, states, terms
        self.theta_n, self.keep, self.paths = theta_n, keep, paths
        self.options, self.max_terms = options, max_terms
        self.rows, self.fits, self.index = [], [], {}
        self.levels = noise_levels(result)

    def quick_tolerance(self) -> dict:
        """The solver tolerances of the quick refits: QUICK_TOLERANCE or the fit's own,
        whichever is looser."""
        return {k: max(float(v), float(self.options.get(k, v)))
                for k, v in QUICK_TOLERANCE.items()}

    def key(self, supports):
        return tuple(tuple(sorted(supports[s])) for s in self.states)

    def values(self, supports) -> dict:
        """Starting values: the hybrid fit's parameters and the least-squares coefficients
        of the network residual on each state's support, in data units."""
        model = self.result.model
        init = dict(self.result.parameters)
        for s in self.states:
            sup = tuple(sorted(supports[s]))
            coef = least_squares(self.theta_n, self.paths[s][3], sup, self.keep[s])
            for j, col in enumerate(sup):
                init[_name(s, j, model)] = float(coef[col] * self.paths[s][2][col])
        return init

    def evaluate(self, method, threshold, supports) -> float:
        """Refit one joint support (cached); returns its BIC."""
        supports = {s: tuple(sorted(supports[s])) for s in self.states}
        key = self.key(supports)
        if key in self.index:
            row = self.rows[self.index[key]]
            if method not in row["method"]:
                row["method"] += f", {method}"
            if np.isnan(row["threshold"]):
                row["threshold"] = threshold
            return row[SCORE]
        n_terms = sum(len(supports[s]) for s in self.states)
        row = {"method": method, "threshold": threshold,
               **{f"support_{s.name}": _support_text(self.terms, supports[s])
                  for s in self.states},
               "n_terms": n_terms, "complexity": sum(
                   int(sp.count_ops(self.terms[j])) + 1 for st in self.states
                   for j in supports[st]), "k": np.nan, "BIC": np.inf, "EBIC": np.inf, "AICc": np.inf,
               "holdout": np.nan, "loss": np.nan, "status": "", "refit": "-", "seconds": 0.0}
        distilled = refit = None
        if n_terms > self.max_terms:
            row["status"] = f"not refit: more than max_terms={self.max_terms} terms"
        else:
            distilled = _distill(self.result.model, self.states, self.terms, supports,
                                 self.values(supports))
            refit = self.score(row, distilled, {**QUICK_OPTIONS, **self.quick_tolerance()},
                               supports, None)
            row["refit"] = "quick"
        self.index[key] = len(self.rows)
        self.rows.append(row)
        self.fits.append((distilled, refit, supports))
        return row[SCORE]

    def best(self) -> int:
        return int(np.argmin([r[SCORE] for r in self.rows]))

    def refine(self, budget: int) -> None:
        """Greedy local searches from each of :meth:`starts`, ``budget`` refits each.

        A search tries the moves of :meth:`moves` in order (those predicted to come within
        BIC_TIE of improving) and moves to the first that lowers the score -- refit, or
        already in the table -- until none does or its budget is spent. A search that
        reaches a support another search has already left stops there.
        """
        exhausted = set()
        for start in self.starts():
            i, spent = start, 0
            while i not in exhausted and np.isfinite(self.rows[i][SCORE]):
                nxt = None
                for supports in self.moves(i):
                    known = self.index.get(self.key(supports))
                    if known is not None:
                        if self.rows[known][SCORE] < self.rows[i][SCORE]:
                            nxt = known
                            break
                        continue
                    if spent >= budget:
                        break
                    spent += 1
                    if self.evaluate("search", np.nan, supports) < self.rows[i][SCORE]:
                        nxt = len(self.rows) - 1
                        break
                if nxt is None:
                    exhausted.add(i)
                    break
                i = nxt

    def starts(self) -> list[int]:
        """Where the local searches start: the lowest-score candidate, then the lowest of
        each smaller number of terms (at least one), best first, REFINE_STARTS in all. A
        greedy search can stay in the basin of a denser wrong support that the network's
        regression proposed; the sparser candidates start it elsewhere (Lotka-Volterra with
        a sparsely measured predator: the best 4-term candidate led to a 4-term optimum,
        the best 2-term one to the true support, 9 units lower)."""
        score = np.array([r[SCORE] for r in self.rows])
        ok = np.flatnonzero(np.isfinite(score))
        if not len(ok):
            return []
        best = int(ok[np.argmin(score[ok])])
        smaller = []
        for m in range(1, self.rows[best]["n_terms"]):
            same = [int(i) for i in ok if self.rows[i]["n_terms"] == m]
            if same:
                smaller.append(min(same, key=lambda i: score[i]))
        smaller.sort(key=lambda i: score[i])
        return ([best] + smaller)[:REFINE_STARTS]

    def moves(self, i) -> list[dict]:
        """Supports one term away from candidate ``i`` (swap, drop or add one term of one
        state), most promising first, by the change of the score that a linearisation in
        data space predicts: the Jacobian of the standardised residuals at ``i``'s refit,
        with every other candidate term added at coefficient zero, gives each move's
        Gauss-Newton decrease of the residual sum of squares (Rao's score test for
        additions, the linearised loss for removals). Unlike the regression on the
        network, this asks the data. Moves predicted to be worse by more than BIC_TIE are
        left out."""
        try:
            lin = self.linearised(i)
        except (SysidError, RuntimeError, ValueError, np.linalg.LinAlgError):
            return []
        r, J, raw, current, extra, fixed = lin
        current_supports = self.fits[i][2]
        n = float(r.size)
        rss0 = float(r @ r)
        base_ext = self.extension(current_supports)

        def basis(cols):
            A = J[:, cols]
            if A.shape[1] == 0:
                return np.zeros((len(r), 0))
            u, sv, _ = np.linalg.svd(A, full_matrices=False)
            return u[:, sv > sv[0] * 1e-10] if len(sv) and sv[0] > 0 else u[:, :0]

        def perp(Q, v):
            return v - Q @ (Q.T @ v)

        def gain(Q, rr, col):
            b = perp(Q, J[:, col])
            bb = float(b @ b)
            return float(b @ rr) ** 2 / bb if bb > 1e-12 * max(float(J[:, col] @ J[:, col]),
                                                               1e-300) else 0.0

        candidates = []
        cur_cols = list(current.values())
        A_all = fixed + cur_cols
        Q_all = basis(A_all)
        r_perp = perp(Q_all, r)

        def predicted(new_supports, new_rss, dk):
            if sum(len(v) for v in new_supports.values()) > self.max_terms:
                return np.inf
            return (new_rss - rss0) + dk * np.log(n) + self.extension(new_supports) - base_ext

        for (s, col), c in extra.items():       # additions
            sup = {**current_supports, s: tuple(sorted(current_supports[s] + (col,)))}
            candidates.append((predicted(sup, rss0 - gain(Q_all, r_perp, c), 1), sup))
        for (s, col), c in current.items():     # removals and swaps
            cols = fixed + [k for k in cur_cols if k != c]
            Q = basis(cols)
            rr = perp(Q, r - J[:, c] * raw[c])
            dropped = tuple(t for t in current_supports[s] if t != col)
            sup = {**current_supports, s: dropped}
            rss_drop = float(rr @ rr)
            candidates.append((predicted(sup, rss_drop, -1), sup))
            for (s2, col2), c2 in extra.items():
                if s2 != s:
                    continue
                swapped = {**current_supports, s: tuple(sorted(dropped + (col2,)))}
                candidates.append((predicted(swapped, rss_drop - gain(Q, rr, c2), 0),
                                   swapped))
        candidates.sort(key=lambda t: t[0])
        return [sup for value, sup in candidates if value < BIC_TIE]

    def linearised(self, i):
        """Residuals and Jacobian at candidate ``i``'s refit, every other term added at 0.

        Returns ``(r, J, raw, current, extra, fixed)``: standardised residuals, their
        Jacobian (columns: raw parameters, then initial states), the raw parameter values,
        the column of each current term ``{(state, term index): column}``, of each added
        term, and the columns always in the model (physical parameters, initial states).
        """

        distilled, refit, supports = self.fits[i]
        values = refit.parameters
        model = self.result.model
        physics = dict(distilled.physics)
        parameters = {p: values[p.name] for p in distilled.parameters}
        taken = {str(x) for x in (*distilled.states, *distilled.inputs,
                                  *distilled.parameters, *distilled.fixed)}
        added = []
        for st in self.states:
            terms = []
            for col in range(len(self.terms)):
                if self.keep[st][col] or col in supports[st]:
                    continue
                name = f"z_{st.name}_{col}"
                while name in taken:
                    name += "_"
                sym = sp.Symbol(name, real=True)
                parameters[sym] = 0.0
                terms.append(sym * self.terms[col])
                added.append((st, col))
            if terms:
                physics[st] = physics.get(st, sp.Integer(0)) + sp.Add(*terms)
        aug = HybridODE(states=distilled.states, physics=physics, parameters=parameters,
                        residual=None, inputs=distilled.inputs,
                        observations=distilled.observations, fixed=distilled.fixed)
        built = self.fit(aug, self.result.data, None, like=refit,
                         **{**self.options, **self.quick_tolerance(), "epochs": 0,
                            "lbfgs_iterations": 0, "polish_iterations": 0,
                            "shooting": "single", "throw": False})
        p = built._problem
        _, r, J = linearise(p)
        P = p.field.raw.numel()
        raw = p.field.raw.detach().numpy()
        n_phys = len(model.parameters)
        current, k = {}, n_phys
        for st in self.states:
            for col in supports[st]:
                current[(st, col)] = k
                k += 1
        extra = {key: k + j for j, key in enumerate(added)}
        fixed = list(range(n_phys)) + list(range(P, J.shape[1]))
        return r, J, raw, current, extra, fixed

    def extension(self, supports) -> float:
        """EBIC's extra penalty ``2 sum_s log C(p_s, k_s)``: the log of the number of
        supports of each size that the library allows (Chen & Chen 2008)."""
        from math import comb, log

        return 2.0 * sum(log(comb(int((~self.keep[s]).sum()), len(supports[s])))
                         for s in self.states)

    def score(self, row, distilled, budget, supports, like):
        """Refit ``distilled`` with the hybrid fit's options and ``budget``, from the
        states of the fit ``like`` (the candidate's quick refit) or, for None, from states
        guessed from the data; fill ``row``."""
        start = time.perf_counter()
        refit = None
        try:
            refit = self.fit(distilled, self.result.data, None, like=like,
                             **{**self.options, **budget})
        except (SysidError, RuntimeError) as err:
            row.update(status=f"failed: {err}", BIC=np.inf, EBIC=np.inf, AICc=np.inf)
        else:
            k = len(distilled.parameters)
            row.update(k=k, loss=float(refit.stats["loss"]), status=refit.status.code)
            row["BIC"], row["AICc"] = _criteria(refit, k, self.levels) if refit.status.success \
                else (np.inf, np.inf)
            row["EBIC"] = row["BIC"] + self.extension(supports)
        row["seconds"] += time.perf_counter() - start
        return refit

    def confirm(self, fraction: float, seed: int) -> None:
        """Refit with the full budget, from their quick values: the best few candidates
        (within CONFIRM_DBIC of the lowest quick score, at most HOLDOUT_TOP) and the best
        candidate of each smaller number of terms (a quick refit can stop short of the
        optimum, which would wrongly favour a denser model). Then score the best few on
        held-out shooting windows: refit without them, error on them."""
        score = np.array([r[SCORE] for r in self.rows])
        ok = np.isfinite(score)
        if not ok.any():
            return
        order = [int(i) for i in np.argsort(score, kind="stable")
                 if ok[i] and score[i] <= score[ok].min() + CONFIRM_DBIC][:HOLDOUT_TOP]
        size = self.rows[order[0]]["n_terms"]
        for m in range(1, size):
            same = [i for i in range(len(self.rows)) if ok[i] and self.rows[i]["n_terms"] == m]
            if same:
                best = min(same, key=lambda i: score[i])
                if best not in order:
                    order.append(best)
        for i in order:
            distilled, quick, supports = self.fits[i]
            full = self.score(self.rows[i], _with_values(distilled, quick.parameters),
                              REFIT_OPTIONS, supports, quick)
            self.rows[i]["refit"] = "full"
            if full is not None:
                self.fits[i] = (distilled, full, supports)
        if fraction <= 0:
            return
        score = np.array([r[SCORE] if r["refit"] == "full" else np.inf for r in self.rows])
        held_out = [int(i) for i in np.argsort(score, kind="stable")
                    if np.isfinite(score[i])][:HOLDOUT_TOP]
        if held_out and _sparsest_close(self.rows, score) not in held_out:
            held_out.append(_sparsest_close(self.rows, score))   # the one to be selected
        for i in held_out:
            distilled, full, _ = self.fits[i]
            try:
                held = self.fit(_with_values(distilled, full.parameters), self.result.data,
                                None, like=full, **{**self.options, **HOLDOUT_OPTIONS,
                                         **self.quick_tolerance(), "seed": seed,
                                         "shooting": self.options.get("shooting", "auto"),
                                         "validation": fraction})
                self.rows[i]["holdout"] = _holdout_error(held)
            except (SysidError, RuntimeError, ValueError):
                self.rows[i]["holdout"] = np.inf


def _support_text(terms, support) -> str:
    return ", ".join(str(terms[i]) for i in support) or "-"


def _support_sets(row, states) -> str:
    """``x: {x*y}, y: {}`` from a path row."""
    def braces(text):
        return "{" + ("" if text == "-" else text) + "}"
    return ", ".join(f"{s.name}: {braces(row[f'support_{s.name}'])}" for s in states)


def _distill(model, states, terms, supports, values) -> HybridODE:
    """Known physics plus learnable coefficients times the selected terms, no network."""
    physics = dict(model.physics)
    parameters = {p: values[p.name] for p in model.parameters}
    for s in states:
        added = []
        for j, col in enumerate(supports[s]):
            c = sp.Symbol(_name(s, j, model), real=True)
            parameters[c] = values[c.name]
            added.append(c * terms[col])
        if added:
            physics[s] = physics.get(s, sp.Integer(0)) + sp.Add(*added)
    return HybridODE(states=model.states, physics=physics, parameters=parameters,
                     residual=None, inputs=model.inputs, observations=model.observations,
                     fixed=model.fixed)


def _with_values(model, values) -> HybridODE:
    tiny = np.finfo(float).tiny     # a positive parameter whose log underflowed stays > 0
    return HybridODE(states=model.states, physics=model.physics,
                     parameters={p: (max(values[p.name], tiny) if p.is_positive or
                                     p.is_nonnegative else values[p.name])
                                 for p in model.parameters}, residual=None,
                     inputs=model.inputs, observations=model.observations, fixed=model.fixed)


def _channel_rss(fitted) -> tuple[np.ndarray, np.ndarray] | None:
    """(RSS, count) per observed channel from a single-shooting simulation of a fit over
    its whole trajectories (residuals in log space for ``noise="lognormal"``), or None
    where the solver fails."""
    p = fitted._problem
    try:
        with torch.no_grad():
            xs = p.states(p.single)
            pred = p.field.observe(p.single.tau, xs, p.single.u_grid)
            r = p.noise.residuals(pred, p.y, p.mask).numpy()
    except RuntimeError:     # the solver failed (SolverFailure is a RuntimeError)
        return None
    mask = p.mask.numpy()
    r = np.where(mask, r, 0.0).reshape(-1, mask.shape[-1])
    return (r ** 2).sum(0), mask.reshape(-1, mask.shape[-1]).sum(0)


def noise_levels(result) -> tuple[np.ndarray, np.ndarray]:
    """(lowest squared noise level per channel, whether it is the given one) for scoring
    candidates: the given level (``noise_std``), else the hybrid fit's mean squared
    residual over whole trajectories.

    The hybrid fit is the most flexible model of the comparison; a candidate that fits a
    channel more closely than it does is not credited for it (see :func:`_criteria`).
    Profiling the level per candidate without that floor (``n_c log(RSS_c / n_c)``) lets
    a dense candidate interpolate a sparsely measured channel and gain without bound
    (measured: predator at 7 of 31 samples, a 7-term residual scored 200 EBIC units below
    the true single term, its mean squared error half the hybrid fit's)."""
    p = result._problem
    counts = np.asarray(p.noise.counts, dtype=float)
    found = _channel_rss(result)
    est = (found[0] / np.maximum(found[1], 1) if found is not None
           else np.full(len(counts), np.nan))
    y = np.where(p.mask.numpy(), p.y.numpy(), np.nan).reshape(-1, len(counts))
    out, given = np.empty(len(counts)), np.array([k is not None for k in p.noise.known])
    for c, known in enumerate(p.noise.known):
        spread = np.nanvar(y[:, c]) if counts[c] > 1 else 1.0
        tiny = 1e-12 * (spread if np.isfinite(spread) and spread > 0 else 1.0)
        if known is not None:
            out[c] = float(known) ** 2
        elif np.isfinite(est[c]) and est[c] > tiny:
            out[c] = est[c]
        else:      # a hybrid fit that failed or interpolates: the data's own estimate
            out[c] = max(float(p.noise.reference[c]) ** 2, tiny)
    return out, given


def _fit_term(rss: np.ndarray, n_c: np.ndarray, levels) -> float:
    """``sum_c (n_c log v_c + RSS_c / v_c - n_c)`` over channels with samples, ``v_c`` the
    given variance or ``max(RSS_c / n_c, floor_c)`` (``levels`` = (floor or given, given)).

    >>> import math
    >>> import numpy as np
    >>> n, floor = np.array([10.0]), (np.array([1.0]), np.array([False]))
    >>> round(_fit_term(np.array([40.0]), n, floor), 4), round(10 * math.log(4.0), 4)
    (13.8629, 13.8629)
    >>> _fit_term(np.array([0.0]), n, floor)       # an exact fit gains at most n_c units
    -10.0
    """
    low, given = levels
    ok = n_c > 0
    v = np.where(given, low, np.maximum(rss / np.maximum(n_c, 1), low))[ok]
    return float(np.sum(n_c[ok] * np.log(v) + rss[ok] / v - n_c[ok]))


def _criteria(refit, k: int, levels: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """``(BIC, AICc)`` from a single-shooting simulation of the refit model:
    ``sum_c (n_c log v_c + RSS_c / v_c - n_c) + k log(n)`` and
    ``... + 2k + 2k(k+1)/(n-k-1)``: minus twice the Gaussian log-likelihood at the noise
    variance ``v_c`` of each channel, the given one, else the candidate's own
    ``RSS_c / n_c`` but at least the hybrid fit's (:func:`noise_levels`). Above that
    floor the fit term is ``n_c log(RSS_c / n_c)``, the profiled likelihood; below it a
    closer fit gains at most ``n_c`` units."""
    found = _channel_rss(refit)
    if found is None:
        return np.inf, np.inf
    rss, n_c = found
    if not np.all(np.isfinite(rss)):
        return np.inf, np.inf
    fit_term = _fit_term(rss, n_c, levels)
    n = float(n_c.sum())
    aicc = fit_term + 2 * k + (2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else np.inf)
    return fit_term + k * np.log(n), aicc


def _holdout_error(refit) -> float:
    """Standardised mean squared error on the held-out samples, simulating each whole
    trajectory from its fitted initial state (about 1 when predicted to within noise)."""
    p = refit._problem
    with torch.no_grad():
        xs = p.states(p.single)
        pred = p.field.observe(p.single.tau, xs, p.single.u_grid)
        return float(p.validation_score(pred, p.single))


def _package(result, states, terms, keep, search, samples, options, notes, ensemble):
    import pandas as pd

    rows, fits = search.rows, search.fits
    bic = np.array([r[SCORE] for r in rows])
    if not np.isfinite(bic).any():
        raise FitError(
            f"None of the {len(rows)} candidate symbolic models could be refit to the data "
            f"(statuses: {sorted({r['status'] for r in rows})}). Check that the hybrid fit "
            f"itself succeeded (result.status), or try other thresholds or a lower degree.")
    best = _select(rows, bic, states, notes)
    path = pd.DataFrame(rows)
    path.insert(path.columns.get_loc(SCORE) + 1, "dEBIC", bic - np.min(bic))
    path["selected"] = np.arange(len(rows)) == best
    distilled, refit, supports = fits[best]
    values = refit.parameters
    model = result.model
    coefs = {s: [(_name(s, j, model), terms[col]) for j, col in enumerate(supports[s])]
             for s in states}
    equations = {s.name: sp.Add(*[sp.Float(values[c], 15) * term for c, term in coefs[s]])
                 for s in states}
    with torch.no_grad():
        tt, xt, ut = (torch.as_tensor(a, dtype=torch.float64)
                      for a in (samples.t, samples.x, samples.u))
        distilled_rhs = refit._problem.field.physics(tt, xt, ut).numpy()
    fidelity = {}
    for s in states:
        i = model.state_names.index(s.name)
        target = samples.residual[:, i]
        err = distilled_rhs[:, i] - samples.physics[:, i] - target
        ss = float(np.sum((target - target.mean()) ** 2))
        fidelity[s.name] = 1.0 - float(np.sum(err ** 2)) / ss if ss > 0 else float("nan")
        if np.isfinite(fidelity[s.name]) and fidelity[s.name] < 0.9:
            notes.append(
                f"The distilled model reproduces only R^2 = {fidelity[s.name]:.3f} of the "
                f"network residual of {s.name} along the data. Either the network holds "
                f"structure the selected terms lack (terms outside the library: try a "
                f"higher degree, functions=[...] or library=[...]), or the network itself "
                f"is off where the data are noisy and the data preferred these terms "
                f"(compare the candidates' BIC in .path, and .terms).")
    if refit.status.code != "converged":
        notes.append(f"The refit of the selected model ended with status "
                     f"{refit.status.code!r}: {refit.status.message}")
    library = {s.name: [t for t, k in zip(terms, keep[s]) if not k] for s in states}
    table = _term_table(search, states, terms, keep, supports, coefs, ensemble,
                        options["seed"])
    return SymbolicSummary(
        equations=equations, model_equations=refit.equations,
        coefficients={c: float(values[c]) for s in states for c, _ in coefs[s]},
        fidelity=fidelity, domain=samples.domain, warnings=notes, path=path, result=refit,
        model=_with_values(distilled, values), library=library, options=options,
        terms=table, uncertainty=_curvature(refit, notes), fit_from=search.fit)


def _curvature(refit, notes):

    try:
        return gauss_newton(refit)
    except (RuntimeError, ValueError, np.linalg.LinAlgError) as err:
        notes.append(f"Standard errors are not available: the curvature of the likelihood "
                     f"could not be computed ({err}).")
        return None


def _term_table(search, states, terms, keep, supports, coefs, ensemble, seed):
    """Every candidate term per state: selected or not, the ensemble's inclusion
    probability at the selected number of terms, and the data-space BIC weight."""
    import pandas as pd

    bic = np.array([r[SCORE] for r in search.rows])
    ok = np.isfinite(bic)
    w = np.where(ok, np.exp(-0.5 * (np.where(ok, bic, 0.0) - bic[ok].min())), 0.0)
    w /= w.sum()
    rows = []
    for s in states:
        target = search.paths[s][3]
        prob = inclusion(search.theta_n, target, len(supports[s]), keep[s],
                         n_models=ensemble, seed=seed) if ensemble \
            else np.full(len(terms), np.nan)
        names = dict(zip(supports[s], (c for c, _ in coefs[s])))
        for j, term in enumerate(terms):
            if keep[s][j]:
                continue
            weight = min(1.0, float(sum(w[i] for i in range(len(w))
                                        if j in search.fits[i][2][s])))
            rows.append({"state": s.name, "term": str(term), "selected": j in names,
                         "coefficient": names.get(j, ""), "inclusion": float(prob[j]),
                         "weight": weight})
    return pd.DataFrame(rows)


def _select(rows, bic, states, notes) -> int:
    """The sparsest candidate among those within BIC_TIE of the lowest EBIC."""
    best = _sparsest_close(rows, bic)
    close = [i for i in np.flatnonzero(bic <= float(np.min(bic)) + BIC_TIE)]
    others = [i for i in close if i != best]
    if others:
        text = "; ".join(_support_sets(rows[i], states) + f" ({SCORE} {bic[i]:.1f})"
                         for i in others)
        notes.append(
            f"Other candidates are within {BIC_TIE:g} {SCORE} units of the selected one "
            f"({SCORE} {bic[best]:.1f}), so these data support them about equally: {text}. "
            f"The one with the fewest parameters was selected; compare them in .path (and "
            f"the held-out errors there), or collect more informative data.")
    return best


def _sparsest_close(rows, score) -> int:
    """Among the candidates within BIC_TIE of the lowest score, the one with the fewest
    parameters; between equals, the simplest terms (fewest operations: x*y before x**2*y),
    then the lower score. Within BIC_TIE the data do not tell them apart."""
    close = np.flatnonzero(score <= float(np.min(score)) + BIC_TIE)
    return int(min(close, key=lambda i: (rows[i]["k"], rows[i]["complexity"], score[i])))


class SymbolicSummary:
    r"""Sparse symbolic form of a hybrid model's neural residual, selected in data space.

    Returned by ``result.symbolic(...)`` (see :func:`sysid.symbolic.summary.summarize` for the
    options and the method).

    Attributes
    ----------
    equations : dict[str, sympy.Expr]
        Selected symbolic residual per state that has one (refit coefficients as Floats;
        ``0`` where no term was selected).
    model_equations : dict[str, sympy.Expr]
        Known physics plus the symbolic residual, all fitted values substituted.
    coefficients : dict[str, float]
        Refit coefficient of each selected term (``c_<state>_<j>``).
    parameters : dict[str, float]
        Every refit parameter: physical parameters (refit together with the terms) and
        coefficients.
    fidelity : dict[str, float]
        Per state, R^2 of the distilled model against the network on the evaluation
        samples: how much of the network residual's variance the symbolic terms (plus the
        change of the physical parameters in the refit) reproduce.
    domain : dict[str, tuple[float, float]]
        Range of each state and input along the fitted trajectories: where the summary is
        supported by data. Outside it, the equations are an extrapolation.
    warnings : list[str]
        Collinear candidates, poorly reproduced residuals, refit problems.
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
        Candidate terms per state (terms of the known physics left out).

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
                 uncertainty=None, fit_from=None):
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
        self._uncertainty = uncertainty
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

    def to_latex(self, uncertainty: bool = True, digits: int = 4) -> str:
        r"""The model equations as a LaTeX ``align`` block.

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
                if rest != 1:
                    text = sp.latex(rest) if text == "1" else f"{text} {sp.latex(rest)}"
                body += (f"{'-' if sign == '-' else ''}{text}" if not body
                         else f" {sign} {text}")
            lines.append(rf"\frac{{d {sp.latex(s)}}}{{d t}} &= {body or '0'}")
        return "\\begin{align}\n" + " \\\\\n".join(lines) + "\n\\end{align}"

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
        lines = eqs + ["symbolic residual: " + "; ".join(res),
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
