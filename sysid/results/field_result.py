"""The result of fitting a :class:`~sysid.HybridPDE`: everything over the field's space.

:class:`FieldResult` wraps the :class:`~sysid.FitResult` of the per-point ODE (one state
per grid point, one channel per sensor) and gives its outputs back as fields over
``(trajectory?, time, x[, y])``: ``impute``, ``forecast`` and ``simulate`` (with bands),
``initial_states``, the fitted equations in the field's own notation, ``plot`` as an
image of the field with the sensors marked, and ``symbolic`` over the local residual's
features. Everything else (parameters, ``parameter_table``, ``status``, ``history``...)
is the wrapped result's.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
import xarray as xr

from ..symbolic.fields import summarize_field
from .plot import label

__all__ = ["FieldResult"]


class FieldResult:
    """A fitted :class:`~sysid.HybridPDE` (see the module docstring).

    Examples
    --------
    >>> import numpy as np, sympy as sp, sysid
    >>> data = sysid.datasets.simulate("fisher_kpp", n_points=32, sensors=8, seed=0)
    >>> x = sp.Symbol("x"); u = sp.Function("u")(x)
    >>> D, r = sp.symbols("D r", positive=True)
    >>> model = sysid.HybridPDE(fields=[u], space={"x": data["x"].values},
    ...                         physics={u: D * u.diff(x, 2) + r * u * (1 - u)},
    ...                         boundary={"x": "periodic"}, parameters={D: 0.05, r: 0.5})
    >>> result = sysid.fit(model, data, progress=False)
    >>> {k: round(v, 2) for k, v in result.parameters.items()}     # truth: D 0.1, r 1.0
    {'D': 0.1, 'r': 1.0}
    >>> result.impute()["u"].dims
    ('time', 'x')
    """

    def __init__(self, inner, data: xr.Dataset, refit=None):
        self._inner = inner
        self.data = data
        self.model = inner.model
        self._fit_from = refit            # sysid.results.result.fit_from (refits)

    def _refit(self, model, data):
        return self._fit_from(model, data, None, progress=False)

    def symbolic(self, **options):
        """The local residual as sparse terms in the field and its derivatives, each
        candidate refit on the data and selected by BIC (:class:`FieldSummary`).

        Options: ``degree`` (2) of the monomials of the network's features,
        ``max_terms`` (4), ``n_points`` (4000 sampled (time, point) pairs),
        ``max_candidates`` (6), ``seed``; other keywords go to the refits' ``sysid.fit``.
        """
        return summarize_field(self, fit_from=self._fit_from, **options)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["_inner"], name)

    def __repr__(self) -> str:
        return "Field" + repr(self._inner)

    # -- fields ---------------------------------------------------------------------------
    def _fields(self, flat: xr.Dataset) -> xr.Dataset:
        return self.model.gather(flat, self.data)

    def impute(self, times=None, **options) -> xr.Dataset:
        """Every field over the whole grid at ``times`` (default: the data's), with
        ``level=`` bands as in :meth:`sysid.FitResult.impute`."""
        return self._fields(self._inner.impute(times, **options))

    def forecast(self, times=None, **options) -> xr.Dataset:
        """Every field over the grid past the data (see :meth:`sysid.FitResult.forecast`)."""
        return self._fields(self._inner.forecast(times, **options))

    def simulate(self, data: xr.Dataset, **options) -> xr.Dataset:
        """The fitted model run on a new record of the fields (its first samples give the
        initial field)."""
        return self._fields(self._inner.simulate(self.model.flatten(data), **options))

    @property
    def initial_states(self) -> xr.Dataset:
        """The fitted initial field of each trajectory."""
        return self._fields(self._inner.initial_states)

    @property
    def equations(self) -> dict[str, sp.Expr]:
        """Each field's fitted ``du/dt`` with spatial derivatives (``Derivative(u(x),
        (x, 2))``) and the fitted parameter values; a local network is ``NN_u(u, u_x,
        u_xx)`` of the features it reads."""
        out = self.model.field_equations(self.parameters)
        net = self._problem.field.residual
        if net is not None and getattr(net, "local", False):
            args = [sp.Symbol(n) for n in net.feature_names]
            for n in self.model.field_names:
                out[n] = out[n] + sp.Function(f"NN_{n}")(*args)
        return out

    # -- figures --------------------------------------------------------------------------
    def plot(self, *, forecast=None, fields=None, trajectory=0, figsize=None):
        """The imputed field as an image over (time, x) with the sensors' positions
        marked, one panel per field (for a 2-D field: the field at the first and last
        times, sensors as dots). ``forecast``: also this far past the data."""
        import matplotlib.pyplot as plt

        model, lat = self.model, self.model.lattice
        names = list(fields or model.field_names)
        times = self._bundle.times
        dense = np.linspace(times[0], times[-1] + float(forecast or 0.0), 200)
        field = self._fields(self._inner.impute(dense))
        if "trajectory" in field.dims:
            field = field.isel(trajectory=trajectory)
        sensors = self._sensors()
        if len(lat.shape) == 1:
            fig, axes = plt.subplots(len(names), 1, squeeze=False,
                                     figsize=figsize or (8, 3.2 * len(names)))
            for ax, name in zip(axes[:, 0], names):
                da = field[name]
                mesh = ax.pcolormesh(da[lat.dims[0]].values, dense, da.values, shading="auto")
                fig.colorbar(mesh, ax=ax, label=label(self._attrs(name), name))
                for xs in sensors.get(name, []):
                    ax.axvline(xs[0], color="w", lw=0.8, ls="--")
                if forecast:
                    ax.axhline(times[-1], color="k", lw=1)
                ax.set_xlabel(label(self._coord_attrs(lat.dims[0]), lat.dims[0]))
                ax.set_ylabel(label(self._coord_attrs("time"), "time"))
                ax.set_title(f"{name}: imputed field, sensors dashed"
                             + (", forecast above the black line" if forecast else ""))
        else:
            fig, axes = plt.subplots(len(names), 2, squeeze=False,
                                     figsize=figsize or (9, 4 * len(names)))
            for row, name in zip(axes, names):
                for ax, k in zip(row, (0, -1)):
                    da = field[name].isel(time=k)
                    mesh = ax.pcolormesh(lat.grids[1], lat.grids[0], da.values, shading="auto")
                    fig.colorbar(mesh, ax=ax, label=label(self._attrs(name), name))
                    pts = np.array(sensors.get(name, np.zeros((0, 2))))
                    if pts.size:
                        ax.plot(pts[:, 1], pts[:, 0], "wo", ms=4, mec="k")
                    ax.set_xlabel(lat.dims[1])
                    ax.set_ylabel(lat.dims[0])
                    ax.set_title(f"{name} at time {dense[k]:.3g}")
        fig.tight_layout()
        return fig

    def _sensors(self) -> dict[str, list[tuple[float, ...]]]:
        """Coordinates of the measured grid points of each field."""
        lat, model = self.model.lattice, self.model
        n, out = len(lat.points), {}
        for k, name in enumerate(model.field_names):
            for p, s in zip(lat.points, model.state_names[k * n:(k + 1) * n]):
                if s in self._bundle.channels:
                    out.setdefault(name, []).append(
                        tuple(float(lat.grids[d][p[d]]) for d in range(len(p))))
        return out

    def _attrs(self, name) -> dict:
        return dict(self.data[name].attrs) if name in self.data else {}

    def _coord_attrs(self, name) -> dict:
        return dict(self.data[name].attrs) if name in self.data.coords else {}
