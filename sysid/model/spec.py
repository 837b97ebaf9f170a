"""A model as plain data and back: names, SymPy assumptions, equations as text.

:func:`model_to_spec` writes a :class:`~sysid.HybridODE` as a dict of strings, numbers and
lists (what saved results, checkpoints' fingerprints and Dask workers carry);
:func:`model_from_spec` rebuilds it with the whitelist parser of
:mod:`sysid.model.parser`, so reading a spec never executes code from it.
"""

from __future__ import annotations

import math

import sympy as sp

from ..errors import FileFormatError, SysidError
from .hybrid import MLP, HybridODE
from .limits import check_spec_sizes
from .parser import expr_to_text, parse_expression
from .pde import HybridPDE

__all__ = ["model_to_spec", "model_from_spec"]

_ASSUMPTIONS = ("positive", "negative", "nonnegative", "nonpositive", "real", "integer",
                "finite", "nonzero", "zero", "extended_real")


def _symbol_spec(sym: sp.Symbol, value=None, bounds=None) -> dict:
    out = {"name": sym.name,
           "assumptions": {k: bool(v) for k, v in sym._assumptions_orig.items()
                           if k in _ASSUMPTIONS and v is not None}}
    if value is not None:
        out["value"] = float(value)
    if bounds is not None:      # (low, high) of a bounded parameter; an open side absent
        out.update({k: float(b) for k, b in zip(("low", "high"), bounds) if math.isfinite(b)})
    return out


def _parameter(entry, where):
    """Symbol -> guess, or (guess, low, high) for an entry with bounds."""
    value = _value(entry, where)
    if "low" not in entry and "high" not in entry:
        return value
    sides = []
    for key in ("low", "high"):
        b = entry.get(key)
        if b is not None and (not isinstance(b, (int, float)) or isinstance(b, bool)
                              or not math.isfinite(b)):
            raise FileFormatError(f"Invalid {key} bound for {entry.get('name')!r} in {where}: "
                                  f"{b!r}; give a finite number (or leave it out for an "
                                  f"open side).")
        sides.append(None if b is None else float(b))
    return (value, *sides)


def model_to_spec(model: HybridODE) -> dict:
    """The model as plain data: names, assumptions, equations as text."""
    exprs = list(model.physics.values()) + list(model.observations.values())
    time_syms = {s for e in exprs for s in e.free_symbols if s.name == "t"}
    return {
        "states": [_symbol_spec(s) for s in model.states],
        "inputs": [_symbol_spec(s) for s in model.inputs],
        "parameters": [_symbol_spec(s, v, model.bounds.get(s))
                       for s, v in model.parameters.items()],
        "fixed": [_symbol_spec(s, v) for s, v in model.fixed.items()],
        "time": [_symbol_spec(s) for s in time_syms],
        "physics": {s.name: expr_to_text(e) for s, e in model.physics.items()},
        "observations": {k: expr_to_text(e) for k, e in model.observations.items()},
        "residual": None if model.residual is None else model.residual.to_dict(),
        # algebraic states (sympy.Eq in physics): their solution is the observation of
        # the same name; absent when there are none (older specs read the same)
        **({"algebraic": [_symbol_spec(z) for z in model.algebraic]}
           if getattr(model, "algebraic", None) else {}),
        **({"pde": _pde_spec(model)} if isinstance(model, HybridPDE) else {}),
    }


#: The most grid points a saved field may declare (a tampered file could ask for more
#: memory than any machine has).
MAX_GRID_POINTS = 2 ** 20


def _pde_spec(model: HybridPDE) -> dict:
    lat = model.lattice
    return {"fields": list(model.field_names),
            "space": [{**_symbol_spec(s), "grid": [float(v) for v in g]}
                      for s, g in zip(model.space_symbols, lat.grids)],
            "boundary": {d: (b if isinstance(b, str) else {k: list(v) for k, v in b.items()})
                         for d, b in model.boundary_spec().items()},
            "physics": {model.field_names[model.fields.index(f)]: expr_to_text(e)
                        for f, e in model.pointwise.items()}}


def _pde_from_spec(pde: dict, params, fixed, time, residual) -> HybridPDE:
    names = pde["fields"]
    if not isinstance(names, list) or not all(isinstance(n, str) and n.isidentifier()
                                              for n in names):
        raise FileFormatError(f"Invalid field names in the saved model: {names!r}.")
    space = [_symbol(e, "space") for e in pde["space"]]
    grids = [e["grid"] for e in pde["space"]]
    if not all(isinstance(g, list) for g in grids) or math.prod(len(g) for g in grids) \
            * max(len(names), 1) > MAX_GRID_POINTS:
        raise FileFormatError(f"The saved field's grid is invalid or larger than "
                              f"{MAX_GRID_POINTS:,} points.")
    fields = [sp.Function(n)(*space) for n in names]
    grid = {s.name: g for s, g in zip(space, grids)}
    boundary = {d: b if isinstance(b, str) else {k: tuple(v) for k, v in b.items()}
                for d, b in pde["boundary"].items()}
    skeleton = HybridPDE(fields=fields, space=grid, boundary=boundary)
    back = skeleton.feature_functions()
    table = {s.name: s for s in [*params, *fixed, *time, *space, *back]}
    table.setdefault("t", sp.Symbol("t", real=True))
    physics = {}
    for name, text in pde["physics"].items():
        if name not in names:
            raise FileFormatError(f"The saved physics names {name!r}, which is not a field.")
        physics[fields[names.index(name)]] = parse_expression(text, table).xreplace(back)
    return HybridPDE(fields=fields, space=grid, physics=physics, boundary=boundary,
                     parameters=params, fixed=fixed, residual=residual)


def _symbol(entry, where) -> sp.Symbol:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
            or not entry["name"].isidentifier():
        raise FileFormatError(f"Invalid symbol entry in {where}: {entry!r}.")
    assumptions = entry.get("assumptions", {})
    if not isinstance(assumptions, dict) or any(
            k not in _ASSUMPTIONS or not isinstance(v, bool) for k, v in assumptions.items()):
        raise FileFormatError(f"Invalid assumptions for {entry['name']!r} in {where}: "
                              f"{assumptions!r}; allowed keys {_ASSUMPTIONS} with bool values.")
    try:
        return sp.Symbol(entry["name"], **assumptions)
    except ValueError as err:       # sympy's InconsistentAssumptions, e.g. real=False with
        raise FileFormatError(      # positive=True
            f"Contradictory assumptions for {entry['name']!r} in {where}: {assumptions!r} "
            f"(SymPy: {type(err).__name__}). Drop the ones that conflict, e.g. keep only "
            f"positive=true.") from None


def _value(entry, where) -> float:
    v = entry.get("value")
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise FileFormatError(f"Invalid value for {entry.get('name')!r} in {where}: {v!r}.")
    return float(v)


def model_from_spec(spec: dict) -> HybridODE:
    """Rebuild a :class:`HybridODE` from :func:`model_to_spec` data (no code is run)."""
    if not isinstance(spec, dict):
        raise FileFormatError(f"The model spec must be a mapping; received {type(spec).__name__}.")
    check_spec_sizes(spec)         # sizes against limits before anything is built
    try:
        states = [_symbol(e, "states") for e in spec["states"]]
        inputs = [_symbol(e, "inputs") for e in spec.get("inputs", [])]
        params = {_symbol(e, "parameters"): _parameter(e, "parameters")
                  for e in spec.get("parameters", [])}
        fixed = {_symbol(e, "fixed"): _value(e, "fixed") for e in spec.get("fixed", [])}
        time = [_symbol(e, "time") for e in spec.get("time", [])]
        algebraic = [_symbol(e, "algebraic") for e in spec.get("algebraic", [])]
        table = {s.name: s for s in [*states, *algebraic, *inputs, *params, *fixed, *time]}
        table.setdefault("t", sp.Symbol("t", real=True))
        physics = {table[k]: parse_expression(v, table) for k, v in spec.get("physics", {}).items()}
        obs = {k: parse_expression(v, table) for k, v in spec.get("observations", {}).items()}
        for z in algebraic:     # its equation is the observation of its name
            if z.name not in obs:
                raise FileFormatError(f"The algebraic state {z.name!r} has no equation: give "
                                      f"it as {z.name} = \"expression of the states\".")
            states.append(z)
            physics[z] = sp.Eq(z, obs.pop(z.name))
        res = spec.get("residual")
        residual = None if res is None else MLP(**{k: res[k] for k in (
            "width", "depth", "states", "inputs", "activation")}, local=res.get("local", False))
        if "pde" in spec:
            return _pde_from_spec(spec["pde"], params, fixed, time, residual)
    except SysidError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise FileFormatError(f"The model spec is incomplete or malformed ({err!r}).") from None
    return HybridODE(states=states, physics=physics, parameters=params, residual=residual,
                     inputs=inputs, observations=obs, fixed=fixed)
