""":func:`summarize`: distil the neural residual into a sparse symbolic form, selected in data space.

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

import numpy as np
import sympy as sp
import torch

from ..errors import FitError, ModelError, suggest
from ..runtime.blas import one_blas_thread
from ..uncertainty.laplace import gauss_newton
from .sparse_regression import (forward_path, inclusion, single_terms, threshold_path)
from .library import (FORWARD_TERMS, SINGLE_TERMS, _candidates, _conditioning, _evaluate,
                      _functions, _library_terms, _name, _physics_mask, _residual_states,
                      _samples, _symbol_of, _tied)
from .rational import filled, forms, profile, rational_spec, unseen
from .alternatives import _rounded, alternatives as _alternatives, describe
from .scoring import SCORE, _sparsest_close
from .stability import run_past_data
from .search import _Search
from .summary import SymbolicSummary


__all__ = ["summarize"]

#: Default path of STLSQ thresholds, relative to the largest normalised least-squares
#: coefficient of each state's regression.
DEFAULT_THRESHOLDS = tuple(float(v) for v in np.geomspace(1e-3, 0.9, 12))
_CARRIED = ("solver", "rtol", "atol", "max_steps", "substeps", "interpolation", "time_unit",
            "shooting", "continuity", "polish_iterations", "noise")
_OPTIONS = ("degree", "functions", "library", "rational", "thresholds", "n_points", "seed",
            "max_terms", "refine", "holdout", "ensemble")


@one_blas_thread
def summarize(result, *, fit_from, degree=3, functions=(), library=None, rational=False,
              thresholds=None, n_points=400, seed=0, max_terms=8, refine=10, holdout=0.2,
              ensemble=50, **unknown) -> "SymbolicSummary":
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
    rational : bool, sequence of str or dict, default False
        Saturating candidate terms ``m * v**n / (K**n + v**n)`` (Michaelis-Menten,
        Monod, Hill) with a fitted half-saturation constant ``K`` (:mod:`.rational`):
        ``True`` for every variable the network reads that is positive along the data
        (``n = 1``), a list of names (``["S"]``), or Hill exponents per name
        (``{"S": [1, 2]}``); the multiplier ``m`` is 1 or one of the network's
        variables (``S*X/(K + S)``: Monod growth of ``X`` on ``S``). Each form's ``K`` is
        profiled on the network's output and refit with the coefficients in every
        candidate model (``K_<state>_<j>``, positive).
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
    within 2 units of the lowest, the one with the fewest parameters is selected; between
    equals, the one with the lower error on held-out windows where each of them has been
    scored there (``holdout``: the refits do not see those windows, so this is evidence
    the in-sample scores within 2 units lack), else the one with the simplest terms
    (fewest operations). The others are named in ``warnings``. Plain ``BIC`` and ``AICc`` are in ``.path`` too.

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
    samples = _samples(result, int(n_points))
    states = _residual_states(model)
    terms, shapes, theta_n, rms, keep, targets, notes = _library(
        model, variables, states, samples, _library_terms(
            model, variables, int(degree), _functions(functions, variables)
            + list(library or ())), rational)
    if not result.status.success:
        notes.insert(0, f"The hybrid fit did not succeed ({result.status.code}): the network "
                        f"summarised here may not describe the data. {result.status.advice}")
    paths = {}
    for s in states:
        target, scale = targets[s]
        paths[s] = (threshold_path(theta_n, target, thresholds, keep[s]),
                    forward_path(theta_n, target, FORWARD_TERMS, keep[s]),
                    scale / rms, target,
                    single_terms(theta_n, target, SINGLE_TERMS, keep[s]))

    options = {k: getattr(result.options, k) for k in _CARRIED if hasattr(result.options, k)}
    # (candidates start from the network's fit: no growing of the horizon)
    options.update(seed=int(seed), progress=False, throw=False, grow_horizon=False)
    search = _Search(fit_from, result, states, terms, theta_n, keep, paths, options,
                     int(max_terms), shapes)
    for cand in _candidates(states, paths, thresholds):
        search.evaluate(cand["method"], cand["threshold"], cand["supports"])
    search.refine(int(refine))
    search.confirm(float(holdout), int(seed))
    return _package(result, states, terms, keep, search, samples, options, notes,
                    int(ensemble), rational)


# -- options and library -----------------------------------------------------------------
def _library(model, variables, states, samples, terms, rational):
    """The normalised library along the data: the terms, the profiled K of each rational
    term's placeholder (:mod:`.rational`), the columns (unit RMS) and their RMS, the
    columns each state's known physics has (``keep``), each state's normalised target
    ``(network residual / scale, scale)``, and notes."""
    theta, terms, notes = _evaluate(terms, model, samples)
    keep = {s: _physics_mask(model, s, terms, variables) for s in states}
    targets, projected = {}, []
    for s in states:
        target = samples.residual[:, model.state_names.index(s.name)]
        scale = float(np.sqrt(np.mean(target ** 2)))
        if not scale > 0.0:
            notes.append(f"The network residual of {s.name} is zero on the data; no terms "
                         f"are proposed for it.")
            scale = 1.0
        targets[s] = (target / scale, scale)
        q = np.linalg.qr(theta[:, keep[s]])[0] if keep[s].any() else None
        projected.append((q, target / scale - (q @ (q.T @ target) / scale
                                               if q is not None else 0.0)))
    names = model.state_names + model.input_names
    columns = {n: np.concatenate([samples.x, samples.u], axis=1)[:, i]
               for i, n in enumerate(names)}
    spec = rational_spec(rational, variables, columns)
    if spec:
        taken = {s.name for s in (*model.states, *model.inputs, *model.parameters,
                                  *model.fixed)} | {"t"}
        found, shapes, dropped = profile(forms(spec, variables, taken), columns, projected)
        extra, found, more = _evaluate(found, model, samples, shapes)
        theta, terms = np.concatenate([theta, extra], axis=1), terms + found
        keep = {s: np.concatenate([keep[s], np.zeros(len(found), dtype=bool)]) for s in states}
        notes += more + ([] if rational is True else unseen(spec, dropped, 1 + len(variables)))
    else:
        shapes = {}
    rms = np.sqrt(np.mean(theta ** 2, axis=0))
    theta_n = theta / rms
    notes += _conditioning(theta_n, terms)
    return terms, shapes, theta_n, rms, keep, targets, notes


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


def _package(result, states, terms, keep, search, samples, options, notes, ensemble,
             rational=False):
    import pandas as pd

    rows, fits = search.rows, search.fits
    bic = np.array([r[SCORE] for r in rows])
    if not np.isfinite(bic).any():
        raise FitError(
            f"None of the {len(rows)} candidate symbolic models could be refit to the data "
            f"(statuses: {sorted({r['status'] for r in rows})}). Check that the hybrid fit "
            f"itself succeeded (result.status), or try other thresholds or a lower degree.")
    best = _sparsest_close(rows, bic)
    time_of = ((lambda v: result._to_datetime(np.array([v]))[0]) if result._is_datetime()
               else None)
    alternatives = _alternatives(rows, fits, best, states, terms, result.model, samples,
                                 time_of)
    path = pd.DataFrame(rows)
    path.insert(path.columns.get_loc(SCORE) + 1, "dEBIC", bic - np.min(bic))
    path["selected"] = np.arange(len(rows)) == best
    distilled, refit, supports = fits[best]
    values = refit.parameters
    model = result.model
    coefs = {s: [(_name(s, j, model), filled(terms[col], s, j, model, values))
                 for j, col in enumerate(supports[s])] for s in states}
    equations = {s.name: sp.Add(*[sp.Float(values[c], 15) * term for c, term in coefs[s]])
                 for s in states}
    for s in states:      # a shared rate: the other states it is written into
        for other, factor in _tied(model, s)[1:]:
            equations[other.name] = factor * equations[s.name]
            alternatives[other.name] = []
    notes.extend(describe(s.name, equations[s.name], a)
                 for s in states for a in alternatives[s.name])
    stability = _stability(refit, fits, states, alternatives, notes)
    with torch.no_grad():
        tt, xt, ut = (torch.as_tensor(a, dtype=torch.float64)
                      for a in (samples.t, samples.x, samples.u))
        distilled_rhs = refit._problem.field.physics(tt, xt, ut).numpy()
    fidelity = {}
    for s in (t for st in states for t, _ in _tied(model, st)):
        i = model.state_names.index(s.name)
        target = samples.residual[:, i]
        err = distilled_rhs[:, i] - samples.physics[:, i] - target
        ss = float(np.sum((target - target.mean()) ** 2))
        fidelity[s.name] = 1.0 - float(np.sum(err ** 2)) / ss if ss > 0 else float("nan")
        if np.isfinite(fidelity[s.name]) and fidelity[s.name] < 0.9:
            share = (f"it reproduces {100 * fidelity[s.name]:.0f} % of the network's "
                     f"correction to {s.name} along the data" if fidelity[s.name] > 0 else
                     f"it does not reproduce the network's correction to {s.name} along "
                     f"the data")
            notes.append(
                f"The equation found for {s.name} differs from what the network learned: "
                f"{share} (R^2 = {fidelity[s.name]:.3f}, .fidelity). The equation was "
                f"chosen because it explains the measurements best, so either the "
                f"network learned part of the noise, or it learned a shape that none of "
                f"the candidate terms has: to test the second, try result.symbolic(degree=3) or add terms with functions=[...] "
                f"or library=[...]" + ("" if rational else ", or saturating (Michaelis-Menten, "
                                      "Monod) terms with rational=True") + ".")
    if refit.status.code != "converged":
        notes.append(f"The refit of the selected equations did not converge "
                     f"({refit.status.code}): {refit.status.message}")
    library = {s.name: [t for t, k in zip(terms, keep[s]) if not k] for s in states}
    table = _term_table(search, states, terms, keep, supports, coefs, ensemble,
                        options["seed"])
    return SymbolicSummary(
        equations=equations, model_equations=refit.equations,
        coefficients={c: float(values[c]) for s in states for c, _ in coefs[s]},
        fidelity=fidelity, domain=samples.domain, warnings=notes, path=path, result=refit,
        alternatives=alternatives,
        model=distilled.with_parameters(values), library=library, options=options,
        terms=table, uncertainty=_curvature(refit, notes), fit_from=search.fit,
        stability=stability)


def _stability(refit, fits, states, alternatives, notes):
    """The selected model run past its data (:mod:`sysid.symbolic.stability`); where it
    blows up, each alternative is run too (``alternative["bounded"]``) and a note names
    those that stay bounded."""
    found = run_past_data(refit)
    if found is None or found["bounded"]:
        return found
    steady = []
    for s in states:
        for a in alternatives[s.name]:
            fit = fits[a["candidate"]][1]
            other = run_past_data(fit) if fit is not None else None
            a["bounded"] = None if other is None else other["bounded"]
            if a["bounded"]:
                steady.append(f"for {s.name}, {_rounded(a['expression'])} (EBIC "
                              f"{a['gap']:+.1f})")
    offer = (f" Alternatives that stay bounded: {'; '.join(steady)} (summary.alternatives)."
             if steady else " None of the alternatives within reach stays bounded either.")
    notes.append(f"The distilled model leaves the range of the data when it runs past "
                 f"them: {found['detail']}. If the system cannot do that, a term of the "
                 f"distilled model matters only away from the data, where they do not "
                 f"check it: do not trust its forecast.{offer} Measurements past the "
                 f"data's end would tell them apart.")
    return found


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
