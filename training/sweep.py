"""Many training configurations as one compiled program (``jax.vmap`` over them).

Parameters and optimizer states of all configurations are stacked along a
leading axis and one jitted, vmapped step advances them together. The
hyperparameters are arrays in the optimizer state (``optax.inject_hyperparams``),
so configurations that differ only in numbers share one program:

* group ``"phs"``: ``phs`` and ``goal_phs`` rows together, a PHS row being
  ``goal_phs`` with ``brake_factor=1`` (the same dynamics, tested in
  ``tests/test_reference.py``);
* group ``"sgd"``: ``optax.sgd`` rows, whose state has another structure.

Each configuration's batches are those of ``train.py`` with the same seed
(``train_lib.epoch_permutation``): a goal-oriented run and its PHS and SGD
baselines of the same seed see the same batches in the same order (common
random numbers), and every configuration ends where it would if trained alone.

A sweep is resumable: each finished configuration has a ``summary.json`` in its
folder and is skipped when the sweep is run again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

import phs_optax
from phs_optax_models import LeNet5
from phs_optax_training import compilation_cache, engine, presets, train_lib, xla_flags
from phs_optax_training import data as data_lib
from phs_optax_training.config import (
    CONV_IMPLS,
    EXTENSION_DEFAULTS,
    TrainConfig,
    extension_options,
    run_name,
    validate,
    without_extensions,
)
from phs_optax_training.model import create_model

PER_CONFIG_FIELDS = ("optimizer", "learning_rate", "mass", "friction", "goal", "brake_factor", "sgd_momentum", "brake_trigger", "brake_at_step", "seed", *EXTENSION_DEFAULTS)  # fmt: skip
GROUPS = ("phs", "phs-step", "phs-validation", "sgd")
_WITHOUT_GOAL = ("phs-step", "phs-validation")


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
        ema_decay=config.ema_decay,
        accumulation_size=config.accumulation_size,
    )


def _hyperparams(group: str, config: TrainConfig) -> dict[str, float]:
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


def stacked_triggers(configs: Sequence[TrainConfig]) -> engine.StepTrigger:
    """The configurations' step triggers, stacked (see :func:`engine.step_trigger`)."""
    triggers = [engine.step_trigger(c) for c in configs]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *triggers)


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
    vmapped ``init`` run eagerly compiled ~10 s of small programs per group.
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


def trigger_kind_of(group: str) -> str | None:
    """What the step trigger does in ``group`` (see :mod:`engine`)."""
    return {"phs-step": "brake", "sgd": "sgd_drop"}.get(group)


def make_sweep_step(apply_fn, tx, batch_size: int, steps_per_epoch: int, group: str):
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
        totals = totals + jnp.stack([loss * batch_size, correct], axis=1)
        return params, opt_state, totals, step + 1

    return jax.jit(step_all, donate_argnums=(0, 1, 2))


def make_sweep_eval(apply_fn, batch_size: int, num_examples: int):
    """Loss sum, correct and example count of one padded batch, for every config."""

    def eval_batch(params, images, labels, batch_index):
        x, y, mask = engine.padded_batch(
            images, labels, batch_index * batch_size, batch_size, num_examples
        )
        return jax.vmap(lambda p: engine.eval_sums(apply_fn, p, x, y, mask))(params)

    return jax.jit(eval_batch)


def _evaluate_all(eval_batch, params, images, labels, num_examples, batch_size):
    totals = 0.0
    for batch_index in range(-(-num_examples // batch_size)):
        totals = totals + eval_batch(params, images, labels, batch_index)
    totals = np.asarray(totals, np.float64)
    return totals[:, 0] / totals[:, 2], totals[:, 1] / totals[:, 2]


def _slice(tree: Any, index: int) -> Any:
    return jax.tree.map(lambda x: x[index], tree)


def _row_for(config, opt_state, epoch, step, train, evaluations, seconds, wall):
    """One metrics.jsonl row, in train.py's format."""
    train_loss, train_accuracy = train
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
        **train_lib.brake_info(opt_state, config, step),
        "kinetic_energy": kinetic,
        "hamiltonian": hamiltonian,
        "images_per_second": seconds,
        "wall_time": wall,
    }


@dataclasses.dataclass
class _GroupProgram:
    """What every chunk of a group shares: the model and compiled functions."""

    group: str
    model: LeNet5
    tx: optax.GradientTransformation
    step_all: Any
    eval_batches: dict[str, Any]  # split name -> compiled evaluation
    steps_per_epoch: int


def _compile_group(group: str, base: TrainConfig, dataset: data_lib.Dataset):
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


def _train_chunk(
    program: _GroupProgram,
    configs: Sequence[TrainConfig],
    dataset: data_lib.Dataset,
    log,
):
    """Trains ``configs`` (one validation split: one seed if it holds one) in
    one vmapped program; returns histories and params."""
    base, group = configs[0], program.group
    splits = _on_device(train_lib.split_data(dataset, base))
    train = splits["train"]
    hyperparams = {
        key: np.array([_hyperparams(group, c)[key] for c in configs], np.float32)
        for key in _hyperparams(group, base)
    }
    params, opt_state = init_stacked(
        program.model, program.tx, configs, hyperparams, train.images[:1]
    )
    count = program.steps_per_epoch * base.batch_size
    step = jnp.zeros([], jnp.int32)
    triggers = stacked_triggers(configs)
    on_validation = [c.brake_trigger in ("validation", "both") for c in configs]
    validation_brakes = [engine.ValidationBrake(c.validation_patience) for c in configs]
    histories: list[list[dict]] = [[] for _ in configs]
    start = time.time()
    for epoch in range(1, base.num_epochs + 1):
        permutations = epoch_permutations(configs, epoch, len(train.labels))
        totals = jnp.zeros((len(configs), 2), jnp.float32)
        epoch_start = time.time()
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
        totals = np.asarray(totals, np.float64)
        seconds = time.time() - epoch_start
        evaluations = {
            name: _evaluate_all(
                evaluate,
                params,
                splits[name].images,
                splits[name].labels,
                len(splits[name].labels),
                base.eval_batch_size,
            )
            for name, evaluate in program.eval_batches.items()
        }
        if any(on_validation):
            validation_loss = evaluations["validation"][0]
            brake_now = [
                wanted and rule.should_brake(float(loss))
                for wanted, rule, loss in zip(
                    on_validation, validation_brakes, validation_loss, strict=True
                )
            ]
            if any(brake_now):
                opt_state = engine.brake_where(opt_state, jnp.asarray(brake_now))
        for i, config in enumerate(configs):
            histories[i].append(
                _row_for(
                    config,
                    _slice(opt_state, i),
                    epoch,
                    int(step),
                    (totals[i, 0] / count, totals[i, 1] / count),
                    {
                        name: (float(loss[i]), float(accuracy[i]))
                        for name, (loss, accuracy) in evaluations.items()
                    },
                    count / seconds,
                    time.time() - start,
                )
            )
        log(
            f"[{group}] epoch {epoch}/{base.num_epochs}: {len(configs)} configs, "
            f"{len(configs) * count / seconds:.0f} img/s summed, best test acc "
            f"{float(np.max(evaluations['test'][1])):.4f}"
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
    log=print,
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
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def is_done(sweep_dir: Path, config: TrainConfig) -> bool:
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


def run_sweep(
    configs: Sequence[TrainConfig],
    sweep_dir: str | Path,
    *,
    dataset: data_lib.Dataset | None = None,
    configs_per_program: int | None = None,
    worker: int = 0,
    num_workers: int = 1,
    log=print,
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
    mine = configs[worker::num_workers]
    todo = [c for c in mine if not is_done(sweep_dir, c)]
    if len(todo) < len(mine):
        log(
            f"{len(mine) - len(todo)} of {len(mine)} configurations done already; skipped"
        )
    if todo and dataset is None:
        dataset = data_lib.load_dataset(configs[0].dataset, configs[0].data_dir)
    found = list(dict.fromkeys(group_of(c) for c in todo))
    for group in [g for g in GROUPS if g in found] + [
        g for g in found if g not in GROUPS
    ]:
        members = [c for c in todo if group_of(c) == group]
        if members:
            run_group(
                group,
                members,
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


def markdown_table(configs: Sequence[TrainConfig], summaries: dict[str, dict]) -> str:
    """One row per configuration, then mean and spread over seeds."""
    lines = [
        "| optimizer | lr | friction | mass | goal | brake factor | seed | final test acc | best test acc | brake epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for config in configs:
        summary = summaries[run_name(config)]
        key = _without_seed(config)
        groups.setdefault(key, []).append(summary)
        lines.append(
            "| "
            + " | ".join(
                [
                    *_describe(config),
                    str(config.seed),
                    f"{summary['final_test_accuracy']:.4f}",
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
                    f"{final.mean():.4f} ± {final.std(ddof=1) if len(final) > 1 else 0:.4f}",
                    f"{best.mean():.4f} ± {best.std(ddof=1) if len(best) > 1 else 0:.4f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def _without_seed(config: TrainConfig) -> TrainConfig:
    return dataclasses.replace(config, seed=0)


def _describe(config: TrainConfig) -> list[str]:
    phs_like = config.optimizer != "sgd"
    goal_like = config.optimizer == "goal_phs"
    return [
        config.optimizer,
        f"{config.learning_rate:g}",
        f"{config.friction:g}" if phs_like else "/",
        f"{config.mass:g}" if phs_like else "/",
        f"{config.goal:g}" if goal_like else "/",
        f"{config.brake_factor:g}" if goal_like else "/",
    ]


def _brake(brake_epoch: float | None) -> str:
    return "-" if brake_epoch is None else f"{brake_epoch:.2f}"


# --- named sweeps -----------------------------------------------------------------


def table_configs(
    table: str, reading: str, seeds: Sequence[int], base: TrainConfig
) -> list[TrainConfig]:
    """Every row of the paper's ``table`` for each seed, goals read as ``reading``."""
    configs = []
    for preset in presets.table_presets(table):
        values = presets.config_values(preset, reading)
        configs += [dataclasses.replace(base, **values, seed=s) for s in seeds]
    return configs


FIGURE1_MASSES = (0.1, 1.0, 10.0, 100.0)
FIGURE1_FRICTIONS = (0.01, 0.1, 1.0, 10.0)


def figure1_configs(seeds: Sequence[int], base: TrainConfig) -> list[TrainConfig]:
    """PHS at alpha = 0.1 on Fashion-MNIST over a mass x friction grid (Figure 1)."""
    return [
        dataclasses.replace(
            base,
            dataset="fashion_mnist",
            optimizer="phs",
            learning_rate=0.1,
            mass=m,
            friction=f,
            seed=s,
        )
        for m in FIGURE1_MASSES
        for f in FIGURE1_FRICTIONS
        for s in seeds
    ]


def protocol_configs(seeds: Sequence[int], base: TrainConfig) -> list[TrainConfig]:
    """Table 2's alpha = 0.1 and 0.001 rows, goals under both readings: the
    pilot for settling the protocol (drag, batch size, smoothing) per sweep."""
    configs = []
    for reading in presets.READINGS:
        for config in table_configs("table2", reading, seeds, base):
            if config.learning_rate in (0.1, 0.001) and config not in configs:
                configs.append(config)
    return configs


ABLATION_LEARNING_RATES = (0.1, 0.001)
ABLATION_FIXED_BRAKE_EPOCHS = (1, 10)


def heavy_ball_equivalent(config: TrainConfig) -> tuple[float, float, float]:
    """SGD learning rate and momentum that run the same iteration as PHS before
    the brake, and the drop of the effective step that braking causes.

    With ``integrator="conformal"`` and ``drag="momentum"`` PHS is exactly
    SGD with momentum: p <- exp(-alpha gamma) p - alpha g, theta <- theta +
    (alpha / m) p, i.e. learning rate alpha^2 / m and momentum
    beta = exp(-alpha gamma). Braking turns beta into exp(-alpha gamma F) and so
    divides the effective step lr / (1 - beta) by (1 - beta_F) / (1 - beta),
    which is about F when alpha gamma F is small.
    """
    if (config.integrator, config.drag) != ("conformal", "momentum"):
        raise ValueError(
            "the heavy-ball equivalent is exact only for integrator=conformal, "
            f"drag=momentum; got {config.integrator}, {config.drag}"
        )
    rate = config.learning_rate * config.friction
    beta, beta_braked = np.exp(-rate), np.exp(-rate * config.brake_factor)
    return (
        config.learning_rate**2 / config.mass,
        float(beta),
        float((1.0 - beta_braked) / (1.0 - beta)),
    )


def ablation_configs(
    seeds: Sequence[int], base: TrainConfig, reference: str | Path, reading: str
) -> list[TrainConfig]:
    """Does the goal trigger or the drop itself carry the effect?

    For Table 2's goal rows at alpha in ABLATION_LEARNING_RATES, per seed:
    (a) SGD with momentum equal to the PHS iteration (see
    :func:`heavy_ball_equivalent`) whose learning rate drops by the braking's
    drop of the effective step at the update where the goal run of that seed
    braked (read from its summary in the ``reference`` sweep folder; skipped
    if that run never braked); (b) goal_phs braked at the fixed epochs
    ABLATION_FIXED_BRAKE_EPOCHS instead of at the goal.
    """
    configs = []
    goal_rows = [
        c
        for c in table_configs("table2", reading, seeds, base)
        if c.optimizer == "goal_phs" and c.learning_rate in ABLATION_LEARNING_RATES
    ]
    epoch_steps = steps_per_epoch(base, "fashion_mnist")
    for seed in seeds:
        for goal_run in (c for c in goal_rows if c.seed == seed):
            summary_path = Path(reference) / run_name(goal_run) / "summary.json"
            if not summary_path.exists():
                raise ValueError(
                    f"{summary_path} is missing: run the table2-{reading} sweep "
                    "with the same settings first"
                )
            brake_step = json.loads(summary_path.read_text())["brake_step"]
            if brake_step is not None:
                lr, momentum, drop = heavy_ball_equivalent(goal_run)
                configs.append(
                    dataclasses.replace(
                        goal_run,
                        optimizer="sgd",
                        learning_rate=lr,
                        sgd_momentum=momentum,
                        brake_factor=drop,
                        brake_trigger="step",
                        brake_at_step=brake_step,
                    )
                )
            configs += [
                dataclasses.replace(
                    goal_run,
                    brake_trigger="step",
                    brake_at_step=epoch * epoch_steps,
                )
                for epoch in ABLATION_FIXED_BRAKE_EPOCHS
                if epoch < base.num_epochs
            ]
    return configs


TRAIN_SIZES = {"fashion_mnist": 60_000, "cifar10": 50_000}


class RunFraction(float):
    """An option counted in updates, given as a fraction of the run's epochs."""


# The options of goal_phs beyond the paper (issue 6) as measured in
# results/beyond.md, in epochs where they count updates (or as a RunFraction).
# KICK_ENERGY: about the kinetic energy of the stable Table 2 PHS runs at epoch
# ends (0.01-0.1). RELEASE_ENERGY: the median kinetic energy of the first
# braked phase of the re-acceleration trace (results/beyond.md; 5th-95th
# percentile 0.007-0.023). Table 1's deadline is half the run: past the peak of PHS in
# the pairs where PHS declines (epochs 16-41 of 60; 10 of 20 before).
BEYOND_KICK_ENERGY = 0.05
BEYOND_RELEASE_ENERGY = 0.01
BEYOND_VARIANTS = {
    "table2": {
        "release": {"release_after": 1.0},
        "release-kick": {"release_after": 1.0, "kick_energy": BEYOND_KICK_ENERGY},
        "release-energy": {"release_energy": BEYOND_RELEASE_ENERGY},
    },
    "table1": {
        "deadline": {"deadline": RunFraction(0.5), "on_deadline": "restore_best"},
        "adapt": {"goal_patience": 1.0, "goal_decay": 0.9},
    },
}
_OPTIONS_IN_EPOCHS = ("release_after", "deadline", "goal_patience")


def _in_updates(epochs: float, steps_per_epoch: int, num_epochs: int) -> int:
    if isinstance(epochs, RunFraction):
        epochs = epochs * num_epochs
    return int(round(epochs * steps_per_epoch))


def steps_per_epoch(base: TrainConfig, dataset: str) -> int:
    size = TRAIN_SIZES[dataset]
    return min(base.max_train_examples or size, size) // base.batch_size


def beyond_configs(
    table: str,
    seeds: Sequence[int],
    base: TrainConfig,
    variants: Sequence[str] | None = None,
) -> list[TrainConfig]:
    """The paper's goal rows of ``table`` (goal read as the table's default
    reading), each plain and with the option sets of BEYOND_VARIANTS[table]
    named in ``variants`` (default: all)."""
    known = BEYOND_VARIANTS[table]
    unknown = sorted(set(variants or ()) - set(known))
    if unknown:
        raise ValueError(
            f"unknown variant(s) {', '.join(unknown)} of beyond-{table}; "
            f"choose from {', '.join(known)}"
        )
    reading = presets.DEFAULT_GOAL_READING[table]
    goal_rows = [
        c
        for c in table_configs(table, reading, seeds, base)
        if c.optimizer == "goal_phs"
    ]
    epoch = steps_per_epoch(base, presets.DATASETS[table])
    configs = list(goal_rows)
    for variant in known if variants is None else variants:
        options = known[variant]
        values = {
            name: _in_updates(value, epoch, base.num_epochs)
            if name in _OPTIONS_IN_EPOCHS
            else value
            for name, value in options.items()
        }
        configs += [dataclasses.replace(c, **values) for c in goal_rows]
    return configs


NAMED_SWEEPS = (
    "table1",
    "table2-reduction",
    "table2-remaining",
    "figure1",
    "protocol",
    "ablation",
    "beyond-table1",
    "beyond-table2",
)


def named_sweep(
    name: str,
    seeds: Sequence[int],
    base: TrainConfig,
    reference: str | Path | None = None,
    reading: str = "remaining",
    variants: Sequence[str] | None = None,
) -> list[TrainConfig]:
    if variants is not None and not name.startswith("beyond-"):
        raise ValueError(f"--variants applies to the beyond-* sweeps, not {name}")
    if name == "ablation":
        if reference is None:
            raise ValueError("--sweep=ablation needs --reference=<table2 sweep folder>")
        return ablation_configs(seeds, base, reference, reading)
    if name == "table1":
        return table_configs("table1", "reduction", seeds, base)
    if name.startswith("table2-"):
        return table_configs("table2", name.removeprefix("table2-"), seeds, base)
    if name == "figure1":
        return figure1_configs(seeds, base)
    if name == "protocol":
        return protocol_configs(seeds, base)
    if name.startswith("beyond-"):
        return beyond_configs(name.removeprefix("beyond-"), seeds, base, variants)
    raise ValueError(f"unknown sweep {name!r}; choose one of {', '.join(NAMED_SWEEPS)}")


_CORES_VARIABLE = "PHS_SWEEP_CORES"


def default_configs_per_program() -> int | None:
    """1 on a CPU, None (all at once) on an accelerator.

    On the CPU, vmapped configurations run slower than the same configurations
    one after another through the shared program, even when they share their
    batches (benchmarks/RESULTS.md, ``compare.py --only sweep``)."""
    return 1 if jax.default_backend() == "cpu" else None


def default_processes(num_configs: int) -> int:
    """On a CPU, one worker process per usable core, at most one per
    configuration; 1 on an accelerator.

    On a CPU, processes pinned to a core each train faster than one process
    using every core, whether it runs the configurations one by one or vmapped
    (images/s 1.56-1.75x with 2 processes on a 2-core VM in ``compare.py
    --only sweep``; a 3-epoch protocol sweep 1.42x faster; benchmarks/RESULTS.md)."""
    if jax.default_backend() != "cpu":
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), num_configs))


def _without_flag(argv: list[str], flag: str) -> list[str]:
    kept, skip_value = [], False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg == flag:
            skip_value = True
        elif not arg.startswith(flag + "="):
            kept.append(arg)
    return kept


def _run_workers(argv: list[str], processes: int) -> None:
    """Runs the sweep in ``processes`` child processes, each pinned to its share
    of this process's CPU cores; raises if one of them fails."""
    cores = sorted(os.sched_getaffinity(0))
    argv = _without_flag(argv, "--processes")
    children = []
    for worker in range(processes):
        share = cores[worker::processes] or cores
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "phs_optax_training.sweep", *argv]
                + [f"--worker={worker}", f"--num_workers={processes}"],
                env={**os.environ, _CORES_VARIABLE: ",".join(map(str, share))},
                stdout=subprocess.DEVNULL,
            )
        )
    failed = [w for w, child in enumerate(children) if child.wait() != 0]
    if failed:
        raise ValueError(f"sweep worker(s) {failed} failed; see their messages above")


def main(argv: Sequence[str] | None = None) -> int:
    # Before JAX initialises its backends; the workers inherit the flag.
    xla_flags.set_cpu_flags()
    parser = argparse.ArgumentParser(
        prog="python -m phs_optax_training.sweep",
        description="Train a named sweep of configurations as one vmapped program.",
    )
    parser.add_argument("--sweep", required=True, choices=NAMED_SWEEPS)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num_epochs", type=int, default=TrainConfig.num_epochs)
    parser.add_argument("--batch_size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--integrator", default=TrainConfig.integrator)
    parser.add_argument("--drag", default=TrainConfig.drag)
    parser.add_argument("--ema_decay", type=float, default=None)
    parser.add_argument("--accumulation_size", type=int, default=None)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--max_train_examples", type=int, default=None)
    parser.add_argument("--max_test_examples", type=int, default=None)
    parser.add_argument(
        "--conv_impl",
        default=TrainConfig.conv_impl,
        choices=CONV_IMPLS,
        help="LeNet-5's conv + pool layers (as train.py's --conv_impl; default: "
        "space_to_depth on a CPU backend, else stock)",
    )
    parser.add_argument(
        "--configs_per_program",
        type=int,
        default=None,
        help="configurations trained at once (default: 1 on a CPU, where it is "
        "fastest, all of a group on an accelerator)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="worker processes sharing the sweep, each pinned to its own CPU cores "
        "(default: on a CPU one per usable core, at most one per configuration, "
        "the fastest way there: 2 on a 2-core VM trained 1.4-1.75x as fast as 1; "
        "1 on an accelerator)",
    )
    parser.add_argument(
        "--compilation_cache_dir",
        default=None,
        help="where JAX keeps compiled programs for later runs (default: "
        "$PHS_OPTAX_CACHE/jax or ~/.cache/phs_optax/jax; empty: off)",
    )
    parser.add_argument(
        "--reference",
        help="ablation: the finished table2 sweep folder whose goal runs set the steps",
    )
    parser.add_argument(
        "--reading",
        default="remaining",
        choices=presets.READINGS,
        help="ablation: the goal reading of the reference goal runs",
    )
    parser.add_argument(
        "--variants",
        help="beyond-* sweeps: comma-separated option sets to run (default all: "
        + "; ".join(f"{t}: {', '.join(v)}" for t, v in BEYOND_VARIANTS.items())
        + ")",
    )
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--num_workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if _CORES_VARIABLE in os.environ:  # a worker: pin before jax starts its threads
        os.sched_setaffinity(
            0, {int(c) for c in os.environ[_CORES_VARIABLE].split(",")}
        )
    if args.processes is not None and args.processes < 1:
        parser.error(f"--processes={args.processes} must be at least 1")
    base = TrainConfig(
        num_epochs=args.num_epochs,
        batch_size=args.batch_size,
        integrator=args.integrator,
        drag=args.drag,
        ema_decay=args.ema_decay,
        accumulation_size=args.accumulation_size,
        data_dir=args.data_dir,
        max_train_examples=args.max_train_examples,
        max_test_examples=args.max_test_examples,
        conv_impl=args.conv_impl,
    )
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        variants = None if args.variants is None else args.variants.split(",")
        configs = named_sweep(
            args.sweep, seeds, base, args.reference, args.reading, variants
        )
        checked_configs(configs)  # before any worker starts, so one message
        if args.num_workers > 1:  # a worker started by _run_workers
            processes = 1
        elif args.processes is not None:
            processes = args.processes
        else:
            processes = default_processes(len(configs))
        if processes > 1:
            _run_workers(list(sys.argv[1:] if argv is None else argv), processes)
        compilation_cache.enable(args.compilation_cache_dir)
        run_sweep(
            configs,
            args.workdir,
            configs_per_program=(
                args.configs_per_program
                if args.configs_per_program is not None
                else default_configs_per_program()
            ),
            worker=args.worker,
            num_workers=args.num_workers,
            log=lambda m: print(m, file=sys.stderr, flush=True),
        )
    except (ValueError, data_lib.DataUnavailableError) as error:
        print(f"sweep: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    print((Path(args.workdir) / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
