"""The search over supports: every candidate refit with a quick budget, greedy local searches
(swap, drop or add one term, ranked by a linearisation in data space), and the full
refits and held-out scores of the best few.
"""

from __future__ import annotations

import time

import numpy as np
import sympy as sp

from ..errors import SysidError
from ..model.entries import ParameterGuesses
from ..model.hybrid import HybridODE
from ..problem.jacobian import linearise
from .sparse_regression import least_squares
from .library import _name, _tied
from .rational import shape_name, shape_symbols
from .scoring import (BIC_TIE, SCORE, _criteria, _distill, _holdout_error, _sparsest_close,
                      _support_text, noise_levels)


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


class _Search:
    """Refits candidate supports in data space and keeps the table of results.

    ``evaluate`` refits one joint support (once: repeats only add their method's name);
    ``refine`` then searches around the best support -- swapping, dropping or adding one
    term of one state, in the order the network's regression ranks them -- because the
    network is fitted to noisy data and may prefer a wrong term that the data do not;
    ``hold_out`` scores the best few on held-out windows.
    """

    def __init__(self, fit, result, states, terms, theta_n, keep, paths, options, max_terms,
                 shapes=None):
        self.fit, self.result, self.states, self.terms = fit, result, states, terms
        self.shapes = dict(shapes or {})     # profiled K of each rational term's placeholder
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
                for K in shape_symbols(self.terms[col], [*model.states, *model.inputs]):
                    init[shape_name(s, j, model)] = self.shapes[K]
        return init

    def n_shape(self, col) -> int:
        """Learnable shape parameters of library term ``col`` (1 for a rational term)."""
        model = self.result.model
        return len(shape_symbols(self.terms[col], [*model.states, *model.inputs]))

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
        r, J, raw, current, extra, fixed, shape_cols = lin
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
        all_shapes = [k for cols in shape_cols.values() for k in cols]
        A_all = fixed + cur_cols + all_shapes
        Q_all = basis(A_all)
        r_perp = perp(Q_all, r)

        def predicted(new_supports, new_rss, dk):
            if sum(len(v) for v in new_supports.values()) > self.max_terms:
                return np.inf
            return (new_rss - rss0) + dk * np.log(n) + self.extension(new_supports) - base_ext

        for (s, col), c in extra.items():       # additions
            sup = {**current_supports, s: tuple(sorted(current_supports[s] + (col,)))}
            candidates.append((predicted(sup, rss0 - gain(Q_all, r_perp, c),
                                         1 + self.n_shape(col)), sup))
        for (s, col), c in current.items():     # removals and swaps
            own = shape_cols.get((s, col), [])
            cols = fixed + [k for k in cur_cols if k != c] + [k for k in all_shapes
                                                              if k not in own]
            Q = basis(cols)
            rr = perp(Q, r - J[:, c] * raw[c])
            dropped = tuple(t for t in current_supports[s] if t != col)
            sup = {**current_supports, s: dropped}
            rss_drop = float(rr @ rr)
            candidates.append((predicted(sup, rss_drop, -1 - len(own)), sup))
            for (s2, col2), c2 in extra.items():
                if s2 != s:
                    continue
                swapped = {**current_supports, s: tuple(sorted(dropped + (col2,)))}
                candidates.append((predicted(swapped, rss_drop - gain(Q, rr, c2),
                                             self.n_shape(col2) - len(own)), swapped))
        candidates.sort(key=lambda t: t[0])
        return [sup for value, sup in candidates if value < BIC_TIE]

    def linearised(self, i):
        """Residuals and Jacobian at candidate ``i``'s refit, every other term added at 0.

        Returns ``(r, J, raw, current, extra, fixed, shapes)``: standardised residuals,
        their Jacobian (columns: raw parameters, then initial states), the raw parameter
        values, the column of each current term's coefficient ``{(state, term index):
        column}``, of each added term, the columns always in the model (physical
        parameters, initial states), and the columns of each current rational term's K
        ``{(state, term index): [column]}``. An added rational term keeps its profiled K.
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
                terms.append(sym * self.terms[col].xreplace(self.shapes))
                added.append((st, col))
            if terms:
                for target, factor in _tied(model, st):
                    physics[target] = physics.get(target, sp.Integer(0)) \
                        + factor * sp.Add(*terms)
        parameters = ParameterGuesses(parameters, getattr(distilled.parameters, "bounds", {}))
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
        current, shapes, k = {}, {}, n_phys
        for st in self.states:
            for col in supports[st]:
                current[(st, col)] = k
                k += 1
        for st in self.states:          # the K's follow every coefficient (_distill)
            for col in supports[st]:
                shapes[(st, col)] = list(range(k, k + self.n_shape(col)))
                k += self.n_shape(col)
        extra = {key: k + j for j, key in enumerate(added)}
        fixed = list(range(n_phys)) + list(range(P, J.shape[1]))
        return r, J, raw, current, extra, fixed, shapes

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

    def _full_refit(self, i) -> None:
        distilled, quick, supports = self.fits[i]
        full = self.score(self.rows[i], distilled.with_parameters(quick.parameters),
                          REFIT_OPTIONS, supports, quick)
        self.rows[i]["refit"] = "full"
        if full is not None:
            self.fits[i] = (distilled, full, supports)

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
            self._full_refit(i)
        # the candidate to be selected (the sparsest within the tie margin) is always one
        # refit with the full budget: a quick refit that was picked by sparsity (partial
        # observation, seed 7 of benchmarks/symbolic.py: 1 + x*y, 4th by quick score)
        # would otherwise give the summary its coefficients
        for _ in range(len(self.rows)):
            pick = _sparsest_close(self.rows, np.array([r[SCORE] for r in self.rows]))
            if self.rows[pick]["refit"] == "full":
                break
            self._full_refit(pick)
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
                held = self.fit(distilled.with_parameters(full.parameters), self.result.data,
                                None, like=full, **{**self.options, **HOLDOUT_OPTIONS,
                                         **self.quick_tolerance(), "seed": seed,
                                         "shooting": self.options.get("shooting", "auto"),
                                         "validation": fraction})
                self.rows[i]["holdout"] = _holdout_error(held)
            except (SysidError, RuntimeError, ValueError):
                self.rows[i]["holdout"] = np.inf
