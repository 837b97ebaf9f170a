"""Process noise (issue 30): the extended Kalman filter likelihood, the smoother and the
stochastic state-space fit (``sysid.fit(..., process_noise=...)``)."""

import numpy as np
import pytest
import scipy.linalg
import sympy as sp
import xarray as xr

import sysid
from sysid.errors import ModelError
from sysid.training.kalman import Grid

X, V = sp.symbols("x v")
W, C = sp.symbols("w c", positive=True)


def oscillator(w=1.0, c=0.1):
    return sysid.HybridODE(states=[X, V], physics={X: V, V: -W ** 2 * X - C * V},
                           parameters={W: w, C: c})


def disturbed_oscillator(seed, w=1.5, c=0.3, q=0.5, noise=0.05, dt=0.25, n=81,
                         fine=1e-3):
    """A damped oscillator driven by white force noise (``dv = (-w^2 x - c v) dt + q dW``),
    simulated by Euler-Maruyama at step ``fine``; x measured every ``dt`` with noise."""
    rng = np.random.default_rng(seed)
    per = int(round(dt / fine))
    state = np.array([1.0, 0.0])
    xs = [state.copy()]
    for _ in range(n - 1):
        for _ in range(per):
            x, v = state
            state = np.array([x + v * fine, v + (-w ** 2 * x - c * v) * fine
                              + q * np.sqrt(fine) * rng.standard_normal()])
        xs.append(state.copy())
    xs = np.array(xs)
    t = dt * np.arange(n)
    y = xs[:, 0] + noise * rng.standard_normal(n)
    return xr.Dataset({"x": ("time", y)}, coords={"time": t}), xs


# -- the filter against an exact Kalman filter ------------------------------------------
def exact_rts(A, Qc, H, R, x0, times, y, first):
    """The exact filter's Rauch-Tung-Striebel smoothed means (B, T, n), NaN before each
    row's start (as :func:`exact_kalman_nll`)."""
    n = A.shape[0]
    out = np.full(y.shape[:2] + (n,), np.nan)
    for b in range(y.shape[0]):
        m, P = x0[b].copy(), np.zeros((n, n))
        store = []
        for k in range(first[b], len(times)):
            F = np.eye(n)
            if k > first[b]:
                dt = times[k] - times[k - 1]
                F = scipy.linalg.expm(A * dt)
                M = scipy.linalg.expm(np.block([[-A, Qc], [np.zeros((n, n)), A.T]]) * dt)
                m, P = F @ m, F @ P @ F.T + M[n:, n:].T @ M[:n, n:]
            mp, Pp = m.copy(), P.copy()
            seen = ~np.isnan(y[b, k])
            if seen.any():
                Hs = H[seen]
                K = P @ Hs.T @ np.linalg.inv(Hs @ P @ Hs.T + R[np.ix_(seen, seen)])
                m, P = m + K @ (y[b, k, seen] - Hs @ m), (np.eye(n) - K @ Hs) @ P
            store.append((mp, Pp, m.copy(), P.copy(), F))
        ms, Ps = store[-1][2], store[-1][3]
        out[b, -1] = ms
        for j in range(len(store) - 2, -1, -1):
            _, _, mf, Pf, _ = store[j]
            mp, Pp, _, _, F = store[j + 1]
            G = Pf @ F.T @ np.linalg.inv(Pp)
            ms, Ps = mf + G @ (ms - mp), Pf + G @ (Ps - Pp) @ G.T
            out[b, first[b] + j] = ms
    return out


def exact_kalman_nll(A, Qc, H, R, x0, times, y, first):
    """Continuous-discrete Kalman filter of ``dx = A x dt + dW`` (``E dW dW^T = Qc dt``),
    exactly discretised (matrix exponential, Van Loan's integral for the noise), in numpy:
    the negative log-likelihood of ``y`` (B, T, C, NaN: not measured), each row starting
    at its index ``first`` with mean x0[b] and covariance 0."""
    n = A.shape[0]
    total = 0.0
    for b in range(y.shape[0]):
        m, P = x0[b].copy(), np.zeros((n, n))
        for k in range(first[b], len(times)):
            if k > first[b]:
                dt = times[k] - times[k - 1]
                F = scipy.linalg.expm(A * dt)
                M = scipy.linalg.expm(np.block([[-A, Qc], [np.zeros((n, n)), A.T]]) * dt)
                Qd = M[n:, n:].T @ M[:n, n:]
                m, P = F @ m, F @ P @ F.T + Qd
            seen = ~np.isnan(y[b, k])
            if not seen.any():
                continue
            Hs, Rs = H[seen], R[np.ix_(seen, seen)]
            r = y[b, k, seen] - Hs @ m
            S = Hs @ P @ Hs.T + Rs
            total += 0.5 * (r @ np.linalg.solve(S, r) + np.linalg.slogdet(S)[1]
                            + seen.sum() * np.log(2 * np.pi))
            K = P @ Hs.T @ np.linalg.inv(S)
            m, P = m + K @ r, (np.eye(n) - K @ Hs) @ P
    return total


def test_filter_likelihood_equals_exact_kalman_filter():
    """A linear oscillator, two trajectories on irregular times with gaps (one starting
    later), both channels partly missing: the EKF likelihood with 40 RK4 substeps per
    interval equals the exact filter's to 1e-10 relative (measured: 2.4e-11; 160
    substeps: 1e-13), and the imputation equals the exact Rauch-Tung-Striebel smoother's
    means to 1e-9 (measured 5e-10, the RK4 steps' error)."""
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.uniform(0.1, 0.4, 30))
    y = rng.normal(size=(2, 30, 2))
    y[0, rng.random(30) < 0.3, 0] = np.nan
    y[:, rng.random(30) < 0.5, 1] = np.nan
    y[1, :4] = np.nan                                     # trajectory 1 starts later
    y[1, 5, 0] = 0.3
    ds = xr.Dataset({"x": (("trajectory", "time"), y[..., 0], {"noise_std": 0.3}),
                     "v": (("trajectory", "time"), y[..., 1], {"noise_std": 0.5})},
                    coords={"time": t, "trajectory": [0, 1]})
    result = sysid.fit(oscillator(1.3, 0.2), ds, process_noise={"v": 0.4, "x": 0.1},
                       lbfgs_iterations=0, epochs=0, progress=False, substeps=40,
                       throw=False)
    w, c = result.parameters["w"], result.parameters["c"]
    assert result.process_noise == pytest.approx({"x": 0.1, "v": 0.4}, rel=1e-12)
    assert result.noise_std == pytest.approx({"x": 0.3, "v": 0.5}, rel=1e-12)
    x0 = np.stack([result.initial_states[s].values for s in ("x", "v")], -1)
    A = np.array([[0.0, 1.0], [-w ** 2, -c]])
    bundle = result._bundle
    exact = exact_kalman_nll(A, np.diag([0.1 ** 2, 0.4 ** 2]), np.eye(2),
                             np.diag([0.3 ** 2, 0.5 ** 2]), x0, bundle.times, bundle.y,
                             bundle.t_first)
    grid, _ = Grid.from_bundle(bundle)
    ours = float(result._space(grid).detach())
    assert np.isfinite(exact) and abs(ours - exact) <= 1e-10 * abs(exact)
    assert result.loglik == -ours
    smoothed = exact_rts(A, np.diag([0.1 ** 2, 0.4 ** 2]), np.eye(2),
                         np.diag([0.3 ** 2, 0.5 ** 2]), x0, bundle.times, bundle.y,
                         bundle.t_first)
    imputed = result.impute()
    for i, s in enumerate(("x", "v")):      # the smoother too (measured: 5e-10)
        np.testing.assert_allclose(imputed[s].values, smoothed[..., i], atol=1e-9,
                                   equal_nan=True)
    assert result.parameter_counts == {"physical": 2, "initial_states": 4, "noise": 0,
                                       "process_noise": 0, "network": 0}


def test_standard_errors_equal_the_exact_filters_curvature():
    """parameter_table()'s standard errors (the inverse Hessian of the Kalman likelihood in
    everything fitted, by autograd through the filter) equal those from the exact numpy
    filter's Hessian in (w, c, x0, v0), by central differences at the fitted values, to
    1e-3 relative (measured 4e-5); the noise levels are given, so those four are all that
    is fitted."""
    ds, _ = disturbed_oscillator(2, n=41)
    ds["x"].attrs["noise_std"] = 0.05
    result = sysid.fit(oscillator(1.4, 0.3), ds, process_noise={"v": 0.5}, progress=False)
    table = result.parameter_table()
    b = result._bundle

    def nll(theta):
        w, c, x0, v0 = theta
        A = np.array([[0.0, 1.0], [-w ** 2, -c]])
        return exact_kalman_nll(A, np.diag([0.0, 0.25]), np.eye(2)[[0]],
                                np.array([[0.05 ** 2]]), np.array([[x0, v0]]), b.times,
                                b.y, b.t_first)

    theta = np.array([result.parameters["w"], result.parameters["c"],
                      float(result.initial_states["x"]), float(result.initial_states["v"])])
    step = 1e-4 * np.maximum(np.abs(theta), 0.1)
    E = np.diag(step)
    H = np.array([[(nll(theta + E[i] + E[j]) - nll(theta + E[i] - E[j])
                    - nll(theta - E[i] + E[j]) + nll(theta - E[i] - E[j]))
                   / (4 * step[i] * step[j]) for j in range(4)] for i in range(4)])
    exact = np.sqrt(np.diag(np.linalg.inv(H)))[:2]
    np.testing.assert_allclose(table["std_error"].values, exact, rtol=1e-3)


def test_smoother_at_other_times_and_forecast_consistent():
    """The smoothed states at extra times (merged into the filter's grid) agree with those
    at the data's times where the times coincide; the forecast is the imputation past the
    data and its band widens with the horizon; before a trajectory starts: NaN."""
    ds, _ = disturbed_oscillator(1, n=41)
    result = sysid.fit(oscillator(1.4, 0.3), ds, process_noise={"v": 0.5},
                       lbfgs_iterations=0, progress=False, throw=False)
    at_data = result.impute(level=0.9)
    times = np.concatenate([ds["time"].values[::4], [10.5, 11.0, 14.0]])
    merged = result.impute(times, level=0.9)
    np.testing.assert_allclose(merged["v"].values[:-3], at_data["v"].values[::4],
                               atol=2e-3)
    future = result.forecast(times=[10.5, 11.0, 14.0], level=0.9)
    np.testing.assert_allclose(future["v"].values, merged["v"].values[-3:], rtol=1e-12)
    width = (future["x_upper"] - future["x_lower"]).values
    assert width[0] < width[1] < width[2]
    inside = (at_data["x_lower"] <= at_data["x"]) & (at_data["x"] <= at_data["x_upper"])
    assert bool(inside.all())


def test_process_noise_recovers_damping_better_than_deterministic_fit():
    """A damped oscillator with force noise (w = 1.5, c = 0.3, q = 0.5), x measured every
    0.25 for 20 time units with noise 0.05. The disturbance keeps the oscillation going,
    which the deterministic fit can only explain by too little damping: its c is off by
    more than 20 %; the Kalman likelihood's c is within 20 %, its w within 5 %, both
    closer than the deterministic fit's (measured: deterministic w 1.327 and c 0.144,
    11.5 % and 52 % off; Kalman w 1.439 and c 0.257, 4.1 % and 14.5 %). The learned force
    noise level is within 30 % of the truth (measured 0.475), and the smoothed velocity
    (never measured) has less than half the deterministic trajectory's RMS error
    (measured 0.17 against 0.39). The data's log-likelihood under the Kalman fit exceeds
    the deterministic fit's (its q = 0 case) by more than 10 (measured 78.2 against 15.8),
    and ``sysid.compare`` ranks it first."""
    ds, truth = disturbed_oscillator(0)
    model = oscillator()
    det = sysid.fit(model, ds, progress=False)
    kal = sysid.fit(model, ds, progress=False, process_noise={"v": "learn"})
    assert kal.stats["process_noise"]["deterministic_parameters"] == det.parameters
    err_det = abs(det.parameters["c"] / 0.3 - 1)
    err_kal = abs(kal.parameters["c"] / 0.3 - 1)
    assert err_det > 0.2 and err_kal < 0.2 and err_kal < err_det
    assert kal.parameters["w"] == pytest.approx(1.5, rel=0.05)
    assert abs(kal.parameters["w"] - 1.5) < abs(det.parameters["w"] - 1.5)
    assert kal.process_noise["v"] == pytest.approx(0.5, rel=0.3)
    assert kal.process_noise["x"] == 0.0
    rms = lambda r: float(np.sqrt(np.mean((r.impute()["v"].values - truth[:, 1]) ** 2)))
    assert rms(kal) < 0.5 * rms(det)
    # the smoothed 90 % bands (parameter uncertainty not included) hold most of the true
    # path (measured: x 81 %, v 79 % of the 81 times)
    band = kal.impute(level=0.9)
    for i, s in enumerate(("x", "v")):
        inside = (band[f"{s}_lower"].values <= truth[:, i]) & \
            (truth[:, i] <= band[f"{s}_upper"].values)
        assert inside.mean() > 0.7
    # the deterministic model is the Kalman model's q = 0: the data prefer the disturbance
    assert kal.loglik > det.loglik + 10
    assert sysid.compare([det, kal], ["deterministic", "kalman"]).index[0] == "kalman"


def test_several_irregular_gappy_trajectories_fit_identically_twice():
    """Two trajectories of a disturbed decay on their own irregular times (one starting
    later) with gaps, process and measurement noise learned: the fit runs through and the
    same data give the same parameters, noise levels and smoothed states, bit for bit."""
    rng = np.random.default_rng(7)
    t = np.cumsum(rng.uniform(0.1, 0.5, 40))
    x = np.empty((2, 40))
    x[:, 0] = [3.0, -2.0]
    for k in range(39):
        step = t[k + 1] - t[k]
        decay = np.exp(-0.6 * step)
        x[:, k + 1] = x[:, k] * decay + 0.3 * np.sqrt((1 - decay ** 2) / 1.2) * \
            rng.standard_normal(2)
    y = x + 0.1 * rng.standard_normal(x.shape)
    y[rng.random(y.shape) < 0.2] = np.nan
    y[1, :5] = np.nan
    ds = xr.Dataset({"x": (("trajectory", "time"), y)},
                    coords={"time": t, "trajectory": ["a", "b"]})
    k = sp.Symbol("k", positive=True)
    model = sysid.HybridODE(states=[X], physics={X: -k * X}, parameters={k: 1.0})
    first, again = (sysid.fit(model, ds, process_noise="learn", progress=False)
                    for _ in range(2))
    assert first.status.success
    assert first.parameters == again.parameters
    assert first.process_noise == again.process_noise
    assert first.noise_std == again.noise_std
    a, b = first.impute(level=0.9), again.impute(level=0.9)
    assert a.identical(b)
    assert np.isnan(a["x"].sel(trajectory="b").values[:5]).all()      # before it starts
    assert np.isfinite(a["x"].sel(trajectory="a").values).all()


@pytest.mark.parametrize("value, message", [
    ({"y": 0.1}, "not a state"), ({"v": -1.0}, "standard deviation"),
    ("often", "must be a number"), (0.0, "every state a level of 0")])
def test_bad_process_noise_is_refused(value, message):
    ds, _ = disturbed_oscillator(0, n=11)
    with pytest.raises(ValueError, match=message):
        sysid.fit(oscillator(), ds, process_noise=value, progress=False)


def test_residual_network_and_other_noise_are_refused():
    ds, _ = disturbed_oscillator(0, n=11)
    hybrid = sysid.HybridODE(states=[X, V], physics={X: V, V: -W ** 2 * X},
                             parameters={W: 1.0}, residual=sysid.MLP(width=4, depth=1))
    with pytest.raises(ModelError, match="physics-only"):
        sysid.fit(hybrid, ds, process_noise="learn", progress=False)
    with pytest.raises(ModelError, match="Gaussian"):
        sysid.fit(oscillator(), ds, process_noise="learn", noise="lognormal",
                  progress=False)
