"""Fields over space: :class:`HybridPDE`, a hybrid model by the method of lines.

A field ``u(t, x)`` (or ``u(t, x, y)``) on a regular grid becomes one state per grid
point, and the known physics, written in SymPy with spatial derivatives
(``D * u.diff(x, 2)``), becomes central finite differences on the grid
(:mod:`sysid.model.lattice`). Everything a :class:`~sysid.HybridODE` does then holds
for the grid's states; :class:`HybridPDE` adds the field's layout, the translation of a
dataset over ``(time, x)`` into per-point channels and back, and the *pointwise* form of
the physics (one expression in the field, its derivatives and the coordinates), which
the torch field evaluates on the whole grid at once.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
import xarray as xr

from ..errors import DataError, ModelError, suggest
from .hybrid import HybridODE, _as_expr
from .lattice import Lattice, Side, regular_grid

__all__ = ["HybridPDE", "feature_name", "feature_table", "local_mlp_inputs"]

_KINDS = ("periodic", "dirichlet", "neumann")
_MAX_ORDER = 4


def feature_name(field: str, dims, orders) -> str:
    """``u_xx`` for the second x-derivative of ``u``, ``u_xy`` for the mixed one, ``u``
    for the field itself."""
    if not any(orders):
        return field
    return field + "_" + "".join(d * o for d, o in zip(dims, orders))


def _field_name(f, where: str) -> str:
    if isinstance(f, sp.core.function.AppliedUndef):
        return f.func.__name__
    if isinstance(f, sp.core.function.UndefinedFunction):
        raise ModelError(f"{where}: {f} is a SymPy function that is not applied to the space "
                         f"symbols; write u = sympy.Function('{f}')(x) (or (x, y)).")
    raise ModelError(f"{where} must be SymPy functions of the space symbols, e.g. "
                     f"u = sympy.Function('u')(x); received {f!r} of type {type(f).__name__}.")


def _side(dim: str, spec) -> Side:
    """A :class:`Side` from "periodic", "dirichlet", "neumann" or {kind: value or
    (left, right)}."""
    value = (0.0, 0.0)
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, raw), = spec.items()
        if kind == "periodic":
            raise ModelError(f"boundary[{dim!r}]: a periodic boundary takes no values; "
                             f"write boundary={{{dim!r}: 'periodic'}}.")
        try:
            pair = tuple(float(v) for v in (raw if isinstance(raw, (tuple, list)) else (raw, raw)))
        except (TypeError, ValueError):
            pair = ()
        if len(pair) != 2 or not all(np.isfinite(pair)):
            raise ModelError(f"boundary[{dim!r}]: the value(s) of {kind!r} must be a number or "
                             f"a (left, right) pair of numbers; received {raw!r}.")
        spec, value = kind, pair
    if not isinstance(spec, str) or spec not in _KINDS:
        raise ModelError(
            f"boundary[{dim!r}] must be one of {_KINDS} or a dict like {{'dirichlet': (0.0, "
            f"1.0)}}; received {spec!r}.{suggest(str(spec), _KINDS)}")
    return Side(spec, *value)


def _per_dimension(entries: dict, dims, what: str, kind: str, noun: str, example: str) -> dict:
    """``entries`` keyed by dimension name (str or Symbol keys), with a ModelError for a
    key that is not one of ``dims`` or a dimension without an entry (``example``: the fix,
    with ``{}`` for the first missing dimension's name)."""
    given = {(k.name if isinstance(k, sp.Symbol) else str(k)): v for k, v in entries.items()}
    for k in given:
        if k not in dims:
            raise ModelError(f"{what} names {k!r}, which is not {kind}.{suggest(k, dims)} "
                             f"Dimensions: {dims}.")
    missing = [d for d in dims if d not in given]
    if missing:
        raise ModelError(f"{what} has no {noun} for {missing}; give e.g. "
                         f"{example.format(missing[0])}.")
    return given


class HybridPDE(HybridODE):
    """A field over space: known physics with spatial derivatives plus a local residual.

    ``du/dt = physics(u, u_x, u_xx, ..., x, t; parameters) + residual``, discretised by
    central differences on a regular grid (the method of lines). Each grid point is a
    state (named ``u_3`` or ``u_3_5``); a Dirichlet boundary point holds its given value
    and is not a state.

    Parameters
    ----------
    fields : sequence of SymPy functions
        ``u = sympy.Function("u")(x)``: the fields, applied to the space symbols
        (the same ones, in the same order, for every field).
    space : dict {name or Symbol: array}
        The regular grid of each space dimension (the data's coordinate of that name).
    physics : dict {field: Expr}
        The known part of each field's time derivative; spatial derivatives as
        ``u.diff(x, 2)`` (orders up to 4 per dimension, mixed ones in 2-D).
    boundary : dict {name: "periodic" | "dirichlet" | "neumann" | {kind: value}}
        Every space dimension's condition; Dirichlet and Neumann default to the value 0,
        ``{"dirichlet": (0.0, 1.0)}`` gives the left and right values.
    parameters, fixed : dict {Symbol: float}
        As for :class:`~sysid.HybridODE`.
    residual : MLP or None
        ``sysid.MLP(width, depth, local=True)``: one small network applied at every grid
        point (shared weights), added to each field's derivative. It reads each field and
        its first derivatives there by default, or the features named in ``inputs``
        (``inputs=["u"]`` for a local reaction, ``["u", "u_x"]`` for an advection,
        ``"u_xx"`` for a diffusion-like term). What a network reads is what it can be:
        on Fisher-KPP, a network reading ``u_xx`` too imputed the field with 23 % error
        (it can act as a negative diffusion and feed on the unmeasured short waves of the
        initial field), one reading ``u`` alone with 3.7 %. A residual without
        ``local=True`` reads every grid state at once (rarely what a field needs).

    Examples
    --------
    >>> import numpy as np, sympy as sp, sysid
    >>> x = sp.Symbol("x"); u = sp.Function("u")(x); D = sp.Symbol("D", positive=True)
    >>> model = sysid.HybridPDE(fields=[u], space={"x": np.linspace(0, 1, 16, endpoint=False)},
    ...                         physics={u: D * u.diff(x, 2)}, boundary={"x": "periodic"},
    ...                         parameters={D: 0.1})
    >>> model
    HybridPDE(
      du/dt = D*u_xx
      on x: 16 points, periodic
    )
    >>> len(model.states), model.state_names[:3]
    (16, ['u_0', 'u_1', 'u_2'])
    """

    _state_equations = False      # the grid states' equations come from the fields'

    def __init__(self, fields, space, physics=None, boundary=None, parameters=None,
                 residual=None, fixed=None):
        fields = list(fields) if isinstance(fields, (list, tuple)) else [fields]
        if not fields:
            raise ModelError("A HybridPDE needs at least one field; received fields=[].")
        names = [_field_name(f, "fields") for f in fields]
        dims = fields[0].args
        if not dims or not all(isinstance(d, sp.Symbol) for d in dims) or len(dims) > 2:
            raise ModelError(f"fields must be functions of one or two space Symbols, e.g. "
                             f"u(x) or u(x, y); received {fields[0]}.")
        for f in fields:
            if f.args != dims:
                raise ModelError(f"Every field must be a function of the same space symbols "
                                 f"{dims}; {f} is not.")
        self.fields, self.space_symbols = fields, list(dims)
        dim_names = [d.name for d in dims]
        grids = self._grids(space, dim_names)
        sides = self._sides(boundary, dim_names)
        self.lattice = Lattice(names, dim_names, grids, sides)
        self.field_names = names
        self.field_physics = {}
        for key, expr in (physics or {}).items():
            name = key.name if isinstance(key, sp.Symbol) else (
                key.func.__name__ if isinstance(key, sp.core.function.AppliedUndef) else str(key))
            if name not in names:
                raise ModelError(f"physics has an entry for {key}, which is not a field."
                                 f"{suggest(name, names)} Fields: {names}.")
            self.field_physics[fields[names.index(name)]] = _as_expr(expr, f"physics[{key}]")
        self.features: dict[str, tuple[int, tuple[int, ...]]] = {}   # name -> (field, orders)
        self.pointwise = {f: self._pointwise(f, e) for f, e in self.field_physics.items()}
        states = [sp.Symbol(n) for n in self.lattice.state_names()]
        self._local = residual is not None and getattr(residual, "local", False)
        super().__init__(states, physics=None, parameters=parameters, fixed=fixed,
                         residual=None if self._local else residual)
        self._check_pointwise()
        if self._local:
            self.residual = residual
            self.residual_states = list(self.state_names)
            self.residual_inputs = list(self.state_names)
            table = feature_table(self)
            for name in residual.inputs or ():
                if name not in table:
                    raise ModelError(
                        f"MLP inputs names {name!r}, which is not a feature of the fields: "
                        f"a local network reads fields and their derivatives by name, e.g. "
                        f"{list(table)[:4]}.{suggest(name, table)}")
            if residual.states is not None:
                raise ModelError(f"MLP(local=True) adds a term to every field; states= does "
                                 f"not apply (received states={list(residual.states)}).")
        self._rhs = None

    # -- set-up -----------------------------------------------------------------------
    @staticmethod
    def _grids(space, dims):
        if not isinstance(space, dict):
            raise ModelError(f"space must be a dict {{name: grid}}; received {type(space).__name__}.")
        given = _per_dimension(space, dims, "space", "a space symbol of the fields", "grid",
                               "space={{'{}': numpy.linspace(...)}}")
        return [regular_grid(d, given[d]) for d in dims]

    @staticmethod
    def _sides(boundary, dims):
        given = _per_dimension(boundary or {}, dims, "boundary", "a space dimension",
                               "condition", "boundary={{'{}': 'periodic'}} ('periodic', 'dirichlet' or "
                               "'neumann')")
        return [_side(d, given[d]) for d in dims]

    def _pointwise(self, field, expr) -> sp.Expr:
        """``expr`` with derivatives and fields as plain symbols (``u_xx``, ``u``)."""
        dims = self.lattice.dims
        swap = {}
        for deriv in expr.atoms(sp.Derivative):
            if deriv.expr not in self.fields:
                raise ModelError(f"physics[{field}] differentiates {deriv.expr}, which is not "
                                 f"a field; only derivatives of {self.fields} are supported.")
            orders = [0] * len(dims)
            for var, count in deriv.variable_count:
                if var not in self.space_symbols:
                    raise ModelError(f"physics[{field}] differentiates with respect to {var}; "
                                     f"only the space symbols {dims} are supported (time "
                                     f"derivatives are the left-hand side).")
                orders[self.space_symbols.index(var)] += int(count)
            if max(orders) > _MAX_ORDER or sum(orders) > _MAX_ORDER:
                raise ModelError(f"physics[{field}]: {deriv} is of order {sum(orders)}; "
                                 f"orders up to {_MAX_ORDER} are supported.")
            k = self.fields.index(deriv.expr)
            name = feature_name(self.field_names[k], dims, orders)
            self.features[name] = (k, tuple(orders))
            swap[deriv] = sp.Symbol(name)
        out = expr.xreplace(swap)
        out = out.xreplace({f: sp.Symbol(n) for f, n in zip(self.fields, self.field_names)})
        return out

    def _check_pointwise(self):
        allowed = ({sp.Symbol(n) for n in self.field_names} | {sp.Symbol(n) for n in self.features}
                   | set(self.space_symbols) | set(self.parameters) | set(self.fixed))
        for f, e in self.pointwise.items():
            for s in sorted(e.free_symbols, key=lambda s: s.name):
                if s not in allowed and s.name != "t":
                    raise ModelError(f"physics[{f}] uses the symbol {s.name!r}, which is not a "
                                     f"field, space coordinate, parameter or fixed constant. "
                                     f"Add it to parameters={{...}} or fixed={{...}}.")

    # -- derived models ------------------------------------------------------------------
    def feature_functions(self) -> dict[sp.Symbol, sp.Expr]:
        """Every feature symbol (``u``, ``u_x``, ``u_xx``...) -> the field or its
        ``Derivative`` in SymPy."""
        out = {}
        for name, (k, orders) in feature_table(self).items():
            spec = [(s, o) for s, o in zip(self.space_symbols, orders) if o]
            out[sp.Symbol(name)] = sp.Derivative(self.fields[k], *spec) if spec else self.fields[k]
        return out

    def field_equations(self, values: dict) -> dict[str, sp.Expr]:
        """Each field's known physics with fixed constants and the parameter ``values``
        ({name: value}, those given) substituted, spatial derivatives as ``Derivative``."""
        subs = {s: sp.Float(values[s.name], 15) for s in self.parameters if s.name in values}
        back = self.feature_functions()
        return {n: sp.sympify(self.pointwise.get(f, 0)).subs(self.fixed).subs(subs).xreplace(back)
                for f, n in zip(self.fields, self.field_names)}

    def boundary_spec(self) -> dict:
        """The boundary conditions as given to the constructor."""
        return {d: s.kind if s.kind == "periodic" else {s.kind: (s.left, s.right)}
                for d, s in zip(self.lattice.dims, self.lattice.sides)}

    def with_physics(self, pointwise: dict, parameters: dict, names=()) -> "HybridPDE":
        """A physics-only model on the same grid whose physics per field is ``pointwise``
        (in feature symbols: ``u``, ``u_x``...), with ``parameters``."""
        back = self.feature_functions()
        physics = {f: sp.sympify(e).xreplace(back) for f, e in pointwise.items()}
        return HybridPDE(fields=self.fields,
                         space=dict(zip(self.lattice.dims, self.lattice.grids)),
                         physics=physics, boundary=self.boundary_spec(),
                         parameters=parameters, fixed=self.fixed)

    def _with_guesses(self, parameters: dict) -> "HybridPDE":
        return HybridPDE(fields=self.fields,
                         space=dict(zip(self.lattice.dims, self.lattice.grids)),
                         physics=self.field_physics, boundary=self.boundary_spec(),
                         parameters=parameters, fixed=self.fixed, residual=self.residual)

    # -- the per-point ODE ---------------------------------------------------------------
    def rhs(self) -> list[sp.Expr]:
        """The known physics of every grid state, finite differences written out."""
        if self._rhs is None:
            self._rhs = self._expand()
        return list(self._rhs)

    def _expand(self) -> list[sp.Expr]:
        lat = self.lattice
        syms = [{p: sp.Symbol(f"{n}_" + "_".join(map(str, p))) for p in lat.points}
                for n in self.field_names]
        out = []
        for k, f in enumerate(self.fields):
            expr = self.pointwise.get(f)
            for p in lat.points:
                if expr is None:
                    out.append(sp.Integer(0))
                    continue
                sub = {sp.Symbol(n): lat.value(syms, j, p) for j, n in enumerate(self.field_names)}
                sub.update({sp.Symbol(name): lat.stencil(syms, j, p, orders)
                            for name, (j, orders) in self.features.items()})
                sub.update({s: sp.Float(lat.grids[d][p[d]])
                            for d, s in enumerate(self.space_symbols)})
                out.append(expr.xreplace(sub).subs(self.fixed))
        return out

    def __repr__(self) -> str:
        lines = []
        for f, n in zip(self.fields, self.field_names):
            e = self.pointwise.get(f, 0)
            lines.append(f"d{n}/dt = {e}" + (" + NN" if self.residual is not None else ""))
        for d, side in zip(self.lattice.dims, self.lattice.sides):
            n = self.lattice.shape[self.lattice.dims.index(d)]
            what = side.kind if side.kind == "periodic" else (
                f"{side.kind} ({side.left:g}, {side.right:g})")
            lines.append(f"on {d}: {n} points, {what}")
        return "HybridPDE(\n  " + "\n  ".join(lines) + "\n)"

    def fill_unobserved(self, x0: np.ndarray, known: np.ndarray) -> np.ndarray:
        """Initial fields between the sensors: ``x0`` (rows, n) with its entries where
        ``known`` is False replaced by linear interpolation in space of the known ones
        (and the Dirichlet values); periodic dimensions wrap. In 2-D, the inverse-distance
        mean of the known points."""
        lat = self.lattice
        n = len(lat.points)
        coords = np.array([[lat.grids[d][p[d]] for d in range(len(lat.shape))]
                           for p in lat.points])
        out = np.array(x0, dtype=float)
        for k in range(len(self.field_names)):
            cols = slice(k * n, (k + 1) * n)
            for row in range(out.shape[0]):
                have = known[row, cols]
                if not have.any():
                    continue
                values = out[row, cols]
                out[row, cols] = np.where(have, values,
                                          self._interpolate(coords, have, values))
        return out

    def _interpolate(self, coords, have, values):
        lat = self.lattice
        if len(lat.shape) == 1:
            xs, vs = coords[have, 0], values[have]
            side, grid = lat.sides[0], lat.grids[0]
            if side.kind == "periodic":
                period = grid[-1] - grid[0] + lat.steps[0]
                xs = np.concatenate([xs - period, xs, xs + period])
                vs = np.concatenate([vs, vs, vs])
            elif side.kind == "dirichlet":
                xs = np.concatenate([[grid[0]], xs, [grid[-1]]])
                vs = np.concatenate([[side.left], vs, [side.right]])
            return np.interp(coords[:, 0], xs, vs)
        d2 = ((coords[:, None, :] - coords[None, have, :]) ** 2).sum(-1)
        w = 1.0 / np.maximum(d2, 1e-300)
        return (w * values[have]).sum(1) / w.sum(1)

    # -- data in and out ------------------------------------------------------------------
    def flatten(self, ds: xr.Dataset) -> xr.Dataset:
        """A dataset over ``(trajectory?, time, *space)`` as one channel per measured grid
        state (``u_3``), for the per-point ODE."""
        if not isinstance(ds, xr.Dataset):
            raise DataError(f"sysid needs an xarray.Dataset; received {type(ds).__name__}.")
        lat = self.lattice
        for d, grid in zip(lat.dims, lat.grids):
            if d not in ds.coords:
                raise DataError(f"The data have no coordinate {d!r}; the model's fields live on "
                                f"the grid space={{{d!r}: ...}}. Give the data dims (time, {d}).")
            have = np.asarray(ds[d].values, dtype=float)
            if have.size > 1 and np.any(np.diff(have) <= 0):
                raise DataError(f"The data's coordinate {d!r} is not sorted; sort it first: "
                                f"ds.sortby({d!r}).")
            if have.shape != grid.shape or not np.allclose(have, grid, rtol=1e-9, atol=1e-12):
                raise DataError(
                    f"The data's coordinate {d!r} ({have.size} points from {have.min():.6g} to "
                    f"{have.max():.6g}) is not the model's grid ({grid.size} points from "
                    f"{grid[0]:.6g} to {grid[-1]:.6g}); interpolate the data onto the grid "
                    f"(ds.interp({d}=grid)) or build the model on the data's grid.")
        out, n = {}, len(lat.points)
        for k, name in enumerate(self.field_names):
            if name not in ds.data_vars:
                continue
            var = ds[name]
            for p, state in zip(lat.points, self.state_names[k * n:(k + 1) * n]):
                point = var.isel({d: i for d, i in zip(lat.dims, p)}, drop=True)
                if bool(point.notnull().any()):
                    out[state] = point
        if not out:
            raise DataError(f"The data hold no measurement of the fields {self.field_names} "
                            f"(data variables: {list(ds.data_vars)}).")
        flat = xr.Dataset(out, attrs=dict(ds.attrs))
        return flat.drop_vars([c for c in flat.coords if c in lat.dims], errors="ignore")

    def gather(self, flat: xr.Dataset, template: xr.Dataset | None = None,
               missing: float | None = None) -> xr.Dataset:
        """Per-point variables (``u_3``, ``u_3_lower``...) back into fields over space;
        ``missing``: the value of grid points without a variable (the data's sensors
        only: NaN), else every state must be there (a model's output)."""
        lat = self.lattice
        out, n = {}, len(lat.points)
        for k, name in enumerate(self.field_names):
            states = self.state_names[k * n:(k + 1) * n]
            for suffix in ("", "_lower", "_upper"):
                present = [s for s in states if s + suffix in flat]
                if not present or (missing is None and states[0] + suffix not in flat):
                    continue
                first = flat[present[0] + suffix]
                values = np.empty(first.shape + lat.shape)
                values[...] = lat.boundary_values if missing is None else missing
                for p, s in zip(lat.points, states):
                    if s + suffix in flat:
                        values[(Ellipsis,) + p] = flat[s + suffix].values
                attrs = dict(first.attrs)
                if template is not None and name in template:
                    attrs = {**dict(template[name].attrs), **{a: v for a, v in attrs.items()
                                                               if a not in ("units", "long_name")}}
                out[name + suffix] = xr.DataArray(values, dims=first.dims + tuple(lat.dims),
                                                  attrs=attrs)
        coords = {d: (d, g) for d, g in zip(lat.dims, lat.grids)}
        if template is not None:
            coords = {d: template[d] for d in lat.dims if d in template.coords} or coords
        result = xr.Dataset(out, coords={**{c: flat[c] for c in flat.coords}, **coords},
                            attrs=dict(flat.attrs))
        return result


def feature_table(model: HybridPDE) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Every feature a local network may read, by name: ``u``, ``u_x``, ``u_xx``, ``u_xy``...
    (field index, orders per dimension), derivatives up to order 4."""
    import itertools

    dims = model.lattice.dims
    out = {}
    for k, name in enumerate(model.field_names):
        for orders in itertools.product(range(_MAX_ORDER + 1), repeat=len(dims)):
            if sum(orders) <= _MAX_ORDER:
                out[feature_name(name, dims, orders)] = (k, tuple(orders))
    return out


#: What a local residual reads by default: each field and its first derivatives.
DEFAULT_LOCAL_ORDER = 1


def local_mlp_inputs(model: HybridPDE) -> list[tuple[int, tuple[int, ...]]]:
    """What a local residual reads at each point, as (field, orders) pairs: the MLP's
    ``inputs`` (feature names such as ``"u"``, ``"u_x"``, ``"u_xx"``), or by default every
    field and its first derivative along each dimension."""
    table = feature_table(model)
    chosen = model.residual.inputs if model.residual is not None else None
    if chosen is not None:
        return [table[n] for n in chosen]
    dims = len(model.lattice.dims)
    out = []
    for k in range(len(model.field_names)):
        out.append((k, (0,) * dims))
        for order in range(1, DEFAULT_LOCAL_ORDER + 1):
            for d in range(dims):
                orders = [0] * dims
                orders[d] = order
                out.append((k, tuple(orders)))
    return out
