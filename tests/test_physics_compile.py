"""Tests of sysid.model.compiler: SymPy -> batched torch compiler."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch

from sysid.model.compiler import SUPPORTED_FUNCTIONS, CompiledExprs, compile_exprs
from sysid.errors import ExpressionError, UnsupportedExpressionError

x, y, z = sp.symbols("x y z")
a, b, c, d = sp.symbols("a b c d")
N = 200


def _rand(lo, hi, n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _params(*values):
    return [torch.tensor(v, dtype=torch.float64) for v in values]


def _reference(expr, variables, values):
    """Evaluate expr with SymPy/mpmath at 30 digits, point by point."""
    fn = sp.lambdify(variables, expr, modules="mpmath")
    cols = [v.expand(torch.broadcast_shapes(*[u.shape for u in values])).tolist() for v in values]
    with mpmath.workdps(30):
        out = []
        for point in zip(*cols):
            try:
                out.append(float(fn(*[mpmath.mpf(p) for p in point])))
            except (TypeError, NameError, ValueError):
                sub = {s: sp.Float(p, 30) for s, p in zip(variables, point)}
                out.append(float(expr.xreplace(sub).evalf(30)))
    return np.array(out)


def _check(expr, variables, values, rtol=1e-12, atol=1e-12):
    (got,) = compile_exprs([expr], variables)(values)
    assert got.dtype == torch.float64
    want = _reference(expr, variables, values)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=rtol, atol=atol)


# (expression, domain of x) for every one-argument function
UNARY_CASES = {
    "exp": (sp.exp(x), (-5, 5)), "log": (sp.log(x), (0.05, 20)),
    "sqrt": (sp.sqrt(x), (0.0, 20)), "cbrt": (sp.cbrt(x), (0.01, 20)),
    "sin": (sp.sin(x), (-6, 6)), "cos": (sp.cos(x), (-6, 6)), "tan": (sp.tan(x), (-1.4, 1.4)),
    "cot": (sp.cot(x), (0.1, 3.0)), "sec": (sp.sec(x), (-1.4, 1.4)), "csc": (sp.csc(x), (0.1, 3.0)),
    "asin": (sp.asin(x), (-0.99, 0.99)), "acos": (sp.acos(x), (-0.99, 0.99)),
    "atan": (sp.atan(x), (-10, 10)), "sinh": (sp.sinh(x), (-4, 4)), "cosh": (sp.cosh(x), (-4, 4)),
    "tanh": (sp.tanh(x), (-4, 4)), "asinh": (sp.asinh(x), (-10, 10)),
    "acosh": (sp.acosh(x), (1.01, 10)), "atanh": (sp.atanh(x), (-0.99, 0.99)),
    "Abs": (sp.Abs(x), (-3, 3)), "sign": (sp.sign(x), (-3, 3)), "floor": (sp.floor(x), (-5, 5)),
    "ceiling": (sp.ceiling(x), (-5, 5)), "erf": (sp.erf(x), (-3, 3)), "erfc": (sp.erfc(x), (-3, 3)),
    "Heaviside": (sp.Heaviside(x), (-2, 2)),
}
OTHER_CASES = {
    "atan2": (sp.atan2(y, x), [x, y]), "Min": (sp.Min(x, y, z), [x, y, z]),
    "Max": (sp.Max(x, y, sp.Rational(1, 4)), [x, y]),
    "Piecewise": (sp.Piecewise((x**2, x < -0.5), (y, (x >= -0.5) & (x <= 0.5)), (-x, True)), [x, y]),
}


def test_every_supported_function_has_a_case():
    covered = set(UNARY_CASES) | set(OTHER_CASES)
    assert covered == set(SUPPORTED_FUNCTIONS)


@pytest.mark.parametrize("name", sorted(UNARY_CASES))
def test_unary_function_matches_sympy(name):
    expr, (lo, hi) = UNARY_CASES[name]
    values = _rand(lo, hi)
    if name in ("Heaviside", "sign", "Abs"):
        values[:5] = 0.0          # exercise the value at zero (H(0) = 1/2)
    _check(expr, [x], [values])


@pytest.mark.parametrize("name", sorted(OTHER_CASES))
def test_multi_argument_function_matches_sympy(name):
    expr, variables = OTHER_CASES[name]
    values = [_rand(-1, 1, seed=i) for i in range(len(variables))]
    _check(expr, variables, values)


@pytest.mark.parametrize("expr", [
    x**2, x**3, x**7, x**-1, x**-2, x**-3, x**0.5, x**-0.5, x**1.7, x**sp.Rational(2, 3),
    2**x, x**y, sp.E**(x * y), sp.pi * x / 3, x / y, 1 / (x * y), -x, 3 - x, -x - y,
    sp.log(x, 2), sp.log(x, y + 2), sp.sqrt(2) * x + sp.sin(1),
])
def test_powers_and_arithmetic(expr):
    _check(expr, [x, y], [_rand(0.2, 3, seed=1), _rand(0.2, 3, seed=2)])


def test_piecewise_conditions_all_relationals():
    conds = [sp.Lt(x, 0), sp.Le(x, 0), sp.Gt(x, 0), sp.Ge(x, 0), sp.Eq(x, 0), sp.Ne(x, 0),
             sp.And(x > -0.5, y < 0), sp.Or(x > 0.5, y > 0.5), sp.Not(sp.And(x > 0, y > 0)),
             sp.Xor(x > 0, y > 0)]
    xv = _rand(-1, 1, seed=3)
    xv[:10] = 0.0
    for cond in conds:
        expr = sp.Piecewise((1.5, cond), (-2, True))
        _check(expr, [x, y], [xv, _rand(-1, 1, seed=4)])


def test_piecewise_without_default_is_nan_and_float64():
    f = compile_exprs([sp.Piecewise((0.1, x > 0))], [x])
    (out,) = f([torch.tensor([1.0, -1.0], dtype=torch.float64)])
    assert out.dtype == torch.float64 and out[0].item() == 0.1 and math.isnan(out[1].item())


def test_composite_models():
    # Lotka-Volterra
    lv = [a * x - b * x * y, c * x * y - d * y]
    f = compile_exprs(lv, [x, y, a, b, c, d])
    xs, ys = _rand(0.1, 5, seed=1), _rand(0.1, 5, seed=2)
    p = _params(1.1, 0.4, 0.1, 0.4)
    out = f([xs, ys, *p])
    for e, o in zip(lv, out):
        want = _reference(e, [x, y, a, b, c, d], [xs, ys, *p])
        np.testing.assert_allclose(o.numpy(), want, rtol=1e-12, atol=1e-12)
    # damped pendulum with Coulomb friction and a saturated nested term
    th, om, g, L, mu = sp.symbols("theta omega g L mu")
    friction = sp.Piecewise((-mu, om > 0), (mu, om < 0), (0, True))
    rhs = -g / L * sp.sin(th) + friction + sp.Max(-1, sp.Min(1, sp.tanh(3 * om) * sp.exp(-th**2)))
    vals = [_rand(-3, 3, seed=5), _rand(-2, 2, seed=6)] + _params(9.81, 1.3, 0.2)
    vals[1][:3] = 0.0
    _check(rhs, [th, om, g, L, mu], vals)
    sigmoid = 1 / (1 + sp.exp(-a * (x - b)))
    _check(sigmoid, [x, a, b], [_rand(-5, 5), *_params(2.0, 0.5)])


def test_cse_computes_shared_subexpressions_once():
    shared = sp.sin(x * y + z)
    f = compile_exprs([shared + 1, 2 * shared, shared**2], [x, y, z])
    assert [name for name, _ in f.program].count("sin") == 1
    assert f.n_ops == len(f.program) <= 7
    vals = [_rand(-1, 1, seed=i) for i in range(3)]
    s = torch.sin(vals[0] * vals[1] + vals[2])
    o1, o2, o3 = f(vals)
    torch.testing.assert_close(o1, s + 1, rtol=1e-14, atol=0)
    torch.testing.assert_close(o3, s * s, rtol=1e-14, atol=0)


def test_broadcasting_shapes_dtype_and_constants():
    f = compile_exprs([-a * x, sp.Integer(3), sp.pi, b, a * b, x], [x, a, b])
    xs = _rand(-1, 1, n=7)
    outs = f([xs, torch.tensor(2.0, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)])
    for o in outs:
        assert o.shape == (7,) and o.dtype == torch.float64
    assert torch.all(outs[1] == 3.0) and torch.all(outs[2] == math.pi) and torch.all(outs[3] == 0.5)
    outs[5].add_(1.0)   # outputs never alias the inputs
    assert not torch.equal(outs[5], xs)
    # 2-D broadcasting of (B, 1) with (1, C)
    g = compile_exprs([x * a, sp.Integer(0)], [x, a])
    o1, o0 = g([torch.ones(4, 1, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)])
    assert o1.shape == (4, 3) and o0.shape == (4, 3)


def test_no_variables_no_expressions_and_python_numbers():
    f = compile_exprs([sp.Integer(2), 1.5], [])
    o = f([])
    assert [t.item() for t in o] == [2.0, 1.5] and o[0].dtype == torch.float64
    assert compile_exprs([], [x])([torch.zeros(3, dtype=torch.float64)]) == []


def test_unevaluated_input_is_compiled():
    with sp.evaluate(False):
        exprs = [sp.Heaviside(2) * x + sp.sqrt(sp.Integer(4)) * x + sp.E**x,
                 sp.Piecewise((1, sp.And(sp.Lt(1, 2), x > 0)), (0, True)),
                 sp.Piecewise((1, sp.Xor(sp.true, x > 0, y > 0)), (0, True))]
    xs, ys = _params([1.0, -1.0], [1.0, 1.0])
    o1, o2, o3 = compile_exprs(exprs, [x, y])([xs, ys])
    torch.testing.assert_close(o1, 3 * xs + torch.exp(xs), rtol=1e-15, atol=0)
    assert o2.tolist() == [1.0, 0.0] and o3.tolist() == [1.0, 0.0]


def test_shared_condition_and_duplicate_outputs():
    pw = sp.Piecewise((x, x > 0), (0, True))
    f = compile_exprs([pw, sp.Piecewise((x**2, x > 0), (1, True)), pw], [x])
    xs = torch.tensor([2.0, -1.0], dtype=torch.float64)
    o1, o2, o3 = f([xs])
    assert o1.tolist() == [2.0, 0.0] and o2.tolist() == [4.0, 1.0] and o3.tolist() == [2.0, 0.0]
    assert [name for name, _ in f.program].count("StrictGreaterThan") == 1
    o1.zero_()
    assert o3.tolist() == [2.0, 0.0]   # identical outputs are distinct tensors


def test_pickle_round_trip():
    import pickle
    f = compile_exprs([sp.sin(x) * a], [x, a])
    g = pickle.loads(pickle.dumps(f))
    vals = [_rand(-1, 1, n=4), torch.tensor(2.0, dtype=torch.float64)]
    assert torch.equal(f(vals)[0], g(vals)[0]) and g.n_ops == f.n_ops


def test_gradcheck_smooth_composite():
    expr = [sp.sin(a * x) * sp.exp(-y**2) + sp.log(1 + x**2) * sp.tanh(y) / (2 + sp.cos(x * y)),
            sp.sqrt(1 + x**2 + y**2) + sp.atan2(y, x + 3) + x**3 * a]
    f = compile_exprs(expr, [x, y, a])
    inputs = (_rand(-1, 1, n=5).requires_grad_(), _rand(-1, 1, n=5, seed=1).requires_grad_(),
              torch.tensor(0.7, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(lambda *v: tuple(f(list(v))), inputs)


def test_unknown_symbol_error_suggests_and_lists_known():
    alpha, alpah = sp.symbols("alpha alpah")
    pattern = r"unknown symbol.*'alpah'.*Did you mean 'alpha'\?.*Known symbols: \['x', 'alpha'\]"
    with pytest.raises(ExpressionError, match=pattern):
        CompiledExprs([alpah * x], [x, alpha])


def test_same_name_other_assumptions_is_explained():
    with pytest.raises(ExpressionError, match=r"share a name with a variable but have other"):
        compile_exprs([sp.Symbol("x", real=True) + 1], [x])


@pytest.mark.parametrize("expr, name", [
    (sp.besselj(0, x), "besselj"), (sp.gamma(x), "gamma"), (sp.Function("f")(x), "f"),
    (sp.Derivative(sp.Function("g")(x), x), "Derivative"), (sp.besselj(0, 1) * x, "besselj"),
])
def test_unsupported_function_error(expr, name):
    with pytest.raises(UnsupportedExpressionError, match=rf"'{name}'.*Supported functions: exp, log"):
        compile_exprs([expr], [x])


@pytest.mark.parametrize("expr", [x / 0, sp.nan * x, x + sp.I, sp.log(-2) * x])
def test_nan_zoo_complex_refused(expr):
    with pytest.raises(ExpressionError, match="real"):
        compile_exprs([expr], [x])


def test_bad_arguments():
    with pytest.raises(ExpressionError, match="string"):
        compile_exprs(["x + 1"], [x])
    with pytest.raises(ExpressionError, match="numeric SymPy expression"):
        compile_exprs([x > 0], [x])
    with pytest.raises(ExpressionError, match="sympy.Symbol"):
        compile_exprs([x], ["x"])
    with pytest.raises(ExpressionError, match="duplicates"):
        compile_exprs([x], [x, x])
    with pytest.raises(ExpressionError, match="Expected 2 input tensors"):
        compile_exprs([x + y], [x, y])([torch.zeros(3)])
