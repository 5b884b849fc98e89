"""The convolution's images gradient: the project's against XLA's, in the train step.

    python benchmarks/images_gradient.py --case=fmnist-64
    taskset -c 0 python benchmarks/images_gradient.py --case=fmnist-64

``models/_layers.py`` computes the images gradient of its convolution as one
matrix product plus window sums (``_conv_images_grad``). This compiles the
real train step (``jax_project.step_runner``, with ``models/_layers.py``'s
layers: ``conv_impl="space_to_depth"``) twice in one process, once with
that gradient and once with XLA's own transpose of the convolution, and times
them in interleaved rounds (order reversed every round), as
``optimizer_cost.py`` does. Prints one JSON line: images/s of each and the
median per-round ratio of the project's step time to the XLA one's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
from jax_project import CASES, step_runner
from optimizer_cost import median_ratio

from phs_optax_models import _layers
from phs_optax_training import xla_flags


def xla_images_grad(grad_out: jax.Array, kernel: jax.Array, dtype) -> jax.Array:
    """XLA's transpose of ``_layers.xla_conv`` with respect to the images."""
    n, rows, cols, _ = grad_out.shape
    height, width, in_channels, _ = kernel.shape
    images = jnp.zeros((n, rows + height - 1, cols + width - 1, in_channels), dtype)
    _, images_vjp = jax.vjp(lambda x: _layers.xla_conv(x, kernel), images)
    return images_vjp(grad_out)[0]


def compiled_runners(case: str, num_examples: int) -> tuple[dict, int]:
    """The train step with each images gradient, compiled and warmed up."""
    project_grad = _layers._conv_images_grad
    runners = {}
    for name, images_grad in (("project", project_grad), ("xla", xla_images_grad)):
        _layers._conv_images_grad = images_grad
        try:
            run, batch_size = step_runner(case, num_examples, "space_to_depth")
            run(5)  # compiles while this gradient is in place
        finally:
            _layers._conv_images_grad = project_grad
        runners[name] = run
    return runners, batch_size


def main() -> None:
    xla_flags.set_cpu_flags()  # as train.py, before JAX initialises its backends
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=sorted(CASES), default="fmnist-64")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    parser.add_argument("--num_examples", type=int, default=8192)
    args = parser.parse_args()
    runners, batch_size = compiled_runners(args.case, args.num_examples)
    seconds = {name: [] for name in runners}
    for round_index in range(args.rounds):
        order = list(runners) if round_index % 2 == 0 else list(runners)[::-1]
        for name in order:
            start = time.perf_counter()
            runners[name](args.steps)
            seconds[name].append(time.perf_counter() - start)
    result = {"case": args.case, "rounds": args.rounds, "steps": args.steps}
    for name, times in seconds.items():
        result[f"{name}_images_per_second"] = (
            args.steps * batch_size / statistics.median(times)
        )
    result.update(median_ratio(seconds["project"], seconds["xla"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
