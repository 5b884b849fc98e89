"""What goal_phs's scalar state costs per update: separate fields vs one array.

    python benchmarks/scalar_state_cost.py                # both cores
    taskset -c 0 python benchmarks/scalar_state_cost.py   # one core

goal_phs's state keeps its bookkeeping (friction in force, initial loss, braked
flag, brake step, monitored loss, ...) as separate scalar fields of a
NamedTuple. XLA's CPU backend (jaxlib 0.10.2) compiles each scalar field that
changes in an update into its own small kernel (thunk): with separate fields
(commit b2ad6fa), goal_phs's compiled update had about 10 more fusions and 2
more copies than optax's momentum (count them in
``jax.jit(...).lower(...).compile().as_text()``); packed into one float32 and
one int32 array (commit f38bba7) it had 3 more fusions and 2 more copies. This
measures what that costs on LeNet-5, as in ``optimizer_cost.py`` (update +
``apply_updates``, many steps in one jitted loop, the variants' calls
interleaved in rounds): optax's momentum alone, the same plus ``K`` scalar
fields each updated from the loss, and the same plus one ``float32[K]`` array
carrying the same values, next to goal_phs itself. One JSON line per
variant: its median time per step and its median ratio to optax's momentum
over the rounds, with quartiles.
"""

from __future__ import annotations

import argparse
import json
import statistics

import jax
import jax.numpy as jnp
import optax
from optimizer_cost import median_ratio, optimizers, paired_seconds_per_step, pytrees

FIELDS = (1, 4, 8, 12)


def _fields_update(fields: tuple, loss: jax.Array) -> tuple:
    # Each field depends on the loss and on its neighbour, as the goal logic's
    # fields depend on each other, so XLA can neither hoist nor merge them.
    previous = (loss, *fields[:-1])
    return tuple(
        jnp.where(before < field, before, field + loss)
        for before, field in zip(previous, fields, strict=True)
    )


def with_scalar_fields(
    count: int, packed: bool
) -> optax.GradientTransformationExtraArgs:
    """optax's momentum plus ``count`` scalars, separate or in one array."""
    momentum = optax.sgd(0.01, momentum=0.9)

    def init_fn(params):
        scalars = jnp.arange(count, dtype=jnp.float32) + 1.0
        return momentum.init(params), (
            scalars if packed else tuple(jnp.array(s) for s in scalars)
        )

    def update_fn(updates, state, params=None, *, value, **extra_args):
        del extra_args
        updates, inner = momentum.update(updates, state[0], params)
        scalars = state[1]
        if packed:  # the same recurrence along the array, in one fusion
            previous = jnp.concatenate([value[None], scalars[:-1]])
            scalars = jnp.where(previous < scalars, previous, scalars + value)
        else:
            scalars = _fields_update(scalars, value)
        return updates, (inner, scalars)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--rounds",
        type=int,
        default=1000,
        help="rounds of interleaved calls, the order reversed every round",
    )
    args = parser.parse_args()
    params = pytrees()["lenet5 (44,426)"]
    baseline = "optax.sgd(momentum=0.9)"
    variants = {baseline: optimizers()[baseline]}
    for count in FIELDS:
        variants[f"+ {count} scalar fields"] = with_scalar_fields(count, packed=False)
    variants[f"+ float32[{FIELDS[-1]}] array"] = with_scalar_fields(
        FIELDS[-1], packed=True
    )
    variants["goal_phs"] = optimizers()["goal_phs"]
    times = paired_seconds_per_step(variants, params, inner=100, rounds=args.rounds)
    for name, seconds in times.items():
        result = {"variant": name, "microseconds": statistics.median(seconds) * 1e6}
        result.update(median_ratio(seconds, times[baseline]))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
