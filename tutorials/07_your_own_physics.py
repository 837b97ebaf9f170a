# %% [markdown]
# # Writing your own physics: a reactor seen through a spectrometer
#
# The other tutorials use systems that sysid already knows. This one starts from a blank
# page: a chemist's reactor, equations written by hand in SymPy, data built by hand as an
# `xarray.Dataset`, the mistakes everyone makes on the way (and the messages sysid gives
# for them), and finally the same model as a **TOML spec** fitted by the **command line**,
# whose saved result we load back in Python.
#
# **The experiment.** A stirred reactor is charged with a reactant `A`, then fed with a
# solution of `A` (concentration `A_in`) at a dilution rate `D(t)` that the operator
# changes in steps; the same flow leaves the reactor. `A` turns into the product `B`
# (rate constant `k1`), and `B` degrades further (rate constant `k2`):
#
# ```
# dA/dt = D (A_in - A) - k1 A
# dB/dt = -D B + k1 A - k2 B
# ```
#
# Nobody measures `A`. An in-line spectrometer reads the **absorbance** of the mixture
# every 2 minutes, which by Beer-Lambert's law is a *function of the states*,
# `eps_A A + eps_B B`, with absorptivities known from calibration. Every 30 minutes a
# technician also draws a sample for an offline **HPLC** analysis of `B`. We want `k1`,
# `k2` and the concentration of `A` over the whole run.
#
# **Fast setting.** `SYSID_TUTORIAL_FAST=1` (as in CI) changes nothing here but a shorter
# record: the fits have no network and take seconds.

# %%
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
import xarray as xr
from scipy.integrate import solve_ivp

import sysid
from sysid.cli import model_from_toml
from sysid.errors import DataError, ExpressionError, SysidError

try:
    import tomllib
except ModuleNotFoundError:            # Python 3.10
    import tomli as tomllib

FAST = os.environ.get("SYSID_TUTORIAL_FAST") == "1"
T_END = 180.0 if FAST else 300.0          # minutes

# %% [markdown]
# ## The data, built by hand
#
# We simulate the experiment with SciPy so that we know the truth. The dilution rate is a
# staircase held for 30 minutes at a time (a zero-order hold); the absorbance has a noise
# of 0.01, the HPLC of 0.02 mol/L.

# %%
TRUE = {"k1": 0.045, "k2": 0.012}         # 1/min
EPS_A, EPS_B, A_IN = 0.25, 0.9, 2.0       # L/mol (1 cm cell), L/mol, mol/L
rng = np.random.default_rng(7)
steps = rng.uniform(0.004, 0.03, size=int(np.ceil(T_END / 30)))   # dilution rates, 1/min


def dilution(t):
    return steps[np.minimum((np.asarray(t) // 30).astype(int), steps.size - 1)]


def reactor(t, c):
    a, b = c
    d = dilution(t)
    return [d * (A_IN - a) - TRUE["k1"] * a, -d * b + TRUE["k1"] * a - TRUE["k2"] * b]


time = np.arange(0.0, T_END + 1e-9, 2.0)
exact = solve_ivp(reactor, (0.0, T_END), [1.2, 0.1], t_eval=time, rtol=1e-10, atol=1e-12,
                  max_step=1.0)
a_true, b_true = exact.y
absorbance = EPS_A * a_true + EPS_B * b_true + 0.01 * rng.standard_normal(time.size)
hplc = np.full(time.size, np.nan)                  # NaN: "not measured at that time"
drawn = time % 30 == 0
hplc[drawn] = b_true[drawn] + 0.02 * rng.standard_normal(drawn.sum())

data = xr.Dataset(
    {"absorbance": ("time", absorbance, {"units": "1", "long_name": "absorbance at 280 nm"}),
     "B": ("time", hplc, {"units": "mol/L", "long_name": "product B (offline HPLC)"}),
     "D": ("time", dilution(time), {"units": "1/min", "long_name": "dilution rate"})},
    coords={"time": ("time", time, {"units": "min", "long_name": "time since charging"})})
data

# %%
fig, axes = plt.subplots(3, 1, figsize=(8, 6), sharex=True)
axes[0].step(time, data["D"], where="post", color="k")
axes[0].set_ylabel("D (1/min)")
axes[0].set_title("input: dilution rate (held for 30 min)")
axes[1].plot(time, data["absorbance"], ".", ms=3, color="C2")
axes[1].set_ylabel("absorbance")
axes[2].plot(time, a_true, color="C0", alpha=0.5, label="A (truth, never measured)")
axes[2].plot(time, b_true, color="C1", alpha=0.5, label="B (truth)")
axes[2].plot(time, data["B"], "o", color="C1", label="B (HPLC samples)")
axes[2].set_ylabel("concentration (mol/L)")
axes[2].set_xlabel("time (min)")
axes[2].legend(fontsize=8);

# %% [markdown]
# ## The model, and five SymPy habits
#
# 1. **Create each symbol once, with its assumptions, and reuse the object.** SymPy
#    treats `Symbol("k1")` and `Symbol("k1", positive=True)` as two different symbols.
# 2. **`positive=True` on rate constants.** sysid fits such a parameter on a log scale, so
#    it can never change sign; `negative=True` works the same way. sysid has no other
#    bounds: for a parameter between 0 and 1, write it as `1 / (1 + exp(-z))` with a free
#    `z`.
# 3. **`positive=True` on states that cannot be negative** (concentrations, levels,
#    populations): an unmeasured one then starts on the positive side.
# 4. **`fixed={...}` for known constants** (here the absorptivities and the feed
#    concentration): they are substituted and never trained.
# 5. **`inputs=[...]` for signals the experimenter sets**: they are read from the data
#    variable of the same name and must be known wherever the model is integrated;
#    `interpolation="zoh"` holds them between samples, as the pump did.
#
# **Observations** map data variables to expressions of the states. A data variable named
# like a state (here `B`) measures that state; any other channel (here `absorbance`) is
# declared in `observations=`.

# %%
A, B = sp.symbols("A B", positive=True)          # concentrations, mol/L
D = sp.Symbol("D")                               # input: dilution rate, 1/min
k1, k2 = sp.symbols("k1 k2", positive=True)      # learnable rate constants, 1/min
eps_A, eps_B, A_in = sp.symbols("eps_A eps_B A_in", positive=True)   # known constants

model = sysid.HybridODE(
    states=[A, B],
    inputs=[D],
    physics={A: D * (A_in - A) - k1 * A,
             B: -D * B + k1 * A - k2 * B},
    parameters={k1: 0.1, k2: 0.1},               # initial guesses
    fixed={eps_A: EPS_A, eps_B: EPS_B, A_in: A_IN},
    observations={"absorbance": eps_A * A + eps_B * B},
)
model

# %%
result = sysid.fit(model, data, seed=0, interpolation="zoh", progress=False)
print(result.status)
print(f"fit time {result.stats['wall_time_s']:.1f} s")
table = result.parameter_table(level=0.9)
table["truth"] = [TRUE[name] for name in table.index]
table[["value", "std_error", "lower", "upper", "truth"]]

# %% [markdown]
# `result.equations` shows the fitted right-hand sides with every number substituted:

# %%
for name, rhs in result.equations.items():
    print(f"d{name}/dt = {sp.N(rhs, 4)}")

# %% [markdown]
# The concentration of `A` was never measured; the fitted model imputes it, with a 90 %
# band, from the absorbance and the few HPLC samples:

# %%
imputed = result.impute(level=0.9)
error_a = float(np.sqrt(np.mean((imputed["A"].values - a_true) ** 2)))
print(f"RMS error of the imputed A: {error_a:.4f} mol/L "
      f"(A ranges over {a_true.min():.2f}-{a_true.max():.2f} mol/L)")

fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
for ax, name, truth in [(axes[0], "A", a_true), (axes[1], "B", b_true)]:
    ax.fill_between(time, imputed[f"{name}_lower"], imputed[f"{name}_upper"], color="C0",
                    alpha=0.3, label="90 % band")
    ax.plot(time, imputed[name], color="C0", label="imputed")
    ax.plot(time, truth, "k:", label="truth")
    ax.set_ylabel(f"{name} (mol/L)")
axes[1].plot(time, data["B"], "o", color="C1", label="HPLC samples")
axes[0].set_title("A: never measured")
axes[0].legend(fontsize=8)
axes[1].legend(fontsize=8)
axes[1].set_xlabel("time (min)");

# %% [markdown]
# ## Common mistakes, and what sysid says
#
# Every sysid error says what went wrong, what it received and how to fix it. All derive
# from `sysid.errors.SysidError`: model mistakes raise `ModelError` when the model is
# built, data mistakes `DataError` when the fit starts (both are also `ValueError`s), and
# equation text that the parser refuses raises `ExpressionError`. We make each mistake on
# purpose and print the message.


# %%
def show(attempt):
    """Run ``attempt()`` and print the sysid error it raises."""
    try:
        attempt()
    except SysidError as err:
        print(f"{type(err).__name__}: {err}\n")
    else:
        print("no error\n")


# 1. a second k1 without positive=True: not the same symbol
show(lambda: sysid.HybridODE(states=[A], physics={A: -sp.Symbol("k1") * A},
                             parameters={k1: 0.1}))
# 2. a symbol that is neither a state, an input, a parameter nor a fixed constant
show(lambda: sysid.HybridODE(states=[A], physics={A: -k1 * A - sp.Symbol("k3") * A},
                             parameters={k1: 0.1}))
# 3. a positive parameter with a negative initial guess
show(lambda: sysid.HybridODE(states=[A], physics={A: -k1 * A}, parameters={k1: -0.1}))

# %% [markdown]
# Data mistakes surface when the fit reads the data. A fit that fails this way costs
# nothing: the data are checked before any training starts.

# %%
quick = dict(seed=0, interpolation="zoh", progress=False)
# 4. a typo in a variable name
show(lambda: sysid.fit(model, data.rename(absorbance="absorbence"), **quick))
# 5. the input signal forgotten
show(lambda: sysid.fit(model, data.drop_vars("D"), **quick))
# 6. a gap in the input, where the model must integrate
show(lambda: sysid.fit(model, data.assign(D=data["D"].where(data["time"] != 60.0)), **quick))
# 7. two records concatenated without sorting
show(lambda: sysid.fit(model, xr.concat([data.isel(time=slice(10, None)),
                                         data.isel(time=slice(0, 10))], "time"), **quick))

# %% [markdown]
# A function that has no torch counterpart is refused with the list of those that do
# (or put such a term in the neural residual):

# %%
show(lambda: sysid.fit(sysid.HybridODE(states=[A, B], inputs=[D],
                                       physics={A: -k1 * sp.besselj(0, A), B: -k2 * B},
                                       parameters={k1: 0.1, k2: 0.1}),
                       data[["B", "D"]], **quick))

# %% [markdown]
# Because `DataError` is also a `ValueError`, code that already catches `ValueError` keeps
# working:

# %%
try:
    sysid.fit(model, data.rename(absorbance="absorbence"), **quick)
except ValueError as err:
    print(f"caught as ValueError: {isinstance(err, DataError)=}")

# %% [markdown]
# ## The same model as a TOML spec, fitted by the command line
#
# For a model that lives in a repository or runs on a server, the command line
# `sysid fit SPEC.toml DATA.nc --out DIR` fits a model written as **text**. The equations
# are strings, parsed by a whitelist of arithmetic and functions and never evaluated, so a
# spec from someone else cannot run code. `sysid fit --help` prints the format. Each
# section of the spec matches an argument of `HybridODE`; `[fit]` takes any option of
# `sysid.fit`, and a `[model.residual]` table (width, depth, states, inputs) would add a
# network:

# %%
print(subprocess.run([sys.executable, "-m", "sysid", "fit", "--help"], capture_output=True,
                     text=True).stdout)

# %% [markdown]
# We write the spec and the data (netCDF) into a temporary folder.

# %%
SPEC = f"""
[model]
states = [{{ name = "A", positive = true }}, {{ name = "B", positive = true }}]
inputs = ["D"]

[model.physics]
A = "D*(A_in - A) - k1*A"
B = "-D*B + k1*A - k2*B"

[model.parameters]
k1 = {{ value = 0.1, positive = true }}
k2 = {{ value = 0.1, positive = true }}

[model.fixed]
eps_A = {{ value = {EPS_A}, positive = true }}
eps_B = {{ value = {EPS_B}, positive = true }}
A_in = {{ value = {A_IN}, positive = true }}

[model.observations]
absorbance = "eps_A*A + eps_B*B"

[fit]
seed = 0
interpolation = "zoh"
progress = false
"""
workdir = Path(tempfile.mkdtemp(prefix="sysid-tutorial-"))
(workdir / "reactor.toml").write_text(SPEC)
data.to_netcdf(workdir / "reactor.nc")
print(sorted(p.name for p in workdir.iterdir()))

# %% [markdown]
# In a terminal this is `sysid fit reactor.toml reactor.nc --out fit`; from Python we run
# the same command with `subprocess` (`python -m sysid` is the same program as `sysid`):

# %%
command = [sys.executable, "-m", "sysid", "fit", "reactor.toml", "reactor.nc", "--out", "fit"]
run = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
print("exit code", run.returncode)
print(run.stdout)
print(run.stderr[-2000:])

# %% [markdown]
# The output folder holds the parameters (JSON), the equations (text), the imputed states
# (netCDF), a figure and the saved result:

# %%
out = workdir / "fit"
print(sorted(p.name for p in out.iterdir()))
print((out / "equations.txt").read_text())
print(json.dumps(json.loads((out / "parameters.json").read_text())["parameters"], indent=2))

# %%
fig, ax = plt.subplots(figsize=(8, 8))
ax.imshow(plt.imread(out / "fit.png"))
ax.set_axis_off()
ax.set_title("fit.png, written by sysid fit");

# %% [markdown]
# A spec with an unsafe or broken equation is refused before anything is fitted; the
# command prints the parser's message and exits with status 2:

# %%
bad = SPEC.replace('"D*(A_in - A) - k1*A"', "\"__import__('os').system('ls')\"")
(workdir / "bad.toml").write_text(bad)
run = subprocess.run([sys.executable, "-m", "sysid", "fit", "bad.toml", "reactor.nc",
                      "--out", "bad"], cwd=workdir, capture_output=True, text=True)
print("exit code", run.returncode)
print(run.stderr)

# %% [markdown]
# The same refusal in Python: `sysid.cli.model_from_toml` builds the model from a parsed
# spec (a dict), and raises an `ExpressionError`.

# %%
try:
    model_from_toml(tomllib.loads(bad))
except ExpressionError as err:
    print(f"ExpressionError: {err}")

# %% [markdown]
# ## Loading the saved result back
#
# `sysid.load` rebuilds the result from the file (the equations are parsed by the same
# whitelist; nothing in the file is executed). Its predictions are bit-identical to those
# the command line wrote, and, since the spec is the same model with the same seed and
# data, its parameters are those of the fit we made in Python above.

# %%
loaded = sysid.load(out / "result.sysid")
print(loaded.status)
written = xr.open_dataset(out / "imputed.nc").load()
again = loaded.impute()
print("imputed states identical to imputed.nc:",
      all(np.array_equal(again[name].values, written[name].values) for name in ["A", "B"]))
for name, value in loaded.parameters.items():
    print(f"{name}: command line {value:.6g}, Python {result.parameters[name]:.6g}, "
          f"truth {TRUE[name]}")

# %% [markdown]
# A loaded result is a full `FitResult`: it imputes at new times, forecasts, plots and
# simulates new experiments. For example: what if the operator, after the first 20
# minutes, had fed the reactor fast for an hour and then slowly? `simulate` estimates the
# initial state from the first samples of a record (here the measurements of the first
# 20 minutes: 10 absorbance readings and one HPLC sample) and runs the model free on the
# record's input.

# %%
what_if_d = np.where(time < 20, data["D"].values, np.where(time < 80, 0.03, 0.005))
what_if = xr.Dataset(
    {"absorbance": data["absorbance"].where(data["time"] < 20),   # the first 20 minutes
     "B": data["B"].where(data["time"] < 20),
     "D": ("time", what_if_d, data["D"].attrs)}, coords=data.coords)
plan = loaded.simulate(what_if, n_init=10)
fig, axes = plt.subplots(2, 1, figsize=(8, 4.5), sharex=True)
axes[0].step(time, data["D"], where="post", color="0.6", label="as run")
axes[0].step(time, what_if_d, where="post", color="k", label="what if")
axes[0].set_ylabel("D (1/min)")
axes[0].legend(fontsize=8)
for name, colour in [("A", "C0"), ("B", "C1")]:
    axes[1].plot(time, imputed[name], color=colour, alpha=0.4, label=f"{name}, as run")
    axes[1].plot(time, plan[name], color=colour, label=f"{name}, what if")
axes[1].set_ylabel("concentration (mol/L)")
axes[1].set_xlabel("time (min)")
axes[1].legend(fontsize=8, ncol=2)
axes[0].set_title("the loaded model on another feed schedule");

# %%
shutil.rmtree(workdir)                           # clean up the temporary folder

# %% [markdown]
# ## Summary
#
# - Write the physics with SymPy symbols created once, with their assumptions
#   (`positive=True` for rates and concentrations); known constants go in `fixed=`,
#   experimenter-set signals in `inputs=`, and every channel that is not a state by name
#   in `observations=` as an expression of the states.
# - Mistakes give a `ModelError` when the model is built, a `DataError` when the fit
#   reads the data, an `ExpressionError` for refused equation text; each message says how
#   to fix it.
# - The same model as a TOML spec runs with `sysid fit SPEC.toml DATA.nc --out DIR`;
#   `sysid.load` reads its saved result back, with identical predictions.
