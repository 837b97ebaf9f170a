"""A field's grid, its boundary conditions and its finite differences (method of lines).

A :class:`Lattice` holds the regular grid of one or two space dimensions, the boundary
condition of each dimension, and which grid points are states (every point of every
field, except the points on a Dirichlet boundary, whose values are given). It turns a
state vector into the full grid, pads the grid with ghost points from the boundary
conditions, and takes central differences of any order up to 4 along each dimension
(tensor products for mixed derivatives), in torch for the solver and in SymPy for the
per-point equations, with the same ghost rules:

* periodic: the grid wraps (its last point is followed by its first; the grid does
  not repeat the first point at the end);
* Dirichlet ``g``: the boundary point holds ``g``; a ghost ``k`` points outside is
  ``2 g - u_k`` (the field is odd about the boundary value);
* Neumann ``g`` (the outward-agnostic derivative ``du/dx = g`` at the boundary point):
  the ghost ``k`` points outside is ``u_k - 2 k dx g`` on the left, ``u_{N-1-k} + 2 k dx
  g`` on the right (second-order mirror).

Dimensions are padded in order (the first, then the second over the padded first), and
the SymPy resolution of a ghost index unwinds them in the reverse order, so corner
ghosts agree between the two forms. In torch, the padding is one ``pad`` per dimension
(circular, or reflected and then corrected by a fixed multiplier and offset), and all
the derivatives a caller wants come from one convolution with the stencils.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import sympy as sp
import torch

from ..errors import ModelError

__all__ = ["Lattice", "Side", "STENCILS", "regular_grid"]

#: Central differences, second-order accurate: order -> (offset, weight) pairs, divided by
#: ``dx ** order``.
STENCILS = {
    1: ((-1, Fraction(-1, 2)), (1, Fraction(1, 2))),
    2: ((-1, Fraction(1)), (0, Fraction(-2)), (1, Fraction(1))),
    3: ((-2, Fraction(-1, 2)), (-1, Fraction(1)), (1, Fraction(-1)), (2, Fraction(1, 2))),
    4: ((-2, Fraction(1)), (-1, Fraction(-4)), (0, Fraction(6)), (1, Fraction(-4)),
        (2, Fraction(1))),
}


def regular_grid(name: str, values) -> np.ndarray:
    """The grid of space dimension ``name`` as float64, or a ModelError saying what is
    wrong with it (fewer than 3 points, not finite, unsorted, not evenly spaced)."""
    try:
        grid = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelError(f"space[{name!r}] must be an array of grid coordinates; received "
                         f"{type(values).__name__}. Use e.g. numpy.linspace(0, 1, 64).") from None
    if grid.ndim != 1 or grid.size < 3:
        raise ModelError(f"space[{name!r}] must be a 1-D grid of at least 3 points; received "
                         f"shape {grid.shape}. Use e.g. numpy.linspace(0, 1, 64).")
    if not np.all(np.isfinite(grid)):
        raise ModelError(f"space[{name!r}] holds non-finite coordinates (NaN or inf).")
    steps = np.diff(grid)
    if np.any(steps <= 0):
        raise ModelError(f"space[{name!r}] must be sorted and strictly increasing; received "
                         f"{grid[:5].tolist()}... Sort the data first: ds.sortby({name!r}).")
    spread = float(np.max(np.abs(steps - steps.mean())))
    if spread > 1e-6 * float(steps.mean()):
        raise ModelError(
            f"space[{name!r}] is not evenly spaced (steps from {steps.min():.6g} to "
            f"{steps.max():.6g}): the finite-difference scheme needs a regular grid. "
            f"Interpolate the data onto one, e.g. ds.interp({name}=numpy.linspace("
            f"{grid[0]:.6g}, {grid[-1]:.6g}, {grid.size})).")
    return grid


@dataclass(frozen=True)
class Side:
    """The boundary condition of one space dimension."""

    kind: str                 # "periodic", "dirichlet" or "neumann"
    left: float = 0.0
    right: float = 0.0


class Lattice:
    """Grid, boundary conditions and state layout of the fields of a :class:`HybridPDE`.

    ``names``: field names; ``dims``: space dimension names; ``grids``: their coordinate
    arrays; ``sides``: a :class:`Side` per dimension. States are the grid points of each
    field in C order (field, then first dimension, then second), skipping Dirichlet
    boundary points.
    """

    def __init__(self, names, dims, grids, sides):
        self.names, self.dims = list(names), list(dims)
        self.grids = [np.asarray(g, dtype=np.float64) for g in grids]
        self.sides = list(sides)
        self.shape = tuple(g.size for g in self.grids)
        self.steps = [float(g[1] - g[0]) for g in self.grids]
        fixed = np.zeros(self.shape, dtype=bool)
        values = np.zeros(self.shape)
        for d, side in enumerate(self.sides):
            if side.kind != "dirichlet":
                continue
            for index, value in ((0, side.left), (self.shape[d] - 1, side.right)):
                where = [slice(None)] * len(self.shape)
                where[d] = index
                fresh = ~fixed[tuple(where)]          # a corner keeps the first dimension's
                values[tuple(where)] = np.where(fresh, value, values[tuple(where)])
                fixed[tuple(where)] = True
        self.fixed, self.boundary_values = fixed, values
        self.points = [p for p in itertools.product(*(range(n) for n in self.shape))
                       if not fixed[p]]               # state points of one field
        size = int(np.prod(self.shape))
        flat = [np.ravel_multi_index(p, self.shape) for p in self.points]
        self.state_index = torch.as_tensor(
            [f * size + i for f in range(len(self.names)) for i in flat], dtype=torch.long)
        self._template = torch.as_tensor(np.tile(values.ravel(), len(self.names)))
        self.width = 2                                # ghost points per side (order <= 4)
        self.identity = not fixed.any()               # states are the grid, reshaped
        self._ghosts = [self._ghost_affine(d) for d in range(len(self.shape))]
        self._kernels: dict = {}

    @property
    def n_states(self) -> int:
        return len(self.names) * len(self.points)

    def state_names(self) -> list[str]:
        return [f"{name}_" + "_".join(str(i) for i in p)
                for name in self.names for p in self.points]

    def coordinates(self) -> list[torch.Tensor]:
        """Each dimension's coordinates, shaped to broadcast over the grid."""
        out = []
        for d, g in enumerate(self.grids):
            shape = [1] * len(self.shape)
            shape[d] = g.size
            out.append(torch.tensor(g, dtype=torch.float64).reshape(shape))
        return out

    # -- torch --------------------------------------------------------------------------
    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """States (..., n) -> fields on the full grid (..., F, *shape)."""
        lead = x.shape[:-1]
        if self.identity:
            return x.reshape(*lead, len(self.names), *self.shape)
        full = self._template.to(x).expand(*lead, -1)
        full = full.index_copy(-1, self.state_index.to(x.device), x)
        return full.reshape(*lead, len(self.names), *self.shape)

    def to_states(self, grid: torch.Tensor) -> torch.Tensor:
        """Fields on the full grid (..., F, *shape) -> the states' entries (..., n)."""
        lead = grid.shape[:-1 - len(self.shape)]
        if self.identity:
            return grid.reshape(*lead, -1)
        return grid.reshape(*lead, -1).index_select(-1, self.state_index.to(grid.device))

    def features(self, grid: torch.Tensor, wanted) -> torch.Tensor:
        """Central differences ``wanted`` ((field, orders) pairs, orders one per dimension;
        all zero for the field itself) of fields on the grid (..., F, *shape), as
        (..., len(wanted), *shape): the grid padded with ghosts by the boundary rules, then
        one convolution with the stencils."""
        nd = len(self.shape)
        lead = grid.shape[:-1 - nd]
        x = grid.reshape((-1,) + grid.shape[-1 - nd:])
        x = self._pad(x)
        weight = self._kernel(tuple(wanted)).to(x)
        conv = torch.nn.functional.conv1d if nd == 1 else torch.nn.functional.conv2d
        out = conv(x, weight)
        return out.reshape(lead + out.shape[1:])

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, *shape) -> (B, F, *(n + 2 width)): circular for periodic dimensions,
        reflected (about the boundary point) and then made odd (Dirichlet) or shifted by
        the boundary slope (Neumann) for the others."""
        F = torch.nn.functional
        nd, w = len(self.shape), self.width
        for d, side in enumerate(self.sides):
            pads = [0, 0] * nd
            pads[2 * (nd - 1 - d):2 * (nd - d)] = [w, w]
            x = F.pad(x, pads, mode="circular" if side.kind == "periodic" else "reflect")
            affine = self._ghosts[d]
            if affine is not None:
                mult, offset = affine
                shape = [1] * x.dim()
                shape[2 + d] = -1
                x = x * mult.to(x).reshape(shape) + offset.to(x).reshape(shape)
        return x

    def _ghost_affine(self, d: int):
        """(multiplier, offset) along dimension ``d`` of the padded grid that turn the
        reflected ghosts into the boundary rule's, or None where reflection is the rule."""
        side, n, w, h = self.sides[d], self.shape[d], self.width, self.steps[d]
        if side.kind == "periodic" or (side.kind == "neumann" and side.left == side.right == 0):
            return None
        mult, offset = np.ones(n + 2 * w), np.zeros(n + 2 * w)
        for k in range(1, w + 1):
            left, right = w - k, w + n - 1 + k
            if side.kind == "dirichlet":
                mult[left] = mult[right] = -1.0
                offset[left], offset[right] = 2 * side.left, 2 * side.right
            else:
                offset[left], offset[right] = -2 * k * h * side.left, 2 * k * h * side.right
        return torch.as_tensor(mult), torch.as_tensor(offset)

    def _kernel(self, wanted: tuple) -> torch.Tensor:
        cached = self._kernels.get(wanted)
        if cached is None:
            nd, w = len(self.shape), self.width
            size = 2 * w + 1
            cached = np.zeros((len(wanted), len(self.names)) + (size,) * nd)
            for o, (k, orders) in enumerate(wanted):
                one = np.ones((1,) * nd)
                for d, order in enumerate(orders):
                    line = np.zeros(size)
                    if order == 0:
                        line[w] = 1.0
                    else:
                        for offset, c in STENCILS[order]:
                            line[w + offset] = float(c) / self.steps[d] ** order
                    shape = [1] * nd
                    shape[d] = size
                    one = one * line.reshape(shape)
                cached[o, k] = one
            cached = torch.as_tensor(cached)
            self._kernels[wanted] = cached
        return cached

    # -- SymPy --------------------------------------------------------------------------
    def value(self, symbols, field: int, index) -> sp.Expr:
        """The SymPy value of field ``field`` at integer ``index`` (ghosts resolved):
        ``symbols[field][point]`` for a state point, a number on a Dirichlet boundary."""
        index = list(index)
        for d in reversed(range(len(self.shape))):
            n, side, i = self.shape[d], self.sides[d], index[d]
            if 0 <= i < n:
                continue
            if side.kind == "periodic":
                index[d] = i % n
                return self.value(symbols, field, index)
            k, mirror = (-i, 0) if i < 0 else (i - (n - 1), n - 1)
            index[d] = k if i < 0 else n - 1 - k
            inner = self.value(symbols, field, index)
            g = side.left if mirror == 0 else side.right
            if side.kind == "dirichlet":
                return 2 * sp.Float(g) - inner
            sign = -1 if i < 0 else 1
            return inner + sign * 2 * k * sp.Float(self.steps[d] * g)
        point = tuple(index)
        if self.fixed[point]:
            return sp.Float(self.boundary_values[point])
        return symbols[field][point]

    def stencil(self, symbols, field: int, point, orders) -> sp.Expr:
        """The SymPy central difference of ``orders`` of field ``field`` at ``point``."""
        per_dim = [STENCILS[o] if o else ((0, Fraction(1)),) for o in orders]
        total = sp.Integer(0)
        for combo in itertools.product(*per_dim):
            weight = sp.Integer(1)
            index = list(point)
            for d, (offset, c) in enumerate(combo):
                weight *= sp.Rational(c.numerator, c.denominator)
                index[d] += offset
            total += weight * self.value(symbols, field, index)
        scale = sp.Integer(1)
        for d, o in enumerate(orders):
            scale *= sp.Float(self.steps[d]) ** o
        return total / scale
