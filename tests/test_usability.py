"""Usability defects reported while writing tutorials, one section per defect.

1. States measured only through an observation expression were labelled "never measured".
2. ``import sysid; sysid.cli`` raised AttributeError.
3. In Jupyter without ipywidgets, the progress bar warned "IProgress not found".
4. An unsupported SymPy function was refused only when fitting started; the parser and
   the compiler disagreed on the list of functions (the parser lacked ``cbrt``).
5. Symbols with mismatched assumptions were refused without naming their assumptions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
import warnings

import matplotlib
import numpy as np
import pytest
import sympy as sp
import xarray as xr

import sysid
from sysid.errors import ModelError, UnsupportedExpressionError

matplotlib.use("Agg")

x1, x2 = sp.symbols("x1 x2")
a, b = sp.symbols("a b", positive=True)
FAST = dict(progress=False, epochs=0, lbfgs_iterations=0, shooting="single")


# -- 1. measured-through labels ---------------------------------------------------------------
def _tanks(observations):
    return sysid.HybridODE(states=[x1, x2], physics={x1: -a * x1, x2: a * x1 - b * x2},
                           parameters={a: 0.5, b: 0.3}, observations=observations)


def _data(name, values_of):
    time = np.linspace(0.0, 4.0, 17)
    u1 = 2.0 * np.exp(-0.5 * time)
    u2 = 2.0 * 0.5 / (0.3 - 0.5) * (np.exp(-0.5 * time) - np.exp(-0.3 * time))
    return xr.Dataset({name: ("time", values_of(u1, u2), {"long_name": "level", "units": "m"})},
                      coords={"time": time})


@pytest.mark.parametrize("observations, values_of, notes", [
    ({"y": x2}, lambda u1, u2: u2,
     {"x1": " (never measured)", "x2": " (measured as y)"}),
    ({"y": x1 + x2}, lambda u1, u2: u1 + u2,
     {"x1": " (measured through y)", "x2": " (measured through y)"}),
])
def test_states_measured_through_an_observation_are_labelled_so(observations, values_of, notes):
    result = sysid.fit(_tanks(observations), _data("y", values_of), **FAST)
    imputed = result.impute()
    for name, note in notes.items():
        assert imputed[name].attrs["long_name"] == name + note
    assert imputed["y"].attrs == {"long_name": "level", "units": "m"}     # the channel itself
    initial = result.initial_states
    for name, note in notes.items():
        assert initial[name].attrs["long_name"] == name + note
    fig = result.plot()
    try:
        labels = [ax.get_ylabel().replace("\n", " ") for ax in fig.axes]
        assert labels == [name + note for name, note in notes.items()] + ["level [m]"]
        legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
        if "as y" in notes["x2"]:      # x2 is y: its panel shows y's data and a fit
            assert legends[1] == ["data (y)", "fit"]
        else:
            assert legends[1] == ["imputed"]
    finally:
        matplotlib.pyplot.close(fig)


def test_a_state_measured_under_its_own_name_has_no_note():
    result = sysid.fit(_tanks(None), _data("x2", lambda u1, u2: u2), **FAST)
    imputed = result.impute()
    assert imputed["x1"].attrs["long_name"] == "x1 (never measured)"
    assert imputed["x2"].attrs == {"long_name": "level", "units": "m"}


# -- 2. sysid.cli --------------------------------------------------------------------------------
def test_cli_is_reachable_after_import_sysid():
    code = ("import sys, sysid; assert 'sysid.cli' not in sys.modules; "
            "assert callable(sysid.cli.main); assert 'cli' in dir(sysid); "
            "print(sysid.cli.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "sysid.cli"
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        sysid.no_such_thing


def test_python_m_sysid_help_still_works():
    out = subprocess.run([sys.executable, "-m", "sysid", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage: sysid" in out.stdout and "demo" in out.stdout and "fit" in out.stdout


# -- 3. progress bar in Jupyter without ipywidgets -----------------------------------------------
@pytest.fixture
def jupyter_without_ipywidgets(monkeypatch):
    """What tqdm.auto sees in a Jupyter kernel where ipywidgets is not installed."""
    shell = type("ZMQInteractiveShell", (), {})()
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)        # import ipywidgets fails
    for name in ("tqdm.auto", "tqdm.autonotebook", "tqdm.notebook"):   # imported afresh
        monkeypatch.delitem(sys.modules, name, raising=False)
    for key in [k for k in os.environ if k == "QT_API" or k.startswith("SPYDER")]:
        monkeypatch.delenv(key)


def test_progress_bar_falls_back_quietly_without_ipywidgets(jupyter_without_ipywidgets, capsys):
    from tqdm.std import tqdm as text_bar

    from sysid.training.trainer import _progress_bar

    opts = types.SimpleNamespace(progress=True, epochs=5, lbfgs_iterations=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bar = _progress_bar(opts, opts.epochs)
        bar.update(1)
        bar.close()
    assert not [w for w in caught if "IProgress" in str(w.message)], \
        [str(w.message) for w in caught]
    assert type(bar).__module__.startswith("tqdm") and isinstance(bar, text_bar)
    assert "IProgress" not in capsys.readouterr().err


# -- 4. unsupported functions, refused when the model is built; one list ------------------------
@pytest.mark.parametrize("term, name", [
    (sp.besselj(0, x1), "the function 'besselj'"),
    (sp.Function("f")(x1), "the undefined function 'f'"),
    (sp.gamma(x1), "the function 'gamma'"),
])
def test_unsupported_function_is_refused_when_the_model_is_built(term, name):
    with pytest.raises(UnsupportedExpressionError) as info:
        sysid.HybridODE(states=[x1, x2], physics={x1: -a * x1, x2: a * x1 + term},
                        parameters={a: 0.5})
    message = str(info.value)
    assert message.startswith(f"physics[x2] uses {name}")
    assert f"dx2/dt = a*x1 + {term}" in message                 # the equation it is in
    assert "Supported functions: " + ", ".join(sysid.SUPPORTED_FUNCTIONS) in message
    assert "sysid.MLP" in message


def test_unsupported_function_in_an_observation_is_refused_too():
    with pytest.raises(UnsupportedExpressionError,
                       match=r"^observations\['y'\] uses the function 'besselj'.* in "
                             r"y = besselj\(1, x1\)\. Supported functions: exp, log"):
        sysid.HybridODE(states=[x1], physics={x1: -a * x1}, parameters={a: 0.5},
                        observations={"y": sp.besselj(1, x1)})


def test_supported_functions_is_public_and_one_list_for_parser_and_compiler():
    from sysid.model import compiler as _physics, parser as _spec

    names = sysid.SUPPORTED_FUNCTIONS
    assert isinstance(names, tuple) and "erf" in names and "cbrt" in names
    assert "SUPPORTED_FUNCTIONS" in sysid.__all__
    assert _physics.SUPPORTED_FUNCTIONS is names
    assert set(_spec.ALLOWED_FUNCTIONS) == set(names) | {"abs"}
    xs = {"x": x1, "y": x2}
    args = {"atan2": "y, x", "Min": "x, y", "Max": "x, y", "Piecewise": "(x, x > 0), (y, True)"}
    for name in names:     # every name parses, passes the model's check and compiles
        expr = _spec.parse_expression(f"{name}({args.get(name, 'x')})", xs)
        model = sysid.HybridODE(states=[x1, x2], physics={x1: expr})
        _physics.compile_exprs(model.rhs(), [x1, x2])


def test_parser_accepts_cbrt_like_the_compiler():
    import torch

    from sysid.model.compiler import compile_exprs
    from sysid.model.parser import expr_to_text, parse_expression

    expr = parse_expression("cbrt(x1) + 1", {"x1": x1})
    assert expr == sp.cbrt(x1) + 1
    assert parse_expression(expr_to_text(expr), {"x1": x1}) == expr
    (value,) = compile_exprs([expr], [x1])([torch.tensor([8.0], dtype=torch.float64)])
    assert value.item() == pytest.approx(3.0)


# -- 5. mismatched assumptions ------------------------------------------------------------------
def test_assumption_clash_names_the_symbols_and_their_assumptions():
    x = sp.Symbol("x", positive=True)
    with pytest.raises(ModelError) as info:
        sysid.HybridODE(states=[x], physics={x: -a * sp.Symbol("x")}, parameters={a: 1.0})
    assert str(info.value) == (
        "physics[x] uses a symbol 'x' whose assumptions differ from the one declared: 'x' is "
        "Symbol('x') there, but the state 'x' is declared as Symbol('x', positive=True). "
        "SymPy treats symbols of the same name with other assumptions as different symbols, "
        "so the equation would not use the declared one. Fix: create each symbol once and "
        "reuse it in states/parameters and in the equations "
        "(x = sympy.Symbol('x', positive=True)).")


def test_assumption_clash_lists_every_clashing_symbol():
    k = sp.Symbol("k", positive=True)
    with pytest.raises(ModelError) as info:
        sysid.HybridODE(states=[x1, x2], parameters={k: 1.0},
                        physics={x1: -sp.Symbol("k") * sp.Symbol("x1", real=True)})
    message = str(info.value)
    assert message.startswith("physics[x1] uses symbols 'k', 'x1' whose assumptions differ "
                              "from the ones declared: ")
    assert "'k' is Symbol('k') there, but the parameter 'k' is declared as " \
           "Symbol('k', positive=True)" in message
    assert "'x1' is Symbol('x1', real=True) there, but the state 'x1' is declared as " \
           "Symbol('x1')" in message
    assert "(k = sympy.Symbol('k', positive=True), x1 = sympy.Symbol('x1'))" in message
