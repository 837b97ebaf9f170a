"""Numerical trust (issue 8, part 4).

* The compiled physics (SymPy -> torch) has exact derivatives: ``torch.autograd.gradcheck``
  in float64 with respect to states, inputs and raw parameters (positive parameters go
  through their log transform), and its values equal SymPy's own evaluation.
* Gradients of a loss through the solver: the direct (discretise-then-differentiate)
  gradient, the adjoint one (``adjoint=True``) and the closed-form one of exponential
  decay agree; a fixed-step (rk4) solve passes gradcheck.
* The solvers against known answers and against ``scipy.integrate.solve_ivp``: exponential
  decay and the harmonic oscillator in closed form (forwards and backwards in time,
  irregular and per-trajectory grids), Lotka-Volterra against a DOP853 reference at
  rtol=1e-13, each to a stated tolerance.
* Same seed, same fit: bit-identical parameters, network weights and predictions; another
  seed gives another network. ``save``/``load`` gives bit-identical predictions.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from scipy.integrate import solve_ivp

import sysid
from sysid.model.field import HybridField
from sysid.solve.integrate import InputSignal, SolverOptions, solve_at_times, solve_segments
from sysid.model.parameters import transform_for

x, y, u = sp.symbols("x y u")
t_sym = sp.Symbol("t", real=True)


def field_for(model, channels=None) -> HybridField:
    """The model's compiled field at its initial parameter guesses."""
    syms = list(model.parameters)
    guesses = [model.parameters[s] for s in syms]
    transform = transform_for(syms, guesses)
    return HybridField(model, channels or model.state_names, transform,
                       transform.inverse(guesses), None)


def rows(low, high, shape, seed):
    return torch.as_tensor(np.random.default_rng(seed).uniform(low, high, shape))


# == the compiled physics: exact derivatives ===============================================

def models():
    th, om = sp.symbols("theta omega")
    w0, al = sp.symbols("omega0 alpha", positive=True)
    h = sp.Symbol("h", positive=True)
    k, p, amp, lam, vmax, km = sp.symbols("k p A lambda Vmax Km", positive=True)
    return {
        # sin, a square, a product
        "pendulum": (sysid.HybridODE(states=[th, om], physics={
            th: om, om: -w0 ** 2 * sp.sin(th) - al * om}, parameters={w0: 1.3, al: 0.2}),
            (-2.0, 2.0)),
        # a power with a parameter exponent, exp of time, a rational term, an input
        "power_exp_rational": (sysid.HybridODE(states=[h, y], inputs=[u], physics={
            h: -k * h ** p + amp * sp.exp(-lam * t_sym) + u,
            y: vmax * h / (km + h) - k * y ** 2}, parameters={
            k: 0.7, p: 1.5, amp: 0.4, lam: 0.3, vmax: 2.0, km: 0.5}), (0.2, 3.0)),
        # sqrt, tanh, log and cos of a state
        "sqrt_tanh_log": (sysid.HybridODE(states=[h, y], inputs=[u], physics={
            h: -k * sp.sqrt(h) + amp * sp.tanh(u) * sp.cos(y),
            y: sp.log(1 + h ** 2) - lam * y}, parameters={k: 0.3, amp: 1.2, lam: 0.8}),
            (0.2, 3.0)),
    }


@pytest.mark.parametrize("name", list(models()))
def test_compiled_physics_passes_gradcheck_in_states_inputs_and_parameters(name):
    model, (low, high) = models()[name]
    field = field_for(model)
    n, m, B = len(model.states), len(model.inputs), 5
    t = rows(0.0, 5.0, B, 1)
    xs = rows(low, high, (B, n), 2).requires_grad_()
    us = rows(-1.0, 1.0, (B, m), 3).requires_grad_(m > 0)
    raw = (field.raw.detach() + rows(-0.2, 0.2, field.raw.shape, 4)).requires_grad_()

    def rhs(states, inputs, raw_parameters):
        field._cached = list(field.transform.forward(raw_parameters).unbind(0))
        try:
            return field.physics(t, states, inputs)
        finally:
            field._cached = None

    inputs = (xs, us, raw) if m else (xs, raw)
    fn = rhs if m else (lambda s, r: rhs(s, us, r))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)
    assert torch.autograd.gradgradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", list(models()))
def test_compiled_physics_equals_sympys_values(name):
    model, (low, high) = models()[name]
    field = field_for(model)
    n, m, B = len(model.states), len(model.inputs), 7
    t, xs, us = rows(0.0, 5.0, B, 1), rows(low, high, (B, n), 2), rows(-1.0, 1.0, (B, m), 3)
    with torch.no_grad():
        got = field.physics(t, xs, us).numpy()
    values = dict(zip(model.parameters, field.parameter_values().tolist()))
    rhs = [sp.sympify(e).subs(values) for e in model.rhs()]
    args = list(model.states) + list(model.inputs) + [t_sym]
    f = sp.lambdify(args, rhs, "mpmath")
    import mpmath
    mpmath.mp.dps = 30
    for i in range(B):
        point = [*xs[i].tolist(), *us[i].tolist(), float(t[i])]
        want = np.array([float(v) for v in f(*point)])
        np.testing.assert_allclose(got[i], want, rtol=1e-14, atol=1e-15)


def test_network_and_observation_map_pass_gradcheck():
    h = sp.Symbol("h", positive=True)
    k = sp.Symbol("k", positive=True)
    model = sysid.HybridODE(states=[h, y], physics={h: -k * h, y: h - y}, parameters={k: 0.5},
                            observations={"level": sp.log(1 + h ** 2) + sp.sin(y)},
                            residual=sysid.MLP(8, 2))
    times = np.linspace(0.0, 4.0, 12)
    import xarray as xr
    data = xr.Dataset({"level": ("time", np.log(1 + np.exp(-times) ** 2))},
                      coords={"time": times})
    from sysid.data.bundle import prepare
    from sysid.problem.options import FitOptions
    from sysid.problem.problem import build_problem
    field = build_problem(model, prepare(model, data), FitOptions()).field
    with torch.no_grad():         # a network off its zero start, so every path has a slope
        for p in field.residual.parameters():
            p.add_(rows(-0.3, 0.3, p.shape, 5))
    t = rows(0.0, 4.0, 4, 1)
    xs = rows(0.2, 2.0, (4, 2), 2).requires_grad_()
    none = torch.zeros(4, 0, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: field(t, s, none), (xs,), eps=1e-6, atol=1e-8)
    assert torch.autograd.gradcheck(lambda s: field.observe(t, s, none), (xs,), eps=1e-6,
                                    atol=1e-8)


# == gradients of a loss through the solver ================================================

def decay():
    k = sp.Symbol("k", positive=True)
    return sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 0.7})


TIGHT = dict(rtol=1e-10, atol=1e-12, max_steps=100_000)


def decay_loss_and_gradient(adjoint: bool):
    """Sum of squared misfits of x0 exp(-k t) on irregular grids of three segments."""
    field = field_for(decay())
    tau = torch.as_tensor(np.sort(np.random.default_rng(0).uniform(0, 5, (3, 9)), axis=1))
    tau[:, 0] = 0.0
    target = torch.as_tensor(np.random.default_rng(1).uniform(0.1, 1.0, (3, 9, 1)))
    x0 = torch.tensor([[2.0], [1.0], [0.5]], dtype=torch.float64, requires_grad=True)
    xs = solve_segments(field, x0, tau, None, SolverOptions(adjoint=adjoint, **TIGHT))
    loss = ((xs - target) ** 2).sum()
    loss.backward()
    # closed form: x = x0 exp(-k t), k = exp(raw)
    kk = 0.7
    e = torch.exp(-kk * tau)[..., None]
    r = x0.detach()[:, None, :] * e - target
    d_x0 = (2 * r * e).sum(dim=1)
    d_raw = (2 * r * x0.detach()[:, None, :] * e * (-tau[..., None]) * kk).sum()
    return float(loss.detach()), x0.grad, field.raw.grad, d_x0, d_raw


@pytest.mark.parametrize("adjoint", [False, True], ids=["direct", "adjoint"])
def test_gradient_through_the_solver_equals_the_closed_form(adjoint):
    _, g_x0, g_raw, d_x0, d_raw = decay_loss_and_gradient(adjoint)
    # measured relative errors: 1e-10 (direct) and 9e-9 (adjoint) at rtol=1e-10
    np.testing.assert_allclose(g_x0.numpy(), d_x0.numpy(), rtol=1e-7)
    assert float(g_raw[0]) == pytest.approx(float(d_raw), rel=1e-7)


def lotka_volterra_field():
    a, b, c, d = sp.symbols("a b c d", positive=True)
    model = sysid.HybridODE(states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
                            parameters={a: 1.3, b: 0.9, c: 0.8, d: 1.8})
    return field_for(model)


def test_adjoint_and_direct_gradients_of_lotka_volterra_agree():
    tau = torch.as_tensor(np.sort(np.random.default_rng(0).uniform(0, 3, (2, 8)), axis=1))
    tau[:, 0] = 0.0
    target = torch.as_tensor(np.random.default_rng(1).uniform(0.5, 3.0, (2, 8, 2)))
    grads = []
    for adjoint in (False, True):
        field = lotka_volterra_field()
        x0 = torch.tensor([[0.44, 4.6], [1.0, 1.5]], dtype=torch.float64, requires_grad=True)
        xs = solve_segments(field, x0, tau, None, SolverOptions(adjoint=adjoint, **TIGHT))
        ((xs - target) ** 2).sum().backward()
        grads.append(torch.cat([x0.grad.reshape(-1), field.raw.grad]))
    # measured: largest difference 4e-9 of the largest component (2e-8 over twice the
    # span): each method's own discretisation error at rtol=1e-10
    np.testing.assert_allclose(grads[1].numpy(), grads[0].numpy(), rtol=1e-6, atol=1e-8)
    # and both against central differences of the (accurate) solve, in each raw parameter
    field = lotka_volterra_field()
    x0 = torch.tensor([[0.44, 4.6], [1.0, 1.5]], dtype=torch.float64)
    with torch.no_grad():
        for j in range(4):
            values = []
            for step in (1e-5, -1e-5):
                field.raw[j] += step
                xs = solve_segments(field, x0, tau, None, SolverOptions(**TIGHT))
                values.append(float(((xs - target) ** 2).sum()))
                field.raw[j] -= step
            fd = (values[0] - values[1]) / 2e-5
            assert float(grads[0][4 + j]) == pytest.approx(fd, rel=1e-5), j


def test_fixed_step_solve_passes_gradcheck():
    """rk4 with fixed steps is a smooth map of x0 and the parameters: exact gradients."""
    field = lotka_volterra_field()
    tau = torch.as_tensor([[0.0, 0.3, 0.5, 1.2, 1.5], [0.0, 0.1, 0.9, 1.0, 1.4]])
    x0 = torch.tensor([[0.44, 4.6], [1.0, 1.5]], dtype=torch.float64, requires_grad=True)
    raw = field.raw.detach().clone().requires_grad_()
    options = SolverOptions(method="rk4", substeps=3)

    def solve(start, raw_parameters):
        # each segment row carries the parameter values (the same for both), as tensors
        # that gradcheck can perturb
        values = field.transform.forward(raw_parameters).expand(2, -1)
        with field.per_row_parameters(values):
            return solve_segments(field, start, tau, None, options)

    assert torch.autograd.gradcheck(solve, (x0, raw), eps=1e-6, atol=1e-8, rtol=1e-6)


# == the solvers against known answers and scipy ===========================================

def irregular_grids(n_segments=3, n_samples=16, span=10.0, seed=0):
    tau = np.sort(np.random.default_rng(seed).uniform(0, span, (n_segments, n_samples)), axis=1)
    tau[:, 0] = 0.0
    return tau


def solve(field, x0, tau, **options) -> np.ndarray:
    with torch.no_grad():
        return solve_segments(field, torch.as_tensor(x0, dtype=torch.float64),
                              torch.as_tensor(tau), None, SolverOptions(**options)).numpy()


@pytest.mark.parametrize("method, options, bound", [
    ("dopri5", dict(TIGHT), 1e-9),                     # measured 2.0e-11
    ("dopri5", dict(TIGHT, adjoint=True), 1e-9),        # torchdiffeq's dopri5: 3.0e-11
    ("rk4", dict(substeps=32), 5e-8),                   # measured 9.9e-9
    pytest.param("bosh3", dict(rtol=1e-7, atol=1e-9), 1e-6,       # measured 1.5e-7
                 marks=pytest.mark.slow),
])
def test_exponential_decay_matches_the_closed_form(method, options, bound):
    field = field_for(decay())
    tau = irregular_grids()
    x0 = np.array([[2.0], [1.0], [-0.5]])
    xs = solve(field, x0, tau, method=method, **options)
    exact = x0[:, None, :] * np.exp(-0.7 * tau)[..., None]
    assert np.abs(xs - exact).max() < bound


def oscillator_field():
    w = sp.Symbol("w", positive=True)
    return field_for(sysid.HybridODE(states=[x, y], physics={x: y, y: -w ** 2 * x},
                                     parameters={w: 1.3}))


def test_harmonic_oscillator_forwards_and_backwards_in_time_matches_the_closed_form():
    field = oscillator_field()
    times = np.sort(np.random.default_rng(2).uniform(-6.0, 9.0, 40))
    t0 = np.array([0.0, 1.5])
    x0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)
    with torch.no_grad():
        xs = solve_at_times(field, x0, t0, times, None, SolverOptions(**TIGHT)).numpy()
    w = 1.3
    for b in range(2):
        s = times - t0[b]
        exact_x = x0[b, 0].item() * np.cos(w * s) + x0[b, 1].item() / w * np.sin(w * s)
        exact_v = -x0[b, 0].item() * w * np.sin(w * s) + x0[b, 1].item() * np.cos(w * s)
        # measured 1.6e-10 over up to 9 time units either way (about 2 periods)
        np.testing.assert_allclose(xs[b, :, 0], exact_x, rtol=0, atol=1e-9)
        np.testing.assert_allclose(xs[b, :, 1], exact_v, rtol=0, atol=1e-9)


def test_rk4_on_a_grid_coarser_than_the_data_keeps_the_datas_step():
    """rk4 takes ``substeps`` steps per interval of the times asked for; a plotting grid
    coarser than the data must not lengthen them (at w*h > 2.8 rk4 is unstable: states
    grow without bound). ``max_interval`` splits the long intervals."""
    field = oscillator_field()                                   # w = 1.3
    times = np.linspace(-4.0, 30.0, 12)[::-1]                    # 3.1 apart, unsorted
    t0 = np.array([0.0, 2.0])
    x0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)
    rk4 = SolverOptions(method="rk4", substeps=1)
    with torch.no_grad():
        coarse = solve_at_times(field, x0, t0, times, None, rk4).numpy()
        kept = solve_at_times(field, x0, t0, times, None, rk4, max_interval=0.05).numpy()
    w = 1.3
    for b in range(2):
        s = times - t0[b]
        exact = x0[b, 0].item() * np.cos(w * s) + x0[b, 1].item() / w * np.sin(w * s)
        # measured: 6.4e-6 with steps of at most 0.05; steps of 3.1 reach 1e13
        np.testing.assert_allclose(kept[b, :, 0], exact, rtol=0, atol=1e-4)
        assert np.abs(coarse[b, :, 0] - exact).max() > 10.0
    assert kept.shape == (2, len(times), 2)


def test_refined_grid_splits_only_the_long_gaps():
    from sysid.solve.integrate import refined_grid
    grid = refined_grid([3.0, 0.0, 1.0, 1.0, np.nan, 1.25], 0.4)
    np.testing.assert_allclose(grid, [0.0, 1 / 3, 2 / 3, 1.0, 1.25, 1.25 + 1.75 / 5,
                                      1.25 + 3.5 / 5, 1.25 + 5.25 / 5, 1.25 + 7 / 5, 3.0])
    assert np.all(np.diff(grid) <= 0.4 + 1e-12)


def test_the_sample_interval_is_each_trajectorys_own():
    """The step the fit integrated across: three irregular trajectories with 30 % of
    their samples missing share a time grid about 3x finer than any one of them."""
    from sysid.data.bundle import prepare
    from sysid.problem.segments import sample_interval
    data = sysid.datasets.simulate("pendulum", noise=0.05, observed=["theta"],
                                   irregular=True, missing=0.3, n_trajectories=3, dt=0.25,
                                   t_end=20.0, seed=0)
    th, om = sp.symbols("theta omega")
    model = sysid.HybridODE(states=[th, om], physics={th: om, om: -sp.sin(th)})
    bundle = prepare(model, data)
    shared = float(np.median(np.diff(bundle.times)))
    # measured: 0.276 (0.25 apart on average, some samples missing); the shared grid 0.054
    assert 0.25 <= sample_interval(bundle) <= 0.45
    assert shared < 0.5 * sample_interval(bundle)


def test_batched_least_squares_finds_scipys_minimum_of_every_row():
    """The guesses of unmeasured start states, all windows at once: each row's minimum
    equals SciPy's per-row ``least_squares`` (to its tolerance), a bound holds, and a row
    whose residuals are not finite is reported for the caller's fallback."""
    from scipy.optimize import least_squares

    from sysid.problem.starts import _batched_least_squares
    rng = np.random.default_rng(0)
    target = rng.uniform(-2.0, 3.0, size=(40, 2))
    target[0] = [np.nan, 1.0]                                      # cannot be evaluated

    def residuals(v, sub=None):     # nonlinear, one minimum per row (a bound may hold it)
        t = target if sub is None else target[sub]
        return np.stack([np.sinh(v[:, 0]) + v[:, 1] - t[:, 0],
                         v[:, 1] ** 3 + 0.5 * v[:, 1] - t[:, 1],
                         1e-3 * v[:, 0], 1e-3 * v[:, 1]], axis=1)

    bounds = (np.array([-np.inf, 0.0]), np.array([np.inf, np.inf]))   # v1 >= 0
    found, ok = _batched_least_squares(residuals, np.full((40, 2), 0.5), bounds)
    assert not ok[0] and ok[1:].all()
    assert (found[ok][:, 1] >= 0.0).all()
    assert (found[ok][:, 1] == 0.0).sum() >= 5          # rows held at the bound, tested too
    for g in range(1, 40):
        ref = least_squares(lambda v: residuals(v[None], np.array([g]))[0], [0.5, 0.5],
                            bounds=bounds, xtol=1e-14, ftol=1e-14, gtol=1e-14)
        cost = float(np.sum(residuals(found[g:g + 1], np.array([g])) ** 2))
        # same minimum: the batched solve is at least as low as SciPy's, and close to it
        assert cost <= 2 * ref.cost * (1 + 1e-9) + 1e-20, g
        assert np.allclose(found[g], ref.x, atol=1e-6), (g, found[g], ref.x)


def lv_rhs(t, z):
    return [1.3 * z[0] - 0.9 * z[0] * z[1], 0.8 * z[0] * z[1] - 1.8 * z[1]]


LV_X0 = np.array([[0.44, 4.6], [1.0, 1.0], [2.0, 0.5]])


@pytest.fixture(scope="module")
def lv_references():
    tau = irregular_grids(n_samples=21)
    tight = np.stack([solve_ivp(lv_rhs, (0, tau[i, -1]), LV_X0[i], method="DOP853", rtol=1e-13,
                                atol=1e-13, t_eval=tau[i]).y.T for i in range(3)])
    rk45 = np.stack([solve_ivp(lv_rhs, (0, tau[i, -1]), LV_X0[i], method="RK45", rtol=1e-10,
                               atol=1e-12, t_eval=tau[i]).y.T for i in range(3)])
    return tau, tight, rk45


@pytest.mark.parametrize("method, options, bound", [
    ("dopri5", dict(TIGHT), 1e-8),                 # measured 1.0e-9 (scipy RK45: 6e-10)
    ("dopri5", dict(TIGHT, adjoint=True), 2e-8),   # measured 1.7e-9
    ("dopri8", dict(TIGHT), 1e-6),                 # measured 7e-8: see the note below
])
def test_lotka_volterra_matches_scipy(lv_references, method, options, bound):
    """Three trajectories on their own irregular grids, against DOP853 at rtol=1e-13 and
    against scipy's RK45 at the same rtol=1e-10.

    Note: torchdiffeq's dopri8 is far less accurate than its tolerance (measured on this
    system, uniform grid: 2.7e-5 at rtol=1e-8, 1.5e-6 at 1e-10, 9e-8 at 1e-12; plain
    ``torchdiffeq.odeint`` without sysid gives the same), so its bound is looser."""
    tau, tight, rk45 = lv_references
    xs = solve(lotka_volterra_field(), LV_X0, tau, method=method, **options)
    assert np.abs(xs - tight).max() < bound
    assert np.abs(xs - rk45).max() < bound + 1e-8
    assert np.abs(rk45 - tight).max() < 1e-8          # the scipy reference itself


def test_dopri5_error_follows_the_tolerance(lv_references):
    tau, tight, _ = lv_references
    field = lotka_volterra_field()
    errors = [np.abs(solve(field, LV_X0, tau, rtol=rtol, atol=rtol * 1e-2) - tight).max()
              for rtol in (1e-6, 1e-8, 1e-10)]
    # measured 4.1e-5, 1.2e-7, 8.9e-10: each 100x tighter tolerance, 100x less error
    assert errors[0] < 1e-4 and errors[1] < 1e-6 and errors[2] < 1e-8
    assert errors[0] / errors[1] > 30 and errors[1] / errors[2] > 30


def test_rk4_converges_at_fourth_order(lv_references):
    tau, tight, _ = lv_references
    field = lotka_volterra_field()
    errors = [np.abs(solve(field, LV_X0, tau, method="rk4", substeps=s) - tight).max()
              for s in (16, 32)]
    order = np.log2(errors[0] / errors[1])          # measured 3.82 (4.0e-4 -> 2.8e-5)
    assert 3.5 < order < 4.5


@pytest.mark.parametrize("options, bound, max_nfe", [
    (dict(TIGHT), 1e-10, 2_000),         # measured 7.8e-12 in 956 evaluations
    (dict(), 1e-6, 600),                 # default tolerances: 5.9e-8 in 266
    (dict(method="rk4", substeps=8), 1e-6, None),     # 3.8e-7
])
def test_inputs_held_between_samples_match_a_piecewise_closed_form(options, bound, max_nfe):
    """dx/dt = -k x + u with u held (zoh): on each sample interval the exact solution is
    u/k + (x - u/k) exp(-k dt). The stages at an interval's end used to read the next
    sample's value of u: rk4 (8 substeps) was off by 0.018, and dopri5 reached its
    tolerance only by rejecting steps at every sample (3632 evaluations at the default
    tolerances, error 4.9e-6; 10244 at rtol=1e-10)."""
    k = sp.Symbol("k", positive=True)
    model = sysid.HybridODE(states=[x], inputs=[u], physics={x: -k * x + u}, parameters={k: 0.7})
    field = field_for(model)
    times = np.sort(np.r_[0.0, np.random.default_rng(3).uniform(0, 8, 14)])
    values = np.random.default_rng(4).uniform(-1, 1, times.size)
    signal = InputSignal(torch.as_tensor(times), torch.as_tensor(values)[None, :, None], "zoh")
    with torch.no_grad():
        xs = solve_segments(field, torch.tensor([[1.0]], dtype=torch.float64),
                            torch.as_tensor(times)[None], signal,
                            SolverOptions(**options)).numpy()[0, :, 0]
    exact = [1.0]
    for i in range(times.size - 1):
        level = values[i] / 0.7
        exact.append(level + (exact[-1] - level) * np.exp(-0.7 * (times[i + 1] - times[i])))
    np.testing.assert_allclose(xs, exact, rtol=0, atol=bound)
    if max_nfe is not None:
        assert field.nfe < max_nfe


def test_inputs_read_once_per_interval_equal_the_interpolated_signal():
    """The solvers read an input once per sample interval, as a straight line in the
    interval's clock, where no input sample lies inside it (InputSignal.on_intervals):
    the line must be the interpolated input itself, and intervals with samples inside
    must be flagged so that the input is read at each stage."""
    rng = np.random.default_rng(5)
    times = torch.as_tensor(np.sort(np.r_[0.0, rng.uniform(0, 6, 11), 6.0]))
    values = torch.as_tensor(rng.normal(size=(2, times.numel(), 3)))
    # on the samples, over a sample (2 -> 4), past the last one, outside, and backwards
    row = torch.cat([times[[0, 1, 2, 4, 5, 6, 9, 10]], torch.tensor([8.0, 9.0, 8.5])])
    tau = torch.stack([row, row])
    tau[1, :2] = torch.tensor([0.1, 0.2])           # row 1 between two samples
    for kind in ("linear", "zoh"):
        signal = InputSignal(times, values, kind)
        start, rise, exact = signal.on_intervals(tau)
        for k in range(tau.shape[1] - 1):
            lo, hi = torch.minimum(tau[:, k], tau[:, k + 1]), torch.maximum(tau[:, k], tau[:, k + 1])
            inside = ((times[None] > lo[:, None]) & (times[None] < hi[:, None])).any()
            assert bool(exact[k]) == (not bool(inside))
            if not exact[k]:
                continue
            for sigma in (0.1, 0.5, 0.9) + (() if kind == "zoh" else (0.0, 1.0)):
                t = tau[:, k] + sigma * (tau[:, k + 1] - tau[:, k])
                line = start[:, k] if rise is None else start[:, k] + sigma * rise[:, k]
                torch.testing.assert_close(line, signal(t), rtol=0, atol=1e-12)
        assert not bool(exact.all()) and bool(exact.any())      # both paths are exercised


@pytest.mark.parametrize("stride, bound", [
    (1, 1e-10),     # one line per interval: exact to rounding
    (3, 1e-7),      # kinks inside the intervals: dopri5 at rtol 1e-10, measured 7.0e-9
])
def test_integral_of_a_linearly_interpolated_input_matches_the_trapezoid_rule(stride, bound):
    """dx/dt = u(t), u linear between samples: x is the trapezoid integral of u, exact
    for any solver that integrates quadratics. stride 1 reads the input as one line per
    interval; stride 3 puts input samples inside each interval (read at every stage)."""
    model = sysid.HybridODE(states=[x], inputs=[u], physics={x: u})
    field = field_for(model)
    rng = np.random.default_rng(6)
    times = np.sort(np.r_[0.0, rng.uniform(0, 5, 19), 5.0])
    values = rng.uniform(-1, 1, times.size)
    signal = InputSignal(torch.as_tensor(times), torch.as_tensor(values)[None, :, None])
    tau = times[::stride]
    with torch.no_grad():
        xs = solve_segments(field, torch.tensor([[0.5]], dtype=torch.float64),
                            torch.as_tensor(tau)[None], signal,
                            SolverOptions(**TIGHT)).numpy()[0, :, 0]
    steps = np.r_[0.0, np.cumsum(np.diff(times) * (values[1:] + values[:-1]) / 2)]
    np.testing.assert_allclose(xs, 0.5 + steps[::stride], rtol=0, atol=bound)


# == determinism and save/load =============================================================

DATA = sysid.datasets.simulate("lotka_volterra", noise=0.05, t_end=4.0, dt=0.25, seed=0)
HYBRID = dict(progress=False, epochs=6, lbfgs_iterations=3, polish_iterations=2, rtol=1e-4,
              atol=1e-6)


def hybrid_model():
    a, b, c, d = sp.symbols("a b c d", positive=True)
    return sysid.HybridODE(states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
                           parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0},
                           residual=sysid.MLP(4, 1))


@pytest.fixture(scope="module")
def twice():
    return [sysid.fit(hybrid_model(), DATA, seed=0, **HYBRID) for _ in range(2)]


def test_same_seed_gives_bit_identical_fits(twice):
    first, second = twice
    s1, s2 = first._problem.state_dict(), second._problem.state_dict()
    assert s1.keys() == s2.keys()
    for key in s1:
        assert torch.equal(s1[key], s2[key]), key
    assert first.parameters == second.parameters
    np.testing.assert_array_equal(first.history["loss"].values, second.history["loss"].values)
    for name in ("x", "y"):
        np.testing.assert_array_equal(first.impute()[name].values, second.impute()[name].values)
        np.testing.assert_array_equal(first.forecast(horizon=0.25, n=10)[name].values,
                                      second.forecast(horizon=0.25, n=10)[name].values)


def test_another_seed_gives_another_network(twice):
    other = sysid.fit(hybrid_model(), DATA, seed=1, progress=False, epochs=0,
                      lbfgs_iterations=0, polish_iterations=0)
    start = sysid.fit(hybrid_model(), DATA, seed=0, progress=False, epochs=0,
                      lbfgs_iterations=0, polish_iterations=0)
    key = "field.residual.net.0.weight"
    assert not torch.equal(other._problem.state_dict()[key], start._problem.state_dict()[key])
    assert torch.equal(start._problem.state_dict()[key],
                       sysid.fit(hybrid_model(), DATA, seed=0, progress=False, epochs=0,
                                 lbfgs_iterations=0, polish_iterations=0)
                       ._problem.state_dict()[key])


def test_save_and_load_give_bit_identical_predictions(twice, tmp_path):
    result = twice[0]
    path = tmp_path / "hybrid.sysid"
    result.save(path)
    again = sysid.load(path)
    s1, s2 = result._problem.state_dict(), again._problem.state_dict()
    for key in s1:
        assert torch.equal(s1[key], s2[key]), key
    assert again.parameters == result.parameters
    assert again.status == result.status
    assert again.noise_std == result.noise_std
    times = np.linspace(-0.5, 4.25, 20)     # before, inside and after the data (the small
    # network fitted here extrapolates badly: it blows up about 1 time unit past the data)
    new = sysid.datasets.simulate("lotka_volterra", noise=0.05, x0=[1.0, 2.0], t_end=3.0,
                                  dt=0.25, seed=5)
    for name in ("x", "y"):
        np.testing.assert_array_equal(again.impute()[name].values, result.impute()[name].values)
        np.testing.assert_array_equal(again.impute(times)[name].values,
                                      result.impute(times)[name].values)
        np.testing.assert_array_equal(again.forecast(horizon=0.25, n=10)[name].values,
                                      result.forecast(horizon=0.25, n=10)[name].values)
        np.testing.assert_array_equal(again.simulate(new)[name].values,
                                      result.simulate(new)[name].values)


def test_load_restores_the_objective_the_noise_levels_were_fitted_on(twice, tmp_path):
    """The fit ends on whole trajectories, a freshly built problem starts on shooting
    windows: before the objective was saved, a loaded result re-estimated its noise
    levels on the windows (x: 0.413 instead of 0.129), and ``simulate`` (which weights
    the start-up samples by them) gave other predictions."""
    result = twice[0]
    assert not result._problem.active
    path = tmp_path / "hybrid.sysid"
    result.save(path)
    payload = torch.load(path, weights_only=True)
    assert payload["objective"] == {"windows": False,
                                    "continuity": result._problem.continuity}
    for bad in ({"windows": "no"}, {"windows": False, "continuity": -1.0}, [1, 2]):
        payload["objective"] = bad
        torch.save(payload, path)
        with pytest.raises(sysid.errors.FileFormatError, match="invalid training objective"):
            sysid.load(path)
    del payload["objective"]                  # a file of the previous version still loads
    torch.save(payload, path)
    old = sysid.load(path)
    np.testing.assert_array_equal(old.impute()["x"].values, result.impute()["x"].values)
