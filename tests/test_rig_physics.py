"""The physics of real rigs (issue 24): overflow written with Max (Cascaded Tanks), friction
with a smooth sign change written with tanh (EMPS), and the residual's output unit measured
from the data's rates.

Each function must compile in both solvers with the same states and gradients, give
gradients that finite differences confirm (the overflow level, which only enters through
Max), and a fit of a small simulated rig must recover the parameters it was built with.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
import xarray as xr
from scipy.integrate import solve_ivp

import sysid
from sysid.data.bundle import prepare
from sysid.problem.options import FitOptions
from sysid.problem.problem import build_problem
from sysid.problem.timescale import channel_time_scales, dynamics_time_scale
from sysid.solve import native
from sysid.solve.runge_kutta import solve_intervals

# -- the rigs --------------------------------------------------------------------------------
TANK = dict(k_in=0.8, a=0.5, h=1.5)          # inflow gain, Torricelli outflow, overflow level
KOV = 2.0                                     # overflow rate per unit of level above h
FRICTION = dict(m=1.0, f_v=0.4, f_c=0.6)      # mass, viscous and Coulomb friction
EPS = 0.05                                    # velocity over which the sign changes


def _pump(t):
    return 1.0 + 0.6 * np.sin(0.7 * t) + 0.4 * np.sin(1.9 * t + 0.3)


def _force(t):
    return 0.9 * np.sin(0.8 * t) + 0.5 * np.sin(2.3 * t + 1.0)


def tank_model(guesses=None, residual=None):
    x = sp.Symbol("x", positive=True)
    u = sp.Symbol("u")
    k_in, a, h = sp.symbols("k_in a h", positive=True)
    guesses = guesses or {k_in: 0.6, a: 0.4, h: 1.3}
    return sysid.HybridODE(states=[x], inputs=[u],
                           physics={x: k_in * u - a * sp.sqrt(x) - KOV * sp.Max(0, x - h)},
                           parameters=guesses, residual=residual)


def friction_model(residual=None):
    q, v = sp.symbols("q v")
    f = sp.Symbol("f")
    m, f_v, f_c = sp.symbols("m f_v f_c", positive=True)
    return sysid.HybridODE(states=[q, v], inputs=[f],
                           physics={q: v, v: (f - f_v * v - f_c * sp.tanh(v / EPS)) / m},
                           parameters={m: 1.0, f_v: 0.2, f_c: 0.3},
                           observations={"q": q}, residual=residual)


def _simulate(rhs, x0, inputs, t_end, n, noise, seed, names):
    t = np.linspace(0.0, t_end, n)
    sol = solve_ivp(rhs, (0.0, t_end), x0, t_eval=t, rtol=1e-10, atol=1e-12, method="LSODA")
    rng = np.random.default_rng(seed)
    data = {name: ("time", sol.y[i] + noise * rng.standard_normal(n))
            for i, name in enumerate(names) if name is not None}
    data.update({k: ("time", f(t)) for k, f in inputs.items()})
    return xr.Dataset(data, coords={"time": t}), sol.y


def tank_data(noise=0.01, seed=0):
    p = TANK

    def rhs(t, s):
        x = max(s[0], 0.0)
        return [p["k_in"] * _pump(t) - p["a"] * np.sqrt(x) - KOV * max(0.0, x - p["h"])]
    return _simulate(rhs, [1.0], {"u": _pump}, 30.0, 151, noise, seed, ["x"])


def friction_data(noise=0.002, seed=0):
    p = FRICTION

    def rhs(t, s):
        return [s[1], (_force(t) - p["f_v"] * s[1] - p["f_c"] * np.tanh(s[1] / EPS)) / p["m"]]
    return _simulate(rhs, [0.0, 0.0], {"f": _force}, 25.0, 251, noise, seed, ["q", None])


# -- both solvers, and finite differences ---------------------------------------------------
def _solve(model, data, compiled, raw=None, method="dopri5"):
    problem = build_problem(model, prepare(model, data), FitOptions(seed=0))
    problem.use_windows(False)
    field = problem.field
    if raw is not None:
        with torch.no_grad():
            field.raw.copy_(raw)
    seg = problem.single
    x0 = (problem.loc + problem.scale * problem.z0).detach().clone().requires_grad_()
    xs = solve_intervals(field, x0, seg.tau, seg.inputs, method=method, rtol=1e-8,
                         atol=1e-10, max_steps=20000, substeps=2, failure=RuntimeError,
                         compiled=compiled)
    weights = torch.linspace(-1.0, 2.0, xs.numel(), dtype=torch.float64).reshape(xs.shape)
    loss = (xs * weights).sum()
    grads = torch.autograd.grad(loss, [x0, field.raw])
    return float(loss.detach()), [g.detach() for g in grads], field.raw.detach().clone()


@pytest.mark.parametrize("rig", ["tank", "friction"])
def test_rig_physics_compiles_and_both_solvers_agree(rig):
    if native.compiler() is None:
        pytest.skip("no C compiler on PATH")
    model, (data, _) = (tank_model(), tank_data()) if rig == "tank" else \
        (friction_model(), friction_data())
    problem = build_problem(model, prepare(model, data), FitOptions(seed=0))
    assert native.kernel_for(problem.field) is not None          # Max / tanh generate C
    loss_c, g_c, _ = _solve(model, data, True)
    loss_t, g_t, _ = _solve(model, data, False)
    assert loss_c == pytest.approx(loss_t, rel=1e-11)
    for a, b in zip(g_c, g_t):
        assert float((a - b).abs().max()) <= 1e-9 * (float(b.abs().max()) + 1e-30)


def test_overflow_level_gradient_matches_finite_differences():
    # the tank overflows from t ~ 3 on with the guesses; h enters only through Max(0, x - h).
    # rk4's fixed steps: the adjoint is the exact gradient of the discrete solution, which
    # an adaptive solver's step-size control would move under the finite differences
    model, (data, _) = tank_model(), tank_data()
    loss, grads, raw = _solve(model, data, compiled=False, method="rk4")
    g = grads[1]
    for i in range(raw.numel()):
        step = 1e-6
        up, down = raw.clone(), raw.clone()
        up[i] += step
        down[i] -= step
        fd = (_solve(model, data, False, up, "rk4")[0]
              - _solve(model, data, False, down, "rk4")[0]) / (2 * step)
        assert abs(fd) > 1e-3                  # every parameter, h included, moves the fit
        assert float(g[i]) == pytest.approx(fd, rel=1e-5)


def test_overflow_tank_fit_recovers_its_parameters():
    data, truth = tank_data(noise=0.01, seed=1)
    assert truth[0].max() > TANK["h"] + 0.05            # the record overflows
    result = sysid.fit(tank_model(), data, progress=False)
    for name, value in TANK.items():
        assert result.parameters[name] == pytest.approx(value, rel=0.03), name


def test_smooth_friction_fit_recovers_its_parameters():
    data, _ = friction_data(noise=0.002, seed=2)
    result = sysid.fit(friction_model(), data, progress=False)
    for name, value in FRICTION.items():
        assert result.parameters[name] == pytest.approx(value, rel=0.03), name


# -- the residual's output unit -------------------------------------------------------------
def _sine(omega, noise, irregular, n=400, periods=20, seed=0):
    rng = np.random.default_rng(seed)
    t_end = periods * 2 * np.pi / omega
    t = np.sort(rng.uniform(0, t_end, n)) if irregular else np.linspace(0, t_end, n)
    y = 2.0 + 3.0 * np.sin(omega * t) + noise * rng.standard_normal(n)
    return xr.Dataset({"x": ("time", y)}, coords={"time": t})


def _oscillator():
    x, v = sp.symbols("x v")
    w = sp.Symbol("w", positive=True)
    return sysid.HybridODE(states=[x, v], physics={x: v, v: -w ** 2 * x},
                           parameters={w: 1.0}, observations={"x": x},
                           residual=sysid.MLP(width=4, states=[v]))


@pytest.mark.parametrize("irregular", [False, True], ids=["regular", "irregular"])
@pytest.mark.parametrize("omega", [0.5, 40.0])
def test_time_scale_is_the_inverse_frequency_with_the_noise_taken_out(omega, irregular):
    # a sine's spread over its RMS rate is 1/omega. Noise of 10 % of the amplitude, at 100
    # samples a period, makes plain differences report a time scale 3x too short (checked).
    data = _sine(omega, noise=0.3, irregular=irregular, n=2000)
    bundle = prepare(_oscillator(), data)
    (tau,) = channel_time_scales(bundle)
    assert tau == pytest.approx(1.0 / omega, rel=0.15)
    t, y = bundle.times, bundle.y[0, :, 0]
    naive = np.std(y) / np.sqrt(np.mean((np.diff(y) / np.diff(t)) ** 2))
    assert naive < 0.4 / omega
    assert dynamics_time_scale(bundle) == pytest.approx(tau)


def test_time_scale_of_a_slow_record_is_a_tenth_of_its_span():
    # a quarter period: rates cannot say more than the record's length does
    data = _sine(0.1, noise=0.0, irregular=False, periods=0.25, n=50)
    bundle = prepare(_oscillator(), data)
    span = float(bundle.times[-1] - bundle.times[0])
    assert dynamics_time_scale(bundle) == pytest.approx(span / 10)


def test_residual_output_unit_follows_the_rate_not_the_record_length():
    # the same oscillation, 5 and 50 periods long: the same unit (it was span / 10)
    units = []
    for periods in (5, 50):
        data = _sine(6.0, noise=0.01, irregular=False, periods=periods, n=80 * periods)
        model = _oscillator()
        problem = build_problem(model, prepare(model, data), FitOptions(seed=0))
        units.append(float(problem.field.residual.out_scale[0]) / float(problem.scale[1]))
    assert units[0] == pytest.approx(6.0, rel=0.1)
    assert units[1] == pytest.approx(units[0], rel=0.05)


def test_held_out_windows_are_the_same_for_every_seed():
    # best("validation") over seeds compares scores on the same held-out samples
    data, _ = tank_data()
    model = tank_model(residual=sysid.MLP(width=4))
    masks = [build_problem(model, prepare(model, data),
                           FitOptions(seed=seed, validation=0.2)).holdout
             for seed in (0, 1, 7)]
    assert masks[0].any() and 0.1 < masks[0].mean() < 0.3
    for other in masks[1:]:
        np.testing.assert_array_equal(other, masks[0])


def test_ensemble_of_seeds_simulates_a_new_record_with_the_members_median():
    # the remedy for a fit that depends on its seed: the members' pointwise median
    data, _ = tank_data(noise=0.01, seed=3)
    new = data.assign(u=("time", 1.2 + 0.5 * np.cos(0.5 * data["time"].values)))
    quick = dict(epochs=30, lbfgs_iterations=30, polish_iterations=5)
    ensemble = sysid.fit_ensemble(tank_model(residual=sysid.MLP(width=4)), data, n=3,
                                  resample="seeds", scheduler="serial", progress=False,
                                  **quick)
    sim = ensemble.simulate(new, n_init=5)
    each = np.stack([m.simulate(new, n_init=5)["x"].values for m in ensemble.members])
    np.testing.assert_allclose(sim["x"].values, np.median(each, axis=0), rtol=1e-12)
    assert (sim["x_lower"] <= sim["x"]).all() and (sim["x"] <= sim["x_upper"]).all()
    assert float((sim["x_upper"] - sim["x_lower"]).max()) > 0    # the seeds differ
    assert sim["u"].values.tolist() == new["u"].values.tolist()
