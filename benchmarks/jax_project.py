"""The project's side of ``benchmarks/compare.py``: its real code paths, timed.

    python benchmarks/jax_project.py step --case=fmnist-64
    python benchmarks/jax_project.py step --case=fmnist-64 --conv_impl=stock
    python benchmarks/jax_project.py epoch --repeats=5

``step``: images/s of ``train_lib.make_train_step`` (the pmapped step
``train.py`` runs: the batch gathered on the device from the resident training
set by a shuffled index, goal_phs with the default flags, loss and accuracy
accumulated on the device), on random data of the case's shape.
``epoch``: ``train_lib.train_and_evaluate`` on Fashion-MNIST (official files)
or CIFAR-10 (``--dataset``) for ``1 + repeats`` epochs: the first epoch's wall time includes compilation;
the others are the steady state (training epoch, full test evaluation, metrics
written), read from ``metrics.jsonl``. Each prints one JSON line.

``--conv_impl`` picks LeNet-5's convolution + max-pool layers as train.py's
flag does; the default, ``auto``, is what train.py uses (``space_to_depth``
on a CPU backend, ``stock`` otherwise). The JSON line names the layers used.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable

import jax
import numpy as np
from _cli import parse_args

from phs_optax_training import train_lib, xla_flags
from phs_optax_training.config import CONV_IMPLS, TrainConfig
from phs_optax_training.model import create_model, resolve_conv_impl

CASES = {
    "fmnist-64": ((28, 28, 1), 64),
    "cifar-64": ((32, 32, 3), 64),
    "fmnist-256": ((28, 28, 1), 256),
}


def step_runner(
    case: str, num_examples: int, conv_impl: str = "auto"
) -> tuple[Callable[[int], None], int]:
    """``(run, batch_size)``: ``run(count)`` does ``count`` steps of the train step.

    ``conv_impl`` is ``TrainConfig.conv_impl``: the model is train.py's.

    The step compiles at the first call (so under whatever layers are in
    place then); the state carries over from call to call.
    """
    shape, batch_size = CASES[case]
    config = TrainConfig(batch_size=batch_size, conv_impl=conv_impl)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((num_examples, *shape), np.float32)
    labels = rng.integers(0, 10, num_examples).astype(np.int32)
    model = create_model(config, num_classes=10)
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
    totals = train_lib.new_totals()

    wait_every = train_lib.steps_between_waits()  # as train.py

    def run(count: int) -> None:
        nonlocal state, totals
        for index in range(count):
            state, totals = train_step(state, totals, *data)
            if index % wait_every == wait_every - 1:
                jax.block_until_ready(totals)
        jax.block_until_ready(totals)

    return run, batch_size


def step_throughput(
    case: str, steps: int, repeats: int, num_examples: int, conv_impl: str = "auto"
) -> dict:
    run, batch_size = step_runner(case, num_examples, conv_impl)
    run(20)  # compile and warm up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(steps)
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return {"case": case, "images_per_second": rates}


def epoch_end_to_end(
    dataset: str,
    data_dir: str | None,
    batch_size: int,
    repeats: int,
    conv_impl: str = "auto",
) -> dict:
    config = TrainConfig(
        dataset=dataset,
        batch_size=batch_size,
        num_epochs=1 + repeats,
        data_dir=data_dir,
        conv_impl=conv_impl,
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
    xla_flags.set_cpu_flags()  # as train.py, before JAX initialises its backends
    args = parse_args(CASES, conv_impls=CONV_IMPLS)
    if args.what == "step":
        result = step_throughput(
            args.case, args.steps, args.repeats, args.num_examples, args.conv_impl
        )
    else:
        result = epoch_end_to_end(
            args.dataset, args.data_dir, args.batch_size, args.repeats, args.conv_impl
        )
        result["dataset"] = args.dataset
    result["conv_impl"] = resolve_conv_impl(args.conv_impl)
    result["device"] = jax.devices()[0].device_kind
    result["device_count"] = jax.device_count()
    result["jax"] = jax.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
