"""The torch form of a :class:`~sysid.HybridPDE`: the physics and a local residual,
evaluated on the whole grid at once.

:class:`PDEField` is a :class:`~sysid.model.field.HybridField` whose physics is the
pointwise expression compiled once (over the field, its derivatives, the coordinates and
time) and evaluated on grid-shaped tensors, so that one evaluation costs a few torch
operations whatever the grid's size; the per-point SymPy equations
(:meth:`HybridPDE.rhs`) give the same numbers and serve the C solver and the printed
model. :class:`LocalResidualNet` is one small MLP applied at every grid point to the
fields and their first and second derivatives there (shared weights).
"""

from __future__ import annotations

import sympy as sp
import torch
from torch import nn

from .compiler import CompiledExprs
from .field import HybridField, _with_time
from .hybrid import t as TIME
from .pde import HybridPDE, feature_name, local_mlp_inputs
from .residual import weight_norm2, zero_start_mlp

__all__ = ["PDEField", "LocalResidualNet", "grid_features"]


def grid_features(lattice, grid: torch.Tensor, wanted) -> list[torch.Tensor]:
    """Each (field, orders) of ``wanted`` on the grid (..., *shape), from fields on the
    grid (..., F, *shape)."""
    return list(lattice.features(grid, wanted).unbind(-1 - len(lattice.shape)))


class PDEField(HybridField):
    """``du/dt`` of every grid state: the pointwise physics on the grid, plus the residual."""

    def __init__(self, model: HybridPDE, channels, transform, raw_parameters, residual):
        nn.Module.__init__(self)
        self.model, self.lattice = model, model.lattice
        self.channels = list(channels)
        self.transform = transform
        self.raw = nn.Parameter(raw_parameters.clone().to(torch.float64))
        self.residual = residual
        self._has_inputs = False
        names = model.field_names
        self._wanted = [(k, (0,) * len(self.lattice.shape)) for k in range(len(names))]
        self._wanted += [model.features[n] for n in model.features]
        self._wanted = tuple(self._wanted)
        grid_vars = [sp.Symbol(n) for n in names] + [sp.Symbol(n) for n in model.features]
        variables = grid_vars + list(model.space_symbols) + [TIME] + list(model.parameters)
        exprs = [sp.sympify(model.pointwise.get(f, 0)).subs(model.fixed) for f in model.fields]
        variables = _with_time(variables, exprs)
        self._physics = CompiledExprs(exprs, variables, batch=grid_vars)
        self._coords = self.lattice.coordinates()
        self._identity = [model.states.index(model.channels[c]) for c in self.channels]
        self._observe = None
        self.nfe = 0
        self._cached = None
        self.register_buffer("_floored", None, persistent=False)
        self._rows = None

    def physics(self, t, x, u) -> torch.Tensor:
        grid = self.lattice.to_grid(x)
        return self._physics_on(t, x, grid_features(self.lattice, grid, self._wanted))

    def _physics_on(self, t, x, values) -> torch.Tensor:
        """The physics from its features on the grid (``values``, one per ``_wanted``)."""
        p = self._cached
        if p is None:
            p = self.parameter_values().unbind(0)
        nd = len(self.lattice.shape)
        if self._rows is not None:        # per-row parameters (R,) broadcast over the grid
            p = [v.reshape(v.shape + (1,) * (x.dim() - 2 + nd)) for v in p]
        coords = [c.to(x) for c in self._coords]
        tt = t.reshape(t.shape + (1,) * nd)
        f = torch.stack(self._physics([*values, *coords, tt, *p]), dim=-1 - nd)
        return self.lattice.to_states(f)

    def forward(self, t, x, u) -> torch.Tensor:
        self.__dict__["nfe"] += 1
        net = self.residual
        if net is None or not getattr(net, "local", False):
            return super().forward(t, x, u)
        # one convolution gives the physics' features and then the network's
        nd, k = len(self.lattice.shape), len(self._wanted)
        both = self.lattice.features(self.lattice.to_grid(x), self._wanted + tuple(net.wanted))
        physics = self._physics_on(t, x, list(both.narrow(-1 - nd, 0, k).unbind(-1 - nd)))
        return physics + net.on_features(both.narrow(-1 - nd, k, len(net.wanted)))


class LocalResidualNet(nn.Module):
    """One MLP at every grid point: ``out_scale * net((features - shift) / scale)``.

    The features at a point are what :func:`~sysid.model.pde.local_mlp_inputs` names (the
    MLP's ``inputs``, by default every field and its first derivatives); the output is
    one term per field. ``shift``, ``scale``: the features' standardisation (from the data);
    ``out_scale``: each field's typical rate of change.
    """

    local = True

    def __init__(self, model: HybridPDE, shift, scale, out_scale, *, width=16, depth=2,
                 activation="tanh", generator=None):
        super().__init__()
        self.lattice = model.lattice
        self.n_states = model.lattice.n_states
        self.wanted = local_mlp_inputs(model)
        self.feature_names = [feature_name(model.field_names[k], model.lattice.dims, o)
                              for k, o in self.wanted]
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float64))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float64))
        self.register_buffer("out_scale", torch.as_tensor(out_scale, dtype=torch.float64))
        self.net = zero_start_mlp(len(self.wanted), len(model.field_names), width=width,
                                  depth=depth, activation=activation, generator=generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The raw features at every point, (..., n_features, *shape)."""
        grid = self.lattice.to_grid(x[..., :self.n_states])
        return self.lattice.features(grid, tuple(self.wanted))

    def pointwise(self, features: torch.Tensor) -> torch.Tensor:
        """The network on raw features (..., n_features) -> (..., F), in units of
        ``out_scale``."""
        return self.net((features - self.shift) / self.scale)

    def _on(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw features (..., n_features, *shape) -> output (..., F, *shape) in units."""
        nd = len(self.lattice.shape)
        out = self.pointwise(raw.movedim(-1 - nd, -1))          # (..., *shape, F)
        return out.movedim(-1, -1 - nd)

    def on_features(self, raw: torch.Tensor) -> torch.Tensor:
        """The residual (..., n_states) from the raw features (..., n_features, *shape)."""
        nd = len(self.lattice.shape)
        scale = self.out_scale.reshape((-1,) + (1,) * nd)
        return self.lattice.to_states(self._on(raw) * scale)

    def scaled(self, xu: torch.Tensor) -> torch.Tensor:
        """Output in units of ``out_scale``, one entry per grid state (..., n_states)."""
        return self.lattice.to_states(self._on(self.features(xu)))

    def forward(self, xu: torch.Tensor) -> torch.Tensor:
        return self.on_features(self.features(xu))

    def weight_norm2(self) -> torch.Tensor:
        return weight_norm2(self.net)
