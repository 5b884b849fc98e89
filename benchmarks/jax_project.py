"""The project's side of ``benchmarks/compare.py``: its real code paths, timed.

    python benchmarks/jax_project.py step --case=fmnist-64
    python benchmarks/jax_project.py epoch --repeats=5

``step``: images/s of ``train_lib.make_train_step`` (the pmapped step
``train.py`` runs: the batch gathered on the device from the resident training
set by a shuffled index, goal_phs with the default flags, loss and accuracy
accumulated on the device), on random data of the case's shape.
``epoch``: ``train_lib.train_and_evaluate`` on Fashion-MNIST (official files)
or CIFAR-10 (``--dataset``) for ``1 + repeats`` epochs: the first epoch's wall time includes compilation;
the others are the steady state (training epoch, full test evaluation, metrics
written), read from ``metrics.jsonl``. Each prints one JSON line.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from _cli import parse_args

from phs_optax_models import LeNet5
from phs_optax_training import train_lib
from phs_optax_training.config import TrainConfig

CASES = {
    "fmnist-64": ((28, 28, 1), 64),
    "cifar-64": ((32, 32, 3), 64),
    "fmnist-256": ((28, 28, 1), 256),
}


def step_runner(case: str, num_examples: int) -> tuple[Callable[[int], None], int]:
    """``(run, batch_size)``: ``run(count)`` does ``count`` steps of the train step.

    The step compiles at the first call (so under whatever layers are in
    place then); the state carries over from call to call.
    """
    shape, batch_size = CASES[case]
    config = TrainConfig(batch_size=batch_size)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((num_examples, *shape), np.float32)
    labels = rng.integers(0, 10, num_examples).astype(np.int32)
    model = LeNet5()
    params = model.init(jax.random.PRNGKey(0), images[:1])["params"]
    state = train_lib.initial_state(model, params, train_lib.create_optimizer(config))
    steps_per_epoch = num_examples // batch_size
    train_step = train_lib.make_train_step(batch_size, steps_per_epoch, 1)
    permutation = train_lib.epoch_permutation(0, 1, num_examples)
    copies = jax.local_device_count()  # as train.py: every device holds the shard
    data = (
        train_lib.put_per_device([images] * copies),
        train_lib.put_per_device([labels] * copies),
        train_lib.put_per_device([permutation] * copies),
    )
    state = train_lib.replicate(state)
    totals = train_lib.replicate(jnp.zeros(3, jnp.float32))

    wait_every = train_lib.steps_between_waits()  # as train.py

    def run(count: int) -> None:
        nonlocal state, totals
        for index in range(count):
            state, totals = train_step(state, totals, *data)
            if index % wait_every == wait_every - 1:
                jax.block_until_ready(totals)
        jax.block_until_ready(totals)

    return run, batch_size


def step_throughput(case: str, steps: int, repeats: int, num_examples: int) -> dict:
    run, batch_size = step_runner(case, num_examples)
    run(20)  # compile and warm up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(steps)
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return {"case": case, "images_per_second": rates}


def epoch_end_to_end(
    dataset: str, data_dir: str | None, batch_size: int, repeats: int
) -> dict:
    config = TrainConfig(
        dataset=dataset,
        batch_size=batch_size,
        num_epochs=1 + repeats,
        data_dir=data_dir,
    )
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        train_lib.train_and_evaluate(config, workdir, progress=False)
        total = time.perf_counter() - start
        with open(f"{workdir}/metrics.jsonl") as f:
            rows = [json.loads(line) for line in f]
    walls = [0.0] + [row["wall_time"] for row in rows]
    seconds = np.diff(walls).tolist()
    return {
        "first_epoch_seconds": seconds[0],
        "seconds": seconds[1:],
        "test_accuracy": [row["test_accuracy"] for row in rows[1:]],
        "total_seconds": total,
    }


def main() -> None:
    args = parse_args(CASES)
    if args.what == "step":
        result = step_throughput(args.case, args.steps, args.repeats, args.num_examples)
    else:
        result = epoch_end_to_end(
            args.dataset, args.data_dir, args.batch_size, args.repeats
        )
        result["dataset"] = args.dataset
    result["device"] = jax.devices()[0].device_kind
    result["device_count"] = jax.device_count()
    result["jax"] = jax.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
