# %% [markdown]
# # Quickstart: a pendulum whose friction nobody wrote down
# We measure only the angle of a damped pendulum, at irregular times with 30 % of the samples
# lost. We know the frictionless physics; a neural residual learns the friction, and sysid
# imputes the angular velocity that was never measured.

# %%
import os

import sympy as sp

import sysid

FAST = bool(os.environ.get("CI"))
data, truth = sysid.datasets.simulate("pendulum", observed=["theta"], noise=0.05,
                                      irregular=True, missing=0.3, n_trajectories=3,
                                      dt=0.25, seed=0, truth=True)
data

# %%
theta, omega = sp.symbols("theta omega")
omega0 = sp.Symbol("omega0", positive=True)
model = sysid.HybridODE(states=[theta, omega],
                        physics={theta: omega, omega: -omega0**2 * sp.sin(theta)},
                        parameters={omega0: 1.5},
                        residual=sysid.MLP(width=32, depth=2, states=[omega]))
result = sysid.fit(model, data, seed=0, **({"lbfgs_iterations": 60} if FAST else {}))
print(result.status)
print(result.parameters, "(truth: omega0 = 2*pi/6 = 1.0472)")

# %% [markdown]
# The never-measured velocity, against the truth:

# %%
imputed = result.impute()
err = (imputed["omega"] - truth["omega"]).std().item() / truth["omega"].std().item()
print(f"relative imputation error of omega: {err:.3f}")
fig = result.plot(forecast=5.0)
