"""The optimizer's own cost: goal_phs against optax.sgd with momentum, jitted.

    python benchmarks/optimizer_cost.py                # both cores
    taskset -c 0 python benchmarks/optimizer_cost.py   # one core

Each step is ``tx.update`` followed by ``optax.apply_updates``, as inside a
training step; ``inner`` steps run in one jitted, buffer-donating call (a
``fori_loop``), so that the time is the update's, not the cost of dispatching
a call with many small arrays. The two optimizers' calls alternate in one
process (``--rounds`` rounds, the order reversed every round) and the ratio
is the median of the per-round ratios: this VM's speed drifts within and
between processes, and timings taken in separate processes gave LeNet-5
ratios from 0.6 to 1.3 for the same code.

Both optimizers read the gradient, the momentum and the params and write the
momentum and the params: 5 float32 arrays the size of the params per step
(the scalars of goal_phs's state are negligible in bytes). The achieved
bandwidth is those bytes over the median step time. Prints one JSON line per
pytree: the median time per step of each optimizer, and the median ratio
with its quartiles.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

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


def timed_update_loop(tx, params, inner: int) -> Callable[[], float]:
    """A function that runs ``inner`` jitted steps of ``tx`` and returns the
    seconds per step; its params and state carry over from call to call."""
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)
    carry = [jax.tree.map(jnp.copy, params), tx.init(params)]
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

    def run() -> float:
        start = time.perf_counter()
        carry[0], carry[1] = step(*carry, grads, loss)
        jax.block_until_ready(carry[0])
        return (time.perf_counter() - start) / inner

    run()  # compiles
    return run


def paired_seconds_per_step(
    transformations: dict[str, optax.GradientTransformation],
    params: optax.Params,
    inner: int,
    rounds: int,
) -> dict[str, list[float]]:
    """Seconds per step of each transformation, measured in rounds.

    Each round calls every transformation's loop once, in alternating order
    (forward, then backward), so that the slow drifts of this VM's speed hit
    all of them alike; a ratio is then taken within each round.
    """
    loops = {
        name: timed_update_loop(tx, params, inner)
        for name, tx in transformations.items()
    }
    times: dict[str, list[float]] = {name: [] for name in loops}
    for round_index in range(rounds):
        order = list(loops) if round_index % 2 == 0 else list(loops)[::-1]
        for name in order:
            times[name].append(loops[name]())
    return times


def median_ratio(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """Median and quartiles of the per-round ratios."""
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    first, _, third = statistics.quantiles(ratios, n=4)
    return {"ratio": statistics.median(ratios), "ratio_q1": first, "ratio_q3": third}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--rounds",
        type=int,
        default=1000,
        help="rounds of interleaved calls for LeNet-5 (a twentieth for 10M)",
    )
    args = parser.parse_args()
    for tree_name, params in pytrees().items():
        size = sum(x.size for x in jax.tree.leaves(params))
        small = size < 1_000_000
        inner, rounds = (100, args.rounds) if small else (5, max(args.rounds // 20, 5))
        bytes_per_step = ARRAYS_READ_AND_WRITTEN * 4 * size
        times = paired_seconds_per_step(optimizers(), params, inner, rounds)
        result = {
            "pytree": tree_name,
            "parameters": size,
            "bytes_per_step": bytes_per_step,
            "rounds": rounds,
        }
        for name, seconds in times.items():
            median = statistics.median(seconds)
            result[name] = {
                "microseconds": median * 1e6,
                "GB_per_s": bytes_per_step / median / 1e9,
            }
        result.update(median_ratio(times["goal_phs"], times["optax.sgd(momentum=0.9)"]))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
