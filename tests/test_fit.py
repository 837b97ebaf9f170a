"""End-to-end fits with asserted numbers (issue 2's acceptance checks).

Each test fits synthetic data with known truth from ``sysid.datasets.simulate`` and
asserts the quantities a scientist would check: recovered parameters, imputation error
of never-measured states against the noise-free truth, forecast error.
"""

import warnings

import numpy as np
import pytest
import sympy as sp
import torch
import xarray as xr

import sysid

x, y = sp.symbols("x y")
a, b, c, d = sp.symbols("a b c d", positive=True)
TRUE_LV = {"a": 1.3, "b": 0.9, "c": 0.8, "d": 1.8}


def lotka_volterra():
    return sysid.HybridODE(states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
                           parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})


@pytest.fixture(scope="module")
def lv_fit():
    # BENCHMARKS.md section 1's system and noise convention (5 % of the mean), over
    # t in [0, 10]: on the 31-point [0, 3] record even the least-squares oracle misses c by
    # 6.8 % (median) with a and d known, so 5 % on all four needs a longer record.
    data = sysid.datasets.simulate("lotka_volterra", noise=0.05, t_end=10.0, dt=0.1, seed=0)
    return data, sysid.fit(lotka_volterra(), data, seed=0, progress=False)


def test_lotka_volterra_pure_physics_recovers_all_four_parameters(lv_fit):
    _, result = lv_fit
    for name, truth in TRUE_LV.items():
        assert result.parameters[name] == pytest.approx(truth, rel=0.05), name
    assert result.status.success


def test_lotka_volterra_fit_error_below_noise(lv_fit):
    data, result = lv_fit
    _, truth = sysid.datasets.simulate("lotka_volterra", noise=0.0, t_end=10.0, dt=0.1,
                                       truth=True)
    imp = result.impute()
    for name in ("x", "y"):
        rmse = float(np.sqrt(np.mean((imp[name].values - truth[name].values) ** 2)))
        assert rmse < data[name].attrs["true_noise_std"], name


def test_same_seed_same_result():
    data = sysid.datasets.simulate("lotka_volterra", noise=0.05, seed=3)
    r1 = sysid.fit(lotka_volterra(), data, seed=0, progress=False, lbfgs_iterations=20)
    r2 = sysid.fit(lotka_volterra(), data, seed=0, progress=False, lbfgs_iterations=20)
    assert r1.parameters == r2.parameters
    np.testing.assert_array_equal(r1.impute()["x"].values, r2.impute()["x"].values)


def test_two_trajectories_with_different_initial_states():
    data = sysid.datasets.simulate("lotka_volterra", noise=0.02, n_trajectories=2,
                                   x0=[[0.44249296, 4.6280594], [2.0, 1.0]], seed=1)
    result = sysid.fit(lotka_volterra(), data, seed=0, progress=False)
    for name, truth in TRUE_LV.items():
        assert result.parameters[name] == pytest.approx(truth, rel=0.05), name
    x0 = result.initial_states
    np.testing.assert_allclose(x0["x"].values, [0.44249296, 2.0], rtol=0.1)
    np.testing.assert_allclose(x0["y"].values, [4.6280594, 1.0], rtol=0.1)
    imp = result.impute()
    assert imp["x"].dims == ("trajectory", "time")


def test_dataset_with_an_input_variable():
    # the pump voltage is a staircase: the simulator holds it, so the fit must hold it too
    data = sysid.datasets.simulate("two_tank", noise=0.01, t_end=100.0, seed=0)
    h1, h2, u = sp.symbols("h1 h2 u")
    k1, k2, k3, k4 = sp.symbols("k1 k2 k3 k4", positive=True)
    model = sysid.HybridODE(
        states=[h1, h2], inputs=[u],
        physics={h1: -k1 * sp.sqrt(h1) + k4 * u, h2: k2 * sp.sqrt(h1) - k3 * sp.sqrt(h2)},
        parameters={k1: 0.3, k2: 0.3, k3: 0.3}, fixed={k4: 1.0})
    result = sysid.fit(model, data, seed=0, progress=False, interpolation="zoh")
    truth = sysid.datasets.system("two_tank").parameters
    for name in ("k1", "k2", "k3"):
        assert result.parameters[name] == pytest.approx(truth[name], rel=0.05), name
    imp = result.impute()
    np.testing.assert_array_equal(imp["u"].values, data["u"].values)
    # a new experiment: new input record, initial state estimated from its first samples
    new, full = sysid.datasets.simulate("two_tank", noise=0.01, t_end=100.0, seed=7,
                                        x0=[4.0, 2.0], truth=True)
    sim = result.simulate(new)
    err = np.sqrt(np.mean((sim["h2"].values - full["h2"].values) ** 2))
    assert err < 0.05 * float(full["h2"].std())


@pytest.fixture(scope="module")
def pendulum_fit():
    data, truth = sysid.datasets.simulate(
        "pendulum", noise=0.05, observed=["theta"], irregular=True, missing=0.3,
        n_trajectories=3, dt=0.25, t_end=20.0, seed=0, truth=True)
    th, om = sp.symbols("theta omega")
    w0 = sp.Symbol("omega0", positive=True)
    model = sysid.HybridODE(states=[th, om], physics={th: om, om: -w0 ** 2 * sp.sin(th)},
                            parameters={w0: 1.5}, residual=sysid.MLP(32, 2, states=[om]))
    return data, truth, sysid.fit(model, data, seed=0, progress=False)


def test_pendulum_imputes_the_never_measured_velocity(pendulum_fit):
    data, truth, result = pendulum_fit
    imp = result.impute()
    ok = np.isfinite(truth["omega"].values)
    err = (imp["omega"].values - truth["omega"].values)[ok]
    rmse = np.sqrt(np.mean(err ** 2))
    assert rmse < 0.10 * np.std(truth["omega"].values[ok])
    assert "never measured" in imp["omega"].attrs["long_name"]


def test_pendulum_forecast_next_five_seconds(pendulum_fit):
    data, truth, result = pendulum_fit
    future = np.linspace(20.0, 25.0, 21)[1:]
    x0 = np.stack([truth[v].isel(time=0).values for v in ("theta", "omega")], axis=-1)
    _, later = sysid.datasets.simulate("pendulum", times=np.concatenate([[0.0], future]),
                                       n_trajectories=3, x0=x0, noise=0.0, truth=True)
    fc = result.forecast(future)
    err = fc["theta"].values - later["theta"].sel(time=future).values
    assert np.sqrt(np.mean(err ** 2)) < 0.10 * np.nanstd(truth["theta"].values)


def test_result_outputs_carry_dims_and_attrs(lv_fit):
    data, result = lv_fit
    imp = result.impute()
    assert set(imp.data_vars) >= {"x", "y"}
    assert imp["x"].attrs["units"] == data["x"].attrs["units"]
    assert imp.attrs["sysid_kind"] == "impute"
    eq = result.equations
    assert set(eq) == {"x", "y"}
    assert float(eq["x"].subs(y, 0).coeff(x)) == pytest.approx(result.parameters["a"], rel=1e-10)
    h = result.history
    assert "loss" in h and h.sizes["epoch"] == len(h["phase"])
    assert result.stats["function_evaluations"] > 0 and result.stats["wall_time_s"] > 0
    table = result.parameter_table()
    assert list(table.index) == ["a", "b", "c", "d"]
    assert np.all(np.isfinite(table["std_error"])) and (table["std_error"] > 0).all()


def test_save_load_round_trip_is_bit_identical(lv_fit, tmp_path):
    _, result = lv_fit
    path = tmp_path / "lv.sysid"
    result.save(path)
    again = sysid.load(path)
    assert again.parameters == result.parameters
    times = np.linspace(0, 15, 61)
    np.testing.assert_array_equal(again.forecast(times)["x"].values,
                                  result.forecast(times)["x"].values)
    np.testing.assert_array_equal(again.impute()["y"].values, result.impute()["y"].values)


def test_load_refuses_a_pickle_payload(tmp_path, capsys):
    import pickle

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.sysid"
    path.write_bytes(pickle.dumps({"format": "sysid.FitResult", "x": Payload()}))
    # a bare pickle is not the zip archive a result is: refused before anything is read
    with pytest.raises(sysid.errors.FileFormatError, match="not a sysid result file"):
        sysid.load(path)
    assert "code ran" not in capsys.readouterr().out


def test_load_refuses_a_tampered_equation(lv_fit, tmp_path):
    _, result = lv_fit
    path = tmp_path / "lv.sysid"
    result.save(path)
    payload = torch.load(path, weights_only=True)
    payload["spec"]["physics"]["x"] = "__import__('os').system('echo hacked')"
    torch.save(payload, path)
    with pytest.raises(sysid.errors.ExpressionError, match="__import__"):
        sysid.load(path)


def test_simulate_on_a_new_experiment(lv_fit):
    _, result = lv_fit
    new, truth = sysid.datasets.simulate("lotka_volterra", noise=0.02, x0=[1.0, 2.0], seed=5,
                                         truth=True)
    sim = result.simulate(new)
    err = np.sqrt(np.mean((sim["x"].values - truth["x"].values) ** 2))
    assert err < 0.1 * float(truth["x"].std())
    assert sim.attrs["sysid_kind"] == "simulate"


def test_a_model_that_blows_up_ends_with_a_status_not_a_crash():
    # dx/dt = k x^3 escapes to infinity in finite time for the initial guess k = 5
    data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=0)[["x"]]
    k = sp.Symbol("k", positive=True)
    model = sysid.HybridODE(states=[x], physics={x: k * x ** 3}, parameters={k: 5.0})
    result = sysid.fit(model, data, progress=False, throw=False, max_steps=200)
    assert not result.status.success
    assert result.status.code in ("solver_failed", "diverged")
    assert "max_steps" in result.status.advice or "lr" in result.status.advice
    assert np.isfinite(result.parameters["k"])
    with pytest.raises(sysid.errors.FitError, match="best result so far") as err:
        sysid.fit(model, data, progress=False, max_steps=200, throw=True)
    assert err.value.result.parameters == result.parameters
    # the default returns the same result, with a FitWarning that says what happened
    with pytest.warns(sysid.errors.FitWarning, match=result.status.code):
        default = sysid.fit(model, data, progress=False, max_steps=200)
    assert default.parameters == result.parameters
    with pytest.raises(sysid.errors.FitError, match=result.status.code):
        default.raise_for_status()


def test_tanks_with_a_renamed_sensor_and_an_unmeasured_positive_state():
    # The cascaded-tanks setting: the upper tank h1 (under a square root) is never measured,
    # the lower tank is read by a channel named "level" (observations={"level": h2}).
    # The initial-state guess must read h2 from "level" and start h1 on the positive side;
    # before both fixes the fit started at h = 0, where sqrt has an infinite slope, and
    # the solver failed.
    data, truth = sysid.datasets.simulate("two_tank", observed=["h2"], noise=0.01, seed=0,
                                          truth=True)
    data = data.rename({"h2": "level"})
    h1, h2 = sp.symbols("h1 h2", positive=True)
    u = sp.Symbol("u")
    k1, k2, k3, k4 = sp.symbols("k1 k2 k3 k4", positive=True)
    model = sysid.HybridODE(
        states=[h1, h2], inputs=[u],
        physics={h1: -k1 * sp.sqrt(h1) + k4 * u, h2: k2 * sp.sqrt(h1) - k3 * sp.sqrt(h2)},
        parameters={k1: 0.3, k2: 0.3, k3: 0.3, k4: 0.5}, observations={"level": h2})
    result = sysid.fit(model, data, seed=0, interpolation="zoh", progress=False)
    assert result.status.success
    imp = result.impute()
    # The lower tank is measured: its fitted level sits at the 1 % noise level.
    sd = float(truth["h2"].std())
    rmse = float(np.sqrt(np.mean((imp["h2"].values - truth["h2"].values) ** 2)))
    assert rmse < 0.03 * sd, rmse
    # (The parameters themselves are weakly identified from 200 s of the lower tank alone:
    # h1 has a scale symmetry, h1 -> s h1, k1 -> k1 sqrt(s), k2 -> k2 / sqrt(s), k4 -> s k4,
    # and the fit lands on a different k3 with the same output; not asserted here.)


def test_an_unmeasured_state_under_sqrt_abs_is_guessed_off_its_singular_point():
    # issue 27: the tanks model a user writes from the benchmark's description, plain
    # symbols and Torricelli's outflow as sqrt(Abs(x)). The unmeasured upper tank's guess
    # started at 0, where sqrt(Abs(x)) has an infinite slope: the guess's search could not
    # leave 0, the gradients were NaN, and the default fit diverged at its first step with
    # the parameters untouched. The search now also starts at +-(the typical level).
    data, truth = sysid.datasets.simulate("two_tank", observed=["h2"], noise=0.01, seed=0,
                                          truth=True)
    h1, h2, u = sp.symbols("h1 h2 u")
    k1, k2, k3, k4 = sp.symbols("k1 k2 k3 k4", positive=True)
    model = sysid.HybridODE(
        states=[h1, h2], inputs=[u],
        physics={h1: -k1 * sp.sqrt(sp.Abs(h1)) + k4 * u,
                 h2: k2 * sp.sqrt(sp.Abs(h1)) - k3 * sp.sqrt(sp.Abs(h2))},
        parameters={k1: 0.3, k2: 0.3, k3: 0.3, k4: 0.5})
    with warnings.catch_warnings():
        warnings.simplefilter("error", sysid.errors.FitWarning)
        result = sysid.fit(model, data, seed=0, progress=False)
    assert result.status.success
    assert float(result.initial_states["h1"]) > 0.1 * float(truth["h1"].max())
    imp = result.impute()
    sd = float(truth["h2"].std())
    rmse = float(np.sqrt(np.mean((imp["h2"].values - truth["h2"].values) ** 2)))
    assert rmse < 0.03 * sd, rmse


def test_physics_sees_a_positive_state_floored_above_zero():
    # A solver step (or a residual) that overshoots a positive state below 0 must not turn
    # sqrt(h) into NaN; a state without the assumption is passed through unchanged.
    from sysid.data.bundle import prepare
    from sysid.problem.options import FitOptions
    from sysid.problem.problem import build_problem

    h = sp.Symbol("h", positive=True)
    z = sp.Symbol("z")
    k = sp.Symbol("k", positive=True)
    model = sysid.HybridODE(states=[h, z], physics={h: -k * sp.sqrt(h), z: -k * z},
                            parameters={k: 0.5})
    times = np.linspace(0.0, 4.0, 9)
    data = xr.Dataset({"h": ("time", 4.0 * np.exp(-times)), "z": ("time", np.exp(-times))},
                      coords={"time": times})
    field = build_problem(model, prepare(model, data), FitOptions()).field
    x = torch.tensor([[-1e-3, -2.0], [4.0, 3.0]], dtype=torch.float64)
    with torch.no_grad():
        f = field.physics(torch.zeros(2, dtype=torch.float64), x, torch.zeros(2, 0))
    assert torch.isfinite(f).all()
    assert abs(float(f[0, 0])) < 1e-30               # sqrt of the floor, about 1e-38
    assert float(f[0, 1]) == pytest.approx(1.0)       # -k z with z = -2 untouched
    assert float(f[1, 0]) == pytest.approx(-1.0)      # -0.5 sqrt(4)


def test_a_coefficient_guessed_as_zero_is_scaled_to_the_size_of_its_term():
    # dx/dt = -a x - c x^3 with c = 2000 on levels of 0.03-0.05: the natural size of c is
    # 1e3, not 1. With a scale of 1 (a guess of 0 has no size) the fit "converged" at
    # c = 930 (a = 0.93): Levenberg-Marquardt's steps are bounded in raw units.
    from scipy.integrate import solve_ivp

    times = np.linspace(0.0, 5.0, 51)
    clean = [solve_ivp(lambda t, x: -1.0 * x - 2000.0 * x ** 3, (0.0, 5.0), [x0],
                       t_eval=times, rtol=1e-10, atol=1e-12).y[0] for x0 in (0.05, 0.03)]
    noisy = np.array(clean) + 1e-4 * np.random.default_rng(0).standard_normal((2, 51))
    data = xr.Dataset({"x": (("trajectory", "time"), noisy)},
                      coords={"time": times, "trajectory": [0, 1]})
    x, c = sp.Symbol("x"), sp.Symbol("c")
    a = sp.Symbol("a", positive=True)
    model = sysid.HybridODE(states=[x], physics={x: -a * x - c * x ** 3},
                            parameters={a: 0.5, c: 0.0})
    result = sysid.fit(model, data, progress=False)
    # the scale: RMS of the physics (-0.5 x at the guesses) over the RMS of x^3, on the data
    scale = result._problem.field.transform.scales[1]
    y = noisy.ravel()
    assert scale == pytest.approx(np.sqrt(np.mean((0.5 * y) ** 2) / np.mean(y ** 6)), rel=1e-6)
    assert result.parameters["c"] == pytest.approx(2000.0, rel=0.01)
    assert result.parameters["a"] == pytest.approx(1.0, rel=0.01)


def test_never_measured_state_is_scaled_from_a_preview_with_the_fits_solver():
    # A 69 Hz resonance sampled at 610 Hz for 4,000 samples (the Silverbox's scale): the
    # preview of the physics took dopri5 past its 2,000-step limit, which left the
    # never-measured velocity with a unit scale (its spread here is about 31). The preview
    # now falls back to the fit's own solver (RK4 here).
    from sysid.data.bundle import prepare
    from sysid.problem.options import FitOptions
    from sysid.problem.problem import build_problem

    omega = 2 * np.pi * 69.0
    times = np.arange(4000) / 610.0
    data = xr.Dataset({"y": ("time", 0.1 * np.cos(omega * times))}, coords={"time": times})
    y, v = sp.symbols("y v")
    k = sp.Symbol("k", positive=True)
    model = sysid.HybridODE(states=[y, v], physics={y: v, v: -k * y},
                            parameters={k: omega ** 2})
    options = FitOptions(solver="rk4", substeps=2)
    problem = build_problem(model, prepare(model, data, time_unit=None, n_fitted=3), options)
    assert problem.scale[1].item() == pytest.approx(0.1 * omega / np.sqrt(2), rel=0.2)


def test_simulate_warns_when_the_network_reads_an_input_beyond_its_training_range():
    # the network learns its share of the input's effect on the fitted range only; a new
    # record that drives the input beyond it is flagged with both ranges
    t = np.linspace(0.0, 10.0, 41)
    u = np.sin(t)
    data = xr.Dataset({"x": ("time", np.cumsum(u) * 0.25), "u": ("time", u)},
                      coords={"time": t})
    k = sp.Symbol("k", positive=True)
    xs, us = sp.symbols("x u")
    budget = dict(progress=False, epochs=3, lbfgs_iterations=3, polish_iterations=0)
    model = sysid.HybridODE(states=[xs], inputs=[us], physics={xs: k * us - 0.01 * xs},
                            parameters={k: 1.0}, residual=sysid.MLP(width=4, depth=1))
    result = sysid.fit(model, data, **budget)
    inside = data.assign(u=("time", 0.5 * u))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result.simulate(inside)                       # within [-1, 1]: no warning
    beyond = data.assign(u=("time", 3.0 * u))
    with pytest.warns(RuntimeWarning, match=r"input 'u' leaves the range the model was fitted "
                                            r"on: the new record spans \[-2.998, 2.992\], "
                                            r"the training data \[-0.9993, 0.9975\]"):
        result.simulate(beyond)
    # without a network reading it, the physics alone extrapolates: no warning
    physics = sysid.fit(sysid.HybridODE(states=[xs], inputs=[us], physics={xs: k * us},
                                        parameters={k: 1.0}), data, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        physics.simulate(beyond)


def test_noise_auto_keeps_the_error_model_under_which_the_data_are_more_likely():
    # Lotka-Volterra with 10 % relative errors (multiplicative) and with additive errors of
    # the same average size: noise="auto" fits both error models and keeps log-normal for
    # the first and Gaussian for the second; data with a value <= 0 stay Gaussian
    truth = sysid.datasets.simulate("lotka_volterra", noise=0.0, t_end=6.0, dt=0.2)
    rng = np.random.default_rng(3)
    e = rng.standard_normal((2, truth.sizes["time"]))
    x, y = sp.symbols("x y")
    a, b, c, d = sp.symbols("a b c d", positive=True)
    model = sysid.HybridODE(states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
                            parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0})
    relative = truth.copy()
    additive = truth.copy()
    for j, name in enumerate(("x", "y")):
        v = truth[name].values
        relative[name] = ("time", v * np.exp(0.1 * e[j]))
        additive[name] = ("time", v + 0.1 * float(np.mean(v)) * e[j])
    chosen = {}
    for label, data in (("relative", relative), ("additive", additive)):
        result = sysid.fit(model, data, progress=False, noise="auto")
        chosen[label] = result.options.noise
        assert result.stats["noise"].startswith(f"noise='auto': {chosen[label]}")
    assert chosen == {"relative": "lognormal", "additive": "gaussian"}
    shifted = additive.copy()
    shifted["x"] = shifted["x"] - float(shifted["x"].min()) - 0.1
    result = sysid.fit(model.with_parameters({}), shifted, progress=False, noise="auto",
                       throw=False)
    assert result.options.noise == "gaussian" and "not positive" in result.stats["noise"]
    with pytest.raises(ValueError, match="noise='auto'.*checkpoint"):
        sysid.fit(model, relative, progress=False, noise="auto", checkpoint="x.ckpt")
