"""Synthetic fields over space with known truth: a few sensors on a grid, irregular times.

Each field system is a PDE with its true parameters, domain, boundary condition and
initial field. The truth is computed on a grid ``REFINE`` times finer than the one
returned (pseudo-spectral derivatives for periodic domains, central differences with
mirrored ghosts for insulated ones; SciPy's LSODA at tight tolerances) and sampled onto
the returned grid, so a model fitted on that grid meets its own discretisation error,
as with measured data.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Callable

import numpy as np
import xarray as xr
from scipy.integrate import solve_ivp

from ..errors import DataError, suggest

__all__ = ["FIELDS", "simulate_field"]

REFINE = 4


@dataclass(frozen=True)
class FieldSystem:
    name: str
    title: str
    equation: str
    params: dict
    length: tuple                 # domain length per dimension
    boundary: str                 # "periodic" or "neumann"
    t_end: float
    n_points: int
    sensors: int
    reaction: Callable            # (u, u_x, params) -> the non-diffusive part of u_t
    initial: Callable             # coordinates -> u0
    units: dict = dc_field(default_factory=dict)
    citation: str = ""


def _fisher_u0(x):
    return 0.1 + 0.7 * np.exp(-((x - 5.0) / 1.5) ** 2) + 0.3 * np.exp(-((x - 1.5) / 1.2) ** 2)


def _burgers_u0(x):
    return np.sin(x) + 0.5 * np.sin(2 * x + 1.0) + 0.2


def _heat_u0(x, y):
    return 0.2 + 0.8 * np.exp(-((x - 0.4) ** 2 + (y - 0.55) ** 2) / 0.08)


FIELDS = {
    "fisher_kpp": FieldSystem(
        "fisher_kpp", "Fisher-KPP reaction-diffusion (a population spreading and growing)",
        "du/dt = D*u_xx + r*u*(1 - u)", {"D": 0.1, "r": 1.0}, (10.0,), "periodic", 5.0,
        64, 8, lambda u, ux, p: p["r"] * u * (1 - u), _fisher_u0,
        {"u": ("1", "population density"), "x": ("km", "position along the coast"),
         "time": ("years", "time")},
        "R. A. Fisher, The wave of advance of advantageous genes, Ann. Eugenics 7 (1937)"),
    "burgers": FieldSystem(
        "burgers", "viscous Burgers equation (nonlinear advection with diffusion)",
        "du/dt = nu*u_xx - u*u_x", {"nu": 0.1}, (2 * np.pi,), "periodic", 2.0, 64, 12,
        lambda u, ux, p: -u * ux, _burgers_u0,
        {"u": ("m/s", "velocity"), "x": ("m", "position"), "time": ("s", "time")},
        "J. M. Burgers, A mathematical model illustrating the theory of turbulence (1948)"),
    "heat_2d": FieldSystem(
        "heat_2d", "2-D heat conduction in an insulated plate with a nonlinear source",
        "du/dt = D*(u_xx + u_yy) + q - k*u**3", {"D": 0.01, "q": 0.5, "k": 1.0},
        (1.0, 1.0), "neumann", 3.0, 32, 10,
        lambda u, ux, p: p["q"] - p["k"] * u ** 3, _heat_u0,
        {"u": ("1", "temperature"), "x": ("m", "position x"), "y": ("m", "position y"),
         "time": ("s", "time")},
        "a synthetic case of sysid (issue 25)"),
}


def _grid(system, n):
    """Coordinates of ``n`` points per dimension: periodic without the end point,
    insulated including both ends."""
    out = []
    for length in system.length:
        if system.boundary == "periodic":
            out.append(np.linspace(0.0, length, n, endpoint=False))
        else:
            out.append(np.linspace(0.0, length, n))
    return out


def _fine_rhs(system, params, n):
    """``f(t, u)`` on the fine grid of ``n`` points per dimension."""
    grids = _grid(system, n)
    if system.boundary == "periodic":
        k = 2j * np.pi * np.fft.rfftfreq(n, d=grids[0][1] - grids[0][0])
        diffusion = params.get("D", params.get("nu"))

        def f(t, u):
            uh = np.fft.rfft(u)
            ux = np.fft.irfft(k * uh, n)
            uxx = np.fft.irfft(k ** 2 * uh, n)
            return diffusion * uxx + system.reaction(u, ux, params)
        return f, grids
    h = grids[0][1] - grids[0][0]

    def f(t, u):
        v = u.reshape(n, n)
        p = np.pad(v, 1, mode="reflect")          # insulated: mirrored ghosts
        lap = (p[2:, 1:-1] + p[:-2, 1:-1] + p[1:-1, 2:] + p[1:-1, :-2] - 4 * v) / h ** 2
        return (params["D"] * lap + system.reaction(v, None, params)).ravel()
    return f, grids


def simulate_field(name, *, n_points=None, sensors=None, n_times=40, t_end=None, noise=0.05,
                   params=None, seed=0, truth=False):
    """A field system's noisy sensor record (see :func:`sysid.datasets.simulate`)."""
    system = FIELDS[name]
    p = dict(system.params)
    for key, value in (params or {}).items():
        if key not in p:
            raise DataError(f"simulate({name!r}): unknown parameter {key!r}."
                            f"{suggest(key, p)} Parameters: {list(p)}.")
        p[key] = float(value)
    n = int(n_points or system.n_points)
    n_sensors = int(sensors or system.sensors)
    t_end = float(t_end or system.t_end)
    if n < 8 or not 1 <= n_sensors <= n ** len(system.length) or n_times < 3:
        raise DataError(f"simulate({name!r}): need n_points >= 8, 1 <= sensors <= the grid's "
                        f"points and n_times >= 3; received n_points={n}, sensors={n_sensors}, "
                        f"n_times={n_times}.")
    rng = np.random.default_rng(seed)
    times = np.concatenate([[0.0], np.sort(rng.uniform(0.0, t_end, n_times - 1))])
    fine = n * REFINE if system.boundary == "periodic" else (n - 1) * REFINE + 1
    f, fine_grids = _fine_rhs(system, p, fine)
    mesh = np.meshgrid(*fine_grids, indexing="ij")
    u0 = system.initial(*mesh).ravel()
    method = "LSODA" if u0.size <= 1024 else "RK45"       # a dense Jacobian of 2-D: too big
    sol = solve_ivp(f, (0.0, t_end), u0, method=method, t_eval=times, rtol=1e-9, atol=1e-11)
    if sol.status != 0:
        raise DataError(f"simulate({name!r}): the integration failed ({sol.message}).")
    shape = (len(times),) + (fine,) * len(system.length)
    states = sol.y.T.reshape(shape)
    pick = (slice(None),) + (slice(None, None, REFINE),) * len(system.length)
    states = states[pick]
    grids = _grid(system, n)
    dims = ("time",) + ("x", "y")[:len(system.length)]
    values = np.full(states.shape, np.nan)
    flat = states.reshape(len(times), -1)
    where = _sensor_points(n, len(system.length), n_sensors, rng)
    std = noise * float(np.mean(np.abs(flat)))
    obs = values.reshape(len(times), -1)
    obs[:, where] = flat[:, where] + std * rng.standard_normal((len(times), where.size))
    units = system.units
    coords = {"time": ("time", times, {"units": units["time"][0], "long_name": units["time"][1]})}
    for d, g in zip(dims[1:], grids):
        coords[d] = (d, g, {"units": units[d][0], "long_name": units[d][1]})
    attrs = {"title": f"{system.title} (synthetic, {n_sensors} sensors)", "system": name,
             "equations": system.equation, "boundary": system.boundary,
             "true_parameters": ", ".join(f"{k}={v:g}" for k, v in p.items()),
             "noise": noise, "seed": seed, "citation": system.citation,
             "source": f"simulated by sysid.datasets.simulate({name!r}) on a grid {REFINE}x "
                       "finer (scipy LSODA, rtol 1e-9), sampled onto the returned grid",
             "license": "CC0-1.0 (synthetic data generated by sysid)"}
    var = {"units": units["u"][0], "long_name": units["u"][1], "true_noise_std": std}
    data = xr.Dataset({"u": (dims, obs.reshape(states.shape), var)}, coords=coords, attrs=attrs)
    if not truth:
        return data
    clean = xr.Dataset({"u": (dims, states, {"units": units["u"][0], "long_name": units["u"][1]})},
                       coords=coords, attrs={**attrs, "title": f"{system.title} (truth)"})
    return data, clean


def _sensor_points(n, nd, count, rng) -> np.ndarray:
    """Flat indices of ``count`` sensors: evenly spaced in 1-D (half a spacing from the
    ends), at random distinct points of the grid in 2-D."""
    if nd == 1:
        return ((np.arange(count) + 0.5) * n / count).astype(int)
    return np.sort(rng.choice(n ** nd, size=count, replace=False))
