"""A smoothness prior on a field's initial state between its sensors.

With a few sensors, the initial field between them is only partly determined by the
data: diffusion erases its short-wavelength part within a few samples, so a fit is free
to start from spikes between the sensors that leave no trace in the measurements
(measured on Fisher-KPP with 8 sensors on 64 points: an initial value of 17.7 where the
truth is 0.4, with every later time right). The prior makes the initial field as smooth
as the data allow: a Gaussian on its curvature, ``u_xx`` along each dimension, whose
standard deviation is what a wave of the sensors' spacing and the field's own spread
has, ``4 spread / spacing^2``. A field that varies on the scale of the sensor spacing
pays about one unit of log-likelihood per grid point for it; a spike of one grid point
pays thousands.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["FieldPrior"]


class FieldPrior:
    """Rows ``r(x0)`` (linear in the initial states) whose half sum of squares is the
    prior's negative log-density, in log-likelihood units.

    ``lattice``: the model's :class:`~sysid.model.lattice.Lattice`; ``spread``: each
    field's typical size; ``n_sensors``: the number of measured grid points per field.
    """

    def __init__(self, lattice, spread, n_sensors: int):
        self.lattice = lattice
        nd = len(lattice.shape)
        extent = [n * h if s.kind == "periodic" else (n - 1) * h
                  for n, h, s in zip(lattice.shape, lattice.steps, lattice.sides)]
        spacing = float(np.prod(extent) / max(int(n_sensors), 1)) ** (1.0 / nd)
        self.spacing = spacing
        self._jacobians: dict[int, np.ndarray] = {}
        orders = [tuple(2 if e == d else 0 for e in range(nd)) for d in range(nd)]
        self._wanted = tuple((k, o) for o in orders for k in range(len(lattice.names)))
        unit = [4.0 * max(float(spread[k]), 1e-300) / spacing ** 2 for k, _ in self._wanted]
        self._unit = torch.as_tensor(unit, dtype=torch.float64).reshape((-1,) + (1,) * nd)
        self.rows_per_trajectory = len(self._wanted) * int(np.prod(lattice.shape))

    def rows(self, x0: torch.Tensor) -> torch.Tensor:
        """The prior's rows for initial states ``x0`` (B, n): every field's curvature at
        every grid point along every dimension, in units of the prior's deviation."""
        lat = self.lattice
        curv = lat.features(lat.to_grid(x0), self._wanted)       # (B, len(wanted), *shape)
        return (curv / self._unit.to(x0)).reshape(-1)

    def jacobian(self, n_traj: int) -> np.ndarray:
        """d rows / d x0 as a dense matrix (R, B n): constant (the rows are affine in x0),
        so computed once per number of trajectories."""
        cached = self._jacobians.get(n_traj)
        if cached is None:
            n = self.lattice.n_states
            probe = torch.zeros(1, n, dtype=torch.float64)
            one = torch.autograd.functional.jacobian(self.rows, probe).reshape(-1, n).numpy()
            cached = self._jacobians[n_traj] = np.kron(np.eye(n_traj), one)
        return cached
