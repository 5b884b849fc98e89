"""The optimizer's own cost: goal_phs against optax.sgd with momentum, jitted.

    python benchmarks/optimizer_cost.py --repeats=7

Each step is ``tx.update`` followed by ``optax.apply_updates``, as inside a
training step; ``inner`` steps run in one jitted, buffer-donating call (a
``fori_loop``), so that the time is the update's, not the cost of dispatching
a call with many small arrays. Both optimizers read the gradient, the momentum and the
params and write the momentum and the params: 5 float32 arrays the size of the
params per step (the scalars of goal_phs's state are negligible). The achieved
bandwidth is those bytes over the median step time. Prints one JSON line per
pytree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import phs_optax
from phs_optax_models import LeNet5

ARRAYS_READ_AND_WRITTEN = 5  # grads, momentum, params read; momentum, params written


def pytrees() -> dict[str, dict]:
    lenet = LeNet5().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    rng = np.random.default_rng(0)
    big = {  # 10,000,000 parameters in leaves of the sizes of a small CNN/MLP
        f"layer{i}": jnp.asarray(rng.standard_normal(size, np.float32))
        for i, size in enumerate([4_000_000, 2_500_000, 2_000_000, 1_000_000, 500_000])
    }
    return {"lenet5 (44,426)": lenet, "10M parameters": big}


def optimizers() -> dict[str, optax.GradientTransformation]:
    return {
        "optax.sgd(momentum=0.9)": optax.sgd(0.01, momentum=0.9),
        "goal_phs": phs_optax.goal_phs(
            learning_rate=0.1, mass=10.0, friction=0.1, goal=0.85, brake_factor=50.0
        ),
    }


def seconds_per_step(tx, params, calls: int, inner: int, repeats: int) -> list[float]:
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)
    params = jax.tree.map(jnp.copy, params)
    state = tx.init(params)
    loss = jnp.float32(1.0)

    def steps(params, state, grads, loss):
        def one_update(i, carry):
            params, state = carry
            # Gradients that change every step, as in training (loop-invariant
            # ones let XLA compute parts of an update once, outside the loop).
            scale = 1.0 + i.astype(jnp.float32) * 1e-6
            step_grads = jax.tree.map(lambda g: g * scale, grads)
            updates, state = tx.update(step_grads, state, params, value=loss)
            return optax.apply_updates(params, updates), state

        return jax.lax.fori_loop(0, inner, one_update, (params, state))

    step = jax.jit(steps, donate_argnums=(0, 1))
    params, state = step(params, state, grads, loss)
    jax.block_until_ready(params)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            params, state = step(params, state, grads, loss)
        jax.block_until_ready(params)
        times.append((time.perf_counter() - start) / (calls * inner))
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    for tree_name, params in pytrees().items():
        size = sum(x.size for x in jax.tree.leaves(params))
        calls, inner = (20, 100) if size < 1_000_000 else (10, 5)
        bytes_per_step = ARRAYS_READ_AND_WRITTEN * 4 * size
        result = {
            "pytree": tree_name,
            "parameters": size,
            "bytes_per_step": bytes_per_step,
        }
        for name, tx in optimizers().items():
            median = statistics.median(
                seconds_per_step(tx, params, calls, inner, args.repeats)
            )
            result[name] = {
                "microseconds": median * 1e6,
                "GB_per_s": bytes_per_step / median / 1e9,
            }
        result["ratio"] = (
            result["goal_phs"]["microseconds"]
            / result["optax.sgd(momentum=0.9)"]["microseconds"]
        )
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
