"""Levenberg-Marquardt for models without a network: the batched central-difference
Jacobian against reverse-mode autograd, and the optimum against L-BFGS."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import xarray as xr

import sysid
from sysid.problem.jacobian import jacobian_bytes, linearise
from sysid.results import fit_from
from sysid.uncertainty.laplace import residual_jacobian


def _forced_decay(seed=0, n_traj=3):
    # dx/dt = -k x + b u with a known input u = sin(t), several trajectories
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 6.0, 25)
    x0 = np.array([1.0, -0.5, 2.0])[:n_traj]
    k, b = 0.7, 1.3
    from scipy.integrate import solve_ivp
    ys = [solve_ivp(lambda tt, x: -k * x + b * np.sin(tt), (0, 6), [v], t_eval=t,
                    rtol=1e-11, atol=1e-12).y[0] for v in x0]
    y = np.array(ys) + 0.02 * rng.standard_normal((n_traj, t.size))
    data = xr.Dataset({"x": (("trajectory", "time"), y),
                       "u": (("trajectory", "time"), np.broadcast_to(np.sin(t), y.shape))},
                      coords={"time": t})
    x, u = sp.symbols("x u")
    kk, bb = sp.Symbol("k", positive=True), sp.Symbol("b")
    model = sysid.HybridODE(states=[x], inputs=[u], physics={x: -kk * x + bb * u},
                            parameters={kk: 0.4, bb: 1.0})
    return model, data


def _pendulum():
    data = sysid.datasets.simulate("pendulum", noise=0.05, observed=["theta"],
                                   n_trajectories=2, dt=0.5, t_end=10.0, seed=3)
    th, om = sp.symbols("theta omega")
    w0, al = sp.Symbol("omega0", positive=True), sp.Symbol("alpha")
    model = sysid.HybridODE(states=[th, om], physics={th: om, om: -w0 ** 2 * sp.sin(th)
                                                     - al * om},
                            parameters={w0: 1.1, al: 0.1})
    return model, data


@pytest.mark.parametrize("case", [_forced_decay, _pendulum])
def test_batched_central_differences_match_reverse_mode(case):
    model, data = case()
    built = fit_from(model, data, None, epochs=0, lbfgs_iterations=0, polish_iterations=0,
                     shooting="single", progress=False, throw=False)
    _, r, J = linearise(built._problem)
    r_ad, J_ad, P = residual_jacobian(built._problem)
    assert P == 2 and J.shape == J_ad.shape
    # both standardise by each channel's RMS residual (one channel here)
    np.testing.assert_allclose(r, r_ad, rtol=1e-9, atol=1e-12)
    scale = np.abs(J_ad).max()
    assert np.abs(J - J_ad).max() <= 1e-6 * scale


@pytest.mark.parametrize("case", [_forced_decay, _pendulum])
def test_levenberg_marquardt_reaches_the_lbfgs_optimum(case):
    model, data = case()
    fits = {gn: sysid.fit(model, data, epochs=0, lbfgs_iterations=200, shooting="single",
                          gauss_newton=gn, progress=False) for gn in (True, False)}
    lm, bfgs = fits[True], fits[False]
    n = lm._problem.noise.total
    # the objective in log-likelihood units: LM as low as L-BFGS (to 1e-3 units)
    assert lm.stats["loss"] * n <= bfgs.stats["loss"] * n + 1e-3
    for name, value in bfgs.parameters.items():
        assert lm.parameters[name] == pytest.approx(value, rel=1e-3)
    assert "Levenberg-Marquardt" in lm.status.detail
    assert (lm.history["phase"] == "lbfgs").sum() <= 30      # a few Jacobians, not hundreds


def test_known_noise_level_and_truth():
    model, data = _forced_decay(seed=1)
    data["x"].attrs["noise_std"] = 0.02
    result = sysid.fit(model, data, epochs=0, lbfgs_iterations=50, shooting="single",
                       progress=False)
    assert result.noise_std["x"] == 0.02
    assert result.parameters["k"] == pytest.approx(0.7, rel=0.05)
    assert result.parameters["b"] == pytest.approx(1.3, rel=0.05)


def test_window_jacobian_gives_the_gradient_of_the_multiple_shooting_loss():
    # on shooting windows the residuals include the continuity rows; J^T r must be the
    # gradient of the loss (data term + continuity penalty, log-likelihood units) in the
    # raw parameters, the initial states and the window starts
    import torch

    model, data = _pendulum()
    built = fit_from(model, data, None, epochs=0, lbfgs_iterations=0, polish_iterations=0,
                     progress=False, throw=False)
    p = built._problem
    p.use_windows(True)
    assert p.active and p.zw.numel() > 0
    with torch.no_grad():
        p.zw.add_(0.05 * torch.randn(p.zw.shape, generator=torch.Generator().manual_seed(0),
                                     dtype=torch.float64))
    f, r, J = linearise(p)
    loss, _ = p.loss(0.0, 0.0)
    assert f == pytest.approx(float(loss.detach()) * p.noise.total, rel=1e-10)
    grads = torch.autograd.grad(loss * p.noise.total, [p.field.raw, p.z0, p.zw])
    g = torch.cat([x.reshape(-1) for x in grads]).numpy()
    assert np.abs(J.T @ r - g).max() <= 1e-7 * np.abs(g).max()


def test_multiple_shooting_fit_uses_levenberg_marquardt_on_the_windows():
    model, data = _pendulum()
    result = sysid.fit(model, data, epochs=0, lbfgs_iterations=50, progress=False)
    phases = set(result.history["phase"].values.tolist())
    assert {"lbfgs", "tighten", "polish"} <= phases
    reference = sysid.fit(model, data, epochs=0, lbfgs_iterations=200, shooting="single",
                          gauss_newton=False, progress=False)
    for name, value in reference.parameters.items():
        assert result.parameters[name] == pytest.approx(value, rel=1e-3)


def test_held_out_windows_keep_levenberg_marquardt_and_score_every_step():
    """validation > 0 on a network-free model: Levenberg-Marquardt still fits the training
    windows (damping in the ``lr`` column, a few Jacobians), the held-out error is
    recorded at every accepted step, and the estimates agree with the fit on all the
    data to within their uncertainty."""
    model, data = _pendulum()
    held = sysid.fit(model, data, epochs=0, lbfgs_iterations=50, validation=0.2,
                     progress=False)
    full = sysid.fit(model, data, epochs=0, lbfgs_iterations=50, progress=False)
    history = held.history.to_dataframe()
    steps = history[history["phase"] == "lbfgs"]
    assert 1 <= len(steps) <= 30
    assert (steps["lr"] != 1.0).all()                     # LM's damping, not L-BFGS's lr
    assert np.isfinite(steps["validation"]).all() and (steps["validation"] > 0).all()
    assert held.status.code in ("converged", "early_stopped")
    se = full.parameter_table()["std_error"]
    for name, value in full.parameters.items():
        assert abs(held.parameters[name] - value) < 3 * se[name]


def test_shooting_gaps_of_a_never_measured_state_do_not_depend_on_its_units():
    # Two tanks, only the lower level measured: the upper level h1 can be rescaled,
    # h1 -> lam * h1 with k1 -> k1 sqrt(lam), k2 -> k2 / sqrt(lam), k4 -> k4 lam, without
    # changing any prediction. The multiple-shooting loss (data + continuity gaps) must not
    # change either; in fixed units a fit could shrink h1 until its gaps cost nothing
    # (measured on Cascaded Tanks: k4 -> 1e-6, windows decoupled, test RMSE 0.80 V).
    import torch

    data = sysid.datasets.simulate("two_tank", seed=0, observed=["h2"], t_end=60.0)
    h1, h2 = sp.symbols("h1 h2", positive=True)
    u = sp.Symbol("u")
    k1, k2, k3, k4 = sp.symbols("k1 k2 k3 k4", positive=True)
    model = sysid.HybridODE(states=[h1, h2], inputs=[u],
                            physics={h1: -k1 * sp.sqrt(h1) + k4 * u,
                                     h2: k2 * sp.sqrt(h1) - k3 * sp.sqrt(h2)},
                            parameters={k1: 0.5, k2: 0.5, k3: 0.6, k4: 1.0})
    built = fit_from(model, data, None, epochs=0, lbfgs_iterations=0, polish_iterations=0,
                     interpolation="zoh", progress=False, throw=False)
    p = built._problem
    p.use_windows(True)
    assert p.active and p.unpinned.tolist() == [True, False]
    with torch.no_grad():      # gaps between the windows, as during a fit
        p.zw.add_(0.1 * torch.randn(p.zw.shape, generator=torch.Generator().manual_seed(0),
                                    dtype=torch.float64))

    def loss_parts():
        with torch.no_grad():
            _, parts = p.loss(0.0, 0.0)
        return {k: float(v) for k, v in parts.items()}

    before = loss_parts()
    assert before["continuity"] > 0
    lam = 1e-3
    with torch.no_grad():
        values = p.field.transform.forward(p.field.raw).clone()
        values[0] *= lam ** 0.5
        values[1] /= lam ** 0.5
        values[3] *= lam
        p.field.raw.copy_(p.field.transform.inverse(values.tolist()))
        for z in (p.z0, p.zw):
            x = p.to_x(z)
            x[:, 0] *= lam
            z.copy_(p.to_z(x))
    after = loss_parts()
    assert after["nll"] == pytest.approx(before["nll"], rel=1e-6)
    assert after["continuity"] == pytest.approx(before["continuity"], rel=1e-6)
    # and Levenberg-Marquardt's residuals carry the same gap terms
    f, _, _ = linearise(p)
    assert f == pytest.approx((after["nll"] + after["continuity"]) * p.noise.total, rel=1e-9)


def test_jacobian_size_estimate_and_the_fallback_above_the_memory_budget(monkeypatch):
    # the estimate is the size of the Jacobian that linearise builds, on windows and on
    # whole trajectories; above MAX_JACOBIAN_BYTES a phase runs L-BFGS and reaches the
    # same optimum (on 100 trajectories x 1,000 samples the windows' dense Jacobian
    # would need 74.5 GiB: numpy raised MemoryError before)
    import sysid.training.levenberg_marquardt as lm

    model, data = _pendulum()
    built = fit_from(model, data, None, epochs=0, lbfgs_iterations=0, polish_iterations=0,
                     progress=False, throw=False)
    p = built._problem
    for windows in (True, False):
        p.use_windows(windows)
        _, _, J = linearise(p)
        assert jacobian_bytes(p) == J.nbytes
    model, data = _forced_decay()
    calls = []
    real = lm.levenberg_marquardt
    monkeypatch.setattr(lm, "levenberg_marquardt",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    sysid.fit(model, data, epochs=0, lbfgs_iterations=50, progress=False)
    assert calls                                 # within the budget: Levenberg-Marquardt
    calls.clear()
    monkeypatch.setattr(lm, "MAX_JACOBIAN_BYTES", 1000)
    result = sysid.fit(model, data, epochs=0, lbfgs_iterations=50, progress=False)
    assert result.status.success and not calls   # every phase above it: L-BFGS
    reference = sysid.fit(model, data, epochs=0, lbfgs_iterations=200, shooting="single",
                          gauss_newton=False, progress=False)
    for name, value in reference.parameters.items():
        assert result.parameters[name] == pytest.approx(value, rel=1e-3)
    assert (result.history["phase"] == "lbfgs").sum() > 0
