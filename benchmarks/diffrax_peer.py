"""The speed peer: the UDE Lotka-Volterra fit written the way a JAX user would write it.

diffrax + equinox + optax, every function jit-compiled, float64 on one CPU thread:

- the model: ``dx/dt = 1.3 x + NN_x(x, y)``, ``dy/dt = -1.8 y + NN_y(x, y)``, with ``NN`` an
  ``equinox.nn.MLP`` of the same size as ``sysid.MLP()``'s default (2 hidden layers of 32,
  tanh);
- the solve: ``diffrax.diffeqsolve`` with ``Tsit5`` and a ``PIDController(rtol=1e-6,
  atol=1e-6)``, saved at the data's times, differentiated through the solver
  (``RecursiveCheckpointAdjoint``, the default), from the true initial state as in the
  published recipe (sysid instead fits the initial states);
- the training: sum of squared errors, ``optax.adam(1e-2)`` for 500 steps (a jitted
  ``lax.scan``), then ``optax.lbfgs`` (zoom line search) for at most 500 iterations or
  until the gradient's norm falls under 1e-6 or the loss changes by less than 1e-9
  relative (sysid's own L-BFGS stopping rule).

The wall time includes every compilation. Needs the optional ``bench`` extra (``pip install
-c constraints.txt -e ".[bench]"``); without JAX the section says so and is skipped.

    python benchmarks/diffrax_peer.py       # one seed, printed
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                    "intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402

__all__ = ["available", "fit_lv", "field_vjp_us"]

ADAM_STEPS = 500
ADAM_LR = 1e-2
LBFGS_STEPS = 500
GRAD_TOL = 1e-6
REL_TOL = 1e-9


def available() -> str | None:
    """None when JAX, diffrax, equinox and optax import; else why not."""
    try:
        import diffrax  # noqa: F401
        import equinox  # noqa: F401
        import jax  # noqa: F401
        import optax  # noqa: F401
    except ImportError as err:
        return f"{err} (install the benchmark extra: pip install -e \".[bench]\")"
    return None


def _setup(seed: int):
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    class UDE(eqx.Module):
        net: eqx.nn.MLP

        def __call__(self, t, z, args):
            known = jnp.array([1.3 * z[0], -1.8 * z[1]])
            return known + self.net(z)

    key = jax.random.PRNGKey(seed)
    net = eqx.nn.MLP(2, 2, width_size=32, depth=2, activation=jnp.tanh, key=key,
                     dtype=jnp.float64)
    return UDE(net)


def _solver(times, u0):
    import diffrax
    import jax.numpy as jnp

    def solve(model, save=times):
        save = np.asarray(save, dtype=float)            # concrete: t1 is a Python float
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(model), diffrax.Tsit5(), t0=float(times[0]), t1=float(save[-1]),
            dt0=0.01, y0=jnp.asarray(u0), saveat=diffrax.SaveAt(ts=jnp.asarray(save)),
            stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6),
            max_steps=100_000, throw=False)
        return sol.ys
    return solve


def fit_lv(times, Y, u0, seed: int) -> dict:
    """Fit the UDE problem to ``Y`` (T, 2) at ``times``; returns the wall time (with
    compilation), the fitted trajectory at ``times`` and a predictor for other times."""
    start = time.perf_counter()
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    model = _setup(seed)
    solve = _solver(times, u0)
    y = jnp.asarray(Y)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(p):
        pred = solve(eqx.combine(p, static))
        return jnp.sum((pred - y) ** 2)

    adam = optax.adam(ADAM_LR)

    @jax.jit
    def adam_run(p):
        def body(carry, _):
            p, state = carry
            value, grad = jax.value_and_grad(loss)(p)
            updates, state = adam.update(grad, state, p)
            return (optax.apply_updates(p, updates), state), value
        (p, _), values = jax.lax.scan(body, (p, adam.init(p)), None, length=ADAM_STEPS)
        return p, values

    params, _ = adam_run(params)
    adam_s = time.perf_counter() - start
    lbfgs = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    @jax.jit
    def lbfgs_step(p, state):
        value, grad = value_and_grad(p, state=state)
        updates, state = lbfgs.update(grad, state, p, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(p, updates), state, value, optax.tree.norm(grad)

    state = lbfgs.init(params)
    iterations, last = 0, np.inf
    for iterations in range(1, LBFGS_STEPS + 1):
        params, state, value, gnorm = lbfgs_step(params, state)
        value = float(value)
        # the stopping rule sysid's L-BFGS uses: a relative change of the loss under 1e-9
        if not np.isfinite(value) or float(gnorm) < GRAD_TOL \
                or abs(last - value) <= REL_TOL * (abs(value) + 1e-8):
            break
        last = value
    fitted = eqx.combine(params, static)
    pred = np.asarray(solve(fitted))
    wall = time.perf_counter() - start

    def predict(ts):
        out = np.asarray(solve(fitted, ts))
        return out if np.all(np.isfinite(out)) else None

    return {"wall_s": wall, "adam_s": adam_s, "pred": pred, "predict": predict,
            "lbfgs_iters": iterations, "loss": value}


def field_vjp_us(batch: int, repeats: int = 2000) -> float:
    """Microseconds per jitted call of one vector-field evaluation + its vector-Jacobian
    product in the network's weights and the states, on ``batch`` states (vmapped)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    model = _setup(0)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    z = jnp.asarray(np.random.default_rng(0).random((batch, 2)) + 1.0)

    @jax.jit
    def evaluate_vjp(p, z):
        def f(p, z):
            m = eqx.combine(p, static)
            return jax.vmap(lambda zi: m(0.0, zi, None))(z)
        out, vjp = jax.vjp(f, p, z)
        return vjp(jnp.ones_like(out))

    jax.block_until_ready(evaluate_vjp(params, z))
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats // 5):
            out = evaluate_vjp(params, z)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t0) / (repeats // 5) * 1e6)
    return best


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import baselines

    why = available()
    if why:
        sys.exit(f"diffrax peer unavailable: {why}")
    times, Y, X = baselines.lv_data(0)
    out = fit_lv(times, Y, baselines.LV_U0, 0)
    rmse = float(np.sqrt(np.mean((out["pred"] - X) ** 2)))
    print(f"diffrax peer seed 0: {out['wall_s']:.1f} s (Adam with its compile "
          f"{out['adam_s']:.1f} s), fit RMSE {rmse:.4f}, "
          f"{out['lbfgs_iters']} L-BFGS iterations, loss {out['loss']:.4g}")
    print(f"field eval + VJP: {field_vjp_us(1):.1f} us (batch 1), "
          f"{field_vjp_us(64):.1f} us (batch 64)")
