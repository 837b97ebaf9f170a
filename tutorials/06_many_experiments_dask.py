# %% [markdown]
# # Many experiments on Dask: one epidemic model, many regions
#
# An infection spreads through many regions at once. Each region's health agency reports
# every two days the share of its population that is currently **infected** (`I`) and the
# share that has **recovered** (`R`). Nobody counts the **susceptible** (`S`). The SIR
# model is the same everywhere,
#
# ```
# dS/dt = -beta S I,    dI/dt = beta S I - gamma I,    dR/dt = gamma I,
# ```
#
# but the transmission rate `beta` and the recovery rate `gamma` differ from region to
# region (density, contacts, care), and so does the basic reproduction number
# `R0 = beta / gamma`. We want all three for every region.
#
# Every region is an independent fit of the same model to its own data.
# `sysid.fit_many` runs such fits as tasks on a [Dask](https://distributed.dask.org)
# cluster and collects the results in one labelled table. This tutorial:
#
# 1. starts a `LocalCluster` (one single-threaded worker process per core);
# 2. fits every region on it, one of them with broken data: that member fails, is
#    reported, and does not stop the others;
# 3. checks that a serial loop gives bit-identical numbers;
# 4. compares the fitted parameters with the truth across the regions;
# 5. runs a short `sysid.sweep` over training options for one region on the same
#    cluster.
#
# **Fast setting.** `SYSID_TUTORIAL_FAST=1` (as in CI) fits 8 regions instead of 30.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import sympy as sp
from distributed import Client, LocalCluster

import sysid

FAST = os.environ.get("SYSID_TUTORIAL_FAST") == "1"
N_REGIONS = 8 if FAST else 30
SHOOTING = [5, 10] if FAST else ["single", 5, 10]     # the sweep of section 5

# %% [markdown]
# ## The data: one `xarray.Dataset` per region
#
# `sysid.datasets.simulate("sir", ...)` draws each region's epidemic with its own
# parameters (`params=`) and initial share of infected (`x0=`), with 5 % measurement noise.
# `observed=["I", "R"]` leaves `S` out: it is a state of the model that no data variable
# measures. The true parameters and the noise-free states (`truth=True`) are kept aside
# for the comparisons at the end.

# %%
rng = np.random.default_rng(2024)
truth = pd.DataFrame({"gamma": rng.uniform(0.08, 0.2, N_REGIONS),
                      "R0": rng.uniform(1.8, 4.0, N_REGIONS),
                      "I0": rng.uniform(0.002, 0.02, N_REGIONS)},
                     index=pd.Index([f"region {k:02d}" for k in range(N_REGIONS)], name="site"))
truth["beta"] = truth["R0"] * truth["gamma"]

datasets, noise_free = {}, {}
for k, (name, row) in enumerate(truth.iterrows()):
    datasets[name], noise_free[name] = sysid.datasets.simulate(
        "sir", params={"beta": row["beta"], "gamma": row["gamma"]},
        x0=[1 - row["I0"], row["I0"], 0.0], observed=["I", "R"], noise=0.05,
        t_end=100.0, dt=2.0, seed=k, truth=True)
truth.round(3).head()

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharex=True)
for name, ds in list(datasets.items())[:6]:
    axes[0].plot(ds["time"], ds["I"], ".-", ms=3, lw=0.6, label=name)
    axes[1].plot(ds["time"], ds["R"], ".-", ms=3, lw=0.6)
axes[0].set_ylabel("I: infected share")
axes[1].set_ylabel("R: recovered share")
for ax in axes:
    ax.set_xlabel("time (days)")
axes[0].legend(fontsize=7)
fig.suptitle("six of the regions");

# %% [markdown]
# One region's file arrives broken: two reports were appended out of order, so its time
# coordinate runs backwards at one place. We keep it in the collection on purpose.

# %%
broken = "region 03"
ds = datasets[broken]
datasets[broken] = ds.isel(time=np.r_[0:20, 25:30, 20:25, 30:ds.sizes["time"]])
print(datasets[broken]["time"].values[:32])

# %% [markdown]
# ## The model
#
# Physics only: the whole SIR model is known, only its two parameters are not. `S` has
# no data, so sysid estimates its initial value along with `beta` and `gamma`. A model
# with a neural residual runs on Dask exactly the same way, only each fit takes longer.

# %%
S, I, R = sp.symbols("S I R", positive=True)
beta, gamma = sp.symbols("beta gamma", positive=True)
model = sysid.HybridODE(
    states=[S, I, R],
    physics={S: -beta * S * I, I: beta * S * I - gamma * I, R: gamma * I},
    parameters={beta: 0.5, gamma: 0.1},
)
model

# %% [markdown]
# ## The cluster
#
# Without `client=`, every `fit_many` call starts its own `LocalCluster` and closes it at
# the end. Starting workers costs seconds (each one imports torch and sysid), so for
# several calls we start one cluster ourselves and pass its `client` to each call. Give it
# one single-threaded worker process per core (each fit runs torch on one thread; here at
# most 4 workers, plenty for these few small fits). The
# same `client=` also takes a client of a real cluster (`Client("tcp://scheduler:8786")`),
# whose workers have sysid installed.

# %%
start = time.perf_counter()
cluster = LocalCluster(n_workers=min(os.cpu_count() or 1, 4), threads_per_worker=1,
                       processes=True, dashboard_address=None)
client = Client(cluster)
print(client)
print(f"cluster started in {time.perf_counter() - start:.1f} s")

# %% [markdown]
# ## Fitting every region
#
# `fit_many` takes a dict of datasets (the keys become the labels along the dimension
# `dim`) or one Dataset with a member dimension. Options after the data are those of
# `sysid.fit` and apply to every member. The progress bar counts finished members; it
# shows in notebooks and terminals and is off when `CI` is set (pass `progress=True` to
# force it).

# %%
start = time.perf_counter()
fits = sysid.fit_many(model, datasets, dim="site", client=client, seed=0)
wall = time.perf_counter() - start
print(f"{len(fits)} regions in {wall:.1f} s on {len(client.scheduler_info()['workers'])} "
      f"workers")
fits

# %% [markdown]
# The broken region failed; the others went on. `fits.failed` has its error message (the
# same `DataError`, with its fix, that `sysid.fit` would raise on it), `fits.tracebacks`
# the worker's full traceback, and the tables hold NaN in its row.

# %%
for label, message in fits.failed.items():
    print(f"{label}: {message}")
fits.summary().head(6)

# %% [markdown]
# `fits.parameters` is an `xarray.Dataset` over `site`, and `fits[label]` is the
# `FitResult` of one member: its parameters, imputed states, forecasts, plots, `save`.

# %%
fits.parameters

# %%
example = fits["region 00"]
print(example.status)
print({name: round(value, 4) for name, value in example.parameters.items()})
example.impute().head()

# %% [markdown]
# ## Identical to a serial loop
#
# Every member runs the same function with torch on one thread, wherever it runs.
# `scheduler="serial"` fits the members one after the other in this process, without
# Dask; on a subset of the regions the parameters and the imputed states are bit-identical
# to the cluster's.

# %%
subset = [label for label in fits.succeeded][:3]
serial = sysid.fit_many(model, {k: datasets[k] for k in subset}, dim="site",
                        scheduler="serial", seed=0, progress=False)
for label in subset:
    same_parameters = all(serial[label].parameters[p] == fits[label].parameters[p]
                          for p in model.parameter_names)
    same_states = all(np.array_equal(serial[label].impute()[v].values,
                                     fits[label].impute()[v].values) for v in "SIR")
    print(f"{label}: parameters identical {same_parameters}, "
          f"imputed states identical {same_states}")

# %% [markdown]
# ## Fitted against true parameters, across the regions
#
# `fits.parameters` lines up with the truth by region label; `R0 = beta / gamma` is
# derived from the two. Points on the dashed line are fitted exactly.

# %%
fitted = fits.parameters.to_dataframe()
fitted["R0"] = fitted["beta"] / fitted["gamma"]
compare = fitted.join(truth[["beta", "gamma", "R0"]].add_suffix("_true")).dropna()

fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
for ax, name, label in [(axes[0], "beta", "beta (1/day)"),
                        (axes[1], "gamma", "gamma (1/day)"),
                        (axes[2], "R0", "R0 = beta / gamma")]:
    ax.plot(compare[f"{name}_true"], compare[name], "o", ms=5)
    lo = min(compare[f"{name}_true"].min(), compare[name].min())
    hi = max(compare[f"{name}_true"].max(), compare[name].max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="fit = truth")
    ax.set_xlabel(f"true {label}")
    ax.set_ylabel(f"fitted {label}")
axes[0].legend()
fig.suptitle(f"{len(compare)} regions fitted ({broken} failed: bad data)")
fig.tight_layout()

# %%
for name in ("beta", "gamma", "R0"):
    err = (compare[name] / compare[f"{name}_true"] - 1).abs()
    print(f"{name:>5}: median relative error {100 * err.median():.1f} %, "
          f"largest {100 * err.max():.1f} %")

# %% [markdown]
# The susceptible share was never measured; each member imputes it. Here is the region
# with the largest `R0`, where the epidemic burns through most of the population:

# %%
label = compare["R0_true"].idxmax()
member = fits[label]
states = member.impute(np.linspace(0.0, 100.0, 201))
fig, ax = plt.subplots(figsize=(8, 3.2))
for name, colour in zip("SIR", ["C0", "C3", "C2"]):
    ax.plot(states["time"], states[name], color=colour, label=f"{name} (fitted)")
    ax.plot(noise_free[label]["time"], noise_free[label][name], ":", color="k", lw=1)
    if name in datasets[label]:
        ax.plot(datasets[label]["time"], datasets[label][name], ".", color=colour, ms=4)
ax.plot([], [], "k:", label="truth")
ax.set_xlabel("time (days)")
ax.set_ylabel("share of the population")
ax.set_title(f"{label}: R0 = {member.parameters['beta'] / member.parameters['gamma']:.2f} "
             f"(truth {truth.loc[label, 'R0']:.2f}); S never measured")
ax.legend(fontsize=8);

# %% [markdown]
# ## A sweep over training options, on the same cluster
#
# A result worth reporting should not depend on how the fit was trained. `sysid.sweep`
# fits **one** dataset under a grid of options of `sysid.fit`, as tasks on the same
# cluster. Here, for that region: multiple-shooting windows of 5 and of 10 samples (see
# the user guide for what they are) and, in the full setting, single shooting over the
# whole record.

# %%
runs = sysid.sweep(model, datasets[label], {"shooting": SHOOTING}, client=client, seed=0)
summary = runs.summary()[["shooting", "status", "loss", "wall_time_s"]]
for name in model.parameter_names:
    summary[name] = runs.parameters[name].values
summary["R0"] = summary["beta"] / summary["gamma"]
print(f"truth: beta {truth.loc[label, 'beta']:.4f}, gamma {truth.loc[label, 'gamma']:.4f}, "
      f"R0 {truth.loc[label, 'R0']:.3f}")
best = summary["loss"].idxmin()
print(f"lowest final loss: shooting={summary.loc[best, 'shooting']}; R0 across the settings "
      f"{summary['R0'].min():.3f} to {summary['R0'].max():.3f}")
summary

# %% [markdown]
# Each row is a complete fit (`runs[0]` is its `FitResult`). These settings weigh the
# loss alike, so their final `loss` (negative log-likelihood per observation, up to a
# constant; lower is
# better) compares them: a setting that ends clearly higher stopped in a worse local
# optimum, and its parameters should not be trusted. Shooting windows are sysid's
# default for that reason: single shooting from a poor initial guess is the strategy most
# likely to get stuck. For settings that weigh the loss differently, pass
# `validation=0.2` (each member is then also scored on held-out windows) and pick with
# `runs.best("validation")`.
# `sysid.fit_ensemble(model, data, n=20, client=client)` runs an ensemble of fits to
# resampled data on the cluster the same way (see `04_uncertainty`).

# %% [markdown]
# Finally, close the client and the cluster:

# %%
client.close()
cluster.close()

# %% [markdown]
# ## Summary
#
# - `sysid.fit_many(model, {label: dataset}, dim="site", client=client)` fits every member
#   on Dask; `fits.parameters`, `fits.summary()`, `fits[label]` give the results.
# - A member that raises is listed in `fits.failed` (with `fits.tracebacks`); the others
#   are fitted, and its row is NaN.
# - `scheduler="serial"` runs the same fits in this process, bit-identical.
# - `sysid.sweep` (option grids) and `sysid.fit_ensemble` (ensembles) run on the same
#   cluster with the same `client=`. More in `docs/scale.md`.
