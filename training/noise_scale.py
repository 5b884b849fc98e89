"""The simple gradient noise scale of LeNet-5 at given parameters.

McCandlish, Kaplan, Amodei et al., "An Empirical Model of Large-Batch
Training" (2018, arXiv:1812.06162) define, for the gradient ``G`` of the loss
averaged over the data and the covariance ``Sigma`` of the per-example
gradients ``g_i``, the simple noise scale

    B_simple = tr(Sigma) / |G|^2,

the batch size at which a minibatch gradient's noise (``tr(Sigma) / B``)
matches the squared length of the true gradient: much smaller batches take
steps dominated by noise, much larger ones gain little per example.

From the per-example gradients ``g_1 .. g_n`` of ``n`` examples, with
``g = mean_i g_i``:

    tr(Sigma) = sum_i |g_i - g|^2 / (n - 1)
              = (sum_i |g_i|^2 - n |g|^2) / (n - 1)       (unbiased),
    |G|^2_biased = |g|^2                   (E = |G|^2 + tr(Sigma) / n),
    |G|^2        = |g|^2 - tr(Sigma) / n                  (unbiased).

These are the estimators of the paper's appendix A with the small batch size
1 and the large one ``n``. :func:`noise_scale` reports ``B_simple`` with the
unbiased ``|G|^2`` (and ``b_simple_biased`` with ``|g|^2``); where the
unbiased ``|G|^2`` is not positive, ``n`` examples do not resolve the mean
gradient and ``B_simple`` is ``inf``.

The per-example loss is the training loss of one example: the softmax
cross-entropy of the model's logits (:func:`engine.cross_entropy_sum` of a
batch of one), so that ``g`` is the gradient of the mean training loss over
the ``n`` examples. The gradients come from ``jax.vmap(jax.grad(...))`` over
chunks of examples, one compiled program for every chunk (the last one padded
and masked), so memory stays bounded by the chunk. Each chunk's sum of
gradients and sum of squared deviations from its own mean (float32, on the
device) are combined on the host in float64 (Chan et al.'s pairwise update),
which keeps ``tr(Sigma)`` accurate where ``|G|^2`` dominates ``sum |g_i|^2``.

The command line measures at the initial params of given seeds (those
``train.py`` and the sweep start from: ``train_lib.initial_params``) and at
the final params a sweep stored in run folders (``params.msgpack``), on the
first ``--examples`` examples of the run's training split (``train_lib.
split_data``: what is left after the validation hold-out; the study holds out
10 %)::

    python -m phs_optax_training.noise_scale --init_seed=0 --examples=4096 \\
        results/study/table2/batch64/phs_lr0.1_f0.1_m10_s0

Misuse (a missing run folder, one without ``summary.json`` or
``params.msgpack``) is one line ``noise_scale: error: ...`` and exit code 2;
unreadable params exit with 4 (see :mod:`phs_optax_training.errors`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from phs_optax_training import data as data_lib
from phs_optax_training import engine, errors, strict_json, train_lib, xla_flags
from phs_optax_training.config import CONV_IMPLS, DATASETS, TrainConfig
from phs_optax_training.model import create_model, resolve_conv_impl

PROGRAM = "noise_scale"
# The study holds out this fraction of the training set for its validation loss.
STUDY_VALIDATION_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class NoiseScale:
    """The simple noise scale and its parts, estimated from ``examples`` examples."""

    b_simple: float  #: tr(Sigma) / |G|^2 with the unbiased |G|^2 (inf if <= 0)
    trace_covariance: float  #: tr(Sigma), unbiased
    mean_gradient_sq_norm: float  #: |G|^2 unbiased: |g|^2 - tr(Sigma) / n
    mean_gradient_sq_norm_biased: float  #: |g|^2, g the mean of the g_i
    examples: int  #: n

    @property
    def b_simple_biased(self) -> float:
        """tr(Sigma) / |g|^2 (biased low by about tr(Sigma) / n in the denominator)."""
        return _ratio(self.trace_covariance, self.mean_gradient_sq_norm_biased)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.inf


def _per_example_loss(
    apply_fn: Callable[..., jax.Array],
    params: Any,
    image: jax.Array,
    label: jax.Array,
) -> jax.Array:
    """The training loss of one example (a batch of one)."""
    logits = apply_fn({"params": params}, image[None])
    return engine.cross_entropy_sum(logits, label[None], jnp.ones(1, jnp.bool_))


@functools.partial(jax.jit, static_argnums=0)
def _chunk_moments(
    apply_fn: Callable[..., jax.Array],
    params: Any,
    images: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """The sum of the per-example gradients where ``mask`` holds (flat, float32)
    and the sum of their squared distances from their own mean."""
    grads = jax.vmap(
        jax.grad(functools.partial(_per_example_loss, apply_fn)), in_axes=(None, 0, 0)
    )(params, images, labels)
    flat = jnp.concatenate(
        [leaf.reshape(leaf.shape[0], -1) for leaf in jax.tree.leaves(grads)], axis=1
    ).astype(jnp.float32)
    weights = mask.astype(jnp.float32)
    total = weights @ flat
    mean = total / jnp.maximum(weights.sum(), 1.0)
    deviations = (flat - mean) * weights[:, None]
    return total, jnp.sum(deviations * deviations)


def noise_scale(
    apply_fn: Callable[..., jax.Array],
    params: Any,
    images: np.ndarray | jax.Array,
    labels: np.ndarray | jax.Array,
    chunk_size: int = 256,
) -> NoiseScale:
    """The simple noise scale ``tr(Sigma) / |G|^2`` of the cross-entropy
    training loss at ``params``, from the per-example gradients on ``images``
    and ``labels`` (see the module docstring for the estimators).

    Args:
        apply_fn: The model's ``apply``: ``apply_fn({"params": params}, images)``
            gives logits (batch, classes).
        params: The parameters (a pytree of float arrays).
        images: The examples, batch first (at least 2).
        labels: Their integer classes.
        chunk_size: Examples whose gradients are computed at once (memory:
            ``chunk_size`` x the number of parameters floats); the result does
            not depend on it beyond float rounding.

    Raises:
        ValueError: Fewer than 2 examples, images and labels of different
            lengths, or ``chunk_size`` < 1.
    """
    n = len(labels)
    if len(images) != n:
        raise ValueError(f"{len(images)} images but {n} labels")
    if n < 2:
        raise ValueError(f"the noise scale needs at least 2 examples, got {n}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be at least 1")
    chunk = min(chunk_size, n)
    images = np.asarray(images)
    labels = np.asarray(labels, np.int32)
    count, mean, m2 = 0, None, 0.0
    for first in range(0, n, chunk):
        size = min(chunk, n - first)
        x = np.zeros((chunk, *images.shape[1:]), images.dtype)
        y = np.zeros(chunk, np.int32)
        x[:size], y[:size] = images[first : first + size], labels[first : first + size]
        total, chunk_m2 = _chunk_moments(
            apply_fn, params, x, y, np.arange(chunk) < size
        )
        chunk_mean = np.asarray(total, np.float64) / size
        if mean is None:
            mean = np.zeros_like(chunk_mean)
        # Chan, Golub and LeVeque's update of the mean and the sum of squares.
        delta = chunk_mean - mean
        combined = count + size
        mean = mean + delta * (size / combined)
        m2 = m2 + float(chunk_m2) + float(delta @ delta) * count * size / combined
        count = combined
    trace = m2 / (n - 1)
    biased = float(mean @ mean)
    unbiased = biased - trace / n
    return NoiseScale(
        b_simple=_ratio(trace, unbiased),
        trace_covariance=trace,
        mean_gradient_sq_norm=unbiased,
        mean_gradient_sq_norm_biased=biased,
        examples=n,
    )


# --- the command line ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Target:
    """What to measure: the params of a seed's initialisation or of a run folder."""

    where: str
    config: TrainConfig
    conv_impl: str | None  # the run's recorded layers; None: the config's
    run_dir: Path | None = None


def _run_target(run_dir: Path, args: argparse.Namespace) -> _Target:
    """A run folder's configuration, checked before anything is computed."""
    if not run_dir.is_dir():
        raise errors.UsageError(f"no run folder {run_dir}")
    for name in ("summary.json", "params.msgpack"):
        if not (run_dir / name).is_file():
            raise errors.UsageError(f"{run_dir} holds no {name}")
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        stored = summary["config"]
    except (ValueError, KeyError, TypeError) as error:
        raise errors.UnreadableError(
            f"cannot read the configuration in {run_dir / 'summary.json'}: {error}"
        ) from None
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in stored.items() if k in fields})
    if args.data_dir is not None:
        config = dataclasses.replace(config, data_dir=args.data_dir)
    return _Target(run_dir.name, config, summary.get("conv_impl"), run_dir)


def _targets(args: argparse.Namespace) -> list[_Target]:
    targets = [
        _Target(
            f"init seed {seed}",
            TrainConfig(
                dataset=args.dataset,
                data_dir=args.data_dir,
                seed=seed,
                validation_fraction=args.validation_fraction,
            ),
            None,
        )
        for seed in args.init_seed or []
    ]
    targets += [_run_target(Path(d), args) for d in args.run_dirs]
    if not targets:
        raise errors.UsageError("nothing to measure: give --init_seed or RUN_DIRs")
    return targets


def _stored_params(run_dir: Path, template: Any) -> Any:
    """The params in ``run_dir/params.msgpack``, checked against ``template``."""
    path = run_dir / "params.msgpack"
    try:
        params = flax.serialization.from_bytes(template, path.read_bytes())
    except (ValueError, KeyError, TypeError) as error:
        raise errors.UnreadableError(f"cannot read {path}: {error}") from None
    shapes = jax.tree.map(np.shape, params)
    if shapes != jax.tree.map(np.shape, template):
        raise errors.UsageError(f"{path} holds the params of another model")
    return params


def measure(
    target: _Target,
    dataset: data_lib.Dataset,
    examples: int,
    chunk_size: int,
    conv_impl: str | None = None,
) -> dict[str, Any]:
    """One measurement's record: where, what it used, and the noise scale."""
    config = target.config
    layers = resolve_conv_impl(conv_impl or target.conv_impl or config.conv_impl)
    model = create_model(
        dataclasses.replace(config, conv_impl=layers), dataset.num_classes
    )
    train = train_lib.split_data(dataset, config)["train"]
    params = train_lib.initial_params(model, config.seed, train.images[:1])
    if target.run_dir is not None:
        params = _stored_params(target.run_dir, params)
    used = min(examples, len(train.labels))
    start = time.time()
    result = noise_scale(
        model.apply, params, train.images[:used], train.labels[:used], chunk_size
    )
    return {
        "where": target.where,
        "run_dir": None if target.run_dir is None else str(target.run_dir),
        "params": "initial" if target.run_dir is None else "final",
        "seed": config.seed,
        **dataclasses.asdict(result),
        "b_simple_biased": result.b_simple_biased,
        "split": "train",
        "split_size": len(train.labels),
        "validation_fraction": config.validation_fraction,
        "dataset_source": dataset.source,
        "conv_impl": layers,
        "chunk_size": chunk_size,
        "seconds": time.time() - start,
    }


def line(record: dict[str, Any]) -> str:
    """The printed line of one measurement."""
    return (
        f"{record['where']}: B_simple {record['b_simple']:.4g}  "
        f"tr(Sigma) {record['trace_covariance']:.4g}  "
        f"|G|^2 {record['mean_gradient_sq_norm']:.4g}  "
        f"examples {record['examples']}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m phs_optax_training.noise_scale",
        description="Measure the simple gradient noise scale tr(Sigma) / |G|^2 "
        "(McCandlish et al. 2018) of LeNet-5 at initial or trained params.",
    )
    parser.add_argument(
        "run_dirs",
        nargs="*",
        metavar="RUN_DIR",
        help="sweep run folders (summary.json, params.msgpack): their final params",
    )
    parser.add_argument(
        "--init_seed",
        type=int,
        action="append",
        help="measure at the initial params of this seed (repeatable)",
    )
    parser.add_argument(
        "--examples",
        type=int,
        default=4096,
        help="the first this many examples of the training split (default 4096)",
    )
    parser.add_argument("--chunk_size", type=int, default=256)
    parser.add_argument(
        "--data_dir",
        default=None,
        help="the dataset's folder (default: a run's own, else the system copy)",
    )
    parser.add_argument(
        "--dataset", default="fashion_mnist", choices=DATASETS, help="--init_seed's"
    )
    parser.add_argument(
        "--validation_fraction",
        type=float,
        default=STUDY_VALIDATION_FRACTION,
        help="--init_seed's validation hold-out, as train.py's (default "
        f"{STUDY_VALIDATION_FRACTION:g}, the study's); a run uses its own",
    )
    parser.add_argument(
        "--conv_impl",
        default=None,
        choices=CONV_IMPLS,
        help="LeNet-5's conv + pool layers (default: a run's recorded ones, "
        "else auto); the same function up to float rounding",
    )
    parser.add_argument("--json", default=None, help="also write the records here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    xla_flags.set_cpu_flags()  # before JAX initialises its backends
    args = _parser().parse_args(argv)
    try:
        if args.examples < 2:
            raise errors.UsageError(f"--examples={args.examples} must be at least 2")
        if args.chunk_size < 1:
            raise errors.UsageError(
                f"--chunk_size={args.chunk_size} must be at least 1"
            )
        if args.json is not None and not Path(args.json).parent.is_dir():
            raise errors.UsageError(f"no folder {Path(args.json).parent} for --json")
        targets = _targets(args)
        datasets: dict[tuple[str, str | None], data_lib.Dataset] = {}
        records = []
        for target in targets:
            key = (target.config.dataset, target.config.data_dir)
            if key not in datasets:
                datasets[key] = data_lib.load_dataset(*key)
            record = measure(
                target, datasets[key], args.examples, args.chunk_size, args.conv_impl
            )
            print(line(record), flush=True)
            records.append(record)
    except errors.TrainingError as error:
        print(f"{PROGRAM}: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return error.exit_code
    except (ValueError, data_lib.DataUnavailableError) as error:
        print(f"{PROGRAM}: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return errors.USAGE
    if args.json is not None:
        strict_json.write(args.json, {"measurements": records})
    return 0


if __name__ == "__main__":
    sys.exit(main())
