"""The neural residual: an MLP that starts at zero and sees standardised inputs."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResidualNet", "zero_start_mlp", "weight_norm2"]

_ACTIVATIONS = {"tanh": nn.Tanh, "softplus": nn.Softplus, "gelu": nn.GELU, "silu": nn.SiLU}


def zero_start_mlp(n_in: int, n_out: int, *, width: int, depth: int, activation: str,
                   generator=None) -> nn.Sequential:
    """A float64 MLP of ``depth`` hidden layers whose hidden weights are uniform in
    ``+-1.7 / sqrt(fan_in)`` (from ``generator``) and whose last layer is zero, so that
    an untrained residual is exactly 0 (the model is its physics)."""
    layers: list[nn.Module] = []
    size = n_in
    for _ in range(depth):
        layers += [nn.Linear(size, width, dtype=torch.float64), _ACTIVATIONS[activation]()]
        size = width
    layers.append(nn.Linear(size, n_out, dtype=torch.float64))
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.Linear):
                bound = (1.0 / layer.in_features) ** 0.5
                layer.weight.copy_(
                    (torch.rand(layer.weight.shape, generator=generator, dtype=torch.float64)
                     * 2 - 1) * bound * 1.7)
                layer.bias.zero_()
        net[-1].weight.zero_()
        net[-1].bias.zero_()
    return net


def weight_norm2(net: nn.Sequential) -> torch.Tensor:
    """The sum of squares of the network's weights (the weight-decay term)."""
    return sum((layer.weight ** 2).sum() for layer in net if isinstance(layer, nn.Linear))


class ResidualNet(nn.Module):
    """``out_scale * net((z - shift) / scale)`` scattered into the rows of chosen states.

    Parameters
    ----------
    n_states : int
        Size of the full state vector the residual is added to.
    read_index : list[int]
        Columns of the concatenated ``[states, inputs]`` vector that the network reads.
    write_index : list[int]
        States that receive an output.
    shift, scale : sequence of float
        Standardisation of the read columns (from the data).
    out_scale : sequence of float
        Typical rate of change of each written state (times its stoichiometric
        coefficient where outputs are shared).
    out_index : sequence of int, optional
        The network output that each written state receives (default: one output each;
        ``[0, 0]``: one shared rate written into two states).
    """

    def __init__(self, n_states, read_index, write_index, shift, scale, out_scale, *,
                 width=32, depth=2, activation="tanh", generator=None, out_index=None):
        super().__init__()
        self.n_states = int(n_states)
        self.register_buffer("read_index", torch.as_tensor(read_index, dtype=torch.long))
        self.register_buffer("write_index", torch.as_tensor(write_index, dtype=torch.long))
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float64))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float64))
        self.register_buffer("out_scale", torch.as_tensor(out_scale, dtype=torch.float64))
        if out_index is None:
            out_index = range(len(write_index))
        self.register_buffer("out_index", torch.as_tensor(list(out_index), dtype=torch.long),
                             persistent=False)     # from the model's spec, not the file
        self._shared = bool(len(self.out_index)) and \
            self.out_index.tolist() != list(range(len(write_index)))
        n_out = int(self.out_index.max()) + 1 if len(self.out_index) else 0
        self.net = zero_start_mlp(len(read_index), n_out, width=width, depth=depth,
                                  activation=activation, generator=generator)
        self._reads_all = None

    def scaled(self, xu: torch.Tensor) -> torch.Tensor:
        """Network output in units of ``out_scale`` (shape (..., n_outputs): one per
        written state, or one per shared rate)."""
        if self._reads_all is None:
            every = torch.arange(xu.shape[-1], device=xu.device)
            self._reads_all = (len(self.read_index) == xu.shape[-1]
                               and bool((self.read_index == every).all()))
        z = xu if self._reads_all else xu.index_select(-1, self.read_index)
        return self.net((z - self.shift) / self.scale)

    def forward(self, xu: torch.Tensor) -> torch.Tensor:
        """Residual added to d(state)/dt, shape (..., n_states)."""
        out = self.scaled(xu)
        if self._shared:
            out = out.index_select(-1, self.out_index)
        out = out * self.out_scale
        if len(self.write_index) == self.n_states:
            return out
        full = xu.new_zeros(xu.shape[:-1] + (self.n_states,))
        return full.index_copy(-1, self.write_index, out)

    def weight_norm2(self) -> torch.Tensor:
        return weight_norm2(self.net)
