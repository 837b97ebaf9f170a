# %% [markdown]
# # What the scientist knows besides the equations: signs, conservation, counts
#
# An outbreak in a town of 10 000 people. The health office counts the people who are
# ill each day (whole numbers, on whole days), and a serology survey every two weeks
# says how many have recovered. The SIR model is the physics we know:
#
# ```
# dS/dt = -beta S I / N        dI/dt = beta S I / N - gamma I        dR/dt = gamma I
# ```
#
# Besides the equations, the epidemiologist knows things that are not rates:
#
# 1. the three groups are **counts**: never negative (`nonnegative=True`);
# 2. nobody enters or leaves the town: **S + I + R = N** at every time (an invariant);
# 3. the measurements are counts too, whose scatter grows with the count (Poisson), and
#    a model of the noise is a choice that the data can judge (`sysid.compare`);
# 4. the recovery rate is a property of the disease that lies between 1/20 and 1 per day
#    (a **bounded** parameter).
#
# This tutorial writes each of them into the model and shows what it changes. It also
# shows what sysid says when the data cannot determine something, and when a model
# misses its data.
#
# **Fast setting.** `SYSID_TUTORIAL_FAST=1` (as in CI) changes nothing: every fit here is
# physics only and takes a second or two.

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
import xarray as xr
from scipy.integrate import solve_ivp

import sysid
from sysid.errors import IdentifiabilityWarning

N = 10_000
TRUE = {"beta": 0.3, "gamma": 0.1}

# %% [markdown]
# ## The data: whole numbers on whole days
#
# The truth is simulated by SciPy; the daily counts of the ill are Poisson draws around
# it, the serology survey (every 14 days) is a Poisson count of the recovered. Both are
# stored the way a spreadsheet gives them: integers, with integer days.

# %%
days = np.arange(0, 91)
truth = solve_ivp(lambda _, y: [-TRUE["beta"] * y[0] * y[1] / N,
                                TRUE["beta"] * y[0] * y[1] / N - TRUE["gamma"] * y[1],
                                TRUE["gamma"] * y[1]],
                  (0, 90), [N - 20.0, 20.0, 0.0], t_eval=days, rtol=1e-10, atol=1e-8).y
rng = np.random.default_rng(7)
ill = rng.poisson(truth[1])
recovered = np.full(days.size, -1)
recovered[::14] = rng.poisson(truth[2][::14])
data = xr.Dataset({"I": ("time", ill)}, coords={"time": days})
data["I"].attrs.update(long_name="people ill", units="people")
data["time"].attrs.update(long_name="day of the outbreak", units="days")
print(data["I"].dtype, data["time"].dtype)

# %% [markdown]
# Integer data are converted to float64, with a `DataWarning` that says so (a fit on
# integers would otherwise round what the optimiser does with them).
#
# ## 1. Counts are never negative, and what the ill alone cannot tell
#
# Declaring the states `nonnegative=True` keeps every fitted and imputed state on its side
# of 0. With only `I` measured, the recovered `R` acts on nothing that is measured:
# sysid says that `R(0)` cannot be determined before it fits.

# %%
S, I, R = sp.symbols("S I R", nonnegative=True)
beta, gamma = sp.symbols("beta gamma", positive=True)
physics = {S: -beta * S * I / N, I: beta * S * I / N - gamma * I, R: gamma * I}
sir = sysid.HybridODE(states=[S, I, R], physics=physics,
                      parameters={beta: 0.5, gamma: 0.2})

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ill_only = sysid.fit(sir, data, seed=0, progress=False)
for w in caught:
    print(f"{w.category.__name__}: {str(w.message)[:300]}...\n")
print(ill_only.status)
print(ill_only.status.detail)
print({k: round(v, 4) for k, v in ill_only.parameters.items()}, "truth", TRUE)
print("fitted S(0):", round(float(ill_only.initial_states["S"]), 1), " truth:", N - 20)

# %% [markdown]
# From the ill alone, `beta` and `gamma` come out within a few per cent, the susceptible
# pool less well (printed above against the truth): a somewhat smaller pool with a
# somewhat larger `beta` draws nearly the same epidemic curve. (The first whole-record
# fit missed the data by many times their noise level; the default `grow_horizon="auto"`
# refitted it on the first part of the record and grew it, and kept that fit: the
# status's `detail` says so.) The parameter table gives the intervals:
#
# %%
ill_only.parameter_table()[["value", "std_error", "lower", "upper", "identifiable"]]

# %% [markdown]
# ## 2. The invariant S + I + R = N, and the survey that it makes count
#
# `invariants=[S + I + R - N]` makes `R` an algebraic state, `R = N - S - I` (one initial
# state fewer to fit; sysid checks that the physics conserves the sum and refuses the
# invariant otherwise). Now a measurement of `R` is a measurement of `S + I`: the
# serology survey, seven numbers, pins the susceptible pool (and the start guess of `S`
# is read from it: `R(0) = 0` says `S(0) = N - I(0)`).

# %%
surveyed = data.assign(R=("time", np.where(recovered >= 0, recovered, np.nan)))
surveyed["R"].attrs.update(long_name="people recovered (serology survey)", units="people")
closed = sysid.HybridODE(states=[S, I, R], physics=physics,
                         parameters={beta: 0.5, gamma: 0.2}, invariants=[S + I + R - N])
print(closed)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", sysid.errors.DataWarning)
    fit_closed = sysid.fit(closed, surveyed, seed=0, progress=False)
print(fit_closed.status)
print({k: round(v, 4) for k, v in fit_closed.parameters.items()}, "truth", TRUE)
imputed = fit_closed.impute()
print("largest |S - truth|:", round(float(np.max(np.abs(imputed["S"].values - truth[0]))), 1),
      "people;  R == N - S - I:",
      bool(np.allclose(imputed["R"], N - imputed["S"] - imputed["I"])))

# %%
fig = fit_closed.plot()
plt.show()

# %% [markdown]
# ## 3. Counts: a noise model the data can judge
#
# The default noise model is Gaussian with one level per channel. For counts the scatter
# grows with the count: `noise="poisson"` is their likelihood, and `"negative_binomial"`
# allows more scatter than Poisson (its size is learned). Both need the actual counts,
# not counts in thousands. (Log-normal noise, another choice for positive data, cannot
# take the survey's 0 recovered on day 0.) Log-likelihood, AIC and BIC are on every
# result, and `sysid.compare` ranks fits of the same data.

# %%
fits = {}
for noise in ("gaussian", "poisson", "negative_binomial"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sysid.errors.DataWarning)
        fits[noise] = sysid.fit(closed, surveyed, seed=0, noise=noise, progress=False)
ranking = sysid.compare(fits)
ranking

# %%
for noise, fitted in fits.items():
    print(f"{noise:>9s}: beta {fitted.parameters['beta']:.4f}, "
          f"gamma {fitted.parameters['gamma']:.4f}")
print(f"{'truth':>9s}: beta {TRUE['beta']:.4f}, gamma {TRUE['gamma']:.4f}")

# %% [markdown]
# ## 4. What is known about a rate: bounds
#
# A parameter given as `(guess, low, high)` stays inside the open interval during the
# fit, and its interval in the table respects the bounds (it is made on a logistic scale
# and mapped back).

# %%
bounded = sysid.HybridODE(states=[S, I, R], physics=physics,
                          parameters={beta: 0.5, gamma: (0.2, 0.05, 1.0)},
                          invariants=[S + I + R - N])
with warnings.catch_warnings():
    warnings.simplefilter("ignore", sysid.errors.DataWarning)
    fit_bounded = sysid.fit(bounded, surveyed, seed=0, noise="poisson", progress=False)
fit_bounded.parameter_table(level=0.95)[["value", "lower", "upper", "scale"]]

# %% [markdown]
# ## 5. A model that misses its data says so
#
# An SI model (nobody recovers) cannot draw an epidemic that ends. Its fit converges, as
# optimisers do, but the status carries a note: the residuals are many times the noise
# level that the data show on their own.

# %%
si = sysid.HybridODE(states=[S, I], physics={S: -beta * S * I / N, I: beta * S * I / N},
                     parameters={beta: 0.5})
with warnings.catch_warnings():
    warnings.simplefilter("ignore", sysid.errors.DataWarning)
    missed = sysid.fit(si, data, seed=0, progress=False)
print(missed.status)

# %% [markdown]
# ## Summary
#
# - `nonnegative=True` (or `positive=True`) on a state keeps its fitted and imputed values
#   on its side of 0;
# - a state that nothing measured depends on is named by an `IdentifiabilityWarning`
#   before the fit, with what would determine it;
# - a fit that misses its data by many times their noise level is refitted from the start
#   of the record (`grow_horizon="auto"`), and one that still misses says so in
#   `result.status`;
# - `invariants=[...]` turns a conservation law into an algebraic state, checked against
#   the physics; a measurement of that state then constrains the others;
# - `noise="poisson"` (and `"negative_binomial"`) for counts, with `result.loglik`,
#   `result.aic`, `result.bic` and `sysid.compare` to let the data choose;
# - `(guess, low, high)` bounds a parameter.
