"""The native hot path (sysid.solve.native): dopri5 in C generated from the model.

Its solves must equal the PyTorch solver's: the same steps (field evaluations), states and
gradients (initial states, physical parameters, network weights) to rounding; fits of
well-posed models equal to 1e-8. Where it does not apply, the PyTorch solver runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
import xarray as xr

import sysid
from sysid.data.bundle import prepare
from sysid.problem.options import FitOptions
from sysid.problem.problem import build_problem
from sysid.solve import native
from sysid.solve.runge_kutta import solve_intervals

pytestmark = pytest.mark.skipif(native.compiler() is None, reason="no C compiler on PATH")


def _lv_hybrid(positive=False):
    x, y = sp.symbols("x y", positive=positive)
    a, d = sp.symbols("a d", positive=True)
    model = sysid.HybridODE(states=[x, y], physics={x: a * x, y: -d * y},
                            parameters={a: 1.2, d: 1.7}, residual=sysid.MLP(width=8))
    return model, sysid.datasets.simulate("lotka_volterra", noise=0.02, seed=2)


def _forced_pendulum():
    th, om = sp.symbols("theta omega")
    w0, k, amp = sp.symbols("w0 k amp", positive=True)
    physics = {th: om, om: -w0 ** 2 * sp.sin(th) - k * sp.Abs(om) * om
               + amp * sp.cos(1.3 * sysid.t) + sp.Piecewise((0.1, th > 1), (0, True))}
    model = sysid.HybridODE(states=[th, om], physics=physics,
                            parameters={w0: 1.1, k: 0.2, amp: 0.3},
                            residual=sysid.MLP(width=6, depth=1, activation="softplus",
                                               states=[om]))
    return model, sysid.datasets.simulate("pendulum", noise=0.02, seed=3)


def _forced_tanks():
    # inputs read by the physics and the network; Torricelli's square roots of positive states
    x1, x2 = sp.symbols("x1 x2", positive=True)
    u = sp.Symbol("u")
    k1, k2, k3, k4 = sp.symbols("k1 k2 k3 k4", positive=True)
    model = sysid.HybridODE(
        states=[x1, x2], inputs=[u], parameters={k1: 0.5, k2: 0.4, k3: 0.3, k4: 0.6},
        physics={x1: -k1 * sp.sqrt(x1) + k4 * u, x2: k2 * sp.sqrt(x1) - k3 * sp.sqrt(x2)},
        residual=sysid.MLP(width=6, depth=2))
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 10, 40))
    u_t = 1.0 + 0.5 * np.sin(0.9 * t) + 0.3 * (rng.random(40) > 0.5)
    data = xr.Dataset({"x1": ("time", 1.0 + 0.2 * np.cos(0.5 * t)),
                       "x2": ("time", 0.8 + 0.1 * np.sin(0.3 * t)), "u": ("time", u_t)},
                      coords={"time": t})
    return model, data


def _problem(model, data, windows, seed=0, **options):
    problem = build_problem(model, prepare(model, data),
                            FitOptions(seed=seed, **options))
    torch.manual_seed(seed)
    with torch.no_grad():          # a network that is not zero, so its gradients are tested
        for layer in problem.field.residual.net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.add_(0.3 * torch.randn_like(layer.weight))
                layer.bias.add_(0.1 * torch.randn_like(layer.bias))
    problem.use_windows(windows)
    return problem


def _solve_and_gradients(problem, use_native, method="dopri5"):
    field = problem.field
    seg = problem.windows if problem.active else problem.single
    inputs = seg.inputs if field.model.inputs else None
    if inputs is not None:
        assert bool(inputs.on_intervals(seg.tau)[2].all())     # the native path applies
    x0 = torch.cat([problem.z0, problem.zw])[problem.source] if problem.active else problem.z0
    x0 = (problem.loc + problem.scale * x0).detach().clone().requires_grad_()
    params = [q for q in field.parameters() if q.requires_grad and q.numel()]
    before = field.nfe
    xs = solve_intervals(field, x0, seg.tau, inputs, method=method, rtol=1e-6, atol=1e-8,
                         max_steps=5000, substeps=3, failure=RuntimeError, compiled=use_native)
    weights = torch.linspace(-1.0, 2.0, xs.numel(), dtype=torch.float64).reshape(xs.shape)
    grads = torch.autograd.grad((xs * weights).sum(), [x0] + params)
    return xs.detach(), grads, field.nfe - before


@pytest.mark.parametrize("case", ["lv_hybrid", "lv_positive", "forced_pendulum"])
@pytest.mark.parametrize("windows", [True, False], ids=["windows", "whole"])
def test_native_solves_equal_the_pytorch_solver(case, windows):
    model, data = {"lv_hybrid": _lv_hybrid, "lv_positive": lambda: _lv_hybrid(True),
                   "forced_pendulum": _forced_pendulum}[case]()
    problem = _problem(model, data, windows)
    assert native.kernel_for(problem.field) is not None
    xs_c, g_c, nfe_c = _solve_and_gradients(problem, True)
    xs_t, g_t, nfe_t = _solve_and_gradients(problem, False)
    assert nfe_c == nfe_t                           # the same steps
    # lv_positive: the network drives the positive prey through 0, where the physics meets
    # the floor's kink (HybridField floors positive states at ~1e-77); rounding differences
    # of the two implementations (torch's kernels use fused multiply-adds) grow there to
    # 3e-10 in the states and 2e-8 in the gradients. Elsewhere they stay near 1e-15.
    tol, gtol = (1e-9, 1e-7) if case == "lv_positive" else (1e-12, 1e-11)
    np.testing.assert_allclose(xs_c.numpy(), xs_t.numpy(), rtol=tol, atol=tol)
    _assert_same_gradients(g_c, g_t, gtol)


def _assert_same_gradients(g_c, g_t, gtol):
    assert len(g_c) == len(g_t) >= 6
    for a, b in zip(g_c, g_t):
        scale = float(b.abs().max()) + 1e-30
        assert float((a - b).abs().max()) <= gtol * scale


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
@pytest.mark.parametrize("interpolation", ["linear", "zoh"])
@pytest.mark.parametrize("windows", [True, False], ids=["windows", "whole"])
def test_native_solves_with_inputs_equal_the_pytorch_solver(method, interpolation, windows):
    model, data = _forced_tanks()
    problem = _problem(model, data, windows, interpolation=interpolation)
    field = problem.field
    assert native.kernel_for(field) is not None
    calls = []
    solve = native.solve_native
    try:
        native.solve_native = lambda *a, **k: calls.append(k["method"]) or solve(*a, **k)
        xs_c, g_c, nfe_c = _solve_and_gradients(problem, True, method)
    finally:
        native.solve_native = solve
    assert calls == [method]                        # the C solver ran
    xs_t, g_t, nfe_t = _solve_and_gradients(problem, False, method)
    assert nfe_c == nfe_t
    np.testing.assert_allclose(xs_c.numpy(), xs_t.numpy(), rtol=1e-12, atol=1e-12)
    _assert_same_gradients(g_c, g_t, 1e-11)


def test_a_physics_only_fit_is_the_same_compiled_or_not():
    x, y = sp.symbols("x y")
    a, b, c, d = sp.symbols("a b c d", positive=True)
    model = sysid.HybridODE(states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
                            parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
    data = sysid.datasets.simulate("lotka_volterra", noise=0.02, seed=1)
    fits = [sysid.fit(model, data, progress=False, compiled=on, gauss_newton=False)
            for on in (True, False)]
    for k, v in fits[1].parameters.items():
        assert fits[0].parameters[k] == pytest.approx(v, rel=1e-8)
    assert fits[0].status.code == fits[1].status.code == "converged"


def test_where_it_does_not_apply_the_pytorch_solver_runs(monkeypatch, tmp_path):
    x = sp.Symbol("x")
    k = sp.Symbol("k", positive=True)
    model = sysid.HybridODE(states=[x], physics={x: -k * x + 0.01 * sp.floor(x)},
                            parameters={k: 1.0})
    t = np.linspace(0, 4, 21)
    data = xr.Dataset({"x": ("time", np.exp(-t))}, coords={"time": t})
    problem = build_problem(model, prepare(model, data), FitOptions())
    assert native.kernel_for(problem.field) is None
    assert "floor" in problem.field.__dict__["_native_unsupported"]
    fit = sysid.fit(model, data, progress=False, epochs=5, lbfgs_iterations=5,
                    polish_iterations=0)          # runs, on the PyTorch solver
    assert np.isfinite(fit.parameters["k"])
    # no compiler: the same
    monkeypatch.setattr(native, "compiler", lambda: None)
    model2, data2 = _lv_hybrid()
    field = _problem(model2, data2, True).field
    monkeypatch.setattr(native, "_LOADED", {})
    monkeypatch.setenv("SYSID_CACHE", str(tmp_path))        # nothing compiled there yet
    assert native.kernel_for(field) is None
    assert "compiler" in field.__dict__["_native_unsupported"]


def test_the_step_limit_fails_as_in_the_pytorch_solver():
    model, data = _lv_hybrid()
    problem = _problem(model, data, False)
    field = problem.field
    x0 = problem.x0().detach()
    with pytest.raises(RuntimeError, match="max_num_steps exceeded"):
        native.solve_native(field, native.kernel_for(field), x0, problem.single.tau,
                            rtol=1e-12, atol=1e-14, max_steps=3, failure=RuntimeError)


def test_a_network_that_turns_nan_fails_as_not_finite():
    # the PyTorch solver's message for a field that is NaN: the fit's status then says
    # "diverged" (tests/test_faults.py runs those fits on the PyTorch path)
    model, data = _lv_hybrid()
    problem = _problem(model, data, True)
    field = problem.field
    with torch.no_grad():
        field.residual.net[0].weight[0, 0] = float("nan")
    x0 = (problem.loc + problem.scale * torch.cat([problem.z0, problem.zw])[problem.source])
    with pytest.raises(RuntimeError, match="not finite"):
        native.solve_native(field, native.kernel_for(field), x0.detach(), problem.windows.tau,
                            rtol=1e-6, atol=1e-8, max_steps=5000, failure=RuntimeError)
    with pytest.raises(RuntimeError, match="not finite"):
        solve_intervals(field, x0.detach(), problem.windows.tau, None, failure=RuntimeError)


@pytest.mark.parametrize("case", ["lv_positive", "forced_pendulum"])
def test_one_native_field_evaluation_and_vjp_equal_autograd(case):
    make = {"lv_positive": lambda: _lv_hybrid(True), "forced_pendulum": _forced_pendulum}
    model, data = make[case]()
    field = _problem(model, data, True).field
    rng = np.random.default_rng(4)
    x = rng.normal(0.5, 1.0, (7, 2))
    t = rng.uniform(0, 5, 7)
    v = rng.normal(size=(7, 2))
    f, gx, gp, gw = native.kernel_for(field).eval_vjp(field, x, t, v)
    xt = torch.tensor(x, requires_grad=True)
    params = [field.raw] + [q for m in field.residual.net if isinstance(m, torch.nn.Linear)
                            for q in (m.weight, m.bias)]
    ft = field(torch.tensor(t), xt, torch.zeros(7, 0, dtype=torch.float64))
    grads = torch.autograd.grad(ft, [xt] + params, torch.tensor(v))
    np.testing.assert_allclose(f, ft.detach().numpy(), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(gx, grads[0].numpy(), rtol=1e-12, atol=1e-12)
    # the physical parameters: the kernel gives d/dp; autograd d/draw = d/dp * dp/draw
    dp = torch.autograd.functional.jacobian(field.transform.forward, field.raw.detach())
    np.testing.assert_allclose(gp[:field.raw.numel()] @ dp.numpy(), grads[1].numpy(),
                               rtol=1e-12, atol=1e-12)
    flat = torch.cat([g.reshape(-1) for g in grads[2:]]).numpy()
    np.testing.assert_allclose(gw, flat, rtol=1e-12, atol=1e-12)


def test_large_batches_stay_on_the_pytorch_solver():
    # measured: the 2 x 32 network breaks even at about 130 rows; beyond, torch's matrix
    # products win
    model, data = _lv_hybrid()
    field = _problem(model, data, True).field
    assert native.worth_it(field, 5)
    assert not native.worth_it(field, 5000)


def test_a_cache_folder_that_cannot_be_written_falls_back(monkeypatch, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SYSID_CACHE", str(blocker))       # cache/native cannot be made
    monkeypatch.setattr(native, "_LOADED", {})
    model, data = _lv_hybrid()
    field = _problem(model, data, True).field
    assert native.kernel_for(field) is None
    assert "cannot build in the cache folder" in field.__dict__["_native_unsupported"]


@pytest.mark.parametrize("case", ["forced_pendulum", "forced_tanks"])
def test_the_central_difference_jacobian_is_the_same_on_the_native_solver(case):
    # linearise gives every copy of the data its own parameter values (per-row parameters,
    # forward solves under no_grad): Levenberg-Marquardt, the Laplace curvature and the
    # symbolic refits read it
    import dataclasses

    from sysid.problem.jacobian import linearise

    model, data = {"forced_pendulum": _forced_pendulum, "forced_tanks": _forced_tanks}[case]()
    problem = _problem(model, data, True)
    calls = []
    solve = native.solve_native
    out = {}
    try:
        native.solve_native = lambda *a, **k: calls.append(1) or solve(*a, **k)
        for on in (True, False):
            problem.solver = dataclasses.replace(problem.solver, compiled=on)
            out[on] = linearise(problem)
    finally:
        native.solve_native = solve
    assert calls == [1]                           # the compiled one ran in C
    (f_c, r_c, J_c), (f_t, r_t, J_t) = out[True], out[False]
    assert f_c == pytest.approx(f_t, rel=1e-12)
    np.testing.assert_allclose(r_c, r_t, rtol=1e-10, atol=1e-12)
    # central differences divide rounding differences (1e-16) by the step (1e-5)
    np.testing.assert_allclose(J_c, J_t, rtol=1e-7, atol=1e-9 * np.abs(J_t).max())
    # with gradients on, per-row parameters stay on the PyTorch solver (the C one has no
    # gradient for them)
    field = problem.field
    x0 = problem.x0().detach().requires_grad_()
    calls.clear()
    try:
        native.solve_native = lambda *a, **k: calls.append(1) or solve(*a, **k)
        with field.per_row_parameters(field.parameter_values().expand(x0.shape[0], -1)):
            xs = solve_intervals(field, x0, problem.single.tau, problem.single.inputs
                                 if model.inputs else None, compiled=True)
    finally:
        native.solve_native = solve
    assert calls == [] and xs.requires_grad


def test_a_kernel_built_before_the_network_is_attached_is_not_reused():
    # build_problem solves the physics alone (its preview) before it attaches the network:
    # a kernel cached then has no network, and reusing it silently trained Silverbox's
    # hybrid with its network out of every solve (the network stayed at its zero start)
    model, data = _forced_tanks()
    problem = _problem(model, data, False)
    field = problem.field
    net, field.residual = field.residual, None
    assert native.kernel_for(field).linears == []
    field.residual = net
    assert len(native.kernel_for(field).linears) == 3
    seg = problem.single
    x0 = problem.x0().detach()
    with torch.no_grad():
        xs_c = solve_intervals(field, x0, seg.tau, seg.inputs, compiled=True)
        xs_t = solve_intervals(field, x0, seg.tau, seg.inputs, compiled=False)
    np.testing.assert_allclose(xs_c.numpy(), xs_t.numpy(), rtol=1e-12, atol=1e-12)


def _forward(problem, use_native, method):
    field = problem.field
    seg = problem.windows if problem.active else problem.single
    inputs = seg.inputs if field.model.inputs else None
    x0 = torch.cat([problem.z0, problem.zw])[problem.source] if problem.active else problem.z0
    with torch.no_grad():
        return solve_intervals(field, problem.loc + problem.scale * x0, seg.tau, inputs,
                               method=method, rtol=1e-7, atol=1e-9, max_steps=5000,
                               failure=RuntimeError, compiled=use_native)


@pytest.mark.parametrize("case", ["forced_tanks", "forced_pendulum", "robertson"])
def test_native_rosenbrock23_forward_solves_equal_the_pytorch_solver(case):
    # forward solves only (imputation, Levenberg-Marquardt's residuals and its Jacobian's
    # differences); the same steps to rounding: the LU factorisations differ (LAPACK
    # against the kernel's loops), so the states agree to well inside the tolerance
    if case == "robertson":
        from test_stiff import TIMES, _reference, robertson
        ref = _reference()
        model = robertson()
        data = xr.Dataset({"y1": ("time", ref[0]), "y3": ("time", ref[2])},
                          coords={"time": TIMES})
        problem = build_problem(model, prepare(model, data), FitOptions(shooting="single"))
    else:
        model, data = {"forced_tanks": _forced_tanks, "forced_pendulum": _forced_pendulum}[case]()
        problem = _problem(model, data, True)
    calls = []
    solve = native.solve_native
    try:
        native.solve_native = lambda *a, **k: calls.append(k["method"]) or solve(*a, **k)
        xs_c = _forward(problem, True, "rosenbrock23")
    finally:
        native.solve_native = solve
    assert calls == ["rosenbrock23"]                # the C solver ran
    xs_t = _forward(problem, False, "rosenbrock23")
    scale = xs_t.abs().amax(dim=1, keepdim=True)
    assert float(((xs_c - xs_t).abs() / scale).max()) < 1e-8


@pytest.mark.parametrize("case", ["forced_tanks", "forced_pendulum", "robertson",
                                  "robertson_rate"])
def test_native_rosenbrock23_gradients_equal_autograd_through_the_pytorch_solver(case):
    # the C discrete adjoint of rosenbrock23 (the Jacobian's differences and the linear
    # solves differentiated exactly) against autograd through the eager steps; the two
    # solvers' rounding (LAPACK's LU against the kernel's loops) moves the states by
    # ~1e-9 of their range, and the gradients about as much
    if case == "robertson":
        from test_stiff import TIMES, _reference, robertson
        ref = _reference()
        model = robertson()
        data = xr.Dataset({"y1": ("time", ref[0]), "y3": ("time", ref[2])},
                          coords={"time": TIMES})
        problem = build_problem(model, prepare(model, data), FitOptions(shooting="single"))
    elif case == "robertson_rate":
        # k3's reaction a network with its stoichiometry: one output written into y1
        # (+1) and y2 (-1); the last layer set to small values so that every weight has
        # a gradient
        from test_stiff import TIMES, _reference, robertson_rate
        ref = _reference()
        model = robertson_rate()
        data = xr.Dataset({"y1": ("time", ref[0]), "y3": ("time", ref[2])},
                          coords={"time": TIMES})
        problem = build_problem(model, prepare(model, data), FitOptions(shooting="single"))
        last = problem.field.residual.net[-1]
        with torch.no_grad():
            last.weight.copy_(0.01 * torch.linspace(-1.0, 1.0, last.weight.numel(),
                                                    dtype=torch.float64).reshape(last.weight.shape))
            last.bias.fill_(0.005)
    else:
        model, data = {"forced_tanks": _forced_tanks, "forced_pendulum": _forced_pendulum}[case]()
        problem = _problem(model, data, True)
    calls = []
    solve = native.solve_native
    try:
        native.solve_native = lambda *a, **k: calls.append(k["method"]) or solve(*a, **k)
        xs_c, g_c, _ = _solve_and_gradients(problem, True, "rosenbrock23")
    finally:
        native.solve_native = solve
    assert calls == ["rosenbrock23"]                # the C solver ran, with a gradient
    xs_t, g_t, _ = _solve_and_gradients(problem, False, "rosenbrock23")
    scale = xs_t.abs().amax(dim=1, keepdim=True)
    # (y2 of the rate case falls to 1e-10, a hundredth of atol, where the two solvers'
    # rounding moves it by a few 1e-12: so much below atol, 1e-3 atol absolute)
    assert bool(((xs_c - xs_t).abs() < 1e-8 * scale + 1e-11).all())
    assert len(g_c) == len(g_t) >= (2 if case == "robertson" else 6)
    if case == "robertson_rate":                    # the one shared rate's weights
        assert problem.field.residual.net[-1].weight.shape[0] == 1
        assert all(float(g.abs().max()) > 0 for g in g_t)
    # (the rate case's y2 runs far below atol, where the steps' rounding differs: 2e-6)
    tol = 1e-5 if case == "robertson_rate" else 1e-6
    for a, b in zip(g_c, g_t):
        assert float((a - b).abs().max()) <= tol * (float(b.abs().max()) + 1e-30)
