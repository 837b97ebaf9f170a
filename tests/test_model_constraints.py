"""Constraints the way scientists state them (issues 28-30, the model side): bounded
parameters ``(guess, low, high)``, guesses that are not numbers, a state left without an
equation, algebraic states given by ``sympy.Eq``, and the step-doubling check that keeps a
fixed-step (rk4) fit of a stiff system from being reported as converged."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import sympy as sp
import torch
import xarray as xr
from scipy.integrate import solve_ivp

import sysid
from sysid.errors import ExpressionError, ModelError, ModelWarning
from sysid.model.parameters import transform_for
from sysid.model.parser import parse_expression
from sysid.model.spec import model_from_spec, model_to_spec

x, y, z, v = sp.symbols("x y z v")
k = sp.Symbol("k", positive=True)
h = sp.Symbol("h")


# -- bounded parameters -------------------------------------------------------------------

def test_bounded_transform_stays_inside_and_round_trips():
    tr = transform_for([h, k, y], [0.5, 2.0, 3.0], {h: (0.0, 1.0), y: (2.0, np.inf)})
    assert tr.kinds == ["bounded", "positive", "above"]
    raw = torch.linspace(-30.0, 30.0, 121, dtype=torch.float64)
    values = tr.forward(raw[:, None].expand(-1, 3))
    assert torch.all((values[:, 0] > 0) & (values[:, 0] < 1))          # open interval
    assert torch.all(values[1:, 0] > values[:-1, 0])                    # monotone
    assert torch.all(values[:, 2] > 2.0)
    far = tr.forward(torch.tensor([[-800.0, 0.0, -800.0], [800.0, 0.0, 700.0]],
                                  dtype=torch.float64))
    assert torch.all(torch.isfinite(far)) and 0 <= far[0, 0] and far[1, 0] <= 1
    # the round trip is exact to rounding where the value still resolves the raw value
    # (within +-10; at +-30 a value 1e-13 from its bound keeps few digits of it)
    mid = torch.linspace(-10.0, 10.0, 41, dtype=torch.float64)[:, None].expand(-1, 3)
    back = tr.inverse(tr.forward(mid))
    assert torch.max(torch.abs(back - mid)).item() < 1e-9
    # the guess maps to a finite raw value; gradients are finite everywhere
    r = tr.inverse([0.5, 2.0, 3.0]).requires_grad_(True)
    assert r[0].item() == pytest.approx(0.0, abs=1e-15)
    tr.forward(r).sum().backward()
    assert torch.all(torch.isfinite(r.grad)) and r.grad[0].item() == pytest.approx(0.25)


def test_sign_assumption_narrows_the_bounds():
    q = sp.Symbol("q", positive=True)
    tr = transform_for([q], [0.5], {q: (-np.inf, 1.0)})
    assert tr.kinds == ["bounded"] and tr.bounds == [(0.0, 1.0)]


def _fraction_data(noise, truth=0.9, seed=0):
    """x decays at rate 0.8; a fraction h of its outflow feeds y (h = 0.9)."""
    tt = np.linspace(0, 6, 25)
    sol = solve_ivp(lambda t, s: [-0.8 * s[0], truth * 0.8 * s[0] - 0.3 * s[1]], (0, 6),
                    [2.0, 0.1], t_eval=tt, rtol=1e-10, atol=1e-12).y
    rng = np.random.default_rng(seed)
    return xr.Dataset({"x": ("time", sol[0] + noise * rng.standard_normal(25)),
                       "y": ("time", sol[1] + noise * rng.standard_normal(25))},
                      coords={"time": tt})


def _fraction_model(guess=0.5):
    return sysid.HybridODE(states=[x, y], physics={x: -k * x, y: h * k * x - 0.3 * y},
                           parameters={k: 1.0, h: (guess, 0, 1)})


def test_a_bounded_fraction_is_recovered_and_its_interval_stays_inside(tmp_path):
    result = sysid.fit(_fraction_model(), _fraction_data(0.02), seed=0, progress=False)
    assert result.status.success
    table = result.parameter_table(0.9)
    value, se = table.loc["h", "value"], table.loc["h", "std_error"]
    assert abs(value - 0.9) < 0.03 and abs(value - 0.9) < 3 * se, table
    assert abs(result.parameters["k"] - 0.8) < 0.03
    assert table.loc["h", "scale"] == "logit"
    strict = result.parameter_table(0.99)      # (0.918 +- 0.009 on this draw: 2 se off)
    assert strict.loc["h", "lower"] < 0.9 < strict.loc["h", "upper"] < 1
    # noisier data (0.05): at 99.9 % the symmetric interval would pass 1; the one made in
    # the logit space and mapped back stays inside (0, 1) and still holds the estimate
    noisy = sysid.fit(_fraction_model(), _fraction_data(0.05), seed=0, progress=False)
    wide = noisy.parameter_table(0.999)
    value = wide.loc["h", "value"]
    lo, hi = wide.loc["h", "lower"], wide.loc["h", "upper"]
    assert 0 < lo < 0.9 < hi < 1 and lo < value < hi, wide
    assert value + 3.29 * wide.loc["h", "std_error"] > 1
    result = noisy
    # save and load keep the bounds, the values and the intervals
    result.save(tmp_path / "f.sysid")
    loaded = sysid.load(tmp_path / "f.sysid")
    assert loaded.model.bounds == {h: (0.0, 1.0)}
    assert loaded.parameters == result.parameters
    np.testing.assert_allclose(loaded.parameter_table(0.999)[["lower", "upper"]],
                               wide[["lower", "upper"]], rtol=1e-9)


def test_bounds_survive_with_parameters_and_the_spec():
    model = _fraction_model()
    moved = model.with_parameters({"h": 1.0})          # a fit that rounded onto the bound
    assert moved.bounds == {h: (0.0, 1.0)} and 0.99 < moved.parameters[h] < 1.0
    again = model_from_spec(model_to_spec(model))
    assert again.bounds == model.bounds and again.parameters == model.parameters
    one_sided = sysid.HybridODE(states=[x], physics={x: -h * x}, parameters={h: (2.0, 1.0, None)})
    assert model_from_spec(model_to_spec(one_sided)).bounds == {h: (1.0, np.inf)}


@pytest.mark.parametrize("entry, words", [
    ((1.0, 0, 1), ["initial guess 1.0 of parameter h", "strictly inside", "h: (0.5, 0, 1)"]),
    ((0.0, 0, 1), ["initial guess 0.0", "strictly inside"]),
    ((0.5, 1, 0), ["low = 1 >= high = 0", "low < high"]),
    ((0.5, 1, 1), ["low = 1 >= high = 1"]),
    ((0.5, "a", 1), ["low bound of parameter h", "must be a number", "received 'a'"]),
    ((0.5, 0), ["(guess, low, high)", "is given as (0.5, 0)"]),
    (("0.5", 0, 1), ["initial guess of parameter h", "received '0.5'"]),
])
def test_bad_bounds_are_refused_clearly(entry, words):
    with pytest.raises(ModelError) as err:
        sysid.HybridODE(states=[x], physics={x: -h * x}, parameters={h: entry})
    for w in words:
        assert w in str(err.value), str(err.value)


def test_bounds_that_contradict_the_sign_are_refused():
    with pytest.raises(ModelError, match="declared positive but its bounds"):
        sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: (-0.5, -1, 0)})


# -- guesses that are not numbers (issue 28) ----------------------------------------------

@pytest.mark.parametrize("guess", ["0.5", "abc", None, [0.5], True])
def test_a_guess_that_is_not_a_number_is_a_model_error(guess):
    with pytest.raises(ModelError, match=r"initial guess of parameter k must be a number|"
                                         r"bounded parameter is a tuple") as err:
        sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: guess})
    if guess == "0.5":
        assert "received '0.5' of type str" in str(err.value)
        assert "Write the number itself: 0.5" in str(err.value)


def test_a_fixed_value_that_is_not_a_number_is_a_model_error():
    g = sp.Symbol("g")
    with pytest.raises(ModelError, match="fixed constant g must be a number; received '9.81'"):
        sysid.HybridODE(states=[x], physics={x: -g * x}, fixed={g: "9.81"})


# -- a state without physics and without residual (issues 28/29) --------------------------

def _warnings(build):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = build()
    return out, [w for w in caught if issubclass(w.category, ModelWarning)]


def test_a_state_left_without_an_equation_is_named():
    model, caught = _warnings(lambda: sysid.HybridODE(
        states=[x, v], physics={x: v}, parameters={}))
    assert len(caught) == 1
    text = str(caught[0].message)
    assert "State v has no equation in physics and no residual" in text
    assert "physics={v: 0, ...}" in text and "sysid.MLP(states=[v])" in text
    assert caught[0].filename == __file__                     # points at the user's line
    assert model.physics[v] == 0 and model.rhs() == [v, 0]    # d/dt = 0 kept, explicit
    # a model rebuilt from it (fits, spec, symbolic refits) does not warn again
    _, again = _warnings(lambda: model_from_spec(model_to_spec(model.with_parameters({}))))
    assert again == []


@pytest.mark.parametrize("build", [
    lambda: sysid.HybridODE(states=[x, v], physics={x: v, v: 0}),          # said so
    lambda: sysid.HybridODE(states=[x, v], physics={x: v},                  # a network
                            residual=sysid.MLP(width=4, depth=1, states=[v])),
])
def test_no_warning_where_the_state_is_covered(build):
    _, caught = _warnings(build)
    assert caught == []


# -- algebraic equations (issue 30) --------------------------------------------------------

def test_an_algebraic_state_is_solved_for_and_eliminated():
    a = sp.Symbol("a")
    model = sysid.HybridODE(states=[x, z], physics={x: -k * z, z: sp.Eq(2 * z, x ** 2 + a)},
                            parameters={k: 1.0}, fixed={a: 0.0}, observations={"w": z + 1})
    assert model.state_names == ["x"]
    assert model.algebraic == {z: x ** 2 / 2 + a / 2}
    assert model.physics == {x: -k * (x ** 2 / 2 + a / 2)}
    assert model.channels == {"w": x ** 2 / 2 + a / 2 + 1, "z": x ** 2 / 2 + a / 2, "x": x}
    assert "z = a/2 + x**2/2" in repr(model) and "Eq" not in repr(model)
    again = model_from_spec(model_to_spec(model))
    assert again.algebraic == model.algebraic and again.state_names == ["x"]
    assert again.channels == model.channels


def test_a_fit_through_a_measured_algebraic_state():
    # dx/dt = -k z with z = x^2, only z measured: k and x(0) from z alone (x declared
    # positive: its start is searched away from 0, where z's slope in x vanishes)
    tt = np.linspace(0, 4, 30)
    sol = solve_ivp(lambda t, s: [-0.7 * s[0] ** 2], (0, 4), [2.0], t_eval=tt,
                    rtol=1e-11, atol=1e-12).y[0]
    rng = np.random.default_rng(1)
    data = xr.Dataset({"z": ("time", sol ** 2 + 0.01 * rng.standard_normal(30))},
                      coords={"time": tt})
    xp = sp.Symbol("x", positive=True)
    model = sysid.HybridODE(states=[xp, z], physics={xp: -k * z, z: sp.Eq(z, xp ** 2)},
                            parameters={k: 1.0})
    result = sysid.fit(model, data, seed=0, progress=False)
    assert result.status.success and abs(result.parameters["k"] - 0.7) < 0.02
    imputed = result.impute()
    assert np.abs(imputed["z"].values - sol ** 2).max() < 0.03
    assert np.abs(imputed["x"].values - sol).max() < 0.02


@pytest.mark.parametrize("physics, words", [
    ({x: -x, z: sp.Eq(z ** 2, x)}, ["one explicit solution for z", "2 solutions",
                                    "positive=True"]),
    ({x: -x, z: sp.Eq(x, 1)}, ["does not contain z"]),
    ({x: -x, z: x > 1}, ["physics[z] is a condition (x > 1), not an expression"]),
    ({x: -x, y: 0, z: sp.Eq(sp.sin(z), x)}, ["2 solutions", "asin(x)"]),
    ({x: -x, z: sp.Eq(z, y), y: sp.Eq(y, z + 1)}, ["defined in terms of each other"]),
])
def test_equations_that_cannot_be_eliminated_are_refused(physics, words):
    with pytest.raises(ModelError) as err:
        sysid.HybridODE(states=[x, y, z], physics=physics)
    for w in words:
        assert w in str(err.value), str(err.value)


def test_a_positive_algebraic_state_picks_its_root():
    zp = sp.Symbol("zp", positive=True)
    xp = sp.Symbol("xp", positive=True)
    model = sysid.HybridODE(states=[xp, zp], physics={xp: -xp, zp: sp.Eq(zp ** 2, xp)})
    assert model.algebraic == {zp: sp.sqrt(xp)}


def test_an_equation_as_an_observation_or_in_text_is_refused():
    with pytest.raises(ModelError, match=r"observations\['y'\] is an equation"):
        sysid.HybridODE(states=[x], physics={x: -x}, observations={"y": sp.Eq(x, 1)})
    with pytest.raises(ModelError, match="MLP states/inputs name the algebraic state z"):
        sysid.HybridODE(states=[x, z], physics={x: -z, z: sp.Eq(z, x ** 2)},
                        residual=sysid.MLP(width=4, depth=1, inputs=[z]))
    # the text parser (TOML specs, saved files) never evaluates and refuses both spellings
    table = {"x": x, "z": z}
    with pytest.raises(ExpressionError, match="comparison is not allowed in an equation"):
        parse_expression("z == x**2", table)
    with pytest.raises(ExpressionError, match="Eq"):
        parse_expression("Eq(z, x**2)", table)


# -- the fixed-step check (issue 30) ------------------------------------------------------

def _robertson_data():
    from test_stiff import K, TIMES, _reference, robertson
    ref = _reference()
    rng = np.random.default_rng(0)
    noisy = ref * (1 + 0.02 * rng.standard_normal(ref.shape))
    data = xr.Dataset({"y1": ("time", noisy[0]), "y3": ("time", noisy[2])},
                      coords={"time": TIMES})
    return robertson((K[0] * 2, K[1] / 2, K[2] * 2)), data


def test_rk4_on_stiff_robertson_is_not_reported_converged():
    model, data = _robertson_data()
    result = sysid.fit(model, data, noise="lognormal", progress=False, solver="rk4",
                       substeps=4, throw=False)
    assert not result.status.success and result.status.code == "solver_failed"
    text = str(result.status)
    for w in ("twice the steps", "substeps=8", "rosenbrock23", "solver='auto'"):
        assert w in text, text
    with pytest.raises(sysid.errors.FitError, match="rosenbrock23"):
        result.raise_for_status()


def test_rk4_on_a_smooth_problem_still_converges_and_the_check_is_cheap():
    from sysid.solve.integrate import fixed_step_error
    data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=1)
    a, b, c, d = sp.symbols("a b c d", positive=True)
    model = sysid.HybridODE(states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
                            parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
    start = time.perf_counter()
    rk4 = sysid.fit(model, data, progress=False, solver="rk4")
    wall = time.perf_counter() - start
    ref = sysid.fit(model, data, progress=False, solver="dopri5")
    assert rk4.status.code == "converged"
    for name, value in ref.parameters.items():
        assert rk4.parameters[name] == pytest.approx(value, rel=1e-3)
    p = rk4._problem
    start = time.perf_counter()
    ratio, _ = fixed_step_error(p.field, p.x0(), p.single.tau, p.single.inputs, p.solver)
    cost = time.perf_counter() - start
    assert ratio < 1e-5                  # rk4 with 4 steps per sample is accurate here
    assert cost < 0.25 * wall, (cost, wall)


def test_a_toml_spec_states_bounds_and_algebraic_states():
    import tomllib
    from sysid.cli import model_from_toml
    text = """
    [model]
    states = ["x", { name = "z", positive = true }]
    [model.physics]
    x = "-k*z"
    [model.algebraic]
    z = "x**2"
    [model.parameters]
    k = { value = 0.5, low = 0, high = 1 }
    """
    model = model_from_toml(tomllib.loads(text))
    assert model.state_names == ["x"] and model.bounds == {sp.Symbol("k"): (0.0, 1.0)}
    zp = sp.Symbol("z", positive=True)
    assert model.algebraic == {zp: x ** 2} and model.physics == {x: -sp.Symbol("k") * x ** 2}
    with pytest.raises(ModelError, match="strictly inside"):
        model_from_toml(tomllib.loads(text.replace("value = 0.5", "value = 1.5")))
    with pytest.raises(sysid.errors.SysidError, match="Invalid high bound"):
        model_from_toml(tomllib.loads(text.replace("high = 1", 'high = "one"')))


def test_the_check_sums_local_errors_so_chaos_does_not_trip_it():
    # Lorenz over 20 time units (about 20 Lyapunov times): rk4 at 4 steps per 0.05 is
    # accurate step by step, but any difference, even rounding, grows to the attractor's
    # size over the record; the check sums each interval's own doubling difference
    import dataclasses
    from sysid.data.bundle import prepare
    from sysid.problem.options import FitOptions
    from sysid.problem.problem import build_problem
    from sysid.solve.integrate import solve_segments
    from sysid.training.phases import fixed_step_status
    s, r, b = sp.symbols("sigma rho beta", positive=True)
    model = sysid.HybridODE(states=[x, y, z],
                            physics={x: s * (y - x), y: x * (r - z) - y, z: x * y - b * z},
                            parameters={s: 10.0, r: 28.0, b: 8 / 3})
    data = sysid.datasets.simulate("lorenz", noise=0.01, seed=0, dt=0.05, t_end=20.0)

    def problem(substeps, shooting="single", data=data):
        return build_problem(model, prepare(model, data),
                             FitOptions(solver="rk4", substeps=substeps, shooting=shooting))

    p = problem(4)
    assert fixed_step_status(p) is None                       # local sum 1.7e-4 of the range
    with torch.no_grad():                                     # the whole record doubled:
        a = p.states()
        b2 = solve_segments(p.field, p.x0(), p.single.tau, p.single.inputs,
                            dataclasses.replace(p.solver, substeps=8))
    assert (a - b2).abs().max() > 10                          # chaos, not the steps
    coarse = fixed_step_status(problem(1))                    # one step per 0.05: 5.5 %
    assert coarse is not None and coarse.code == "solver_failed"
    assert "state z moves by 0.055" in coarse.detail, coarse.detail
    windows = problem(4, shooting=10)                         # the check on the windows
    windows.use_windows(True)
    assert windows.active and windows.windows.tau.shape[0] > 1
    assert fixed_step_status(windows) is None
    # a window adds up its own intervals only: one step per 0.1 fails there too
    sparse = sysid.datasets.simulate("lorenz", noise=0.01, seed=0, dt=0.1, t_end=20.0)
    coarse_windows = problem(1, shooting=10, data=sparse)
    coarse_windows.use_windows(True)
    assert fixed_step_status(coarse_windows).code == "solver_failed"
