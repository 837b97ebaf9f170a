"""Training machinery (issue 3): robust noise, checkpoints and resume, interrupts.

Numbers asserted here are measured against the noise-free truth of
``sysid.datasets.simulate``; budgets are small so the file runs in well under a minute.
"""

import numpy as np
import pytest
import sympy as sp
import torch

import sysid
import sysid.problem.problem as problem_module
from sysid.errors import FileFormatError, FitError

x, y = sp.symbols("x y")
a, b, c, d = sp.symbols("a b c d", positive=True)
TRUE_LV = {"a": 1.3, "b": 0.9, "c": 0.8, "d": 1.8}


def lotka_volterra(residual=None):
    return sysid.HybridODE(states=[x, y], physics={x: a * x - b * x * y, y: c * x * y - d * y},
                           parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0}, residual=residual)


def with_outliers(seed=0):
    data = sysid.datasets.simulate("lotka_volterra", noise=0.02, t_end=10.0, dt=0.1, seed=seed)
    rng = np.random.default_rng(1)
    values = data["x"].values.copy()
    hit = rng.choice(values.size, 8, replace=False)      # 8 of 101 samples off by +3
    values[hit] += 3.0
    data["x"].values[:] = values
    return data


def test_student_t_noise_shrugs_off_outliers():
    data = with_outliers()
    gauss = sysid.fit(lotka_volterra(), data, progress=False)
    robust = sysid.fit(lotka_volterra(), data, progress=False, noise="student_t")
    err = {k: abs(robust.parameters[k] / v - 1) for k, v in TRUE_LV.items()}
    # measured: Gaussian misses c by 6.7 %, Student-t by 0.23 % (all four within 0.3 %)
    assert max(err.values()) < 0.01, err
    assert abs(gauss.parameters["c"] / TRUE_LV["c"] - 1) > 3 * err["c"]
    # the fitted level of the clean channel is the simulated one (0.02 of its spread)
    assert robust.noise_std["y"] == pytest.approx(data["y"].attrs["true_noise_std"], rel=0.3)


def test_student_t_with_known_levels_is_learnable_only_where_unknown():
    data = with_outliers()
    data["y"].attrs["noise_std"] = 0.05
    robust = sysid.fit(lotka_volterra(), data, progress=False, noise="student_t",
                       lbfgs_iterations=30)
    assert robust.noise_std["y"] == pytest.approx(0.05, rel=1e-12)


def _interrupt_after(n_calls):
    original = problem_module.Problem.loss
    calls = {"n": 0}

    def loss(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n_calls:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)
    return original, loss, calls


SMALL = dict(progress=False, epochs=20, lbfgs_iterations=40, polish_iterations=5)


@pytest.fixture(scope="module")
def small_case():
    data = sysid.datasets.simulate("lotka_volterra", noise=0.05, t_end=6.0, dt=0.2, seed=0)
    model = lotka_volterra()
    mp = pytest.MonkeyPatch()
    _, counting, calls = _interrupt_after(-1)
    mp.setattr(problem_module.Problem, "loss", counting)
    reference = sysid.fit(model, data, **SMALL)
    mp.undo()
    return model, data, reference, calls["n"]


@pytest.mark.parametrize("when", [0.1, 0.5, 0.95])   # in Adam, L-BFGS, tighten/polish
def test_resume_from_checkpoint_equals_uninterrupted_fit(small_case, tmp_path, monkeypatch,
                                                         when):
    model, data, reference, n_calls = small_case
    path = tmp_path / "fit.ckpt"
    original, interrupting, _ = _interrupt_after(int(when * n_calls))
    monkeypatch.setattr(problem_module.Problem, "loss", interrupting)
    stopped = sysid.fit(model, data, checkpoint=path, checkpoint_every=0, **SMALL)
    monkeypatch.setattr(problem_module.Problem, "loss", original)
    assert stopped.status.code == "interrupted"
    assert "resume" in stopped.status.message
    assert path.exists()
    resumed = sysid.fit(model, data, resume=path, **SMALL)
    ref_state, new_state = reference._problem.state_dict(), resumed._problem.state_dict()
    for key in ref_state:
        assert torch.equal(ref_state[key], new_state[key]), key
    assert resumed.parameters == reference.parameters
    assert resumed.stats["function_evaluations"] == reference.stats["function_evaluations"]
    assert resumed.history.sizes["epoch"] == reference.history.sizes["epoch"]
    assert resumed.status.code == reference.status.code


def test_interrupt_returns_the_best_result_so_far(small_case, monkeypatch):
    model, data, _, _ = small_case
    _, interrupting, _ = _interrupt_after(12)
    monkeypatch.setattr(problem_module.Problem, "loss", interrupting)
    stopped = sysid.fit(model, data, **SMALL)
    assert stopped.status.code == "interrupted"
    hist = stopped.history
    assert hist.sizes["epoch"] == 11
    # the kept parameters are those of the best epoch, not the untrained guess
    assert stopped.stats["loss"] == pytest.approx(float(hist["loss"].min()))
    assert stopped.parameters != dict(zip("abcd", [1.0] * 4))


def test_resume_refuses_a_checkpoint_of_another_fit(small_case, tmp_path):
    model, data, _, _ = small_case
    path = tmp_path / "fit.ckpt"
    sysid.fit(model, data, checkpoint=path, **dict(SMALL, lbfgs_iterations=2,
                                                   polish_iterations=1, epochs=3))
    with pytest.raises(FitError, match="different model, data or options"):
        sysid.fit(model, data, resume=path, **dict(SMALL, epochs=4))


def test_resume_refuses_files_that_are_not_checkpoints(small_case, tmp_path):
    model, data, _, _ = small_case
    bad = tmp_path / "not.ckpt"
    torch.save({"format": "something else"}, bad)
    with pytest.raises(FileFormatError, match="not a sysid checkpoint"):
        sysid.fit(model, data, resume=bad, **SMALL)
    with pytest.raises(FileNotFoundError, match="resume="):
        sysid.fit(model, data, resume=tmp_path / "missing.ckpt", **SMALL)


def test_a_checkpoint_that_cannot_be_written_warns_and_training_goes_on(small_case, tmp_path):
    model, data, reference, _ = small_case
    target = tmp_path / "no_such_folder" / "fit.ckpt"
    with pytest.warns(RuntimeWarning, match="could not be written"):
        result = sysid.fit(model, data, checkpoint=target, **SMALL)
    assert result.parameters == reference.parameters


def test_validation_holds_out_windows_and_stops_on_them():
    data = sysid.datasets.simulate("lotka_volterra", noise=0.05, t_end=10.0, dt=0.1, seed=0)
    result = sysid.fit(lotka_volterra(), data, progress=False, validation=0.2)
    problem = result._problem
    held = int(problem.holdout.sum())
    assert 10 <= held <= 30                                   # about a fifth of 101 samples
    assert int(problem.mask.sum()) + 2 * held == 2 * 101      # both channels, all samples
    score = result.history["validation"].values
    assert np.all(np.isfinite(score))
    assert score[-1] < 1.5        # held-out samples predicted at about the noise level
    for name, truth in TRUE_LV.items():
        assert result.parameters[name] == pytest.approx(truth, rel=0.05), name


def test_validation_needs_shooting_windows():
    data = sysid.datasets.simulate("lotka_volterra", noise=0.05, t_end=1.0, dt=0.1, seed=0)
    with pytest.raises(ValueError, match="validation=0.2 holds out shooting windows"):
        sysid.fit(lotka_volterra(), data, progress=False, validation=0.2)


@pytest.mark.parametrize("dt, expected", [(0.5, 5), (2.0, 3)])
def test_shooting_windows_follow_the_oscillation_period(dt, expected):
    from sysid.data.bundle import prepare
    from sysid.problem.segments import samples_per_period, window_length
    data = sysid.datasets.simulate("van_der_pol", noise=0.05, observed=["x"], dt=dt,
                                   t_end=200.0, seed=0)
    mu = sp.Symbol("mu", positive=True)
    model = sysid.HybridODE(states=[x, y], physics={x: y, y: mu * y * (1 - x ** 2) - x},
                            parameters={mu: 1.0})
    bundle = prepare(model, data)
    period = 6.663                                            # Van der Pol, mu = 1
    assert samples_per_period(bundle) == pytest.approx(period / dt, rel=0.1)
    assert window_length(bundle, "auto") == expected
    assert window_length(bundle, "single") is None


def test_adjoint_gradients_match_direct_backpropagation():
    from sysid.data.bundle import prepare
    from sysid.problem.options import FitOptions
    from sysid.problem.problem import build_problem
    data = sysid.datasets.simulate("pendulum", noise=0.05, dt=0.2, t_end=8.0, seed=0)
    th, om = sp.symbols("theta omega")
    w0, al = sp.symbols("omega0 alpha", positive=True)
    model = sysid.HybridODE(states=[th, om],
                            physics={th: om, om: -w0 ** 2 * sp.sin(th) - al * om},
                            parameters={w0: 1.2, al: 0.1}, residual=sysid.MLP(8, 1))
    grads = []
    for adjoint in (False, True):
        torch.manual_seed(0)
        opts = FitOptions(adjoint=adjoint, shooting="single")
        problem = build_problem(model, prepare(model, data), opts)
        with torch.no_grad():        # move the network off zero so it has a gradient path
            for p in problem.field.residual.parameters():
                p.add_(0.1)
        loss, _ = problem.loss(1e-2, 1e-5)
        loss.backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in problem.parameters()
                                if p.grad is not None]))
    rel = float((grads[0] - grads[1]).norm() / grads[0].norm())
    assert rel < 1e-3, rel


def test_auto_residual_penalty_trims_the_network_and_frees_the_parameters():
    # all four parameters free AND a residual on both states: the network can take over
    # part of a x and d y; the trimming phase hands them back (measured worst error
    # 11.6 % with the learning weight alone, 2.3 % after trimming)
    data = sysid.datasets.simulate("lotka_volterra", noise=0.05, t_end=10.0, dt=0.1, seed=0)
    result = sysid.fit(lotka_volterra(sysid.MLP(16, 2)), data, progress=False)
    assert result.stats["residual_penalty"] == 1.0
    assert "trim" in set(result.history["phase"].values)
    for name, truth in TRUE_LV.items():
        assert result.parameters[name] == pytest.approx(truth, rel=0.05), name


def test_auto_residual_penalty_declines_a_trim_the_data_would_pay_for():
    # the lynx-hare demo: growth and death known, the interactions left to the network,
    # which at the stronger weight cannot carry them: over whole trajectories the data
    # would pay 30 units of log-likelihood (measured), far beyond the slack of 2. (Judged
    # on the shooting windows, as before, the trim cost under 2 units and was kept, and
    # the hybrid missed the hare peaks by half: RMS log errors 0.47 and 0.30.)
    from sysid.cli import demo_problem

    data, model = demo_problem()
    result = sysid.fit(model, data, seed=0, noise="lognormal", progress=False)
    assert result.stats["residual_penalty"] == 0.01
    assert "trim" in set(result.history["phase"].values)
    assert "would cost the data" in result.status.detail
    fitted = result.impute()
    errors = {name: float(np.sqrt(np.mean(np.log(fitted[name].values / data[name].values) ** 2)))
              for name in ("hare", "lynx")}
    # measured 0.258 and 0.088; plain Lotka-Volterra fitted alone: 0.22 and 0.22
    assert errors["hare"] < 0.3 and errors["lynx"] < 0.12, errors


def test_auto_residual_penalty_keeps_a_trim_the_data_do_not_pay_for():
    # Lotka-Volterra over 10 time units with a network for the interactions: the trim
    # costs the data 0.5 units of log-likelihood over whole trajectories (measured), so
    # the stronger weight is kept, and the fit stays within 3x the 0.05 noise (measured
    # 0.104 and 0.057)
    x, y = sp.symbols("x y")
    a, d = sp.symbols("a d", positive=True)
    data = sysid.datasets.simulate("lotka_volterra", noise=0.05, t_end=10.0, dt=0.1, seed=0)
    model = sysid.HybridODE(states=[x, y], physics={x: a * x, y: -d * y},
                            parameters={a: 1.0, d: 1.0}, residual=sysid.MLP(16, 2))
    result = sysid.fit(model, data, progress=False)
    assert result.stats["residual_penalty"] == 1.0
    assert result.status.code == "converged" and "penalty kept" in result.status.detail
    assert result.noise_std["x"] < 0.15 and result.noise_std["y"] < 0.1


def test_progress_bar_reports_phases_and_is_off_under_ci(capsys, monkeypatch):
    data = sysid.datasets.simulate("lotka_volterra", noise=0.05, t_end=3.0, dt=0.2, seed=0)
    budget = dict(epochs=3, lbfgs_iterations=0)
    sysid.fit(lotka_volterra(), data, progress=True, **budget)
    shown = capsys.readouterr().err
    assert "sysid.fit" in shown and "phase=adam" in shown
    monkeypatch.setenv("CI", "true")
    sysid.fit(lotka_volterra(), data, **budget)          # progress=None: off under CI
    assert "sysid.fit" not in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [
    ("residual_penalty", "strong", "residual_penalty is out of range; received 'strong'"),
    ("residual_penalty", -1.0, "residual_penalty is out of range; received -1.0"),
    ("validation", 0.8, "validation is out of range; received 0.8"),
    ("noise", "cauchy", "noise must be one of .*student_t.*received 'cauchy'"),
    ("checkpoint", 42, "checkpoint must be a file path; received 42"),
    ("throw", "yes", "throw must be None, True or False; received 'yes'"),
    ("physics_first", "auto", "physics_first must be True or False; received 'auto'"),
])
def test_bad_training_options_are_refused_with_the_value_received(option, value, message):
    data = sysid.datasets.simulate("lotka_volterra", noise=0.05, t_end=3.0, dt=0.2, seed=0)
    with pytest.raises(ValueError, match=message):
        sysid.fit(lotka_volterra(), data, progress=False, **{option: value})
