# %% [markdown]
# # Quickstart: hares, lynx and the interactions nobody wrote down
#
# Between 1900 and 1920 the Hudson's Bay Company bought pelts of snowshoe hares and of the
# Canada lynx that hunt them. The two counts rise and fall in a cycle of about ten years,
# the textbook case of predator-prey dynamics.
#
# Suppose we know only the simplest part of the story: without lynx, hares multiply
# (`d hare/dt = alpha * hare`), and without hares, lynx starve (`d lynx/dt = -gamma * lynx`).
# How the two species interact is left to a small neural network, the *residual*. We fit
# both together, look at the fitted parameters with their uncertainty, forecast the cycle,
# and finally ask sysid to turn the network back into equations.
#
# **Fast setting.** With the environment variable `SYSID_TUTORIAL_FAST=1` (as in CI) the
# fit and the symbolic summary use smaller budgets: the story is the same, the numbers are
# rougher.

# %%
import os

import matplotlib.pyplot as plt
import sympy as sp

import sysid

FAST = os.environ.get("SYSID_TUTORIAL_FAST") == "1"
FIT_OPTIONS = dict(epochs=30, lbfgs_iterations=40, polish_iterations=5) if FAST else {}

# %% [markdown]
# ## The data
#
# `sysid.datasets.load` returns a labelled `xarray.Dataset`: one variable per measured
# channel, with units, long names and the citation in the attributes. Time is in years
# since 1900.

# %%
data = sysid.datasets.load("lynx_hare")
data

# %%
fig, ax = plt.subplots(figsize=(8, 3))
for name in ["hare", "lynx"]:
    ax.plot(1900 + data["time"], data[name], "o-", label=data[name].attrs["long_name"])
ax.set_xlabel("year")
ax.set_ylabel(data["hare"].attrs["units"])
ax.legend()
ax.set_title("Hudson's Bay Company pelts");

# %% [markdown]
# ## The model: known physics plus a neural residual
#
# States and parameters are SymPy symbols. `positive=True` tells sysid that a rate cannot
# be negative: it is fitted on a log scale. `sysid.MLP(width=16, depth=2)` adds a network
# to both derivatives; it starts at zero, so the untrained model is exactly the physics.

# %%
hare, lynx = sp.symbols("hare lynx")
alpha, gamma = sp.symbols("alpha gamma", positive=True)
model = sysid.HybridODE(
    states=[hare, lynx],
    physics={hare: alpha * hare, lynx: -gamma * lynx},
    parameters={alpha: 0.5, gamma: 0.5},
    residual=sysid.MLP(width=16, depth=2),
)
model

# %% [markdown]
# Pelt counts are positive and their errors grow with their size, so we use log-normal
# noise. The same seed and the same data always give the same result.

# %%
result = sysid.fit(model, data, seed=0, noise="lognormal", progress=False, **FIT_OPTIONS)
print(result.status)
print(f"{result.stats['wall_time_s']:.1f} s")

# %% [markdown]
# ## Parameters, with their uncertainty
#
# `parameter_table()` gives each parameter's value, standard error and a 90 % interval.
# The errors come from the curvature of the likelihood with the initial states and the
# network's weights integrated out: a network that could absorb part of `alpha * hare`
# makes `alpha` less certain, and the table says so.

# %%
table = result.parameter_table(level=0.9)
table[["value", "std_error", "lower", "upper", "identifiable"]]

# %% [markdown]
# Look at the `identifiable` column, and at the `IdentifiabilityWarning` above it if there
# is one. A network that reads both states can represent `alpha * hare` and `gamma * lynx`
# itself, and 21 yearly counts cannot tell the physics' share from the network's: the
# standard errors of `alpha` and `gamma` are then as large as the values. That is not a
# failure of the fit: the table reports honestly that this model, on these data, does not
# pin the rates down. The symbolic summary at the end refits the physics together with
# explicit terms and no network, which removes this ambiguity (21 samples leave others,
# as we will see).
#
# For comparison, Carpenter (2018) fitted the full Lotka-Volterra model in Stan and found
# posterior means `alpha = 0.55` and `gamma = 0.80`.

# %% [markdown]
# ## The fit and a forecast
#
# `result.plot(forecast=...)` draws the data, the fitted trajectories and a forecast past
# the last year.

# %%
fig = result.plot(forecast=10.0)

# %% [markdown]
# `forecast(horizon=..., level=0.9)` returns the forecast as a dataset, with a 90 %
# band (`<name>_lower`, `<name>_upper`) from the same Laplace approximation. The band is
# pointwise, and it grows as the forecast moves away from the data.

# %%
future = result.forecast(horizon=10.0, n=100, level=0.9)
fitted = result.impute(level=0.9)
fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
for ax, name in zip(axes, ["hare", "lynx"]):
    ax.plot(1900 + data["time"], data[name], "ko", ms=4, label="pelts")
    for part, colour, label in [(fitted, "C0", "fit"), (future, "C1", "forecast")]:
        years = 1900 + part["time"]
        ax.plot(years, part[name], color=colour, label=label)
        ax.fill_between(years, part[f"{name}_lower"], part[f"{name}_upper"],
                        color=colour, alpha=0.25)
    ax.set_ylabel(f"{name} ({data[name].attrs['units']})")
axes[0].legend(loc="upper left")
axes[1].set_xlabel("year")
fig.suptitle("fit and forecast with 90 % bands");

# %% [markdown]
# The training history is a dataset over epochs, one row per optimiser step:

# %%
history = result.history
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(history["loss"])
ax.set_xlabel("step")
ax.set_ylabel("loss")
ax.set_title("training history");

# %% [markdown]
# ## What did the network learn?
#
# `result.equations` writes the fitted right-hand side with the network as an undefined
# function. `result.symbolic()` goes further: it samples the network along the fitted
# trajectories, proposes sparse polynomial forms for it (sparse regression), refits each
# proposal against the data without any network, and selects one by an information
# criterion. Lotka-Volterra predicts interaction terms in `hare * lynx`.

# %%
result.equations

# %%
SUMMARY_OPTIONS = dict(thresholds=[0.03, 0.1, 0.3], n_points=200, refine=0, ensemble=0,
                       holdout=0) if FAST else {}
summary = result.symbolic(degree=2, **SUMMARY_OPTIONS)
for state, rhs in summary.model_equations.items():
    print(f"d{state}/dt = {sp.N(rhs, 3)}")

# %% [markdown]
# With 21 samples, several sparse forms explain the data almost equally well, so read the
# selected equations together with their standard errors and with the candidate table
# below: the `hare * lynx` interactions of Lotka-Volterra are the terms to look for, and a
# term whose error is as large as its value is not supported by the data.
#
# The refit coefficients carry standard errors; `to_latex()` writes the equations as an
# `align` block for a paper, each number rounded to what its error supports.

# %%
print(summary.to_latex())

# %%
summary.parameter_table()

# %% [markdown]
# ## What the data cannot decide
#
# `summary.alternatives` lists, for each equation, the other sets of terms whose refit
# scores within 6 EBIC units of the selected one (below 6 the data give at most
# "positive", not "strong", evidence between two models), with their coefficients and
# gap. `summary.warnings` says the same in sentences, with where along the data the
# candidates differ most, that is, what data would separate them.

# %%
for note in summary.warnings:
    print("-", note, "\n")
{state: [(alt["terms"], round(alt["gap"], 1)) for alt in alts]
 for state, alts in summary.alternatives.items()}

# %% [markdown]
# Once a summary exists, `result.plot()` draws its distilled equations (grey: the physics
# plus the selected terms, no network) next to the hybrid fit, with their forecast:

# %%
fig = result.plot(forecast=10.0)

# %% [markdown]
# Each candidate the summary refit is listed in `summary.path` with its score (`EBIC`,
# lower is better; `dEBIC` above the best); `summary.plot()` draws the scores against the
# number of terms, the selected model marked.

# %%
summary.path[["method", "n_terms", "EBIC", "dEBIC", "support_hare", "support_lynx",
              "selected"]].sort_values("EBIC").head(8)

# %%
fig = summary.plot()

# %% [markdown]
# ## Where next
#
# - `02_partial_observation_pendulum`: a state that is never measured, imputed with a band.
# - `03_discovering_missing_physics`: from residual to equations to long forecasts.
# - `04_uncertainty`: parameter intervals, correlations and identifiability.
