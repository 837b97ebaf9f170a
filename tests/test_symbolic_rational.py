"""Rational (saturating) terms in the symbolic summary (issue 28): ``m * v**n / (K**n + v**n)``
with K profiled on the network's output and refit on the data (``sysid.symbolic.rational``).

The end-to-end case is the chemostat of ``benchmarks/symbolic_rational.py`` at 1 % noise:
Monod growth left to a stoichiometric network, biomass X measured only. Its oracle (the
true structure fitted to the same data) is the reference for what the data determine.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import sysid
from sysid.errors import ModelError
from sysid.symbolic.rational import forms, profile, rational_spec, unseen
from sysid.symbolic.sparse_regression import forward_path, least_squares

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import symbolic_rational as chemostat  # noqa: E402

S, X = sp.symbols("S X")


def _columns(seed=0, n=400):
    rng = np.random.default_rng(seed)
    return {"S": rng.uniform(0.2, 10.0, n), "X": rng.uniform(0.5, 4.0, n)}


def _library(cols, spec, target, keep_terms=()):
    """Monomials of degree <= 2 and the profiled forms of ``spec``, normalised; the
    target projected on the kept monomials' complement for the profile."""
    monos = sorted(sp.itermonomials([S, X], 2), key=sp.default_sort_key)
    theta = np.stack([np.broadcast_to(np.asarray(sp.lambdify([S, X], m)(cols["S"], cols["X"]),
                                                 dtype=float), cols["S"].shape)
                      for m in monos], axis=1)
    keep = np.array([m in keep_terms for m in monos])
    q = np.linalg.qr(theta[:, keep])[0] if keep.any() else None
    b = target - (q @ (q.T @ target) if q is not None else 0.0)
    terms, shapes, dropped = profile(forms(spec, [S, X], {"S", "X"}), cols, [(q, b)])
    extra = [np.asarray(sp.lambdify([S, X], t.xreplace(shapes))(cols["S"], cols["X"]),
                        dtype=float) for t in terms]
    full = np.concatenate([theta, *(np.stack(extra, axis=1) for _ in extra[:1])], axis=1)
    keep = np.concatenate([keep, np.zeros(len(terms), dtype=bool)])
    return monos + terms, shapes, full, keep, dropped


def test_a_known_monod_field_given_as_derivatives_is_recovered_exactly():
    # dX/dt = 0.5 S X / (2 + S) - 0.3 X, the -0.3 X known (projected out, never selected)
    cols = _columns()
    target = 0.5 * cols["S"] * cols["X"] / (2.0 + cols["S"]) - 0.3 * cols["X"]
    terms, shapes, theta, keep, _ = _library(cols, rational_spec(True, [S, X], cols),
                                             target, keep_terms=(X,))
    K = {str(k): v for k, v in shapes.items()}
    assert K["K_S_X"] == pytest.approx(2.0, rel=1e-7)       # profiled, then refined
    rms = np.sqrt(np.mean(theta ** 2, axis=0))
    scale = np.sqrt(np.mean(target ** 2))
    path = forward_path(theta / rms, target / scale, 2, keep)
    chosen = [str(terms[i]) for i in path[0].support]
    assert chosen == ["S*X/(K_S_X + S)"]
    coef = least_squares(theta / rms, target / scale, path[0].support, keep)
    assert coef[path[0].support[0]] * scale / rms[path[0].support[0]] \
        == pytest.approx(0.5, rel=1e-7)


def test_a_hill_term_of_order_two_is_recovered_and_its_k_profiled():
    cols = _columns(1)
    target = 1.2 * cols["S"] ** 2 / (3.0 ** 2 + cols["S"] ** 2)
    terms, shapes, theta, keep, _ = _library(cols, rational_spec({"S": [1, 2]}, [S, X], cols),
                                             target)
    K = {str(k): v for k, v in shapes.items()}
    assert K["K2_S"] == pytest.approx(3.0, rel=1e-7)
    rms = np.sqrt(np.mean(theta ** 2, axis=0))
    path = forward_path(theta / rms, target / np.sqrt(np.mean(target ** 2)), 1, keep)
    assert [str(terms[i]) for i in path[0].support] == ["S**2/(K2_S**2 + S**2)"]


def test_a_form_without_saturation_in_the_data_is_left_out():
    # a straight line in S: every S form's best K is on the grid's edge
    cols = _columns(2)
    terms, shapes, *_, dropped = _library(cols, [(S, 1)], 0.7 * cols["S"] * cols["X"])
    assert (S, 1) in dropped
    assert "S*X/(K_S_X + S)" not in [str(t) for t in terms]


def test_a_named_variable_without_saturation_is_said_so():
    cols = _columns(2)
    *_, dropped = _library(cols, [(S, 1)], 0.7 * cols["S"] * cols["X"])
    notes = unseen([(S, 1)], dropped, 3)          # multipliers 1, S and X
    assert len(notes) == 1 and "shows no saturation in S" in notes[0]
    assert unseen([(S, 1)], dropped[:-1], 3) == []     # one form kept: nothing to say


@pytest.mark.parametrize("rational, message", [
    ("S", "rational must be True, a list"),
    (["Z"], "which the network does not read"),
    (["N"], "is not positive everywhere"),
    ({"S": 0}, "Hill exponents in rational must be integers from 1 to 4"),
    ({"S": [1.5]}, "Hill exponents"),
])
def test_bad_rational_options_are_refused(rational, message):
    N = sp.Symbol("N")
    cols = {**_columns(), "N": np.linspace(-1.0, 1.0, 400)}
    with pytest.raises(ModelError, match=message):
        rational_spec(rational, [S, X, N], cols)


def test_rational_true_takes_the_positive_variables_only():
    N = sp.Symbol("N")
    cols = {**_columns(), "N": np.linspace(-1.0, 1.0, 400)}
    assert rational_spec(True, [S, X, N], cols) == [(S, 1), (X, 1)]
    assert rational_spec(False, [S, X, N], cols) == []


# -- the chemostat, end to end -------------------------------------------------------------
@pytest.fixture(scope="module")
def chemo():
    data, S_true = chemostat.chemostat_data(seed=0, noise=0.01)
    result = sysid.fit(chemostat.hybrid_model(), data, seed=0, progress=False)
    summary = result.symbolic(rational=True)
    oracle = chemostat.oracle(data)
    return data, S_true, result, summary, oracle


def test_the_chemostat_summary_recovers_the_monod_term(chemo):
    data, S_true, result, summary, oracle = chemo
    found = chemostat.monod(summary.equations["X"])
    assert found is not None, summary.equations
    mu, K = found
    assert mu == pytest.approx(chemostat.MU, rel=0.10)
    assert K == pytest.approx(chemostat.KS, rel=0.10)
    # the distilled structure is the true one, so its refit is the oracle's fit, to the
    # fits' stopping rule (they stop within 0.2 % of each other; across noise seeds K_s
    # scatters by several per cent)
    assert mu == pytest.approx(oracle.parameters["mu_max"], rel=5e-3)
    assert K == pytest.approx(oracle.parameters["K_s"], rel=5e-3)
    # the network's stoichiometry (S: -1/Y = -2 times the rate) is kept
    assert sp.simplify(summary.equations["S"] + 2 * summary.equations["X"]) == 0
    assert set(summary.parameters) == {"c_X_0", "K_X_0"}


def test_the_distilled_chemostat_forecasts_the_unmeasured_substrate(chemo):
    data, S_true, result, summary, oracle = chemo
    errors = chemostat._s_errors(summary.result, data, S_true)
    assert errors["forecast"] < 0.05 and errors["new"] < 0.05, errors


def test_rational_terms_are_carried_by_latex_refit_path_and_files(chemo, tmp_path):
    data, S_true, result, summary, oracle = chemo
    latex = summary.to_latex()
    assert r"\frac{S X}{S + \left(" in latex and r"\pm" in latex
    assert summary.path["support_X"].str.contains("K_S_X").any()
    rhs = summary.model_equations["S"]          # physics + (-2) x the distilled rate
    S_ = next(s for s in rhs.free_symbols if s.name == "S")
    uptake = -(rhs - chemostat.D * (chemostat.S_IN - S_)) / 2
    assert chemostat.monod(sp.expand(uptake)) == pytest.approx(
        (summary.parameters["c_X_0"], summary.parameters["K_X_0"]), rel=1e-9)
    refit = summary.refit(data)
    assert refit.parameters["K_X_0"] == pytest.approx(summary.parameters["K_X_0"], rel=5e-3)
    path = tmp_path / "chemostat.sysid"
    summary.result.save(path)
    loaded = sysid.load(path)
    np.testing.assert_array_equal(loaded.impute()["S"].values,
                                  summary.result.impute()["S"].values)


def test_a_bad_rational_option_is_refused_by_symbolic(chemo):
    result = chemo[2]
    with pytest.raises(ModelError, match="rational must be True"):
        result.symbolic(rational="S")
    with pytest.raises(ModelError, match="which the network does not read"):
        result.symbolic(rational=["Q"])
