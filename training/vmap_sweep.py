"""Many training configurations as one compiled program (``jax.vmap`` over them).

Parameters and optimizer states of all configurations are stacked along a
leading axis and one jitted, vmapped step advances them together. The
hyperparameters are arrays in the optimizer state (``optax.inject_hyperparams``),
so configurations that differ only in numbers share one program:

* group ``"phs"``: ``phs`` and ``goal_phs`` rows together, a PHS row being
  ``goal_phs`` with ``brake_factor=1`` (the same dynamics, tested in
  ``tests/test_reference.py``);
* group ``"sgd"``: ``optax.sgd`` rows, whose state has another structure;
* more groups for the triggers and options that change the state's structure
  (see :func:`group_of`).

The computation of one update, one evaluation and the triggers is
:mod:`phs_optax_training.engine`, the one ``train.py`` runs too. Each
configuration's batches are those of ``train.py`` with the same seed
(``train_lib.epoch_permutation``): a goal-oriented run and its PHS and SGD
baselines of the same seed see the same batches in the same order (common
random numbers), and every configuration ends where it would if trained alone.

A sweep is resumable: each finished configuration has a ``summary.json`` in its
folder and is skipped when the sweep is run again. The named sweeps of the
paper are in :mod:`phs_optax_training.experiments`; the command line is
:mod:`phs_optax_training.sweep`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

import phs_optax
from phs_optax_models import LeNet5
from phs_optax_training import data as data_lib
from phs_optax_training import engine, strict_json, train_lib, workdirs
from phs_optax_training.config import (
    EXTENSION_DEFAULTS,
    TrainConfig,
    extension_options,
    run_name,
    validate,
    without_extensions,
)
from phs_optax_training.model import create_model

PER_CONFIG_FIELDS = ("optimizer", "learning_rate", "mass", "friction", "goal", "brake_factor", "sgd_momentum", "sgd_schedule", "brake_trigger", "brake_at_step", "seed", *EXTENSION_DEFAULTS)  # fmt: skip
GROUPS = ("phs", "phs-step", "phs-validation", "sgd")
_WITHOUT_GOAL = ("phs-step", "phs-validation")

Log = Callable[[str], None]


# --- groups: configurations that share an optimizer state structure -------------


def group_of(config: TrainConfig) -> str:
    """Configurations of one group share an optimizer state structure.

    ``phs``: PHS and goal-oriented PHS (PHS is goal_phs with brake factor 1);
    ``phs-step``: goal_phs braked at a fixed step (no goal in its state);
    ``phs-validation``: goal_phs braked on a rising validation loss (no goal);
    ``sgd``: SGD with or without momentum, optionally with a learning-rate drop;
    ``goal-ext:<options>``: goal_phs with options beyond the paper (one group
    per set of options, as the options shape the state).
    """
    if config.optimizer == "sgd":
        return "sgd"
    if config.brake_trigger == "step":
        return "phs-step"
    if config.brake_trigger == "validation":
        return "phs-validation"
    options = extension_options(config)
    if options:
        return "goal-ext:" + ",".join(f"{k}={v}" for k, v in options.items())
    return "phs"


def _check_shared(configs: Sequence[TrainConfig]) -> None:
    """Configurations of one sweep may differ only in PER_CONFIG_FIELDS."""
    shared = [
        {k: v for k, v in dataclasses.asdict(c).items() if k not in PER_CONFIG_FIELDS}
        for c in configs
    ]
    for config, fields in zip(configs, shared, strict=True):
        if fields != shared[0]:
            differing = sorted(k for k in fields if fields[k] != shared[0][k])
            raise ValueError(
                f"configuration {run_name(config)} differs from the first in "
                f"{', '.join(differing)}; a sweep shares everything but "
                f"{', '.join(PER_CONFIG_FIELDS)}"
            )


def _group_optimizer(group: str, config: TrainConfig) -> optax.GradientTransformation:
    """One transformation for the whole group; its numbers live in the state."""
    if group == "sgd":
        return optax.inject_hyperparams(optax.sgd)(learning_rate=1.0, momentum=0.0)
    options = extension_options(config) if group.startswith("goal-ext:") else {}
    return optax.inject_hyperparams(phs_optax.goal_phs, hyperparam_dtype=jnp.float32)(
        **options,
        learning_rate=1.0,
        mass=1.0,
        friction=1.0,
        goal=None if group in _WITHOUT_GOAL else 0.5,
        brake_factor=1.0,
        integrator=config.integrator,
        drag=config.drag,
        **_shared_goal_phs_options(config),
    )


def _shared_goal_phs_options(config: TrainConfig) -> dict:
    """The goal_phs options the sweep's configurations share: all but those
    beyond the paper, which shape the group (see :func:`group_of`)."""
    return {
        option.name: getattr(config, option.name)
        for option in phs_optax.OPTIONS
        if option.group != "beyond"
    }


def _hyperparams(group: str, config: TrainConfig) -> dict[str, float]:
    """The numbers ``config`` puts into its group's injected hyperparameters."""
    if group == "sgd":
        return {"learning_rate": config.learning_rate, "momentum": config.sgd_momentum}
    is_goal = config.optimizer == "goal_phs"
    values = {
        "learning_rate": config.learning_rate,
        "mass": config.mass,
        "friction": config.friction,
        "brake_factor": config.brake_factor if is_goal else 1.0,
    }
    if group not in _WITHOUT_GOAL:
        values["goal"] = config.goal if is_goal else 0.5
    return values


def stacked_hyperparams(
    group: str, configs: Sequence[TrainConfig]
) -> dict[str, np.ndarray]:
    """Each hyperparameter of ``group``, one float32 entry per configuration."""
    return {
        key: np.array([_hyperparams(group, c)[key] for c in configs], np.float32)
        for key in _hyperparams(group, configs[0])
    }


def stacked_triggers(
    configs: Sequence[TrainConfig], steps_per_epoch: int
) -> engine.StepTrigger:
    """The configurations' step triggers, stacked (see :func:`engine.step_trigger`)."""
    triggers = [engine.step_trigger(c, steps_per_epoch) for c in configs]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *triggers)


def trigger_kind_of(group: str) -> str | None:
    """What the step trigger does in ``group`` (see :mod:`engine`)."""
    return {"phs-step": "brake", "sgd": "sgd_scale"}.get(group)


# --- the stacked state and the vmapped step ---------------------------------------


def init_stacked(
    model: LeNet5,
    tx: optax.GradientTransformation,
    configs: Sequence[TrainConfig],
    hyperparams: dict[str, np.ndarray],
    sample_input: np.ndarray,
) -> tuple[Any, Any]:
    """Params (from each config's seed) and optimizer states, stacked.

    Each config's params come from train.py's own jitted ``init`` (compiled
    once per process), so they are those of the config trained alone; a
    vmapped ``init`` run eagerly compiles ~10 s of small programs per group.
    """
    params = jax.tree.map(
        lambda *leaves: jnp.stack(leaves),
        *(train_lib.initial_params(model, c.seed, sample_input) for c in configs),
    )
    opt_state = jax.jit(jax.vmap(tx.init))(params)
    # inject_hyperparams' state is the top level: give each config its numbers.
    stacked = {k: jnp.asarray(v, jnp.float32) for k, v in hyperparams.items()}
    opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, **stacked})
    return params, opt_state


def epoch_permutations(
    configs: Sequence[TrainConfig], epoch: int, num_train: int
) -> jax.Array:
    """The configurations' data orders in ``epoch``: one row per configuration,
    or a single permutation when several configurations all have one seed:
    they train on the same batches, and :func:`make_sweep_step` shares them
    (20 configurations 1.5x faster on the 2-core CPU, benchmarks/RESULTS.md).
    A lone configuration keeps its row: sharing gains nothing there, and its
    program stays the one that computed the sweeps in ``results/``."""
    seeds = {c.seed for c in configs}
    if len(configs) > 1 and len(seeds) == 1:
        return jnp.asarray(train_lib.epoch_permutation(seeds.pop(), epoch, num_train))
    return jnp.asarray(
        np.stack(
            [train_lib.epoch_permutation(c.seed, epoch, num_train) for c in configs]
        )
    )


def make_sweep_step(
    apply_fn: Callable[..., jax.Array],
    tx: optax.GradientTransformation,
    batch_size: int,
    steps_per_epoch: int,
    group: str,
) -> Callable:
    """:func:`engine.train_on_batch` of every configuration, vmapped: each
    gathers its own batch, or all take the same one when ``permutations`` is
    one order (1-D). ``triggers`` are the stacked :class:`engine.StepTrigger`."""
    trigger_kind = trigger_kind_of(group)

    def one_config(params, opt_state, step, trigger, permutation, images, labels):
        rows = engine.batch_rows(permutation, step, steps_per_epoch, batch_size)
        result = engine.train_on_batch(
            apply_fn,
            tx,
            params,
            opt_state,
            images[rows],
            labels[rows],
            step,
            trigger,
            trigger_kind=trigger_kind,
        )
        return result.params, result.opt_state, result.loss, result.correct

    def step_all(
        params, opt_state, totals, step, triggers, permutations, images, labels
    ):
        # One data order for all (see epoch_permutations): the batch is not
        # vmapped, so the first convolution becomes one convolution with every
        # configuration's kernels side by side instead of a grouped one.
        order_axis = None if permutations.ndim == 1 else 0
        params, opt_state, loss, correct = jax.vmap(
            one_config, in_axes=(0, 0, None, 0, order_axis, None, None)
        )(params, opt_state, step, triggers, permutations, images, labels)
        zero = jnp.zeros_like(loss)
        totals = totals + jnp.stack([loss * batch_size, correct, zero], axis=1)
        # Column 2: each configuration's first update with a non-finite loss.
        nonfinite = jnp.where(jnp.isfinite(loss), jnp.inf, step.astype(jnp.float32))
        return params, opt_state, totals.at[:, 2].min(nonfinite), step + 1

    return jax.jit(step_all, donate_argnums=(0, 1, 2))


def make_sweep_eval(
    apply_fn: Callable[..., jax.Array], batch_size: int, num_examples: int
) -> Callable:
    """Loss sum, correct and example count of one padded batch, for every config."""

    def eval_batch(params, images, labels, batch_index):
        x, y, mask = engine.padded_batch(
            images, labels, batch_index * batch_size, batch_size, num_examples
        )
        return jax.vmap(lambda p: engine.eval_sums(apply_fn, p, x, y, mask))(params)

    return jax.jit(eval_batch)


# --- one group: compiled once, trained in chunks ------------------------------------


@dataclasses.dataclass
class _GroupProgram:
    """What every chunk of a group shares: the model and compiled functions."""

    group: str
    model: LeNet5
    tx: optax.GradientTransformation
    step_all: Any
    eval_batches: dict[str, Any]  # split name -> compiled evaluation
    steps_per_epoch: int


def _compile_group(
    group: str, base: TrainConfig, dataset: data_lib.Dataset
) -> _GroupProgram:
    splits = train_lib.split_data(dataset, base)
    steps_per_epoch = len(splits["train"].labels) // base.batch_size
    model = create_model(base, dataset.num_classes)
    tx = _group_optimizer(group, base)
    return _GroupProgram(
        group=group,
        model=model,
        tx=tx,
        step_all=make_sweep_step(
            model.apply, tx, base.batch_size, steps_per_epoch, group
        ),
        eval_batches={
            name: make_sweep_eval(model.apply, base.eval_batch_size, len(split.labels))
            for name, split in splits.items()
            if name != "train"
        },
        steps_per_epoch=steps_per_epoch,
    )


def _on_device(splits: dict[str, train_lib.Split]) -> dict[str, train_lib.Split]:
    return {
        name: train_lib.Split(jnp.asarray(s.images), jnp.asarray(s.labels))
        for name, s in splits.items()
    }


def _slice(tree: Any, index: int) -> Any:
    return jax.tree.map(lambda x: x[index], tree)


def _evaluate_all(eval_batch, params, split: train_lib.Split, batch_size: int):
    """Mean loss and accuracy of every configuration on ``split``."""
    num_examples = len(split.labels)
    totals = 0.0
    for batch_index in range(-(-num_examples // batch_size)):
        totals = totals + eval_batch(params, split.images, split.labels, batch_index)
    totals = np.asarray(totals, np.float64)
    return totals[:, 0] / totals[:, 2], totals[:, 1] / totals[:, 2]


def evaluation(
    program: _GroupProgram,
    params: Any,
    splits: dict[str, train_lib.Split],
    batch_size: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split name -> per-configuration mean loss and accuracy, for every split
    but the training one."""
    return {
        name: _evaluate_all(evaluate, params, splits[name], batch_size)
        for name, evaluate in program.eval_batches.items()
    }


class _ValidationTriggers:
    """The validation trigger of each configuration (None: it has none)."""

    def __init__(self, configs: Sequence[TrainConfig]):
        self.rules = [
            engine.ValidationBrake(c.validation_patience)
            if c.brake_trigger in ("validation", "both")
            else None
            for c in configs
        ]

    def apply(self, opt_state: Any, evaluations: dict[str, tuple]) -> Any:
        """``opt_state`` braked where this epoch's validation loss trips the rule."""
        if not any(self.rules):
            return opt_state
        validation_loss = evaluations["validation"][0]
        brake_now = [
            rule is not None and rule.should_brake(float(loss))
            for rule, loss in zip(self.rules, validation_loss, strict=True)
        ]
        if any(brake_now):
            opt_state = engine.brake_where(opt_state, jnp.asarray(brake_now))
        return opt_state


def _row_for(config, opt_state, epoch, step, train, evaluations, seconds, wall):
    """One metrics.jsonl row, in train.py's format."""
    train_loss, train_accuracy, nonfinite_step = train
    kinetic, hamiltonian = train_lib.energy(opt_state, config, train_loss)
    validation = evaluations.get("validation")
    return {
        "epoch": epoch,
        "step": step,
        "train_loss": train_loss,
        "train_accuracy": train_accuracy,
        "test_loss": evaluations["test"][0],
        "test_accuracy": evaluations["test"][1],
        "validation_loss": None if validation is None else validation[0],
        "validation_accuracy": None if validation is None else validation[1],
        **train_lib.brake_info(opt_state, config, step),
        "kinetic_energy": kinetic,
        "hamiltonian": hamiltonian,
        "images_per_second": seconds,
        "wall_time": wall,
        "diverged_at_step": None if np.isinf(nonfinite_step) else int(nonfinite_step),
    }


def _train_epoch(program, params, opt_state, step, triggers, permutations, train):
    """One epoch of updates of every configuration; also returns each one's
    summed training loss, correct count and first update with a non-finite
    loss (inf: none) as float64[n, 3]."""
    num_configs = triggers.brake_at.shape[0]
    totals = jnp.zeros((num_configs, 3), jnp.float32).at[:, 2].set(jnp.inf)
    for _ in range(program.steps_per_epoch):
        params, opt_state, totals, step = program.step_all(
            params,
            opt_state,
            totals,
            step,
            triggers,
            permutations,
            train.images,
            train.labels,
        )
    return params, opt_state, step, np.asarray(totals, np.float64)


def _epoch_rows(configs, opt_state, epoch, step, totals, evaluations, rate, wall):
    """Each configuration's metrics.jsonl row of this epoch (``totals`` from
    :func:`_train_epoch`, the sums already divided by the example count)."""
    return [
        _row_for(
            config,
            _slice(opt_state, i),
            epoch,
            int(step),
            (totals[i, 0], totals[i, 1], totals[i, 2]),
            {
                name: (float(loss[i]), float(accuracy[i]))
                for name, (loss, accuracy) in evaluations.items()
            },
            rate,
            wall,
        )
        for i, config in enumerate(configs)
    ]


def _train_chunk(
    program: _GroupProgram,
    configs: Sequence[TrainConfig],
    dataset: data_lib.Dataset,
    log: Log,
) -> tuple[list[list[dict]], Any]:
    """Trains ``configs`` (one validation split: one seed if it holds one) in
    one vmapped program; returns histories and params."""
    base = configs[0]
    splits = _on_device(train_lib.split_data(dataset, base))
    train = splits["train"]
    params, opt_state = init_stacked(
        program.model,
        program.tx,
        configs,
        stacked_hyperparams(program.group, configs),
        train.images[:1],
    )
    count = program.steps_per_epoch * base.batch_size
    step = jnp.zeros([], jnp.int32)
    triggers = stacked_triggers(configs, program.steps_per_epoch)
    validation_triggers = _ValidationTriggers(configs)
    histories: list[list[dict]] = [[] for _ in configs]
    start = time.time()
    for epoch in range(1, base.num_epochs + 1):
        permutations = epoch_permutations(configs, epoch, len(train.labels))
        epoch_start = time.time()
        params, opt_state, step, totals = _train_epoch(
            program, params, opt_state, step, triggers, permutations, train
        )
        seconds = time.time() - epoch_start
        evaluations = evaluation(program, params, splits, base.eval_batch_size)
        opt_state = validation_triggers.apply(opt_state, evaluations)
        rows = _epoch_rows(
            configs,
            opt_state,
            epoch,
            step,
            np.concatenate([totals[:, :2] / count, totals[:, 2:]], axis=1),
            evaluations,
            count / seconds,
            time.time() - start,
        )
        for config, history, row in zip(configs, histories, rows, strict=True):
            if (
                row["diverged_at_step"] is not None
                and train_lib.diverged_at(history) is None
            ):
                log(
                    f"[{program.group}] {run_name(config)} diverged at update "
                    f"{row['diverged_at_step']} (epoch {epoch}); recorded, the "
                    "others train on"
                )
            history.append(row)
        log(
            f"[{program.group}] epoch {epoch}/{base.num_epochs}: {len(configs)} "
            f"configs, {len(configs) * count / seconds:.0f} img/s summed, best test "
            f"acc {float(np.max(evaluations['test'][1])):.4f}"
        )
    return histories, params


def _chunks(configs: Sequence[TrainConfig], size: int) -> list[list[TrainConfig]]:
    """Consecutive chunks of at most ``size`` in seed order; with a validation
    split (drawn per seed) a chunk holds one seed only."""
    configs = sorted(configs, key=lambda c: c.seed)
    by_split = [configs]
    if configs[0].validation_fraction > 0:
        seeds = sorted({c.seed for c in configs})
        by_split = [[c for c in configs if c.seed == seed] for seed in seeds]
    return [
        members[first : first + size]
        for members in by_split
        for first in range(0, len(members), size)
    ]


def run_group(
    group: str,
    configs: Sequence[TrainConfig],
    dataset: data_lib.Dataset,
    sweep_dir: Path,
    *,
    configs_per_program: int | None = None,
    log: Log = print,
) -> dict[str, dict]:
    """Trains ``configs`` (all of ``group``), ``configs_per_program`` at a time
    (default: all at once) through one compiled program; writes each
    configuration's files as soon as its chunk is done. Chunks are taken in
    seed order, so that a chunk of one seed shares its batches."""
    program = _compile_group(group, configs[0], dataset)
    summaries = {}
    for members in _chunks(configs, configs_per_program or len(configs)):
        histories, params = _train_chunk(program, members, dataset, log)
        for i, (config, history) in enumerate(zip(members, histories, strict=True)):
            summaries[run_name(config)] = _write_run(
                sweep_dir,
                config,
                history,
                _slice(params, i),
                program,
                dataset,
                len(members),
            )
    return summaries


def _write_run(sweep_dir, config, history, params, program, dataset, group_size):
    """A run's train.py files in ``sweep_dir / run_name(config)``; its summary."""
    workdir = sweep_dir / run_name(config)
    workdir.mkdir(parents=True, exist_ok=True)
    train_lib.write_metrics(workdir / "metrics.jsonl", history)
    (workdir / "params.msgpack").write_bytes(flax.serialization.to_bytes(params))
    num_params = sum(x.size for x in jax.tree.leaves(params))
    summary = train_lib.build_summary(
        config, history, program.steps_per_epoch, num_params, dataset
    )
    summary["sweep_group"] = program.group
    summary["sweep_configs_per_program"] = group_size
    strict_json.write(workdir / "summary.json", summary)
    return summary


# --- a whole sweep ---------------------------------------------------------------------


def is_done(sweep_dir: Path, config: TrainConfig) -> bool:
    """Whether ``config``'s run in ``sweep_dir`` has finished all its epochs."""
    summary = sweep_dir / run_name(config) / "summary.json"
    return (
        summary.exists()
        and json.loads(summary.read_text())["epochs_done"] >= config.num_epochs
    )


def checked_configs(configs: Sequence[TrainConfig]) -> list[TrainConfig]:
    """The configurations as the sweep trains them; raises ValueError for one it
    cannot train, or for the same configuration twice.

    Options beyond the paper act on goal_phs only; baselines run without them.
    """
    configs = [
        c if c.optimizer == "goal_phs" else without_extensions(c) for c in configs
    ]
    _check_shared(configs)
    for config in configs:
        validate(config, num_devices=1)
    names = [run_name(c) for c in configs]
    if len(set(names)) != len(names):
        raise ValueError("a sweep holds the same configuration twice")
    return configs


def _groups_in_order(configs: Sequence[TrainConfig]) -> list[str]:
    """The groups of ``configs``: those of GROUPS in that order, then the rest."""
    found = list(dict.fromkeys(group_of(c) for c in configs))
    return [g for g in GROUPS if g in found] + [g for g in found if g not in GROUPS]


def run_sweep(
    configs: Sequence[TrainConfig],
    sweep_dir: str | Path,
    *,
    dataset: data_lib.Dataset | None = None,
    configs_per_program: int | None = None,
    worker: int = 0,
    num_workers: int = 1,
    log: Log = print,
    lock: bool = True,
) -> dict[str, dict]:
    """Runs the configurations not yet done, grouped; returns the finished summaries.

    ``configs_per_program`` limits how many configurations one vmapped program
    trains at once (all by default). On a CPU, 1 is fastest: XLA turns a
    vmapped convolution with per-configuration kernels into a grouped
    convolution that is slower than running the configurations one by one
    (the compiled program is still shared), even when a program's
    configurations share their batches (one seed, see
    :func:`epoch_permutations`). See benchmarks for measurements.

    ``worker`` of ``num_workers`` trains only configurations ``worker``,
    ``worker + num_workers``, ... of the list, so that several processes can
    share one sweep folder (e.g. one per CPU core, see ``--processes``).
    The Markdown table lists every configuration finished so far.

    With ``lock`` and one worker, the call holds ``sweep_dir``'s lock
    (``workdirs.locked``): a second sweep or run in the same folder fails with
    ``WorkdirInUseError`` instead of training the same runs twice. Workers of
    one sweep do not lock; the process that starts them holds the lock.
    """
    if not 0 <= worker < num_workers:
        raise ValueError(f"worker={worker} must lie in [0, num_workers={num_workers})")
    if configs_per_program is not None and configs_per_program < 1:
        raise ValueError(
            f"configs_per_program={configs_per_program} must be at least 1 "
            "(or None: all at once)"
        )
    sweep_dir = Path(sweep_dir)
    configs = checked_configs(configs)
    if lock and num_workers == 1:
        with workdirs.locked(sweep_dir):
            return _run_sweep(
                configs, sweep_dir, dataset, configs_per_program, 0, 1, log
            )
    return _run_sweep(
        configs, sweep_dir, dataset, configs_per_program, worker, num_workers, log
    )


def _run_sweep(
    configs: list[TrainConfig],
    sweep_dir: Path,
    dataset: data_lib.Dataset | None,
    configs_per_program: int | None,
    worker: int,
    num_workers: int,
    log: Log,
) -> dict[str, dict]:
    mine = configs[worker::num_workers]
    todo = [c for c in mine if not is_done(sweep_dir, c)]
    if len(todo) < len(mine):
        log(
            f"{len(mine) - len(todo)} of {len(mine)} configurations done already; skipped"
        )
    if todo and dataset is None:
        dataset = data_lib.load_dataset(configs[0].dataset, configs[0].data_dir)
    for group in _groups_in_order(todo):
        run_group(
            group,
            [c for c in todo if group_of(c) == group],
            dataset,
            sweep_dir,
            configs_per_program=configs_per_program,
            log=log,
        )
    finished = [c for c in configs if is_done(sweep_dir, c)]
    summaries = {
        run_name(c): json.loads((sweep_dir / run_name(c) / "summary.json").read_text())
        for c in finished
    }
    (sweep_dir / "results.md").write_text(markdown_table(finished, summaries))
    return summaries


# --- results.md ---------------------------------------------------------------------


def markdown_table(configs: Sequence[TrainConfig], summaries: dict[str, dict]) -> str:
    """One row per configuration, then mean and spread over seeds."""
    lines = [
        "| optimizer | lr | friction | mass | goal | brake factor | seed | final test acc | best test acc | brake epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[TrainConfig, list[dict]] = {}
    for config in configs:
        summary = summaries[run_name(config)]
        groups.setdefault(_without_seed(config), []).append(summary)
        lines.append(
            "| "
            + " | ".join(
                [
                    *_describe(config),
                    str(config.seed),
                    f"{summary['final_test_accuracy']:.4f}"
                    + (" (diverged)" if summary.get("diverged") else ""),
                    f"{summary['best_test_accuracy']:.4f}",
                    _brake(summary["brake_epoch"]),
                ]
            )
            + " |"
        )
    lines += [
        "",
        "| optimizer | lr | friction | mass | goal | brake factor | seeds | final test acc (mean ± std) | best test acc (mean ± std) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, members in groups.items():
        final = np.array([s["final_test_accuracy"] for s in members])
        best = np.array([s["best_test_accuracy"] for s in members])
        lines.append(
            "| "
            + " | ".join(
                [
                    *_describe(key),
                    str(len(members)),
                    _mean_std(final),
                    _mean_std(best),
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def _mean_std(values: np.ndarray) -> str:
    return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0:.4f}"


def _without_seed(config: TrainConfig) -> TrainConfig:
    return dataclasses.replace(config, seed=0)


_VALIDATION_TRIGGER_NAMES = {
    "validation": "brake on validation",
    "both": "brake on goal or validation",
}


def _describe(config: TrainConfig) -> list[str]:
    """The table's optimizer, lr, friction, mass, goal and brake factor cells;
    a validation trigger is named after the optimizer, and a goal it does not
    use is left out."""
    phs_like = config.optimizer != "sgd"
    goal_like = config.optimizer == "goal_phs"
    drops = not phs_like and config.brake_trigger == "step"
    trigger = _VALIDATION_TRIGGER_NAMES.get(config.brake_trigger)
    uses_goal = goal_like and config.brake_trigger != "validation"
    if not phs_like:
        name = _sgd_name(config)
    else:
        name = config.optimizer if trigger is None else f"{config.optimizer}, {trigger}"
    return [
        name,
        f"{config.learning_rate:g}",
        f"{config.friction:g}" if phs_like else "/",
        f"{config.mass:g}" if phs_like else "/",
        f"{config.goal:g}" if uses_goal else "/",
        f"{config.brake_factor:g}" if goal_like or drops else "/",
    ]


def _sgd_name(config: TrainConfig) -> str:
    """ "sgd" with its momentum, schedule and learning-rate drop, if any."""
    parts = ["sgd"]
    if config.sgd_momentum:
        parts.append(f"momentum {config.sgd_momentum:.4g}")
    if config.sgd_schedule != "constant":
        parts.append(config.sgd_schedule)
    if config.brake_trigger == "step":
        parts.append(f"drop at update {config.brake_at_step}")
    return ", ".join(parts)


def _brake(brake_epoch: float | None) -> str:
    return "-" if brake_epoch is None else f"{brake_epoch:.2f}"
