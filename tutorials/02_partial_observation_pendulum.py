# %% [markdown]
# # Partial observation: the velocity of a pendulum that nobody measured
#
# A camera films a swinging pendulum and reports only its **angle** `theta`, at irregular
# times, and loses 30 % of the frames. We would like the **angular velocity** `omega` as
# well, but no sensor ever measured it.
#
# We know the frictionless physics, `d theta/dt = omega` and
# `d omega/dt = -omega0^2 sin(theta)`, with an unknown frequency `omega0`. The real
# pendulum also has friction, which we did not write down: a neural residual on `d omega/dt`
# learns it. Because the data are synthetic (`sysid.datasets.simulate`), we can compare the
# imputed velocity with the truth, and check that the uncertainty band is honest.
#
# **Fast setting.** `SYSID_TUTORIAL_FAST=1` (as in CI) uses fewer, shorter and coarser
# trajectories, a smaller network and a smaller training budget.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import sympy as sp

import sysid

FAST = os.environ.get("SYSID_TUTORIAL_FAST") == "1"
N_TRAJECTORIES, DT, T_END, WIDTH = (2, 0.5, 12.0, 16) if FAST else (3, 0.25, 20.0, 32)
FIT_OPTIONS = dict(epochs=30, lbfgs_iterations=40, polish_iterations=5) if FAST else {}

# %% [markdown]
# ## Data: the angle only, irregular and with gaps
#
# `observed=["theta"]` keeps only the angle; `irregular=True` draws random sample times for
# each trajectory; `missing=0.3` drops 30 % of the samples (NaN: "not measured"). With
# `truth=True` we also get the noise-free, complete states on the same time coordinate,
# which a real experiment would not give us.

# %%
data, truth = sysid.datasets.simulate(
    "pendulum", observed=["theta"], noise=0.05, irregular=True, missing=0.3,
    n_trajectories=N_TRAJECTORIES, dt=DT, t_end=T_END, seed=0, truth=True)
print("data variables:", list(data.data_vars), "| truth:", list(truth.data_vars))
print("true parameters:", data.attrs["true_parameters"])
data

# %%
fig, axes = plt.subplots(N_TRAJECTORIES, 1, figsize=(8, 2.2 * N_TRAJECTORIES), sharex=True)
for k, ax in enumerate(axes):
    ax.plot(truth["time"], truth["theta"].isel(trajectory=k), color="0.6", label="true angle")
    ax.plot(data["time"], data["theta"].isel(trajectory=k), "k.", label="measured angle")
    ax.set_ylabel(f"theta (rad)\ntrajectory {k}")
axes[0].legend(loc="upper right")
axes[-1].set_xlabel("time (s)");

# %% [markdown]
# ## The model
#
# `omega` is a state of the model but not a variable of the data: sysid treats it as
# unobserved. The residual `sysid.MLP(..., states=[omega])` only adds to `d omega/dt`, so
# the kinematic identity `d theta/dt = omega` stays exact.

# %%
theta, omega = sp.symbols("theta omega")
omega0 = sp.Symbol("omega0", positive=True)
model = sysid.HybridODE(
    states=[theta, omega],
    physics={theta: omega, omega: -omega0**2 * sp.sin(theta)},
    parameters={omega0: 1.5},
    residual=sysid.MLP(width=WIDTH, depth=2, states=[omega]),
)
result = sysid.fit(model, data, seed=0, progress=False, **FIT_OPTIONS)
print(result.status)
print(f"omega0 = {result.parameters['omega0']:.3f}  (truth 2*pi/6 = {2 * np.pi / 6:.3f})")

# %% [markdown]
# For comparison, the same physics **without** a residual: the frictionless pendulum
# cannot explain why the swings decay.

# %%
frictionless = sysid.HybridODE(
    states=[theta, omega],
    physics={theta: omega, omega: -omega0**2 * sp.sin(theta)},
    parameters={omega0: 1.5},
)
physics_only = sysid.fit(frictionless, data, seed=0, progress=False)
print(physics_only.status)
print(f"omega0 = {physics_only.parameters['omega0']:.3f}")

# %% [markdown]
# ## Imputing the velocity, with a band
#
# `result.impute(level=0.9)` returns every state at the data's times, measured or not,
# with a 90 % band `omega_lower`/`omega_upper`. The band comes from the Laplace
# approximation: the sensitivity of the trajectory to the parameters, the initial states
# and the network's weights, times their covariance.

# %%
imputed = result.impute(level=0.9)
baseline = physics_only.impute()


def relative_error(estimate):
    """RMS error of the imputed omega, relative to the spread of the true omega."""
    err = (estimate["omega"] - truth["omega"]) ** 2
    return float(np.sqrt(err.mean()) / truth["omega"].std())


inside = (truth["omega"] >= imputed["omega_lower"]) & (truth["omega"] <= imputed["omega_upper"])
print(f"relative error of omega, hybrid:       {relative_error(imputed):.3f}")
print(f"relative error of omega, frictionless: {relative_error(baseline):.3f}")
print(f"share of true omega inside the 90 % band: {float(inside.mean()):.2f}")

# %%
fig, axes = plt.subplots(N_TRAJECTORIES, 1, figsize=(8, 2.4 * N_TRAJECTORIES), sharex=True)
for k, ax in enumerate(axes):
    band = imputed.isel(trajectory=k)
    ax.fill_between(band["time"], band["omega_lower"], band["omega_upper"], color="C0",
                    alpha=0.3, label="90 % band")
    ax.plot(band["time"], band["omega"], color="C0", label="imputed (hybrid)")
    ax.plot(baseline["time"], baseline["omega"].isel(trajectory=k), "C3--", lw=1,
            label="imputed (frictionless)")
    ax.plot(truth["time"], truth["omega"].isel(trajectory=k), "k:", label="truth")
    ax.set_ylabel(f"omega (rad/s)\ntrajectory {k}")
axes[0].legend(loc="upper right", fontsize=8)
axes[-1].set_xlabel("time (s)")
fig.suptitle("angular velocity: never measured, imputed from the angle");

# %% [markdown]
# The frictionless model keeps swinging at full amplitude, so its velocity drifts away from
# the truth; the hybrid model's network has learned the damping. The band is pointwise: at
# each time it should hold the truth with probability 0.9, not along the whole curve at
# once. A share of the truth inside it well above 0.9 means the band is conservative
# here; the Laplace approximation behind it is local, and can err in either direction.
# `04_uncertainty` checks bands and intervals more closely.
#
# ## The fit and a forecast
#
# `result.plot(forecast=...)` shows data, fit, the imputed `omega` and a forecast past the
# data, trajectory by trajectory.

# %%
fig = result.plot(forecast=5.0)

# %% [markdown]
# ## What the network learned
#
# `result.equations` shows how the network enters the model: an undefined function of the
# states it reads, added to `d omega/dt`. The truth it should approximate is the friction
# `-alpha * omega` with `alpha = 0.2` (plus whatever share of gravity it took from
# `omega0`). Tutorial 03 turns such a network into an equation with `result.symbolic()`.

# %%
result.equations

# %% [markdown]
# ## Where next
#
# - `03_discovering_missing_physics`: turning a residual into equations.
# - `04_uncertainty`: what the bands and intervals mean, and when to distrust them.
