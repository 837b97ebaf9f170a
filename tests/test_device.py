"""The ``device`` option: a fit trains on a CUDA GPU when asked and available, and gives
its outputs back on the CPU as xarray.

Without a GPU the CUDA test skips; the rest runs everywhere. The moves are checked on
torch's ``meta`` device, which holds no data and refuses to mix with CPU tensors as CUDA
does: the loss's parts (field, observation, noise model, continuity, residual penalty)
run there without a device error once the problem is moved.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

import sysid
from sysid.problem.placement import to_device

from test_native import _forced_tanks, _problem

CUDA = torch.cuda.is_available()


def _lv():
    x, y = sp.symbols("x y")
    a, d = sp.symbols("a d", positive=True)
    model = sysid.HybridODE(states=[x, y], physics={x: a * x, y: -d * y},
                            parameters={a: 1.2, d: 1.7}, residual=sysid.MLP(width=8))
    return model, sysid.datasets.simulate("lotka_volterra", noise=0.05, t_end=4.0, dt=0.25,
                                          seed=0)


@pytest.mark.parametrize("device, message", [
    ("gpu", "device must be 'cpu' or 'cuda' .*received 'gpu'"),
    (3, "device must be 'cpu' or 'cuda' .*received 3"),
])
def test_a_device_that_is_not_one_is_refused(device, message):
    model, data = _lv()
    with pytest.raises(ValueError, match=message):
        sysid.fit(model, data, progress=False, device=device)


@pytest.mark.skipif(CUDA, reason="a CUDA GPU is available here")
def test_cuda_without_a_gpu_is_refused_before_any_work():
    model, data = _lv()
    with pytest.raises(ValueError, match=r"sees none \(torch.cuda.is_available\(\) is False\)"
                                         r".*Fix: device='cpu'"):
        sysid.fit(model, data, progress=False, device="cuda")


@pytest.mark.parametrize("noise", ["gaussian", "lognormal", "student_t"])
def test_a_moved_problem_computes_its_loss_parts_on_the_device(noise):
    model, data = _forced_tanks()                 # inputs, windows, a network
    problem = _problem(model, data, True, noise=noise)
    with torch.no_grad():
        problem.loss(0.01, 1e-4)                  # (lazy caches are filled on the CPU)
    to_device(problem, "meta")                    # (meta holds no data: no way back)
    seg = problem.windows
    assert {t.device.type for t in [*problem.parameters(), *problem.buffers(), seg.tau,
                                    seg.y, seg.mask, seg.valid, seg.u_grid, seg.last,
                                    seg.inputs.values, problem.source, *problem.pairs,
                                    problem.single.tau, problem.inputs.values]} == {"meta"}
    starts = torch.cat([problem.x0(), problem.loc + problem.scale * problem.zw])[problem.source]
    xs = torch.zeros(*seg.tau.shape, 2, dtype=torch.float64, device="meta")
    field = problem.field
    outs = [field(seg.tau[:, 0], starts, seg.inputs(seg.tau[:, 0])),
            problem.noise.nll(field.observe(seg.tau, xs, seg.u_grid), seg.y, seg.mask),
            xs[problem.pairs[0], seg.last[problem.pairs[0]]] - starts[problem.pairs[1]],
            field.residual.scaled(torch.cat([xs, seg.u_grid], dim=-1)),
            field.residual.weight_norm2()]
    assert all(o.device.type == "meta" for o in outs)


def test_a_problem_moved_to_the_cpu_is_unchanged():
    model, data = _forced_tanks()
    problem = _problem(model, data, True)
    with torch.no_grad():
        before = float(problem.loss(0.01, 1e-4)[0])
        to_device(problem, "cpu")
        assert float(problem.loss(0.01, 1e-4)[0]) == before


@pytest.mark.skipif(not CUDA, reason="no CUDA GPU here")
def test_a_fit_on_cuda_matches_the_cpu_and_answers_on_the_cpu():
    model, data = _lv()
    budget = dict(progress=False, seed=0, epochs=20, lbfgs_iterations=20, polish_iterations=5)
    cpu = sysid.fit(model, data, compiled=False, **budget)
    gpu = sysid.fit(model, data, device="cuda", **budget)
    assert gpu.options.device.startswith("cuda")
    for name, value in cpu.parameters.items():
        assert gpu.parameters[name] == pytest.approx(value, rel=1e-6)
    imputed = gpu.impute()
    assert isinstance(imputed["x"].values, np.ndarray)
    np.testing.assert_allclose(imputed["x"].values, cpu.impute()["x"].values, rtol=1e-6)
