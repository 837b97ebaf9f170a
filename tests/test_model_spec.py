"""Tests of the model specification (sysid.model.hybrid) and parameter transforms (sysid.model.parameters)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

import sysid
from sysid import MLP, HybridODE
from sysid.model.parameters import ParameterTransform, transform_for
from sysid.errors import ModelError

x, v, u = sp.symbols("x v u")
k = sp.Symbol("k", positive=True)
c = sp.Symbol("c")                        # unconstrained
d = sp.Symbol("d", negative=True)
m = sp.Symbol("m", positive=True)         # used as a fixed constant


def osc(**kw):
    args = dict(states=[x, v], physics={x: v, v: -k * x}, parameters={k: 1.0})
    args.update(kw)
    return HybridODE(**args)


# -- refused specifications -----------------------------------------------------------------

def test_reference_model_is_valid():
    model = osc()
    assert model.state_names == ["x", "v"]
    assert model.parameter_names == ["k"]
    assert model.input_names == []


def test_physics_key_not_a_state_gets_did_you_mean():
    with pytest.raises(ModelError, match=r"physics has an entry for 'xx', which is not a state\. "
                                         r"Did you mean 'x'\?.*States: \['x', 'v'\]"):
        osc(physics={x: v, sp.Symbol("xx"): -k * x})


def test_physics_key_as_string_typo():
    with pytest.raises(ModelError, match=r"'vv', which is not a state\. Did you mean 'v'\?"):
        osc(physics={"x": v, "vv": -k * x})


def test_unknown_symbol_in_physics_gets_did_you_mean():
    kk = sp.Symbol("kk")
    with pytest.raises(ModelError, match=r"physics\[v\] uses the symbol 'kk', which is not a state,"
                                         r" input, parameter or fixed constant\. Did you mean 'k'\?"
                                         r".*parameters=\{\.\.\.\}.*fixed=\{\.\.\.\}"):
        osc(physics={x: v, v: -kk * x})


def test_unknown_symbol_in_observations():
    with pytest.raises(ModelError, match=r"observations\['pos'\] uses the symbol 'xx'.*"
                                         r"Did you mean 'x'\?"):
        osc(observations={"pos": 2 * sp.Symbol("xx")})


@pytest.mark.parametrize("guess", [0.0, -1.0])
def test_positive_parameter_needs_positive_guess(guess):
    with pytest.raises(ModelError, match=rf"Parameter k is declared positive.*initial "
                                         rf"guess is {guess}.*give a positive initial guess"):
        osc(parameters={k: guess})


@pytest.mark.parametrize("guess", [0.0, 2.0])
def test_negative_parameter_needs_negative_guess(guess):
    with pytest.raises(ModelError, match=r"Parameter d is declared negative.*negative initial"):
        osc(physics={x: v, v: d * x}, parameters={d: guess})


@pytest.mark.parametrize("guess", [float("nan"), float("inf")])
def test_parameter_guess_must_be_finite(guess):
    with pytest.raises(ModelError, match=r"value of k must be finite"):
        osc(parameters={k: guess})


def test_nonnegative_zero_guess_is_refused_or_trainable():
    cn = sp.Symbol("cn", nonnegative=True)
    try:
        model = osc(physics={x: v, v: -cn * x}, parameters={cn: 0.0})
    except ModelError:
        return
    transform = transform_for(list(model.parameters), list(model.parameters.values()))
    raw = transform.inverse([0.0]).clone().requires_grad_(True)
    transform.forward(raw).sum().backward()
    assert raw.grad.abs().item() > 1e-6


def test_name_used_as_state_and_parameter():
    with pytest.raises(ModelError, match=r"name 'x' is used as a state and as a parameter"):
        osc(parameters={k: 1.0, sp.Symbol("x"): 2.0})


def test_name_used_as_parameter_and_fixed():
    with pytest.raises(ModelError, match=r"name 'k' is used as a parameter and as a fixed"):
        osc(fixed={k: 2.0})


def test_name_used_as_state_and_input():
    with pytest.raises(ModelError, match=r"name 'v' is used as a state and as an? input"):
        osc(inputs=[v])


def test_t_is_reserved_for_time():
    with pytest.raises(ModelError, match=r"'t' is used as a time and as a parameter.*reserved"):
        osc(parameters={k: 1.0, sp.Symbol("t"): 1.0})


def test_explicit_time_is_allowed_in_physics():
    model = osc(physics={x: v, v: -k * x + sp.sin(sysid.t)})
    assert sysid.t in model.rhs()[1].free_symbols


@pytest.mark.parametrize("states", [["x", "v"], [x, 3], [x, v + 1]])
def test_non_symbol_state(states):
    with pytest.raises(ModelError, match=r"states must be SymPy Symbols; received .* of type"):
        osc(states=states)


def test_non_symbol_parameter_key():
    with pytest.raises(ModelError, match=r"parameter keys must be SymPy Symbols; received 'k'"):
        osc(parameters={"k": 1.0})


def test_no_states():
    with pytest.raises(ModelError, match=r"at least one state"):
        HybridODE(states=[])


def test_physics_must_be_an_expression():
    with pytest.raises(ModelError, match=r"physics\[x\] must be a SymPy expression; received 'v'"):
        osc(physics={x: "v"})


def test_observation_name_must_be_identifier():
    with pytest.raises(ModelError, match=r"valid identifiers.*'bad name'"):
        osc(observations={"bad name": x})


def test_observation_keyed_by_a_symbol_names_the_fix():
    """Issue 29: a Symbol as the key read 'must be valid identifiers; received cases'."""
    cases = sp.Symbol("cases")
    with pytest.raises(ModelError, match=r"keys are data-variable names, strings.*"
                                         r"received cases \(Symbol\)\. Write "
                                         r"observations=\{'cases': 2\*x\}"):
        osc(observations={cases: 2 * x})


def test_residual_must_be_mlp():
    with pytest.raises(ModelError, match=r"residual must be sysid\.MLP\(\.\.\.\) or None; "
                                         r"received dict"):
        osc(residual={"width": 8})


@pytest.mark.parametrize("kw", [{"width": 0}, {"depth": 0}, {"width": -3}, {"width": 2.5},
                                {"width": True}])
def test_mlp_sizes_must_be_positive_integers(kw):
    (name, value), = kw.items()
    with pytest.raises(ModelError, match=rf"MLP {name} must be a positive integer; received "
                                         rf"{value!r}"):
        MLP(**kw)


def test_mlp_activation_choice():
    with pytest.raises(ModelError, match=r"activation must be one of .*'relu'"):
        MLP(activation="relu")


def test_mlp_unknown_state_gets_did_you_mean():
    with pytest.raises(ModelError, match=r"MLP states names 'vv', which is not one of "
                                         r"\['x', 'v'\]\. Did you mean 'v'\?"):
        osc(residual=MLP(8, 1, states=["vv"]))


def test_mlp_unknown_input():
    with pytest.raises(ModelError, match=r"MLP inputs names 'uu'.*Did you mean 'u'\?"):
        osc(physics={x: v, v: -k * x + u}, inputs=[u], residual=MLP(8, 1, inputs=["uu"]))


def test_symbol_with_other_assumptions_is_refused():
    plain_k = sp.Symbol("k")                    # declared one is positive=True
    assert plain_k != k
    with pytest.raises(ModelError, match=r"physics\[v\] uses a symbol 'k' whose assumptions "
                                         r"differ from the one declared.*create each symbol once"):
        osc(physics={x: v, v: -plain_k * x})


def test_state_with_other_assumptions_in_physics_is_refused():
    real_x = sp.Symbol("x", real=True)
    with pytest.raises(ModelError, match=r"symbol 'x' whose assumptions differ"):
        osc(physics={x: v, v: -k * real_x})


# -- accepted specifications ----------------------------------------------------------------

def test_channels_are_observations_then_states():
    model = osc(observations={"energy": v**2 / 2 + k * x**2 / 2, "speed": sp.Abs(v)})
    channels = model.channels
    assert list(channels) == ["energy", "speed", "x", "v"]
    assert channels["speed"] == sp.Abs(v)
    assert channels["x"] == x and channels["v"] == v


def test_observation_named_like_a_state_overrides_it():
    model = osc(observations={"x": x + 1})
    assert list(model.channels) == ["x", "v"]
    assert model.channels["x"] == x + 1


def test_rhs_substitutes_fixed_constants():
    model = osc(physics={x: v, v: -k * x / m}, fixed={m: 2.0})
    rhs = model.rhs()
    assert len(rhs) == 2
    assert rhs[0] == v
    assert m not in rhs[1].free_symbols
    assert sp.simplify(rhs[1] - (-k * x / 2)) == 0
    assert model.fixed == {m: 2.0}
    assert model.parameter_names == ["k"]


def test_rhs_is_zero_for_state_without_physics():
    model = osc(physics={x: v}, parameters={}, residual=MLP(4, 1))
    assert model.rhs() == [v, 0]


def test_repr_marks_residual_states():
    full = repr(osc(residual=MLP(4, 1)))
    assert "dx/dt = v + NN" in full
    assert "dv/dt = -k*x + NN" in full

    partial = repr(osc(residual=MLP(4, 1, states=[v])))
    assert "dx/dt = v\n" in partial and "dx/dt = v + NN" not in partial
    assert "dv/dt = -k*x + NN" in partial

    assert "NN" not in repr(osc())


def test_residual_subsets_follow_model_order():
    model = osc(physics={x: v, v: -k * x + u}, inputs=[u],
                residual=MLP(4, 1, states=[v, x], inputs=["u", v]))
    assert model.residual_states == ["x", "v"]
    assert model.residual_inputs == ["v", "u"]
    default = osc(physics={x: v, v: -k * x + u}, inputs=[u], residual=MLP(4, 1))
    assert default.residual_states == ["x", "v"]
    assert default.residual_inputs == ["x", "v", "u"]


def test_string_physics_keys_map_to_state_symbols():
    model = osc(physics={"x": v, "v": -k * x})
    assert set(model.physics) == {x, v}


def test_mlp_normalises_names_and_serialises():
    net = MLP(width=16, depth=3, states=[x], inputs=[x, "u"], activation="silu")
    assert net.states == ("x",) and net.inputs == ("x", "u")
    assert net.to_dict() == {"width": 16, "depth": 3, "states": ["x"], "inputs": ["x", "u"],
                             "activation": "silu"}


# -- parameter transforms -------------------------------------------------------------------

RAW = torch.linspace(-50.0, 50.0, 201, dtype=torch.float64)


def test_transform_kinds_from_assumptions():
    cn = sp.Symbol("cn", nonnegative=True)
    cp = sp.Symbol("cp", nonpositive=True)
    tr = transform_for([k, d, c, cn, cp], [1.0, -1.0, 3.0, 1.0, -1.0])
    assert isinstance(tr, ParameterTransform)
    assert tr.kinds == ["positive", "negative", "linear", "positive", "negative"]
    assert tr.scales == [1.0, 1.0, 3.0, 1.0, 1.0]


def test_positive_stays_positive():
    tr = transform_for([k], [2.5])
    values = tr.forward(RAW[:, None])[:, 0]
    assert torch.all(values > 0)
    assert torch.all(torch.isfinite(values))
    assert torch.all(values[1:] > values[:-1])            # monotone


def test_negative_stays_negative():
    tr = transform_for([d], [-0.3])
    values = tr.forward(RAW[:, None])[:, 0]
    assert torch.all(values < 0)
    assert torch.all(values[1:] < values[:-1])


@pytest.mark.parametrize("guess, scale", [(4.0, 4.0), (-0.02, 0.02), (0.0, 1.0)])
def test_unconstrained_scales_by_guess(guess, scale):
    tr = transform_for([c], [guess])
    values = tr.forward(RAW[:, None])[:, 0]
    torch.testing.assert_close(values, RAW * scale, rtol=1e-15, atol=0)
    assert values.min() < 0 < values.max()                # no sign constraint
    # the initial guess is raw +-1 (order one), whatever its magnitude
    if guess != 0:
        assert abs(tr.inverse([guess]).item()) == pytest.approx(1.0)


def test_inverse_of_forward_is_identity():
    tr = transform_for([k, d, c], [2.0, -0.5, -7.0])
    raw = torch.stack([RAW, RAW.flip(0), RAW / 3], dim=-1)          # (201, 3)
    back = tr.inverse(tr.forward(raw))
    assert back.shape == raw.shape
    assert torch.max(torch.abs(back - raw)).item() < 1e-12


def test_forward_of_inverse_recovers_values():
    tr = transform_for([k, d, c], [2.0, -0.5, -7.0])
    values = torch.tensor([[2.0, -0.5, -7.0], [1e-6, -1e6, 0.0], [123.4, -3e-3, 5.5]],
                          dtype=torch.float64)
    torch.testing.assert_close(tr.forward(tr.inverse(values)), values, rtol=1e-12, atol=0)
    # initial guesses of constrained parameters map to log magnitude
    np.testing.assert_allclose(tr.inverse([2.0, -0.5, -7.0]).numpy(),
                               [np.log(2.0), np.log(0.5), -1.0], rtol=1e-14)


def test_forward_is_differentiable():
    tr = transform_for([k, d, c], [2.0, -0.5, 4.0])
    raw = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64, requires_grad=True)
    tr.forward(raw).sum().backward()
    expected = [np.exp(0.3), -np.exp(-0.2), 4.0]
    np.testing.assert_allclose(raw.grad.numpy(), expected, rtol=1e-12)


def test_empty_transform():
    tr = transform_for([], [])
    raw = torch.zeros(0, dtype=torch.float64)
    assert tr.forward(raw).shape == (0,)
    assert tr.to_dict() == {"kinds": [], "scales": []}
