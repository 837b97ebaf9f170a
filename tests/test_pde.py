"""Fields over space (issue 25): HybridPDE by the method of lines.

The finite differences in torch (on the whole grid) and in SymPy (per grid point, for the
C solver and the printed model) agree for every boundary condition; the scheme converges
at second order; mistakes in the model or the data get errors that say what to do; fits
on synthetic fields (truth on a 4x finer grid) recover the parameters, the imputed field
and, from a local network, the reaction term.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

import sysid
from sysid.errors import DataError, ModelError
from sysid.model.compiler import CompiledExprs
from sysid.model.pde_field import PDEField
from sysid.model.parameters import transform_for

x, y = sp.symbols("x y")
D, r, a = sp.symbols("D r a", positive=True)


def _field(model):
    syms = list(model.parameters)
    vals = [model.parameters[s] for s in syms]
    tr = transform_for(syms, vals)
    return PDEField(model, [], tr, tr.inverse(vals), None)


def _both(model, seed=0):
    """The torch field and the per-point SymPy equations at a random state."""
    gen = torch.Generator().manual_seed(seed)
    n = len(model.states)
    X = torch.rand(3, n, generator=gen, dtype=torch.float64)
    t = torch.zeros(3, dtype=torch.float64)
    torch_f = _field(model).physics(t, X, torch.zeros(3, 0, dtype=torch.float64))
    variables = list(model.states) + [sysid.t] + list(model.parameters)
    sym = CompiledExprs(model.rhs(), variables)
    vals = [*X.unbind(-1), t, *[torch.tensor(v, dtype=torch.float64)
                                for v in model.parameters.values()]]
    return torch_f.detach(), torch.stack(sym(vals), -1)


@pytest.mark.parametrize("boundary", ["periodic", "neumann", {"neumann": (0.3, -0.2)},
                                      "dirichlet", {"dirichlet": (0.5, 1.5)}])
def test_torch_and_sympy_differences_agree_in_1d(boundary):
    u = sp.Function("u")(x)
    grid = np.linspace(0.0, 2.0, 9)
    model = sysid.HybridPDE(
        fields=[u], space={"x": grid}, boundary={"x": boundary},
        physics={u: D * u.diff(x, 2) - a * u * u.diff(x) + 0.1 * u.diff(x, 4)
                 - 0.05 * u.diff(x, 3) + r * x * u},
        parameters={D: 0.3, a: 1.2, r: 0.7})
    f, g = _both(model)
    np.testing.assert_allclose(f.numpy(), g.numpy(), rtol=1e-10, atol=1e-9)
    n = 7 if "dirichlet" in str(boundary) else 9       # Dirichlet ends hold their values
    assert len(model.states) == n


@pytest.mark.parametrize("bx,by", [("periodic", "neumann"), ({"dirichlet": (1.0, 2.0)},
                                                             {"neumann": (0.5, 0.0)})])
def test_torch_and_sympy_differences_agree_in_2d(bx, by):
    u, v = sp.Function("u")(x, y), sp.Function("v")(x, y)
    model = sysid.HybridPDE(
        fields=[u, v], space={"x": np.linspace(0, 1, 6), "y": np.linspace(0, 2, 5)},
        boundary={"x": bx, "y": by},
        physics={u: D * (u.diff(x, 2) + u.diff(y, 2)) + a * u.diff(x, y) - u * v,
                 v: r * v.diff(x) * u.diff(y)},
        parameters={D: 0.3, a: 0.4, r: 0.9})
    f, g = _both(model, seed=1)
    np.testing.assert_allclose(f.numpy(), g.numpy(), rtol=1e-10, atol=1e-9)


def test_second_derivative_converges_at_second_order():
    u = sp.Function("u")(x)
    errors = []
    for n in (32, 64):
        grid = np.linspace(0, 2 * np.pi, n, endpoint=False)
        model = sysid.HybridPDE(fields=[u], space={"x": grid}, boundary={"x": "periodic"},
                                physics={u: u.diff(x, 2)})
        X = torch.as_tensor(np.sin(grid))[None]
        f = _field(model).physics(torch.zeros(1, dtype=torch.float64), X,
                                  torch.zeros(1, 0, dtype=torch.float64))
        errors.append(float(np.max(np.abs(f.numpy()[0] + np.sin(grid)))))
    assert errors[0] < 1e-2
    assert 3.8 < errors[0] / errors[1] < 4.2          # halving dx quarters the error


def test_mistakes_in_the_model_get_clear_errors():
    u = sp.Function("u")(x)
    grid = np.linspace(0, 1, 10)
    ok = dict(fields=[u], space={"x": grid}, boundary={"x": "periodic"},
              physics={u: D * u.diff(x, 2)}, parameters={D: 0.1})
    with pytest.raises(ModelError, match="not evenly spaced.*interp"):
        sysid.HybridPDE(**{**ok, "space": {"x": np.r_[0, 0.1, 0.3, 0.4, 0.5]}})
    with pytest.raises(ModelError, match="sorted"):
        sysid.HybridPDE(**{**ok, "space": {"x": grid[::-1]}})
    with pytest.raises(ModelError, match="boundary names 'z'"):
        sysid.HybridPDE(**{**ok, "boundary": {"x": "periodic", "z": "periodic"}})
    with pytest.raises(ModelError, match="one of .*periodic.*Did you mean 'periodic'"):
        sysid.HybridPDE(**{**ok, "boundary": {"x": "periodc"}})
    with pytest.raises(ModelError, match="no condition for \\['x'\\]"):
        sysid.HybridPDE(**{**ok, "boundary": {}})
    with pytest.raises(ModelError, match="not applied"):
        sysid.HybridPDE(**{**ok, "fields": [sp.Function("u")]})
    with pytest.raises(ModelError, match="with respect to y; only the space symbols"):
        sysid.HybridPDE(**{**ok, "physics": {u: sp.Derivative(u, y)}})
    with pytest.raises(ModelError, match="'k'.*parameters"):
        sysid.HybridPDE(**{**ok, "physics": {u: sp.Symbol("k") * u}})
    with pytest.raises(ModelError, match="'u_xxx_typo'.*not a feature"):
        sysid.HybridPDE(**{**ok, "residual": sysid.MLP(4, 1, local=True, inputs=["u_xxx_typo"])})


def test_mistakes_in_the_data_get_clear_errors():
    data = sysid.datasets.simulate("fisher_kpp", n_points=16, sensors=4, n_times=8)
    u = sp.Function("u")(x)
    model = sysid.HybridPDE(fields=[u], space={"x": data["x"].values},
                            boundary={"x": "periodic"}, physics={u: D * u.diff(x, 2)},
                            parameters={D: 0.1})
    with pytest.raises(DataError, match="not sorted.*sortby"):
        sysid.fit(model, data.isel(x=slice(None, None, -1)), progress=False)
    with pytest.raises(DataError, match="not the model's grid.*interp"):
        sysid.fit(model, data.assign_coords(x=data["x"].values * 2), progress=False)
    with pytest.raises(DataError, match="no coordinate 'x'"):
        sysid.fit(model, data.rename(x="z"), progress=False)


@pytest.fixture(scope="module")
def fisher():
    data, truth = sysid.datasets.simulate("fisher_kpp", n_points=32, sensors=8, seed=0,
                                          truth=True)
    return data, truth


def test_physics_fit_recovers_fisher_kpp(fisher):
    data, truth = fisher
    u = sp.Function("u")(x)
    model = sysid.HybridPDE(fields=[u], space={"x": data["x"].values},
                            physics={u: D * u.diff(x, 2) + r * u * (1 - u)},
                            boundary={"x": "periodic"}, parameters={D: 0.05, r: 0.5})
    result = sysid.fit(model, data, progress=False)
    assert result.options.solver == "rk4" and result.options.max_step > 0    # auto: a field
    assert result.parameters["r"] == pytest.approx(1.0, rel=0.05)
    assert result.parameters["D"] == pytest.approx(0.1, rel=0.1)
    table = result.parameter_table(0.95)
    assert table.loc["r", "lower"] < 1.0 < table.loc["r", "upper"] + 0.01
    field = result.impute(level=0.9)
    assert field["u"].dims == ("time", "x") and "u_lower" in field and "u_upper" in field
    assert bool((field["u_lower"] <= field["u"]).all() and (field["u"] <= field["u_upper"]).all())
    err = float(np.sqrt(((field["u"] - truth["u"]) ** 2).mean()) / truth["u"].std())
    assert err < 0.05                  # measured 0.035: the whole field, 8 of 32 points sensed
    future = result.forecast(horizon=1.0, n=4)
    assert future["u"].shape == (4, 32) and float(future["u"].max()) < 1.05
    eq = result.equations["u"]
    assert eq.has(sp.Derivative(u, (x, 2)))
    fig = result.plot()
    assert "sensors" in fig.axes[0].get_title()
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_local_residual_learns_the_reaction_and_symbolic_finds_it(fisher):
    data, truth = fisher
    u = sp.Function("u")(x)
    model = sysid.HybridPDE(fields=[u], space={"x": data["x"].values},
                            physics={u: D * u.diff(x, 2)}, boundary={"x": "periodic"},
                            fixed={D: 0.1}, residual=sysid.MLP(8, 1, local=True, inputs=["u"]))
    result = sysid.fit(model, data, progress=False, throw=False)
    field = result.impute()
    err = float(np.sqrt(((field["u"] - truth["u"]) ** 2).mean()) / truth["u"].std())
    assert err < 0.07                           # measured 0.044
    summary = result.symbolic()
    terms = summary.equations["u"]
    coefs = {sp.sstr(m): float(c) for m, c in terms.as_coefficients_dict().items()}
    assert set(coefs) == {"u(x)", "u(x)**2"}    # r u - r u^2, nothing else
    assert coefs["u(x)"] == pytest.approx(1.0, rel=0.06)       # measured 0.962
    assert coefs["u(x)**2"] == pytest.approx(-1.0, rel=0.06)
    latex = summary.to_latex()
    assert "\\frac{\\partial u}{\\partial t}" in latex and "u_{xx}" in latex


def test_dirichlet_values_are_kept_in_the_imputed_field():
    data = sysid.datasets.simulate("fisher_kpp", n_points=16, sensors=4, n_times=10, seed=2)
    u = sp.Function("u")(x)
    model = sysid.HybridPDE(fields=[u], space={"x": data["x"].values},
                            boundary={"x": {"dirichlet": (0.1, 0.2)}},
                            physics={u: D * u.diff(x, 2) + r * u * (1 - u)},
                            parameters={D: 0.1, r: 1.0})
    result = sysid.fit(model, data, progress=False, throw=False)
    field = result.impute()
    np.testing.assert_allclose(field["u"].isel(x=0), 0.1)
    np.testing.assert_allclose(field["u"].isel(x=-1), 0.2)
    assert len(result.model.states) == 14


def test_a_fitted_field_saves_and_loads_bit_identically(tmp_path):
    data = sysid.datasets.simulate("fisher_kpp", n_points=16, sensors=4, n_times=12, seed=3)
    u = sp.Function("u")(x)
    model = sysid.HybridPDE(fields=[u], space={"x": data["x"].values},
                            physics={u: D * u.diff(x, 2)}, boundary={"x": {"neumann": 0.0}},
                            fixed={D: 0.1}, residual=sysid.MLP(4, 1, local=True, inputs=["u"]))
    result = sysid.fit(model, data, progress=False, throw=False, epochs=5, lbfgs_iterations=5,
                       polish_iterations=0)
    path = tmp_path / "field.sysid"
    result.save(path)
    again = sysid.load(path)
    assert isinstance(again, sysid.FieldResult)
    assert again.model.pointwise == result.model.pointwise
    np.testing.assert_array_equal(again.impute()["u"].values, result.impute()["u"].values)
    assert int(again.data["u"].notnull().any("time").sum()) == 4     # the sensors again


def test_more_mistakes_get_errors_that_say_what_to_do():
    u = sp.Function("u")(x)
    grid = np.linspace(0, 1, 10)
    ok = dict(fields=[u], space={"x": grid}, boundary={"x": "periodic"},
              physics={u: D * u.diff(x, 2)}, parameters={D: 0.1})
    with pytest.raises(ModelError, match="space has no grid for \\['x'\\].*linspace"):
        sysid.HybridPDE(**{**ok, "space": {}})
    with pytest.raises(ModelError, match="space names 'k', which is not a space symbol"):
        sysid.HybridPDE(**{**ok, "space": {"x": grid, "k": grid}})
    with pytest.raises(ModelError, match="periodic boundary takes no values"):
        sysid.HybridPDE(**{**ok, "boundary": {"x": {"periodic": 1.0}}})
    with pytest.raises(ModelError, match="must be a number or a \\(left, right\\) pair"):
        sysid.HybridPDE(**{**ok, "boundary": {"x": {"dirichlet": "hot"}}})
    with pytest.raises(ModelError, match="states= does not apply"):
        sysid.HybridPDE(**{**ok, "residual": sysid.MLP(4, 1, local=True, states=["u_1"])})
    model = sysid.HybridPDE(**ok)
    data = sysid.datasets.simulate("fisher_kpp", n_points=10, sensors=3, n_times=6)
    with pytest.raises(DataError, match="no measurement of the fields \\['u'\\]"):
        sysid.fit(model, data.rename(u="v").assign_coords(x=grid), progress=False)


def test_a_saved_field_that_declares_a_huge_grid_is_refused():
    from sysid.errors import FileFormatError
    from sysid.model.spec import model_from_spec, model_to_spec

    u = sp.Function("u")(x)
    model = sysid.HybridPDE(fields=[u], space={"x": np.linspace(0, 1, 8)},
                            boundary={"x": "periodic"}, physics={u: D * u.diff(x, 2)},
                            parameters={D: 0.1})
    spec = model_to_spec(model)
    assert model_from_spec(spec).pointwise == model.pointwise       # the round trip
    spec["pde"]["space"][0]["grid"] = [0.0] * (2 ** 21)
    with pytest.raises(FileFormatError, match="larger than 1,048,576 points"):
        model_from_spec(spec)
