# %% [markdown]
# # Uncertainty: how sure are the parameters, the states and the forecasts?
#
# A fit returns one set of parameters and one trajectory. This tutorial asks how well the
# data determine them:
#
# 1. a **parameter table** with standard errors and intervals, and the **correlations**
#    between parameters;
# 2. **bands** on imputed states and forecasts (where the true state is, and where a new
#    measurement would fall);
# 3. a model whose parameters the data **cannot** separate, and the warning sysid gives;
# 4. an **ensemble** of fits to resampled data, a check that does not rely on the local
#    (Laplace) approximation.
#
# The data are synthetic, so every interval can be checked against the truth.
#
# **Fast setting.** `SYSID_TUTORIAL_FAST=1` (as in CI) uses a small ensemble fitted in
# this process; the full setting fits 20 members on a local Dask cluster.

# %%
import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
import xarray as xr

import sysid
from sysid.errors import IdentifiabilityWarning

FAST = os.environ.get("SYSID_TUTORIAL_FAST") == "1"
ENSEMBLE = dict(n=4, scheduler="serial") if FAST else dict(n=20)

# %% [markdown]
# ## 1. A parameter table for Lotka-Volterra
#
# Three short predator-prey records with 5 % noise, fitted with the complete
# Lotka-Volterra model (no network). Parameters declared `positive=True` are fitted on a
# log scale, so their intervals stay positive.

# %%
data, truth = sysid.datasets.simulate("lotka_volterra", noise=0.05, n_trajectories=3,
                                      seed=1, truth=True)
true_values = {"a": 1.3, "b": 0.9, "c": 0.8, "d": 1.8}

x, y = sp.symbols("x y")
a, b, c, d = sp.symbols("a b c d", positive=True)
model = sysid.HybridODE(
    states=[x, y],
    physics={x: a * x - b * x * y, y: c * x * y - d * y},
    parameters={a: 1.0, b: 1.0, c: 1.0, d: 1.0},
)
result = sysid.fit(model, data, seed=0, progress=False)
print(result.status)

table = result.parameter_table(level=0.9)
table["truth"] = [true_values[name] for name in table.index]
table["truth inside"] = (table["lower"] <= table["truth"]) & (table["truth"] <= table["upper"])
table

# %% [markdown]
# `table.attrs` records how the table was computed (the level, the residual degrees of
# freedom, the number of observations):

# %%
table.attrs

# %% [markdown]
# The intervals come from the curvature of the likelihood at the optimum (a Laplace
# approximation), with the initial states integrated out. They are *marginal*: the
# correlations between parameters are already accounted for. The correlations themselves
# tell which combinations the data determine better than the single parameters:

# %%
corr = result.parameter_correlation()
fig, ax = plt.subplots(figsize=(4, 3.5))
image = ax.imshow(corr.values, vmin=-1, vmax=1, cmap="RdBu_r")
names = list(corr["parameter"].values)
ax.set_xticks(range(len(names)), names)
ax.set_yticks(range(len(names)), names)
for i in range(len(names)):
    for j in range(len(names)):
        ax.text(j, i, f"{corr.values[i, j]:.2f}", ha="center", va="center", fontsize=8)
fig.colorbar(image, ax=ax)
ax.set_title("parameter correlation");

# %% [markdown]
# In Lotka-Volterra, each species' growth and interaction rates are strongly correlated
# (`a` with `b`, `c` with `d`): a faster growth can be partly compensated by a stronger
# interaction.
#
# ## 2. Bands on states and forecasts
#
# `impute(level=0.9)` and `forecast(..., level=0.9)` add `<name>_lower` and `<name>_upper`.
# `interval="confidence"` (default) is the uncertainty of the trajectory itself;
# `interval="prediction"` adds the fitted measurement noise, so it shows where a new
# measurement would fall.

# %%
times = np.linspace(0.0, float(data["time"][-1]), 61)
confidence = result.impute(times, level=0.9)
prediction = result.impute(times, level=0.9, interval="prediction")
future = result.forecast(horizon=2.0, n=40, level=0.9)

k = 0
fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
for ax, name in zip(axes, ["x", "y"]):
    ax.fill_between(times, prediction[f"{name}_lower"].isel(trajectory=k),
                    prediction[f"{name}_upper"].isel(trajectory=k), color="C0", alpha=0.15,
                    label="90 % prediction band")
    ax.fill_between(times, confidence[f"{name}_lower"].isel(trajectory=k),
                    confidence[f"{name}_upper"].isel(trajectory=k), color="C0", alpha=0.4,
                    label="90 % confidence band")
    ax.plot(times, confidence[name].isel(trajectory=k), "C0")
    ax.fill_between(future["time"], future[f"{name}_lower"].isel(trajectory=k),
                    future[f"{name}_upper"].isel(trajectory=k), color="C1", alpha=0.4,
                    label="forecast, 90 % confidence")
    ax.plot(future["time"], future[name].isel(trajectory=k), "C1")
    ax.plot(data["time"], data[name].isel(trajectory=k), "k.", label="data")
    ax.set_ylabel(name)
axes[0].legend(fontsize=8, loc="upper right")
axes[1].set_xlabel("time")
fig.suptitle(f"trajectory {k}: bands");

# %% [markdown]
# About 90 % of the measurements should fall inside the prediction band, and the true,
# noise-free state should lie inside the confidence band about 90 % of the time (the
# bands are pointwise, and these checks use one data set, so expect some scatter):

# %%
at_data = result.impute(level=0.9, interval="prediction")
measured = data["x"].notnull()
inside = (data["x"] >= at_data["x_lower"]) & (data["x"] <= at_data["x_upper"])
print(f"measurements of x inside the prediction band: {float(inside.where(measured).mean()):.2f}")
at_truth = result.impute(level=0.9)
inside = (truth["x"] >= at_truth["x_lower"]) & (truth["x"] <= at_truth["x_upper"])
print(f"true x inside the confidence band:            {float(inside.mean()):.2f}")

# %% [markdown]
# ## 3. When the data cannot tell parameters apart
#
# A decay `dx/dt = -a b x` depends on the product `a b` only: any pair with the same
# product gives the same data. sysid notices: `parameter_table()` flags both parameters and
# issues a `sysid.errors.IdentifiabilityWarning` that says why and what to do.

# %%
rng = np.random.default_rng(0)
t = np.linspace(0.0, 4.0, 25)
observed = 2.0 * np.exp(-0.6 * t) * (1 + 0.03 * rng.standard_normal(t.size))
decay = xr.Dataset({"x": ("time", observed)}, coords={"time": t})
z = sp.Symbol("x")
ka, kb = sp.symbols("a b", positive=True)
product_model = sysid.HybridODE(states=[z], physics={z: -ka * kb * z},
                                parameters={ka: 0.5, kb: 1.0})
product_fit = sysid.fit(product_model, decay, seed=0, progress=False)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    flagged = product_fit.parameter_table()
for warning in caught:
    if issubclass(warning.category, IdentifiabilityWarning):
        print(warning.message)
flagged[["value", "std_error", "identifiable", "note"]]

# %% [markdown]
# The product is still well determined, even though the factors are not:

# %%
print(f"a * b = {product_fit.parameters['a'] * product_fit.parameters['b']:.4f} "
      f"(truth 0.6)")

# %% [markdown]
# The first remedy the warning suggests: give one parameter a known value with `fixed=`.
# Now the other one is identified, and no warning is raised.

# %%
fixed_model = sysid.HybridODE(states=[z], physics={z: -ka * kb * z},
                              parameters={ka: 0.5}, fixed={kb: 1.0})
fixed_fit = sysid.fit(fixed_model, decay, seed=0, progress=False)
with warnings.catch_warnings():
    warnings.simplefilter("error", IdentifiabilityWarning)
    fixed_table = fixed_fit.parameter_table()
fixed_table[["value", "std_error", "lower", "upper", "identifiable"]]

# %% [markdown]
# ## 4. An ensemble: intervals without the local approximation
#
# The Laplace intervals are local: they can be too narrow when the model is strongly
# nonlinear over the uncertainty, or (for hybrid models) when the network could reach
# other optima. `sysid.fit_ensemble` refits the model to resampled data: by default each
# member keeps a random half of each trajectory's blocks of samples, and the members'
# spread is scaled to that of the full-data estimate. By default the members run in
# parallel on a local Dask cluster; `scheduler="serial"` fits them one after the other in
# this process, with identical results.

# %%
ensemble = sysid.fit_ensemble(model, data, seed=0, progress=False, **ENSEMBLE)
print(f"{len(ensemble.members)} members, failed: {ensemble.failed or 'none'}")
ens_table = ensemble.parameter_table(level=0.9)
comparison = ens_table[["value", "std"]].rename(columns={"std": "ensemble std"})
comparison["Laplace std_error"] = table["std_error"]
comparison["truth"] = table["truth"]
comparison

# %% [markdown]
# With only a few members (the fast setting) the ensemble's spread is itself uncertain; 20
# or more members give steady 90 % intervals. When the two columns roughly agree, the
# local approximation can be trusted for this model and data; when the ensemble is much
# wider, trust the ensemble.
#
# ## Summary
#
# - `parameter_table(level)` and `parameter_correlation()`: how well each parameter is
#   determined, and which combinations are;
# - `impute(level=...)` and `forecast(..., level=...)`: confidence bands for the true
#   state, prediction bands for new measurements;
# - an `IdentifiabilityWarning` names parameters the data cannot separate: fix one, add
#   data that separate them, or reparametrise;
# - `fit_ensemble`: a resampling check of the local approximation.
#
# See `docs/uncertainty.md` for how the intervals are computed and when to distrust them.
