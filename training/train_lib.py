"""Data-parallel training of LeNet-5 with sgd, phs or goal_phs (the paper's experiment).

The whole dataset lives on every local device; each epoch a seeded permutation
(one small transfer per epoch) says which rows form each global batch, and each
device gathers its slice of the batch on the device. Gradients, loss and
counts are averaged or summed with ``lax.pmean``/``psum`` over all devices of
all processes, so every replica takes the same braking decision at the same
step and the result does not depend on the number of devices.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import jax_utils
from flax.training import train_state
from tqdm import tqdm

import phs_optax
from phs_optax_models import LeNet5
from phs_optax_training import data as data_lib
from phs_optax_training import (
    engine,
    errors,
    provenance,
    selection,
    strict_json,
    workdirs,
)
from phs_optax_training.checkpoints import Checkpoints
from phs_optax_training.config import (
    TrainConfig,
    extension_options,
    goal_phs_options,
    validate,
)
from phs_optax_training.model import create_model, resolve_conv_impl

AXIS = "batch"

# XLA:CPU (jaxlib 0.10.2) aborts the process with a rendezvous timeout in the
# gradients' all-reduce when a pmapped step runs on several host devices and
# about 128 device executions or more wait in its queue: 4 devices x 64
# dispatched steps and 2 x 120 aborted, 4 x 32 and 2 x 64 ran (2-core VM,
# benchmarks/RESULTS.md). So the training loop waits for its last
# step once it has queued this many executions; one wait per 64 executions
# costs a dispatch latency, far below the steps' time.
MAX_QUEUED_EXECUTIONS = 64
Metrics = dict[str, Any]


# Flax's TrainState: step, params, opt_state (apply_fn and tx not saved).
TrainState = train_state.TrainState


def _needs_value(opt_state: Any) -> bool:
    leaves = jax.tree.leaves(
        opt_state, is_leaf=lambda n: isinstance(n, phs_optax.GoalPHSState)
    )
    return any(isinstance(n, phs_optax.GoalPHSState) for n in leaves)


def create_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The optimizer named by ``config.optimizer`` with the config's hyperparameters."""
    if config.optimizer == "sgd":
        # A step trigger's learning-rate drop is applied by the engine
        # (engine.train_on_batch), the same way in train.py and the sweep.
        return optax.sgd(config.learning_rate, momentum=config.sgd_momentum or None)
    dynamics = dict(
        learning_rate=config.learning_rate,
        mass=config.mass,
        friction=config.friction,
        integrator=config.integrator,
        drag=config.drag,
    )
    if config.optimizer == "phs":
        return phs_optax.phs(**dynamics)
    return phs_optax.goal_phs(
        **dynamics,
        goal=None if config.brake_trigger in ("validation", "step") else config.goal,
        brake_factor=config.brake_factor,
        **goal_phs_options(config),
    )


def make_train_step(
    global_batch_size: int,
    steps_per_epoch: int,
    num_shards: int,
    config: TrainConfig | None = None,
) -> Callable[..., tuple[TrainState, jax.Array]]:
    """:func:`engine.train_on_batch` mapped over the devices with ``jax.pmap``;
    each device gathers its slice of the global batch.

    The training set is split into ``num_shards`` shards (one per process by
    default); the devices of a shard hold only that shard and each global batch
    takes ``global_batch_size / num_shards`` examples from every shard.
    ``config`` gives the step trigger (none without it). ``totals`` (see
    :func:`new_totals`) adds up the loss, the correct predictions and the
    examples, and keeps the first update whose loss was not finite.
    """
    per_shard = global_batch_size // num_shards
    devices_per_shard = jax.device_count() // num_shards
    trigger_kind = None if config is None else engine.step_trigger_kind(config)
    trigger = engine.step_trigger(config or TrainConfig(), steps_per_epoch)

    def train_step(state, totals, images, labels, permutation):
        step_before = state.step.astype(jnp.float32)
        index_in_shard = jax.lax.axis_index(AXIS) % devices_per_shard
        rows = engine.batch_rows(
            permutation, state.step, steps_per_epoch, per_shard,
            part=index_in_shard, parts=devices_per_shard,
        )  # fmt: skip
        result = engine.train_on_batch(
            state.apply_fn,
            state.tx,
            state.params,
            state.opt_state,
            images[rows],
            labels[rows],
            state.step,
            trigger,
            trigger_kind=trigger_kind,
            axis_name=AXIS,
        )
        state = state.replace(
            step=state.step + 1, params=result.params, opt_state=result.opt_state
        )
        correct = jax.lax.psum(result.correct, AXIS)
        totals = totals + jnp.stack(
            [result.loss * global_batch_size, correct, global_batch_size, 0.0]
        )
        # The first update whose loss is not finite (inf while there is none).
        nonfinite = jnp.where(jnp.isfinite(result.loss), jnp.inf, step_before)
        return state, totals.at[3].min(nonfinite)

    return jax.pmap(train_step, axis_name=AXIS, donate_argnums=(0, 1))


def new_totals() -> jax.Array:
    """An epoch's running totals for :func:`make_train_step`, on every device:
    loss sum, correct count, example count, first non-finite-loss update."""
    return replicate(np.array([0.0, 0.0, 0.0, np.inf], np.float32))


def shard_of(split: Split, shard: int, num_shards: int) -> Split:
    """Rows ``shard, shard + num_shards, ...``; every shard has the same size."""
    size = len(split.labels) // num_shards
    rows = np.arange(shard, size * num_shards, num_shards)
    return Split(split.images[rows], split.labels[rows])


def local_device_shards(num_shards: int) -> list[int]:
    """The shard of each of this process's devices, in pmap's order."""
    devices_per_shard = jax.device_count() // num_shards
    first = jax.process_index() * jax.local_device_count()
    return [(first + i) // devices_per_shard for i in range(jax.local_device_count())]


def initial_params(model: LeNet5, seed: int, example_images: np.ndarray) -> Any:
    """The model's initial params for ``seed``, from one jitted ``init``.

    Run eagerly, ``init`` compiles every initializer on its own (about 8 s
    on the 2-core CPU); jitted, it compiles once, and the compiled ``init`` is
    kept per (model, input shape), so that further seeds (baselines, sweep
    configurations) cost milliseconds.
    """
    return _jitted_init(model, jax.random.PRNGKey(seed), example_images)


# init runs once per run, so its compile time is what counts: at LLVM level 1
# it compiles in about 1.2 s instead of 3.6 s (2-core CPU), with the same values
# bit for bit (checked against the default level by a test; level 0 changes them).
@functools.partial(
    jax.jit, static_argnums=0, compiler_options={"xla_backend_optimization_level": 1}
)
def _jitted_init(model: LeNet5, key: jax.Array, example_images: jax.Array) -> Any:
    return model.init(key, example_images)["params"]


def initial_state(
    model: LeNet5, params: Any, tx: optax.GradientTransformation
) -> TrainState:
    """``TrainState.create`` with the optimizer's ``init`` jitted.

    Run eagerly, ``init`` dispatches one small program per leaf and scalar of
    the optimizer state, each compiled on first use (0.9 s for goal_phs on the
    2-core CPU); jitted, it is one program (0.27 s), with the same values.
    """
    opt_state = jax.jit(tx.init)(params)
    return TrainState(
        step=0, apply_fn=model.apply, params=params, tx=tx, opt_state=opt_state
    )


def put_per_device(values: list[np.ndarray]) -> jax.Array:
    """One array per local device (in pmap's order) as a pmap-ready array.

    Laid out as pmap (with ``axis_name=AXIS``) lays out its outputs: inputs
    placed otherwise (flax's ``jax_utils.replicate`` uses a mesh of its own)
    make a pmapped function compile again when its outputs come back as
    inputs, which cost the train step two extra compilations per run.
    """
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()), (AXIS,))
    return jax.device_put(np.stack(values), jax.NamedSharding(mesh, jax.P(AXIS)))


def replicate(tree: Any) -> Any:
    """Every leaf of ``tree`` on every local device, laid out as pmap's outputs.

    Leaves go through NumPy: Python and 64-bit values arrive as JAX's default
    32-bit types, none weakly typed (as pmap's outputs are)."""
    copies = jax.local_device_count()
    return jax.tree.map(lambda leaf: put_per_device([np.asarray(leaf)] * copies), tree)


def steps_between_waits() -> int:
    """How many train steps a loop dispatches before it waits for the last one."""
    return max(1, MAX_QUEUED_EXECUTIONS // jax.local_device_count())


def make_eval_step(apply_fn: Callable, global_batch_size: int, num_examples: int):
    """A pmapped evaluation of one padded batch: (loss sum, correct, count)."""
    per_device = global_batch_size // jax.device_count()

    def eval_step(params, images, labels, batch_index):
        first = batch_index * global_batch_size + jax.lax.axis_index(AXIS) * per_device
        x, y, mask = engine.padded_batch(
            images, labels, first, per_device, num_examples
        )
        return jax.lax.psum(engine.eval_sums(apply_fn, params, x, y, mask), AXIS)

    return jax.pmap(eval_step, axis_name=AXIS)


def evaluate(eval_step, params, images, labels, num_examples: int, batch_size: int):
    """(mean loss, accuracy) over every example exactly once."""
    totals = np.zeros(3)
    for batch_index in range(-(-num_examples // batch_size)):
        index = replicate(np.int32(batch_index))
        totals += np.asarray(
            eval_step(params, images, labels, index)[0], dtype=np.float64
        )
    assert int(totals[2]) == num_examples, (totals, num_examples)
    return totals[0] / totals[2], totals[1] / totals[2]


def epoch_permutation(
    seed: int, epoch: int, num_examples: int, shard: int = 0
) -> np.ndarray:
    """The order of a shard's training examples in ``epoch``, on every process."""
    rng = np.random.default_rng([seed, epoch, shard])
    return rng.permutation(num_examples).astype(np.int32)


@dataclasses.dataclass
class Split:
    images: np.ndarray
    labels: np.ndarray


def _subset(images: np.ndarray, labels: np.ndarray, size: int | None) -> Split:
    """A fixed random subset of ``size`` examples (files may be sorted by class)."""
    if not size or size >= len(labels):
        return Split(images, labels)
    rows = np.sort(np.random.default_rng(0).permutation(len(labels))[:size])
    return Split(images[rows], labels[rows])


def split_data(dataset: data_lib.Dataset, config: TrainConfig) -> dict[str, Split]:
    """Train, test and (optionally) validation splits, capped for quick runs."""
    train = _subset(
        dataset.train_images, dataset.train_labels, config.max_train_examples
    )
    splits = {}
    if config.validation_fraction > 0:
        order = np.random.default_rng([config.seed, 2**31 - 1]).permutation(
            len(train.labels)
        )
        num_validation = max(1, int(round(config.validation_fraction * len(order))))
        held_out, kept = order[:num_validation], order[num_validation:]
        splits["validation"] = Split(train.images[held_out], train.labels[held_out])
        train = Split(train.images[kept], train.labels[kept])
    splits["train"] = train
    splits["test"] = _subset(
        dataset.test_images, dataset.test_labels, config.max_test_examples
    )
    return splits


def _log(message: str) -> None:
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)


# Jitted: eagerly, each leaf's sum of squares compiles on its own (1.8 s in the
# first epoch on the 2-core CPU); same values bit for bit.
_kinetic_energy = jax.jit(phs_optax.kinetic_energy)


def energy(opt_state: Any, config: TrainConfig, loss: float) -> tuple[Any, Any]:
    """Kinetic energy and Hamiltonian (kinetic + loss); None for SGD."""
    if config.optimizer == "sgd":
        return None, None
    kinetic = float(_kinetic_energy(opt_state, config.mass))
    return kinetic, kinetic + loss


def brake_info(opt_state: Any, config: TrainConfig, step: int) -> dict[str, Any]:
    """Friction in force and brake state after ``step`` updates (SGD: its
    learning-rate drop counts as the brake)."""
    if config.optimizer == "sgd":
        if config.brake_trigger != "step":
            return {"friction": None, "braked": None, "brake_step": None}
        dropped = step > config.brake_at_step
        return {
            "friction": None,
            "braked": dropped,
            "brake_step": config.brake_at_step if dropped else None,
        }
    if config.optimizer == "phs":
        return {"friction": config.friction, "braked": None, "brake_step": None}
    phs_state = phs_optax.find_phs_state(opt_state)
    first_brake = int(phs_state.brake_step)
    info = {
        "friction": float(phs_state.friction),
        "braked": bool(phs_state.braked),
        "brake_step": first_brake if first_brake >= 0 else None,
    }
    if extension_options(config):  # the phases of the options beyond the paper
        last_brake = int(phs_state.last_brake_step)
        info.update(
            last_brake_step=last_brake if last_brake >= 0 else None,
            releases=int(phs_state.releases),
            best_loss=float(phs_state.best_loss),
        )
    return info


def _read_metrics(path: Path, up_to_epoch: int) -> list[Metrics]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [line for line in lines if line["epoch"] <= up_to_epoch]


def write_metrics(path: Path, rows: list[Metrics]) -> None:
    """metrics.jsonl: one strict JSON line per epoch (non-finite numbers as null)."""
    strict_json.write_lines(path, rows)


def make_workdir(workdir: Path) -> None:
    """Creates ``workdir`` (and missing parents) and checks that it can be written.

    Raises:
        errors.UnreadableError: It cannot be created or written in; the message
            names the path and the system's reason.
    """
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise errors.UnreadableError(
            f"cannot use the workdir {workdir}: it is a file, not a folder"
        ) from None
    except OSError as error:
        raise errors.UnreadableError(
            f"cannot create the workdir {workdir}: {_os_reason(error, workdir)}"
        ) from None
    try:
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as error:
        raise errors.UnreadableError(
            f"cannot write in the workdir {workdir}: {_os_reason(error, workdir)}"
        ) from None


def _os_reason(error: OSError, path: Path) -> str:
    """The system's reason, and which part of ``path`` is a file if one is."""
    reason = error.strerror or str(error)
    for parent in path.parents:
        if parent.exists():
            return reason if parent.is_dir() else f"{reason} ({parent} is a file)"
    return reason


@workdirs.releases_locks
def train_and_evaluate(
    config: TrainConfig,
    workdir: str | Path,
    *,
    dataset: data_lib.Dataset | None = None,
    progress: bool = True,
    stop_on_divergence: bool = True,
    label: str | None = None,
) -> Metrics:
    """Trains and evaluates; writes metrics, summary and checkpoints to ``workdir``.

    ``label`` (e.g. ``"goal_phs b10"``) starts every line the run prints, as
    ``"[label] "``, so that the lines of several runs in one log can be told apart.

    Rerunning with the same ``workdir`` resumes from its newest good checkpoint
    (:mod:`phs_optax_training.checkpoints`: a corrupt or non-finite newer one
    is reported in one line and set aside; none good raises UnreadableError)
    with the metrics of the epochs up to it. The workdir belongs to one
    configuration and one process (:mod:`phs_optax_training.workdirs`): the
    run holds its lock (WorkdirInUseError while another process does), records
    the configuration in ``workdir/config.json`` and refuses to resume with
    another one (UsageError), except for the fields that do not change what
    is computed, e.g. a larger ``num_epochs``.
    Returns the summary (also written to ``workdir/summary.json``).
    """
    validate(config, jax.device_count())
    workdir = Path(workdir)
    is_writer = jax.process_index() == 0
    prefix = f"[{label}] " if label else ""

    def log(message: str) -> None:
        _log(prefix + message)

    if dataset is None:  # before the workdir exists: bad data leaves no folder
        dataset = data_lib.load_dataset(config.dataset, config.data_dir)
    splits = split_data(dataset, config)
    num_shards = config.data_shards or jax.process_count()
    shards = local_device_shards(num_shards)
    train = {k: shard_of(splits["train"], k, num_shards) for k in set(shards)}
    shard_size = len(splits["train"].labels) // num_shards
    steps_per_epoch = shard_size // (config.batch_size // num_shards)
    if steps_per_epoch == 0:
        raise data_lib.DataUnavailableError(
            f"the training split has {len(splits['train'].labels)} examples, too few for "
            f"--batch_size={config.batch_size}"
        )
    make_workdir(workdir)
    workdirs.hold_lock(workdir)
    stored_config = workdirs.check_config(workdir, config, jax.process_count())

    model = create_model(config, dataset.num_classes)
    tx = create_optimizer(config)
    params = initial_params(model, config.seed, splits["test"].images[:1])
    state = initial_state(model, params, tx)
    num_params = sum(x.size for x in jax.tree.leaves(params))

    checkpoints = Checkpoints(workdir / "checkpoints", config, for_training=True)
    brake_on_validation = config.brake_trigger in ("validation", "both")
    validation_brake = engine.ValidationBrake(config.validation_patience)
    restored = checkpoints.restore_latest(state, validation_brake.as_dict())
    start_epoch = restored.epoch if restored else 0
    metrics_path = workdir / "metrics.jsonl"
    if restored:
        workdirs.check_num_epochs(workdir, config, start_epoch)
        for message in restored.messages:
            log(message)
        checkpoints.set_aside(restored.rejected)  # so that they can be saved again
        state, loop = restored.state, restored.loop
        validation_brake = engine.ValidationBrake(
            config.validation_patience, float(loop["last_loss"]), int(loop["rises"])
        )
        log(f"Resuming from the checkpoint of epoch {start_epoch} in {workdir}.")
    if is_writer:
        workdirs.record_config(
            workdir, config, jax.process_count(), stored_config,
            resumed=restored is not None, log=log,
        )  # fmt: skip
    history = _read_metrics(metrics_path, start_epoch)

    device_data = {
        name: (replicate(s.images), replicate(s.labels))
        for name, s in splits.items()
        if name != "train"
    }
    device_data["train"] = (
        put_per_device([train[k].images for k in shards]),
        put_per_device([train[k].labels for k in shards]),
    )
    state = replicate(state)
    train_step = make_train_step(config.batch_size, steps_per_epoch, num_shards, config)
    evaluators = {
        name: make_eval_step(model.apply, config.eval_batch_size, len(s.labels))
        for name, s in splits.items()
    }
    brake_replicated = jax.pmap(phs_optax.brake, axis_name=AXIS)
    run_start = time.time() - (history[-1]["wall_time"] if history else 0.0)
    show_progress = progress and is_writer and sys.stderr.isatty()
    wait_every = steps_between_waits()

    diverged = diverged_at(history) is not None
    for epoch in range(start_epoch + 1, config.num_epochs + 1):
        if diverged and stop_on_divergence:
            break
        permutation = put_per_device(
            [epoch_permutation(config.seed, epoch, shard_size, k) for k in shards]
        )
        totals = new_totals()
        epoch_start = time.time()
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"{prefix}epoch {epoch}/{config.num_epochs}",
            disable=not show_progress,
            leave=False,
        )
        for step_in_epoch in bar:
            state, totals = train_step(
                state, totals, *device_data["train"], permutation
            )
            if step_in_epoch % wait_every == wait_every - 1:
                jax.block_until_ready(totals)
            if show_progress and step_in_epoch % 50 == 49:
                loss_sum, correct, count, _ = np.asarray(totals[0])
                bar.set_postfix(
                    _progress_fields(state, loss_sum / count, correct / count)
                )
        loss_sum, correct, count, nonfinite = np.asarray(totals[0], np.float64)
        train_seconds = time.time() - epoch_start
        bar.close()

        params = state.params
        evaluations = {
            name: evaluate(
                evaluators[name],
                params,
                *device_data[name],
                len(splits[name].labels),
                config.eval_batch_size,
            )
            for name in splits
            if name != "train"
        }
        opt_state = jax_utils.unreplicate(state.opt_state)
        train_loss = loss_sum / count
        kinetic, hamiltonian = energy(opt_state, config, train_loss)
        validation_loss, validation_accuracy = evaluations.get(
            "validation", (None, None)
        )
        if brake_on_validation and validation_brake.should_brake(validation_loss):
            if not bool(phs_optax.find_phs_state(opt_state).braked):
                log(f"Validation loss rose {config.validation_patience}x: braking.")
                state = state.replace(opt_state=brake_replicated(state.opt_state))
                opt_state = jax_utils.unreplicate(state.opt_state)
        step = int(jax_utils.unreplicate(state.step))
        row = {
            "epoch": epoch,
            "step": step,
            "train_loss": train_loss,
            "train_accuracy": correct / count,
            "test_loss": evaluations["test"][0],
            "test_accuracy": evaluations["test"][1],
            "validation_loss": validation_loss,
            "validation_accuracy": validation_accuracy,
            **brake_info(opt_state, config, step),
            "kinetic_energy": kinetic,
            "hamiltonian": hamiltonian,
            "images_per_second": count / train_seconds,
            "wall_time": time.time() - run_start,
            "diverged_at_step": None if np.isinf(nonfinite) else int(nonfinite),
        }
        history.append(row)
        log(_epoch_line(row))
        if is_writer:
            write_metrics(metrics_path, history)
        if row["diverged_at_step"] is not None and not diverged:
            log(_divergence_line(config, row, workdir, stop_on_divergence))
        diverged = diverged or row["diverged_at_step"] is not None
        if diverged and stop_on_divergence:
            break
        # A diverged state is never saved: a resume starts from the last good one.
        if not diverged and (
            epoch % config.checkpoint_every_epochs == 0 or epoch == config.num_epochs
        ):
            checkpoints.save(
                epoch, jax_utils.unreplicate(state), validation_brake.as_dict()
            )
    checkpoints.close()

    summary = build_summary(config, history, steps_per_epoch, num_params, dataset)
    if is_writer:
        strict_json.write(workdir / "summary.json", summary)
    return summary


def final_params(workdir: str | Path, config: TrainConfig, dataset: data_lib.Dataset):
    """The train state (params, optimizer state) of the newest good checkpoint
    in ``workdir``; newer ones passed over are reported in one line each.

    Raises:
        errors.UnreadableError: ``workdir`` holds no good checkpoint.
        errors.UsageError: its checkpoints were made for another state.
    """
    model = create_model(config, dataset.num_classes)
    params = initial_params(model, config.seed, dataset.train_images[:1])
    template = initial_state(model, params, create_optimizer(config))
    checkpoints = Checkpoints(Path(workdir) / "checkpoints", config)
    try:
        restored = checkpoints.restore_latest(
            template, engine.ValidationBrake(1).as_dict()
        )
    finally:
        checkpoints.close()
    if restored is None:
        raise errors.UnreadableError(
            f"no checkpoint in {Path(workdir) / 'checkpoints'}"
        )
    for message in restored.messages:
        _log(message)
    return restored.state


def _progress_fields(state: TrainState, loss: float, accuracy: float) -> dict[str, str]:
    fields = {"loss": f"{loss:.4f}", "acc": f"{accuracy:.4f}"}
    if _needs_value(state.opt_state):
        phs_state = phs_optax.find_phs_state(state.opt_state)
        fields["friction"] = f"{float(phs_state.friction[0]):.4g}"
        fields["braked"] = str(bool(phs_state.braked[0]))
    return fields


def _epoch_line(row: Metrics) -> str:
    line = (
        f"epoch {row['epoch']:3d}  step {row['step']:7d}  "
        f"train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}  "
        f"test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.4f}  "
        f"{row['images_per_second']:.0f} img/s"
    )
    if row["friction"] is not None:
        line += f"  friction {row['friction']:.4g}"
    if row["braked"] is not None:
        line += f"  braked {row['braked']}"
    return line


def diverged_at(history: list[Metrics]) -> dict[str, int] | None:
    """Epoch and update at which the training loss first became non-finite."""
    for row in history:
        if row.get("diverged_at_step") is not None:
            return {"epoch": row["epoch"], "step": row["diverged_at_step"]}
    return None


def _divergence_line(
    config: TrainConfig, row: Metrics, workdir: Path, stopped: bool
) -> str:
    what = "stopped" if stopped else "training on (--nostop_on_divergence)"
    return (
        f"{config.optimizer} diverged: the training loss became non-finite at "
        f"update {row['diverged_at_step']} (epoch {row['epoch']}); {what}; see "
        f"{workdir / 'summary.json'}"
    )


def build_summary(
    config: TrainConfig,
    history: list[Metrics],
    steps_per_epoch: int,
    num_params: int,
    dataset: data_lib.Dataset,
) -> Metrics:
    best = max(history, key=lambda row: row["test_accuracy"])
    selected = selection.validation_best(history)
    brake_step = history[-1]["brake_step"]
    return {
        "config": {**dataclasses.asdict(config), "steps_per_epoch": steps_per_epoch},
        "dataset_source": dataset.source,
        "num_params": num_params,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "platform": jax.devices()[0].platform,
        "provenance": provenance.provenance(),
        "conv_impl": resolve_conv_impl(config.conv_impl),
        "epochs_done": history[-1]["epoch"],
        "diverged": diverged_at(history) is not None,
        "diverged_at": diverged_at(history),
        "final_test_accuracy": history[-1]["test_accuracy"],
        "best_test_accuracy": best["test_accuracy"],
        "best_epoch": best["epoch"],
        # the test accuracy at the validation-best epoch (None without a split)
        "selected_test_accuracy": None
        if selected is None
        else selected["test_accuracy"],
        "selected_epoch": None if selected is None else selected["epoch"],
        "brake_step": brake_step,
        "brake_epoch": None if brake_step is None else brake_step / steps_per_epoch,
        "wall_time": history[-1]["wall_time"],
        "mean_images_per_second": float(
            np.mean([row["images_per_second"] for row in history])
        ),
        **{
            key: history[-1][key]
            for key in ("last_brake_step", "releases", "best_loss")
            if key in history[-1]
        },
    }
