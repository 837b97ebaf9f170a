# %% [markdown]
# # Stiff kinetics: Robertson's reactions, one species never measured
#
# Robertson's three reactions are the classic stiff problem of chemical kinetics:
#
# * A -> B at rate `k1 = 0.04` (slow),
# * B + B -> C + B at rate `k2 = 3e7` (very fast),
# * B + C -> A + C at rate `k3 = 1e4` (fast).
#
# The rates span nine decades. The intermediate B lives for microseconds at a
# concentration of about 1e-5, while A turns into C over 1e5 seconds. An explicit solver
# has to take steps as short as B's life for the whole record and runs out of steps. An
# implicit solver takes steps the size of the slow dynamics.
#
# We measure the concentrations of A (`y1`) and C (`y3`) at 40 times spread over nine
# decades, with 2 % relative error. B (`y2`) is never measured. The questions: the three
# rate constants, and B's concentration over the whole record.
#
# **Fast setting.** This notebook is quick in both settings (a fit takes seconds);
# `SYSID_TUTORIAL_FAST=1` changes nothing here.

# %%
import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
import xarray as xr
from scipy.integrate import solve_ivp

import sysid

# %% [markdown]
# ## The data
#
# We simulate the reactions with SciPy's Radau at a tight tolerance and keep `y1` and
# `y3` with 2 % multiplicative noise. The times are log-spaced from 1e-4 to 1e5 s, as a
# kineticist samples a reaction that runs on every time scale.

# %%
K_TRUE = {"k1": 0.04, "k2": 3e7, "k3": 1e4}
times = np.logspace(-4, 5, 40)


def robertson(t, y, k1=0.04, k2=3e7, k3=1e4):
    return [-k1 * y[0] + k3 * y[1] * y[2], k1 * y[0] - k2 * y[1] ** 2 - k3 * y[1] * y[2],
            k2 * y[1] ** 2]


truth = solve_ivp(robertson, (0.0, times[-1]), [1.0, 0.0, 0.0], method="Radau",
                  t_eval=times, rtol=1e-12, atol=1e-16).y
rng = np.random.default_rng(0)
noisy = truth * (1 + 0.02 * rng.standard_normal(truth.shape))
data = xr.Dataset({"y1": ("time", noisy[0]), "y3": ("time", noisy[2])},
                  coords={"time": ("time", times, {"units": "s"})})
data

# %% [markdown]
# ## The model
#
# The concentrations and rates are positive, so we declare the symbols `positive=True`.
# sysid then fits the rates on a log scale, so a rate of 3e7 and one of 0.04 are handled
# alike. Our guesses are a factor of 2 off each true rate.

# %%
y1, y2, y3 = sp.symbols("y1 y2 y3", positive=True)
k1, k2, k3 = sp.symbols("k1 k2 k3", positive=True)
physics = {y1: -k1 * y1 + k3 * y2 * y3,
           y2: k1 * y1 - k2 * y2 ** 2 - k3 * y2 * y3,
           y3: k2 * y2 ** 2}
model = sysid.HybridODE(states=[y1, y2, y3], physics=physics,
                        parameters={k1: 0.08, k2: 1.5e7, k3: 2e4})
model

# %% [markdown]
# ## An explicit solver is not enough
#
# First we force the explicit Dormand-Prince solver (`solver="dopri5"`) with a budget
# of 20 000 steps per solve. With `throw=False` a failed fit returns a result with a
# status instead of raising. The message says what happened and what to do.

# %%
explicit = sysid.fit(model, data, solver="dopri5", max_steps=20_000, noise="lognormal",
                     progress=False, throw=False)
print(explicit.status.code)
print(explicit.status)

# %% [markdown]
# ## The default solver detects stiffness
#
# With the default `solver="auto"`, sysid looks at the model's Jacobian at the start
# states and at the spread of the sampling times. It sees rates nine decades apart and
# picks `rosenbrock23`, an implicit Rosenbrock method with an adaptive step.
# `noise="lognormal"` says the errors are relative (2 % of the value), which is right for
# concentrations that span decades.

# %%
result = sysid.fit(model, data, noise="lognormal", progress=False)
print(result.status)
print("solver chosen:", result.options.solver)
table = result.parameter_table(0.95)
table["truth"] = [K_TRUE[name] for name in table.index]
table["error %"] = 100 * (table["value"] / table["truth"] - 1)
table

# %% [markdown]
# All three rates are within 3 % of the truth (k1 and k3 within 1 %), inside their 95 %
# intervals, although the guesses were a factor of 2 off. k2 and k3 are correlated: in the quasi-steady state only a combination of them changes what
# we measure. B's transient at the start (the first millisecond) is what separates them.

# %%
result.parameter_correlation()

# %% [markdown]
# ## Every state, measured or not
#
# `result.plot()` draws the fit against the data. The record spans nine decades, so the
# time axis is logarithmic, and so is the value axis of a panel whose curves span more
# than three decades.

# %%
fig = result.plot()

# %% [markdown]
# `result.impute()` gives B's concentration, which was never measured, at every sample
# time, with a band. We compare it with the truth:

# %%
imputed = result.impute()
y2_fit = imputed["y2"].values
error = np.max(np.abs(y2_fit - truth[1])) / np.max(truth[1])
print(f"y2 imputed: largest error {100 * error:.1f} % of its peak")

_, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogx(times, truth[1], "k--", label="truth (never measured)")
ax.semilogx(times, y2_fit, label="imputed by sysid")
ax.set_xlabel("time (s)"), ax.set_ylabel("y2 (concentration of B)")
ax.legend();

# %% [markdown]
# ## Speed
#
# Solves without gradients (imputation, bands, the Jacobians that the Levenberg-Marquardt
# fit uses) run the Rosenbrock method in C, compiled from the model, so the fit above
# takes seconds. `benchmarks/stiff.py` times the forward solve against SciPy's Radau and
# BDF at the same tolerance.
#
# ## An unknown reaction
#
# Now suppose we did not know the third reaction's rate law. We do know what it does: it
# turns B back into A (C is a catalyst), so whatever its rate `r`, `y1` gains `r` and `y2`
# loses `r`. That is the network's job: one output, the rate, read from `y2` and `y3`, and
# written into `y1` and `y2` with the stoichiometry `{y1: 1, y2: -1}`. The stoichiometry is
# not a detail here: with a free output per state, B's concentration and `k2` could trade
# against the network without changing anything we measure.
#
# Two options help this training: `physics_first=True` fits the known physics alone first
# (a second) and starts the network from those rates, and a learning rate a quarter of the
# default suits a rate that spans eight decades.

# %%
k1, k2 = sp.symbols("k1 k2", positive=True)
partial = sysid.HybridODE(
    states=[y1, y2, y3],
    physics={y1: -k1 * y1, y2: k1 * y1 - k2 * y2 ** 2, y3: k2 * y2 ** 2},
    parameters={k1: 0.08, k2: 1.5e7},
    residual=sysid.MLP(width=16, depth=2, states={y1: 1, y2: -1}, inputs=[y2, y3]))
hybrid = sysid.fit(partial, data, noise="lognormal", epochs=1000, lr=0.005,
                   physics_first=True, progress=False)
print(hybrid.status)
hybrid.parameters

# %% [markdown]
# The hybrid's own `k1` and `k2` are not the truth: the network can take over part of
# `k1`'s term. The question is what the network learnt. `result.symbolic()` distils it
# into sparse terms and refits them, with `k1` and `k2`, against the data:

# %%
summary = hybrid.symbolic()
summary

# %% [markdown]
# The summary finds the reaction `y2*y3` in both equations, with opposite signs, and its
# refit gives all three rate constants:

# %%
refit = summary.parameters
for name, sign in (("y1", 1), ("y2", -1)):
    rate = float(sp.simplify(summary.equations[name] / (sign * y2 * y3)))
    print(f"k3 from d{name}/dt: {rate:.4g} (truth 1e4, {100 * (rate / 1e4 - 1):+.1f} %)")
for name in ("k1", "k2"):
    print(f"{name}: {refit[name]:.4g} (truth {K_TRUE[name]:g}, "
          f"{100 * (refit[name] / K_TRUE[name] - 1):+.1f} %)")
