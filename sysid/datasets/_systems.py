"""Registry of synthetic systems with known truth (each defined once, as data)."""

from __future__ import annotations

import math

import numpy as np
import sympy as sp

from ._system import Staircase, System, uniform_box

__all__ = ["SYSTEMS"]


def _symbols(names: str) -> dict[str, sp.Symbol]:
    return {n: sp.Symbol(n) for n in names.split()}


def _lotka_volterra() -> System:
    s = _symbols("t x y a b c d")
    x, y, a, b, c, d = (s[n] for n in "xyabcd")
    return System(
        name="lotka_volterra", title="Lotka-Volterra predator-prey model",
        states=("x", "y"), symbols=s,
        rhs={x: a * x - b * x * y, y: c * x * y - d * y},
        parameters={"a": 1.3, "b": 0.9, "c": 0.8, "d": 1.8},
        x0=(0.44249296, 4.6280594),
        random_x0=uniform_box((0.2, 0.5), (3.0, 5.0)),
        random_x0_description="x0 ~ U(0.2, 3), y0 ~ U(0.5, 5), independent",
        t_end=3.0, dt=0.1,
        units={"x": "1", "y": "1", "time": "1"},
        long_names={"x": "prey population", "y": "predator population",
                    "time": "time (dimensionless)"},
        citation=("Rackauckas, C. et al. (2020). Universal Differential Equations for "
                  "Scientific Machine Learning. arXiv:2001.04385 (parameters, initial "
                  "state, time grid and noise convention of the Lotka-Volterra example)."),
        description="Classic predator-prey oscillator; x is the prey, y the predator.")


def _pendulum() -> System:
    s = _symbols("t theta omega omega0 alpha")
    th, om, om0, al = s["theta"], s["omega"], s["omega0"], s["alpha"]
    return System(
        name="pendulum", title="Damped nonlinear pendulum",
        states=("theta", "omega"), symbols=s,
        rhs={th: om, om: -om0**2 * sp.sin(th) - al * om},
        parameters={"omega0": 2.0 * math.pi / 6.0, "alpha": 0.2},
        x0=(1.0, 0.0),
        random_x0=uniform_box((-math.pi / 2, -1.0), (math.pi / 2, 1.0)),
        random_x0_description=(
            "theta0 ~ U(-pi/2, pi/2) rad, omega0 ~ U(-1, 1) rad/s; the energy "
            "omega**2/2 + omega0**2*(1 - cos(theta)) <= 1.60 stays below the "
            "separatrix value 2*omega0**2 = 2.19, so the pendulum never goes over the top"),
        t_end=20.0, dt=0.5,
        units={"theta": "rad", "omega": "rad/s", "time": "s"},
        long_names={"theta": "angle from the downward vertical", "omega": "angular velocity",
                    "time": "time"},
        citation=("Yin, Y., Le Guen, V., Dona, J., de Bezenac, E., Ayed, I., Thome, N., "
                  "Gallinari, P. (2021). Augmenting Physical Models with Deep Networks for "
                  "Complex Dynamics Forecasting (APHYNITY). ICLR 2021. arXiv:2010.04456 "
                  "(omega0 = 2*pi/T0 with T0 = 6, alpha = 0.2)."),
        description="Damped pendulum; the energy decays monotonically.")


def _duffing() -> System:
    s = _symbols("t x v u delta alpha beta gamma w")
    t, x, v, u = s["t"], s["x"], s["v"], s["u"]
    de, al, be = s["delta"], s["alpha"], s["beta"]
    return System(
        name="duffing", title="Forced Duffing oscillator (double well)",
        states=("x", "v"), inputs=("u",), symbols=s,
        rhs={x: v, v: -de * v - al * x - be * x**3 + u},
        parameters={"delta": 0.3, "alpha": -1.0, "beta": 1.0},
        signals={"u": s["gamma"] * sp.cos(s["w"] * t)},
        input_parameters={"gamma": 0.2, "w": 1.2},
        x0=(1.0, 0.0),
        random_x0=uniform_box((-1.5, -1.5), (1.5, 1.5)),
        random_x0_description="x0 ~ U(-1.5, 1.5), v0 ~ U(-1.5, 1.5), independent",
        t_end=50.0, dt=0.1,
        units={"x": "1", "v": "1", "u": "1", "time": "1"},
        long_names={"x": "displacement", "v": "velocity", "u": "external forcing",
                    "time": "time (dimensionless)"},
        citation=("Duffing, G. (1918). Erzwungene Schwingungen bei veraenderlicher "
                  "Eigenfrequenz. Vieweg. Kovacic, I. & Brennan, M. J. (eds.) (2011). The "
                  "Duffing Equation. Wiley."),
        description=(
            "Double-well Duffing oscillator (delta=0.3, alpha=-1, beta=1) driven by the "
            "input u = gamma*cos(w*t) with gamma=0.2, w=1.2: a NON-chaotic setting (the "
            "response settles on a period-1 orbit; with the same delta, alpha, beta, w, "
            "gamma=0.28 gives period 2 and gamma=0.5 is chaotic; checked numerically)."))


def _van_der_pol() -> System:
    s = _symbols("t x y mu")
    x, y, mu = s["x"], s["y"], s["mu"]
    return System(
        name="van_der_pol", title="Van der Pol oscillator",
        states=("x", "y"), symbols=s,
        rhs={x: y, y: mu * (1 - x**2) * y - x},
        parameters={"mu": 1.0},
        x0=(2.0, 0.0),
        random_x0=uniform_box((-3.0, -3.0), (3.0, 3.0)),
        random_x0_description="x0 ~ U(-3, 3), y0 ~ U(-3, 3), independent",
        t_end=20.0, dt=0.1,
        units={"x": "1", "y": "1", "time": "1"},
        long_names={"x": "position", "y": "velocity", "time": "time (dimensionless)"},
        citation=("van der Pol, B. (1926). On 'relaxation-oscillations'. The London, "
                  "Edinburgh and Dublin Philosophical Magazine 2(11), 978-992."),
        description="Self-excited oscillator with a stable limit cycle (period about 6.66 "
                    "for mu=1); pass a larger t_end for long horizons.")


def _fitzhugh_nagumo() -> System:
    s = _symbols("t v w a b tau I")
    v, w, a, b, tau, cur = s["v"], s["w"], s["a"], s["b"], s["tau"], s["I"]
    return System(
        name="fitzhugh_nagumo", title="FitzHugh-Nagumo neuron model",
        states=("v", "w"), symbols=s,
        rhs={v: v - v**3 / 3 - w + cur, w: (v + a - b * w) / tau},
        parameters={"a": 0.7, "b": 0.8, "tau": 12.5, "I": 0.5},
        x0=(-1.0, 1.0),
        random_x0=uniform_box((-2.0, -0.5), (2.0, 1.5)),
        random_x0_description="v0 ~ U(-2, 2), w0 ~ U(-0.5, 1.5), independent",
        t_end=100.0, dt=0.5,
        units={"v": "1", "w": "1", "time": "1"},
        long_names={"v": "membrane potential", "w": "recovery variable",
                    "time": "time (dimensionless)"},
        citation=("FitzHugh, R. (1961). Impulses and physiological states in theoretical "
                  "models of nerve membrane. Biophysical Journal 1(6), 445-466. Nagumo, J., "
                  "Arimoto, S., Yoshizawa, S. (1962). An active pulse transmission line "
                  "simulating nerve axon. Proc. IRE 50(10), 2061-2070."),
        description="Excitable system; with I=0.5 it spikes periodically (relaxation "
                    "oscillation).")


def _lorenz() -> System:
    s = _symbols("t x y z sigma rho beta")
    x, y, z, sg, rh, be = (s[n] for n in ("x", "y", "z", "sigma", "rho", "beta"))
    return System(
        name="lorenz", title="Lorenz system",
        states=("x", "y", "z"), symbols=s,
        rhs={x: sg * (y - x), y: x * (rh - z) - y, z: x * y - be * z},
        parameters={"sigma": 10.0, "rho": 28.0, "beta": 8.0 / 3.0},
        x0=(-8.0, 7.0, 27.0),
        random_x0=uniform_box((-15.0, -15.0, 5.0), (15.0, 15.0, 40.0)),
        random_x0_description="x0, y0 ~ U(-15, 15), z0 ~ U(5, 40), independent",
        t_end=10.0, dt=0.01,
        units={"x": "1", "y": "1", "z": "1", "time": "1"},
        long_names={"x": "convection intensity", "y": "horizontal temperature difference",
                    "z": "vertical temperature difference", "time": "time (dimensionless)"},
        citation=("Lorenz, E. N. (1963). Deterministic nonperiodic flow. J. Atmos. Sci. "
                  "20(2), 130-141. Initial state (-8, 7, 27) as in Brunton, S. L., Proctor, "
                  "J. L., Kutz, J. N. (2016). PNAS 113(15), 3932-3937."),
        description="Chaotic attractor; trajectories diverge exponentially, so compare "
                    "forecasts over short horizons only.")


def _sir_x0(rng: np.random.Generator, n: int) -> np.ndarray:
    infected = rng.uniform(0.001, 0.05, size=n)
    recovered = rng.uniform(0.0, 0.2, size=n)
    return np.column_stack([1.0 - infected - recovered, infected, recovered])


def _sir() -> System:
    s = _symbols("t S I R beta gamma")
    S, I, R, be, ga = (s[n] for n in ("S", "I", "R", "beta", "gamma"))
    return System(
        name="sir", title="SIR epidemic model",
        states=("S", "I", "R"), symbols=s,
        rhs={S: -be * S * I, I: be * S * I - ga * I, R: ga * I},
        parameters={"beta": 0.5, "gamma": 0.1},
        x0=(0.99, 0.01, 0.0),
        random_x0=_sir_x0,
        random_x0_description="I0 ~ U(0.001, 0.05), R0 ~ U(0, 0.2), S0 = 1 - I0 - R0",
        t_end=100.0, dt=1.0,
        units={"S": "1", "I": "1", "R": "1", "time": "days"},
        long_names={"S": "susceptible fraction", "I": "infected fraction",
                    "R": "recovered fraction", "time": "time"},
        citation=("Kermack, W. O. & McKendrick, A. G. (1927). A contribution to the "
                  "mathematical theory of epidemics. Proc. R. Soc. Lond. A 115(772), 700-721."),
        description="Susceptible-infected-recovered model in population fractions "
                    "(S + I + R is conserved); basic reproduction number beta/gamma = 5.",
        nonnegative=("S", "I", "R"))


def _two_tank() -> System:
    s = _symbols("t h1 h2 u k1 k2 k3 k4 u_low u_high u_hold")
    h1, h2, u = s["h1"], s["h2"], s["u"]
    k1, k2, k3, k4 = (s[f"k{i}"] for i in range(1, 5))
    return System(
        name="two_tank", title="Cascaded two-tank system with a pump input",
        states=("h1", "h2"), inputs=("u",), symbols=s,
        rhs={h1: -k1 * sp.sqrt(h1) + k4 * u, h2: k2 * sp.sqrt(h1) - k3 * sp.sqrt(h2)},
        parameters={"k1": 0.5, "k2": 0.5, "k3": 0.6, "k4": 1.0},
        signals={"u": Staircase("u_low", "u_high", "u_hold")},
        input_parameters={"u_low": 0.5, "u_high": 1.5, "u_hold": 20.0},
        x0=(1.0, 1.0),
        random_x0=uniform_box((0.5, 0.5), (6.0, 6.0)),
        random_x0_description="h1_0 ~ U(0.5, 6), h2_0 ~ U(0.5, 6) cm, independent",
        t_end=200.0, dt=1.0,
        units={"h1": "cm", "h2": "cm", "u": "V", "time": "s"},
        long_names={"h1": "water level in the upper tank", "h2": "water level in the lower tank",
                    "u": "pump voltage", "time": "time"},
        citation=("Model structure of the cascaded-tanks benchmark: Schoukens, M., Mattsson, "
                  "P., Wigren, T., Noel, J.-P. (2016). Cascaded tanks benchmark combining soft "
                  "and hard nonlinearities. Workshop on Nonlinear System Identification "
                  "Benchmarks. Parameter values chosen for sysid."),
        description=(
            "Torricelli outflow (square-root law). Steady levels h1 = (k4*u/k1)**2 and "
            "h2 = (k2/k3)**2*h1, i.e. about 1-9 cm for u in [0.5, 1.5] V. The input is a "
            "seeded random staircase held for u_hold seconds (zero-order hold), different "
            "for every trajectory; the integrator uses the same held values."),
        nonnegative=("h1", "h2"))


SYSTEMS: dict[str, System] = {
    sys_.name: sys_ for sys_ in (
        _lotka_volterra(), _pendulum(), _duffing(), _van_der_pol(),
        _fitzhugh_nagumo(), _lorenz(), _sir(), _two_tank())
}
