# %% [markdown]
# # A field from a few sensors: a spreading population and its unknown growth law
#
# A population spreads along a coast 10 km long (periodic, as around an island) and grows
# where it is sparse. Eight sensors along the coast count it at irregular times; between
# them nothing is measured. We know how individuals move, **diffusion** with a known
# coefficient `D`, but not how the population grows: that is the question.
#
# The known physics is a PDE, `du/dt = D u_xx + (unknown growth)`. sysid discretises it by
# the **method of lines** (one state per grid point, central differences for `u_xx`), adds
# a **local** neural network, the same small network at every grid point, reading the
# density there, and fits both to the sensors. The network's growth law is then distilled
# into an equation by `result.symbolic()`.
#
# The data are synthetic (`sysid.datasets.simulate("fisher_kpp")`, Fisher-KPP with
# `r = 1`, computed on a grid 4x finer than ours), so we can check every answer against the
# truth.
#
# **Fast setting.** `SYSID_TUTORIAL_FAST=1` (as in CI) uses a grid of 32 points and a
# smaller network.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import sympy as sp

import sysid

FAST = os.environ.get("SYSID_TUTORIAL_FAST") == "1"
N_POINTS, WIDTH, DEPTH = (32, 8, 1) if FAST else (64, 16, 2)

# %% [markdown]
# ## The data: a field over (time, x), NaN away from the sensors
#
# The dataset has a spatial coordinate `x` next to `time`; the variable `u` holds the
# sensors' counts (with 5 % noise) and NaN at every other grid point.

# %%
data, truth = sysid.datasets.simulate("fisher_kpp", n_points=N_POINTS, sensors=8, seed=0,
                                      truth=True)
sensors = data["x"].values[data["u"].notnull().any("time").values]
print("grid points:", data.sizes["x"], "| sensors at x =", np.round(sensors, 2))
print("true equation:", data.attrs["equations"], "with", data.attrs["true_parameters"])
data

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
axes[0].pcolormesh(truth["x"], truth["time"], truth["u"], shading="auto")
axes[0].set_title("the true field (never seen)")
for xs in sensors:
    axes[0].axvline(xs, color="w", lw=0.8, ls="--")
for xs in sensors:
    series = data["u"].sel(x=xs)
    axes[1].plot(series["time"], series, ".", label=f"x = {xs:.1f}")
axes[1].set_title("what the sensors report")
axes[0].set_xlabel("x (km)"), axes[0].set_ylabel("time (years)")
axes[1].set_xlabel("time (years)"), axes[1].set_ylabel("density")
fig.tight_layout()

# %% [markdown]
# ## The model: diffusion known, growth learnt by a local network
#
# `u = sp.Function("u")(x)` is the field; the physics uses its derivative `u.diff(x, 2)`.
# `space` gives the grid (the data's coordinate), `boundary` the condition at its ends.
# `sysid.MLP(..., local=True, inputs=["u"])` is one network applied at every grid point to
# the density there: a local growth law that cannot depend on where it is, nor on the
# neighbours (those are what diffusion does).

# %%
x = sp.Symbol("x")
u = sp.Function("u")(x)
D = sp.Symbol("D", positive=True)
model = sysid.HybridPDE(
    fields=[u], space={"x": data["x"].values}, boundary={"x": "periodic"},
    physics={u: D * u.diff(x, 2)}, fixed={D: 0.1},
    residual=sysid.MLP(width=WIDTH, depth=DEPTH, local=True, inputs=["u"]))
model

# %%
result = sysid.fit(model, data, seed=0, progress=False, throw=False)
print(result.status)
print("solver chosen:", result.options.solver, "with steps of at most",
      round(result.options.max_step, 3))

# %% [markdown]
# ## The whole field, imputed
#
# `result.impute()` returns the field over (time, x) at every grid point, measured or not.
# We compare it with the truth: the error is a few percent of the field's spread, although
# three grid points in four were never measured.

# %%
field = result.impute()
error = float(np.sqrt(((field["u"] - truth["u"]) ** 2).mean()) / truth["u"].std())
print(f"imputed field: RMS error {100 * error:.1f} % of the true field's spread")
fig = result.plot(forecast=2.0)

# %% [markdown]
# ## What did the network learn?
#
# The network is a function of the density alone, so we can simply look at it: its output
# against `u`, next to the true growth `r u (1 - u)`.

# %%
net = result._problem.field.residual
import torch  # noqa: E402

grid = torch.linspace(0.05, 1.0, 50, dtype=torch.float64)[:, None]
with torch.no_grad():
    learned = (net.pointwise(grid)[:, 0] * net.out_scale[0]).numpy()
plt.figure(figsize=(5, 3.2))
plt.plot(grid[:, 0], learned, label="local network")
plt.plot(grid[:, 0], grid[:, 0] * (1 - grid[:, 0]), "k--", label="truth r u (1 - u)")
plt.xlabel("density u"), plt.ylabel("growth rate du/dt"), plt.legend();

# %% [markdown]
# ## The growth law as an equation
#
# `result.symbolic()` fits sparse combinations of `1, u, u^2` to the network's output,
# refits each candidate on the sensors' data as physics (no network) and keeps the one the
# data favour (BIC). Alternatives the data cannot separate would be listed.

# %%
summary = result.symbolic()
print(summary)
print(summary.to_latex())
summary.parameter_table()

# %% [markdown]
# The summary is `r u - r u^2` (the logistic growth of Fisher-KPP), with `r` close to the
# true 1.0, and the distilled model (physics plus these two terms, no network) imputes the
# field as well as the hybrid did:

# %%
distilled = summary.result.impute()
error = float(np.sqrt(((distilled["u"] - truth["u"]) ** 2).mean()) / truth["u"].std())
print(f"distilled model: field error {100 * error:.1f} % of the spread")
