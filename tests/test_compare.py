"""Likelihood, AIC and BIC of a fit, sysid.compare, and count-data noise models
(issue 30): each number is checked against an independent NumPy/SciPy computation or
against the truth of simulated data, with the tolerance stated."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import sympy as sp
import xarray as xr
from scipy import stats

import sysid
from sysid.errors import DataError

X = sp.Symbol("x")
K_RATE, B_RATE = sp.symbols("k b", positive=True)
N = sp.Symbol("N")
R, CAP = sp.symbols("r K", positive=True)


def decay_data(seed=0, noise=0.03, n=30, k=0.7, x0=2.0, std=None):
    t = np.linspace(0.0, 4.0, n)
    y = x0 * np.exp(-k * t) + np.random.default_rng(seed).normal(0.0, noise, n)
    data = xr.Dataset({"x": ("time", y)}, coords={"time": t})
    if std is not None:
        data["x"].attrs["noise_std"] = std
    return data


def first_order():
    return sysid.HybridODE(states=[X], physics={X: -K_RATE * X}, parameters={K_RATE: 1.0})


def second_order():
    return sysid.HybridODE(states=[X], physics={X: -B_RATE * X ** 2}, parameters={B_RATE: 0.5})


def logistic(r=0.5, cap=40.0):
    return sysid.HybridODE(states=[N], physics={N: R * N * (1 - N / CAP)},
                           parameters={R: r, CAP: cap})


def logistic_counts(seed, *, r=0.8, cap=60.0, n0=3.0, n_traj=2, size=None):
    """Logistic growth counted on 30 samples per trajectory: Poisson counts, or
    negative-binomial ones of the given size (variance mu + mu^2 / size)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 10.0, 30)
    mu = np.broadcast_to(cap / (1 + (cap / n0 - 1) * np.exp(-r * t)), (n_traj, t.size))
    y = rng.poisson(mu) if size is None else rng.negative_binomial(size, size / (size + mu))
    return xr.Dataset({"N": (("trajectory", "time"), y.astype(float))},
                      coords={"time": t, "trajectory": np.arange(n_traj)})


def _fitted_decay(result):
    """The fitted first-order decay at the data's times, in closed form (NumPy only)."""
    t = result.data["time"].values
    x0 = float(result.initial_states["x"].values.ravel()[0])
    return x0 * np.exp(-result.parameters["k"] * t)


# -- the log-likelihood -----------------------------------------------------------------
def test_loglik_equals_the_gaussian_log_likelihood_computed_with_numpy():
    data = decay_data()
    result = sysid.fit(first_order(), data, progress=False)
    r = data["x"].values - _fitted_decay(result)
    n = r.size
    var = np.mean(r ** 2)                                 # the level's ML estimate
    expected = -0.5 * n * (np.log(2 * np.pi * var) + 1.0)
    assert float(np.sum(stats.norm.logpdf(r, scale=np.sqrt(var)))) == pytest.approx(expected)
    # the closed form differs from the solver's trajectory by its tolerance only
    # (measured: 8e-9 log-likelihood units)
    assert result.loglik == pytest.approx(expected, abs=1e-5)
    assert result.parameter_counts == {"physical": 1, "initial_states": 1, "noise": 1,
                                       "network": 0}
    assert result.n_parameters == 3 and result.n_observations == n
    assert result.aic == pytest.approx(2 * 3 - 2 * result.loglik, rel=1e-14)
    assert result.bic == pytest.approx(3 * math.log(n) - 2 * result.loglik, rel=1e-14)
    # without a network every fitted quantity is fully determined by the data
    assert result.effective_parameters == pytest.approx(3.0, abs=1e-6)


def test_a_given_noise_level_is_not_counted_and_enters_the_likelihood_as_given():
    data = decay_data(std=0.03)
    result = sysid.fit(first_order(), data, progress=False)
    r = data["x"].values - _fitted_decay(result)
    expected = float(np.sum(stats.norm.logpdf(r, scale=0.03)))
    assert result.loglik == pytest.approx(expected, abs=1e-5)
    assert result.parameter_counts["noise"] == 0 and result.n_parameters == 2


def test_lognormal_loglik_is_a_density_of_the_data_themselves():
    data = decay_data(noise=0.01)
    result = sysid.fit(first_order(), data, progress=False, noise="lognormal")
    y = data["x"].values
    e = np.log(y) - np.log(_fitted_decay(result))
    sd = np.sqrt(np.mean(e ** 2))
    expected = float(np.sum(stats.lognorm.logpdf(y, s=sd, scale=_fitted_decay(result))))
    assert result.loglik == pytest.approx(expected, abs=1e-5)


def test_student_t_loglik_is_the_t_density_at_the_fitted_scale():
    data = decay_data(seed=2)
    result = sysid.fit(first_order(), data, progress=False, noise="student_t")
    r = data["x"].values - _fitted_decay(result)
    scale = result.noise_std["x"] / np.sqrt(2.0)        # sd = scale sqrt(4 / (4 - 2))
    expected = float(np.sum(stats.t.logpdf(r, df=4, scale=scale)))
    assert result.loglik == pytest.approx(expected, abs=1e-5)
    assert result.parameter_counts["noise"] == 1


def test_a_network_counts_every_weight_and_its_effective_count_is_smaller():
    data = decay_data()
    model = sysid.HybridODE(states=[X], physics={X: -K_RATE * X}, parameters={K_RATE: 1.0},
                            residual=sysid.MLP(width=4, depth=1))
    result = sysid.fit(model, data, progress=False, epochs=20, lbfgs_iterations=10,
                       polish_iterations=5)
    # one hidden layer of 4 reading x: (1 * 4 + 4) + (4 * 1 + 1) weights and biases
    assert result.parameter_counts == {"physical": 1, "initial_states": 1, "noise": 1,
                                       "network": 13}
    assert result.aic == pytest.approx(2 * 16 - 2 * result.loglik, rel=1e-14)
    eff = result.effective_parameters
    assert 2.0 < eff < 16.0
    table = sysid.compare([result], effective=True)
    assert table["k"].iloc[0] == pytest.approx(eff)


# -- compare ----------------------------------------------------------------------------
def test_compare_prefers_the_true_model_and_its_numbers_follow_the_formulas():
    data = decay_data(seed=1, noise=0.02)
    fits = {"first order": sysid.fit(first_order(), data, progress=False),
            "second order": sysid.fit(second_order(), data, progress=False)}
    table = sysid.compare(fits)
    assert list(table.index) == ["first order", "second order"]
    assert list(table.columns) == ["noise", "loglik", "k", "n", "aic", "bic", "delta_aic",
                                   "delta_bic", "weight"]
    true, wrong = table.loc["first order"], table.loc["second order"]
    assert true["loglik"] == fits["first order"].loglik
    assert true["aic"] == pytest.approx(fits["first order"].aic)
    assert true["bic"] == pytest.approx(fits["first order"].bic)
    assert wrong["delta_aic"] == pytest.approx(wrong["aic"] - true["aic"])
    assert wrong["delta_aic"] > 10                     # measured: 127 (noise 1 % of x0)
    w = np.exp(-0.5 * np.array([0.0, wrong["delta_aic"]]))
    assert table["weight"].to_numpy() == pytest.approx(w / w.sum())
    assert table["weight"].sum() == pytest.approx(1.0)
    # a list with names gives the same table
    again = sysid.compare(list(fits.values()), names=list(fits))
    assert again["aic"].to_dict() == table["aic"].to_dict()


def test_compare_refuses_fits_of_different_data():
    a = sysid.fit(first_order(), decay_data(seed=0), progress=False)
    b = sysid.fit(first_order(), decay_data(seed=1), progress=False)
    with pytest.raises(DataError, match="different measured values"):
        sysid.compare([a, b])
    c = sysid.fit(first_order(), decay_data(seed=0, n=25), progress=False)
    with pytest.raises(DataError, match="different times"):
        sysid.compare([a, c], names=["30 samples", "25 samples"])
    held = sysid.fit(first_order(), decay_data(seed=0), progress=False, validation=0.2)
    with pytest.raises(DataError, match="training observations"):
        sysid.compare([a, held])


def test_compare_says_what_is_wrong_with_its_arguments():
    a = sysid.fit(first_order(), decay_data(), progress=False)
    with pytest.raises(ValueError, match="at least one"):
        sysid.compare([])
    with pytest.raises(ValueError, match="2 names for 1 results"):
        sysid.compare([a], names=["a", "b"])
    with pytest.raises(ValueError, match="must differ"):
        sysid.compare([a, a], names=["a", "a"])
    with pytest.raises(TypeError, match="results of sysid.fit.*'model 1' is a dict"):
        sysid.compare([a, {}])
    # a process-noise fit's likelihood is its Kalman filter's: not computed from the
    # deterministic simulation
    a.process_noise = {"x": 0.1}
    with pytest.raises(NotImplementedError, match="process-noise"):
        a.aic


# -- count noise ------------------------------------------------------------------------
def test_poisson_recovers_the_rates_and_beats_gaussian_errors_on_counts():
    errors = {"poisson": [], "gaussian": []}
    for seed in range(6):
        data = logistic_counts(seed)
        for noise in errors:
            result = sysid.fit(logistic(), data, progress=False, noise=noise, seed=0)
            assert result.status.success
            p = result.parameters
            errors[noise].append([p["r"] / 0.8 - 1.0, p["K"] / 60.0 - 1.0])
    poisson, gaussian = np.array(errors["poisson"]), np.array(errors["gaussian"])
    # measured: largest errors 7.5 % (r) and 2.8 % (K) over the 6 seeds
    assert np.abs(poisson[:, 0]).max() < 0.15 and np.abs(poisson[:, 1]).max() < 0.06
    # root-mean-square relative error over both parameters and the seeds (measured:
    # Poisson 0.037, Gaussian 0.053): the likelihood that knows the counts' spread wins
    assert np.sqrt(np.mean(poisson ** 2)) < np.sqrt(np.mean(gaussian ** 2))


def test_poisson_loglik_and_prediction_bands():
    data = logistic_counts(0)
    result = sysid.fit(logistic(), data, progress=False, noise="poisson")
    assert result.parameter_counts["noise"] == 0
    assert math.isnan(result.noise_std["N"])
    states = result.impute()
    mu = states["N"].values
    y = data["N"].values
    assert result.loglik == pytest.approx(float(np.sum(stats.poisson.logpmf(y, mu))), abs=1e-6)
    assert result.count_size == {}
    bands = result.impute(level=0.9, interval="prediction")
    inside = (y >= bands["N_lower"].values) & (y <= bands["N_upper"].values)
    assert 0.8 <= inside.mean() <= 1.0               # 90 % prediction bands (60 counts)
    assert (bands["N_lower"].values >= 0).all()
    half = 0.5 * (bands["N_upper"] - bands["N_lower"]).values
    assert (half >= 1.64 * np.sqrt(mu) - 1e-9).all()  # at least the count's own spread


def test_poisson_standard_errors_are_the_inverse_fisher_information():
    data = logistic_counts(0)
    result = sysid.fit(logistic(), data, progress=False, noise="poisson")
    t = data["time"].values

    def means(theta):          # closed-form logistic growth of both trajectories
        r, cap, *starts = theta
        return np.concatenate([cap / (1 + (cap / n0 - 1) * np.exp(-r * t)) for n0 in starts])

    theta = np.array([result.parameters["r"], result.parameters["K"],
                      *result.initial_states["N"].values.ravel()])
    steps = 1e-6 * np.maximum(1.0, theta)
    jac = np.stack([(means(theta + h) - means(theta - h)) / (2 * h[i])
                    for i, h in enumerate(np.diag(steps))], axis=1)
    fisher = jac.T @ (jac / means(theta)[:, None])      # Poisson: 1 / mu per count
    expected = np.sqrt(np.diag(np.linalg.inv(fisher)))[:2]
    # sysid's Laplace curvature also widens by sqrt(n / (n - p)) = sqrt(60 / 56)
    got = result.parameter_table()["std_error"].to_numpy()
    assert got == pytest.approx(expected * np.sqrt(60 / 56), rel=0.01)


def test_negative_binomial_recovers_its_dispersion_roughly(tmp_path):
    sizes = []
    for seed in range(3):
        data = logistic_counts(seed, cap=300.0, n0=10.0, n_traj=3, size=10.0)
        result = sysid.fit(logistic(cap=200.0), data, progress=False,
                           noise="negative_binomial")
        assert result.status.success
        p = result.parameters
        assert abs(p["r"] / 0.8 - 1) < 0.1 and abs(p["K"] / 300 - 1) < 0.1
        size = result.count_size["N"]
        sizes.append(size)
        mu = result.impute()["N"].values
        y = data["N"].values
        expected = stats.nbinom.logpmf(y, size, size / (size + mu)).sum()
        assert result.loglik == pytest.approx(float(expected), abs=1e-6)
        assert result.parameter_counts["noise"] == 1
    # measured 10.1, 14.3 and 10.1 (truth 10): within a factor of 2
    assert all(5.0 < s < 20.0 for s in sizes), sizes
    path = tmp_path / "nb.sysid"
    result.save(path)
    assert sysid.load(path).loglik == pytest.approx(result.loglik, rel=1e-12)


def test_count_noise_refuses_what_are_not_counts():
    good = logistic_counts(0)
    negative = good.copy(deep=True)
    negative["N"][0, 3] = -2.0
    with pytest.raises(DataError, match="cannot be negative.*-2.0"):
        sysid.fit(logistic(), negative, progress=False, noise="poisson")
    thousands = good / 1000.0
    with pytest.raises(DataError, match="actual counts.*multiplied by 1000"):
        sysid.fit(logistic(), thousands, progress=False, noise="negative_binomial")
    given = good.copy()
    given["N"].attrs["noise_std"] = 2.0
    with pytest.raises(DataError, match="noise_std.*does not apply"):
        sysid.fit(logistic(), given, progress=False, noise="poisson")
    with pytest.raises(ValueError, match="noise must be one of .*'negative_binomial'"):
        sysid.fit(logistic(), good, progress=False, noise="binomial")


def test_noise_auto_also_tries_counts_on_integer_data():
    data = logistic_counts(0, cap=300.0, n0=10.0, n_traj=3, size=10.0)
    result = sysid.fit(logistic(cap=200.0), data, progress=False, noise="auto")
    note = result.stats["noise"]
    assert note.startswith("noise='auto': negative_binomial"), note
    compared = note.split("measurements: ")[1].rstrip(")").split(", ")
    scores = {part.split()[0]: float(part.split()[1]) for part in compared}
    assert set(scores) == {"gaussian", "lognormal", "negative_binomial"}
    assert scores["negative_binomial"] == pytest.approx(result.loglik, abs=0.05)
    assert scores["negative_binomial"] == max(scores.values())
    # the same counts in thousands are not counts: no count model is tried
    result = sysid.fit(logistic(cap=0.2), data / 1000.0, progress=False, noise="auto")
    assert "negative_binomial" not in result.stats["noise"]


def test_a_field_counts_its_grid_and_each_sensor_s_noise_level():
    data = sysid.datasets.simulate("fisher_kpp", n_points=16, sensors=4, seed=0)
    x = sp.Symbol("x")
    u = sp.Function("u")(x)
    D, r = sp.symbols("D r", positive=True)
    model = sysid.HybridPDE(fields=[u], space={"x": data["x"].values},
                            physics={u: D * u.diff(x, 2) + r * u * (1 - u)},
                            boundary={"x": "periodic"}, parameters={D: 0.05, r: 0.5})
    result = sysid.fit(model, data, progress=False)
    assert isinstance(result, sysid.FieldResult)
    # 2 parameters, the initial field at 16 grid points, a level per sensor (4)
    assert result.parameter_counts == {"physical": 2, "initial_states": 16, "noise": 4,
                                       "network": 0}
    res = (data["u"] - result.impute()["u"]).values        # NaN off the sensors
    expected = 0.0
    for column in res.T:
        e = column[np.isfinite(column)]
        if e.size:
            expected += -0.5 * e.size * (np.log(2 * np.pi * np.mean(e ** 2)) + 1.0)
    assert result.n_observations == int(np.isfinite(res).sum())
    # impute() integrates the field on its own grid of output times: the two solutions
    # differ by the solver's tolerance (measured: 5e-4 log-likelihood units of 299)
    assert result.loglik == pytest.approx(expected, abs=5e-3)


@pytest.mark.parametrize("noise", ["poisson", "negative_binomial"])
def test_a_count_noise_model_moved_to_a_device_computes_there(noise):
    # the "meta" device stands in for a GPU: every tensor of the noise model must move
    from sysid.data.bundle import prepare
    from sysid.problem import FitOptions
    from sysid.problem.placement import to_device
    from sysid.problem.problem import build_problem

    data = logistic_counts(0)
    problem = build_problem(logistic(), prepare(logistic(), data), FitOptions(noise=noise))
    to_device(problem, "meta")
    seg = problem.single
    pred = torch.zeros(seg.y.shape, dtype=torch.float64, device="meta") + 1.0
    noise_model = problem.noise
    assert {t.device.type for t in [*noise_model.parameters(), *noise_model.buffers()]} \
        == {"meta"}
    outs = [noise_model.nll(pred, seg.y, seg.mask), noise_model.residuals(pred, seg.y, seg.mask)]
    assert all(o.device.type == "meta" for o in outs)
