"""The hybrid vector field as a torch module: compiled physics + neural residual + observations."""

from __future__ import annotations

from contextlib import contextmanager

import sympy as sp
import torch
from torch import nn

from .hybrid import HybridODE, t as TIME
from .parameters import ParameterTransform
from .compiler import CompiledExprs
from .residual import ResidualNet

__all__ = ["HybridField"]

_FLOOR = torch.finfo(torch.float64).tiny ** 0.25   # about 1e-77: sqrt and log stay finite


class HybridField(nn.Module):
    """``f(t, x, u) = physics(t, x, u; p) + residual(x, u)`` and the observation map.

    Tensors: ``t`` (B,), ``x`` (B, n), ``u`` (B, m); parameters are shared across the batch.
    States, inputs and time are the compiled expressions' batch variables: they must
    share the batch shape ``B`` (which may have several dimensions, as in ``observe``).
    """

    def __init__(self, model: HybridODE, channels: list[str], transform: ParameterTransform,
                 raw_parameters: torch.Tensor, residual: ResidualNet | None):
        super().__init__()
        self.model = model
        self.channels = list(channels)
        self.transform = transform
        self.raw = nn.Parameter(raw_parameters.clone().to(torch.float64))
        self.residual = residual
        variables = list(model.states) + list(model.inputs) + [TIME] + list(model.parameters)
        n_batch = len(model.states) + len(model.inputs) + 1      # states, inputs, time
        self._has_inputs = bool(model.inputs)
        pv = _with_time(variables, model.rhs())
        self._physics = CompiledExprs(model.rhs(), pv, batch=pv[:n_batch])
        chan = model.channels
        obs = [sp.sympify(chan[c]).subs(model.fixed) for c in self.channels]
        self._identity = [model.states.index(e) if e in model.states else None for e in obs]
        self._observe = None
        if any(i is None for i in self._identity):
            ov = _with_time(variables, obs)
            self._observe = CompiledExprs(obs, ov, batch=ov[:n_batch])
        self._n_batch = n_batch
        self._algebraic = None           # the algebraic states' compiled expressions
        self.nfe = 0
        self._cached: list | None = None
        # States declared positive=True or nonnegative=True: the physics sees them floored
        # just above 0, so that a solver step or a residual that overshoots below 0 cannot
        # turn sqrt(h) or log(c) into NaN (the state itself is not altered).
        signed = [bool(s.is_positive or s.is_nonnegative) for s in model.states]
        self.register_buffer("_floored", torch.tensor(signed) if any(signed) else None,
                             persistent=False)
        self._rows: torch.Tensor | None = None      # see per_row_parameters

    @contextmanager
    def per_row_parameters(self, values: torch.Tensor):
        """Within the block, batch row ``r`` (of states, inputs and time) uses its own
        physical parameter values ``values[r]`` ((R, P)), e.g. copies of the data set
        that each carry the derivative along one direction (forward-mode Jacobians)."""
        self._rows = values.transpose(0, 1)
        try:
            yield
        finally:
            self._rows = None

    def freeze_parameters(self, on: bool) -> None:
        """Evaluate the parameter transform once per solve instead of once per call."""
        self._cached = list(self.parameter_values().unbind(0)) if on else None

    # -- parameters ----------------------------------------------------------------------
    def parameter_values(self) -> torch.Tensor:
        """Physical parameter values (P,), or (P, R) inside :meth:`per_row_parameters`."""
        if self._rows is not None:
            return self._rows
        return self.transform.forward(self.raw)

    def _values(self, t, x, u):
        """The compiled expressions' inputs: state columns, input columns, t, parameters."""
        p = self._cached if self._cached is not None else self.parameter_values().unbind(0)
        if self._rows is not None and x.dim() > 2:    # per-row values against (R, T, n)
            p = [v.reshape(v.shape + (1,) * (x.dim() - 2)) for v in p]
        if self._has_inputs:
            return [*x.unbind(-1), *u.unbind(-1), t, *p]
        return [*x.unbind(-1), t, *p]     # u is (B, 0): no columns to unbind

    # -- dynamics ------------------------------------------------------------------------
    def physics(self, t, x, u) -> torch.Tensor:
        # the solver's hot path: _values inlined (saves a call)
        p = self._cached
        if p is None:
            p = self.parameter_values().unbind(0)
        if self._floored is not None:
            x = torch.where(self._floored, x.clamp_min(_FLOOR), x)
        if self._has_inputs:
            return self._physics.stack([*x.unbind(-1), *u.unbind(-1), t, *p], -1)
        return self._physics.stack([*x.unbind(-1), t, *p], -1)

    def residual_term(self, x, u) -> torch.Tensor | None:
        if self.residual is None:
            return None
        return self.residual(torch.cat([x, u], dim=-1))

    def forward(self, t, x, u) -> torch.Tensor:
        self.__dict__["nfe"] += 1     # (nn.Module.__setattr__ is slow on this hot path)
        f = self.physics(t, x, u)
        if self.residual is not None:
            f = f + self.residual(torch.cat([x, u], dim=-1))
        return f

    def algebraic(self, t, x, u) -> torch.Tensor:
        """The model's algebraic states (``sympy.Eq`` in physics, or invariants) (..., A)
        from the states (..., n), in the order of ``model.algebraic``; compiled on first use
        (only outputs ask for them)."""
        exprs = [sp.sympify(e).subs(self.model.fixed)
                 for e in getattr(self.model, "algebraic", {}).values()]
        if not exprs:
            return x[..., :0]
        if self._algebraic is None:
            variables = list(self.model.states) + list(self.model.inputs) + [TIME] + \
                list(self.model.parameters)
            av = _with_time(variables, exprs)
            self._algebraic = CompiledExprs(exprs, av, batch=av[:self._n_batch])
        outs = self._algebraic(self._values(t, x, u))
        return torch.stack([o.expand(x.shape[:-1]) for o in outs], dim=-1)

    def observe(self, t, x, u) -> torch.Tensor:
        """Predicted channels (..., C) from states (..., n)."""
        if self._observe is None:
            return x[..., [i for i in self._identity]]
        outs = self._observe(self._values(t, x, u))
        cols = [x[..., i] if i is not None else outs[c] for c, i in enumerate(self._identity)]
        return torch.stack(cols, dim=-1)


def _with_time(variables, exprs):
    """Use the user's own time symbol if it differs from ours only in assumptions."""
    names = {s.name: s for e in exprs for s in sp.sympify(e).free_symbols}
    if "t" in names and names["t"] != TIME:
        return [names["t"] if v is TIME else v for v in variables]
    return variables
