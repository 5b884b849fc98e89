"""Images per second of the sweep's real training step: N configurations in one
vmapped program against one configuration, on Fashion-MNIST, batch 64.

    python benchmarks/sweep_throughput.py --configs=1,4,8,20 --steps=100 --repeats=5

The configurations are the first N non-SGD rows of the Table 2 sweep over
seeds 0, 1 and 2. ``--data_order=own`` keeps their seeds, so each trains on its
own batches; ``shared`` gives them all seed 0, so they train on the same
batches and the step shares them (``vmap_sweep.epoch_permutations``), as in a sweep
over one seed. One configuration is the same program either way.

Prints the median over repeats of images/s summed over configurations.
``--interleaved_rounds=R`` instead compiles both orders in one process and
alternates them (the ratio that separate processes measure too noisily here):

    python benchmarks/sweep_throughput.py --configs=20 --steps=10 --interleaved_rounds=15
"""

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp

from phs_optax_training import data as data_lib
from phs_optax_training import train_lib, vmap_sweep, xla_flags
from phs_optax_training.config import TrainConfig
from phs_optax_training.experiments.table2 import table2_configs


def step_runner(
    num_configs: int, dataset, batch_size: int, data_order: str = "own"
) -> Callable[[int], float]:
    """A function that runs ``steps`` sweep steps (compiled, state carried
    over from call to call) and returns the seconds they took."""
    base = TrainConfig(batch_size=batch_size)
    rows = [
        c for c in table2_configs("remaining", [0, 1, 2], base) if c.optimizer != "sgd"
    ]
    if num_configs > len(rows):
        raise SystemExit(
            f"--configs: at most {len(rows)} configurations, not {num_configs}"
        )
    configs = rows[:num_configs]
    if data_order == "shared":
        configs = [dataclasses.replace(c, seed=0) for c in configs]
    program = vmap_sweep._compile_group("phs", base, dataset)
    train = train_lib.split_data(dataset, base)["train"]
    images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
    params, opt_state = vmap_sweep.init_stacked(
        program.model,
        program.tx,
        configs,
        vmap_sweep.stacked_hyperparams("phs", configs),
        images[:1],
    )
    carry = [
        params,
        opt_state,
        jnp.zeros((num_configs, 3)).at[:, 2].set(jnp.inf),
        jnp.zeros([], jnp.int32),
    ]
    args = (
        vmap_sweep.stacked_triggers(configs, program.steps_per_epoch),
        vmap_sweep.epoch_permutations(configs, 1, len(labels)),
        images,
        labels,
    )

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            carry[:] = program.step_all(*carry, *args)
        jax.block_until_ready(carry[0])
        return time.perf_counter() - start

    run(1)  # compiles
    return run


def measure(
    num_configs: int,
    steps: int,
    repeats: int,
    dataset,
    batch_size: int,
    data_order: str = "own",
) -> float:
    """Median over ``repeats`` of the images/s summed over configurations."""
    run = step_runner(num_configs, dataset, batch_size, data_order)
    seconds = [run(steps) for _ in range(repeats)]
    return steps * batch_size * num_configs / statistics.median(seconds)


def interleaved_ratio(
    num_configs: int, steps: int, rounds: int, dataset, batch_size: int
) -> dict[str, float]:
    """Time of shared over own batches, both compiled in one process and
    called in alternating order for ``rounds`` rounds: median and quartiles
    of the per-round ratios (this VM's speed drifts between processes)."""
    runs = {
        order: step_runner(num_configs, dataset, batch_size, order)
        for order in ("own", "shared")
    }
    times: dict[str, list[float]] = {order: [] for order in runs}
    for round_index in range(rounds):
        orders = list(runs) if round_index % 2 == 0 else list(runs)[::-1]
        for order in orders:
            times[order].append(runs[order](steps))
    ratios = [a / b for a, b in zip(times["shared"], times["own"], strict=True)]
    first, median, third = statistics.quantiles(ratios, n=4)
    images = steps * batch_size * num_configs
    return {
        "configs": num_configs,
        "own_images_per_second": images / statistics.median(times["own"]),
        "shared_images_per_second": images / statistics.median(times["shared"]),
        "time_ratio_shared_over_own": statistics.median(ratios),
        "ratio_q1": first,
        "ratio_q3": third,
    }


def main() -> None:
    xla_flags.set_cpu_flags()  # as the sweep, before JAX initialises its backends
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", default="1,4,8,20")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument(
        "--data_order",
        default="own,shared",
        help="comma-separated: own (each config its seed's batches), shared (one seed)",
    )
    parser.add_argument(
        "--interleaved_rounds",
        type=int,
        default=0,
        help="instead: own against shared batches in one process, this many "
        "alternating rounds of --steps steps for each of --configs (JSON)",
    )
    parser.add_argument("--json", action="store_true", help="JSON lines, no table")
    parser.add_argument("--data_dir", default=None, help="local Fashion-MNIST files")
    args = parser.parse_args()
    orders = args.data_order.split(",")
    if not set(orders) <= {"own", "shared"}:
        parser.error(f"--data_order: own and/or shared, not {args.data_order!r}")
    dataset = data_lib.load_dataset("fashion_mnist", args.data_dir)
    if args.interleaved_rounds:
        for n in (int(x) for x in args.configs.split(",")):
            row = interleaved_ratio(
                n, args.steps, args.interleaved_rounds, dataset, args.batch_size
            )
            print(json.dumps(row), flush=True)
        return
    if not args.json:
        print(f"device: {jax.devices()[0].device_kind}, {jax.device_count()} device(s)")
        print("| configs in one program | batches | images/s summed (median) |")
        print("|---|---|---|")
    for n in (int(x) for x in args.configs.split(",")):
        # One configuration has one seed: the same program for both orders.
        for order in orders[:1] if n == 1 else orders:
            rate = measure(n, args.steps, args.repeats, dataset, args.batch_size, order)
            if args.json:
                row = {"configs": n, "data_order": order, "images_per_second": rate}
                print(json.dumps(row), flush=True)
            else:
                print(f"| {n} | {order} | {rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
