"""Per-update trace of one goal_phs run: loss, friction, energy and phases.

The epoch metrics of train.py hide what happens between two evaluations; this
records, for every update, the minibatch loss, the monitored loss, the friction
in force, the kinetic energy ``|p|^2 / (2 m)`` of the momentum after the
update, the gradient norm, and the phase counters (braked, releases), and
plots them with the brakes and releases marked. Single device, same model,
data order and optimizer as train.py::

    python -m phs_optax_training.trace --preset=table2-lr0.01-goal-f1-m0.1 \\
        --num_epochs=3 --release_after=937 --out=results/beyond/trace
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import phs_optax
from phs_optax_training import data as data_lib
from phs_optax_training import (
    engine,
    errors,
    plotting,
    presets,
    strict_json,
    train_lib,
    xla_flags,
)
from phs_optax_training.config import OPTION_NAMES, TrainConfig, validate
from phs_optax_training.model import create_model

TRACE_FILE = "trace.jsonl"


def make_traced_step(apply_fn, tx, mass: float):
    """:func:`engine.train_on_batch`, jitted, plus what the trace records."""
    never = engine.step_trigger(TrainConfig())

    @jax.jit
    def step(params, opt_state, images, labels, count):
        result = engine.train_on_batch(
            apply_fn,
            tx,
            params,
            opt_state,
            images,
            labels,
            count,
            never,
            trigger_kind=None,
        )
        phs_state = phs_optax.find_phs_state(result.opt_state)
        record = {
            "loss": result.loss,
            "monitored_loss": phs_state.monitored_loss,
            "friction": phs_state.friction,
            "kinetic_energy": phs_optax.kinetic_energy(result.opt_state, mass),
            "gradient_norm": optax.tree.norm(result.grads),
            "braked": phs_state.braked,
            "releases": phs_state.releases,
        }
        return result.params, result.opt_state, record

    return step


def trace_run(
    config: TrainConfig, dataset: data_lib.Dataset | None = None
) -> list[dict]:
    """One record per update of ``config`` (goal_phs), in order."""
    validate(config, num_devices=1)
    if config.optimizer != "goal_phs":
        raise ValueError(f"a trace needs --optimizer=goal_phs, got {config.optimizer}")
    if dataset is None:
        dataset = data_lib.load_dataset(config.dataset, config.data_dir)
    splits = train_lib.split_data(dataset, config)
    train = splits["train"]
    model = create_model(config, dataset.num_classes)
    params = train_lib.initial_params(model, config.seed, train.images[:1])
    tx = train_lib.create_optimizer(config)
    opt_state = tx.init(params)
    step = make_traced_step(model.apply, tx, config.mass)
    steps_per_epoch = len(train.labels) // config.batch_size
    total = config.num_epochs * steps_per_epoch
    images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
    records = []
    for k in range(total):
        epoch, position = divmod(k, steps_per_epoch)
        if position == 0:
            order = jnp.asarray(
                train_lib.epoch_permutation(config.seed, epoch, len(train.labels))
            )
        rows = order[position * config.batch_size : (position + 1) * config.batch_size]
        params, opt_state, record = step(
            params, opt_state, images[rows], labels[rows], jnp.int32(k)
        )
        records.append(record)
    host = jax.device_get(records)
    return [
        {"step": k, **{name: _plain(value) for name, value in r.items()}}
        for k, r in enumerate(host)
    ]


def _plain(value) -> float | int | bool:
    value = np.asarray(value)
    if value.dtype == np.bool_:
        return bool(value)
    if np.issubdtype(value.dtype, np.integer):
        return int(value)
    return float(value)


def phase_changes(records: Sequence[dict]) -> tuple[list[int], list[int]]:
    """The updates that first used a raised friction, and the releases."""
    brakes, releases = [], []
    for before, after in zip(records, records[1:], strict=False):
        if after["friction"] > before["friction"]:
            brakes.append(after["step"])
        if after["releases"] > before["releases"]:
            releases.append(after["step"])
    if records and records[0]["braked"]:
        brakes.insert(0, 0)
    return brakes, releases


def trace_chart(records: Sequence[dict], title: str) -> plotting.Chart:
    """What :func:`plot_trace` draws: loss, friction and kinetic energy per
    update (log scale), each brake and release a mark at its update, and the
    first update with a non-finite loss, if any, noted and marked."""
    steps = tuple(float(r["step"]) for r in records)
    brakes, releases = phase_changes(records)
    marks = [plotting.Mark(k, "brake", "tab:red", "--", 0.8) for k in brakes]
    marks += [plotting.Mark(k, "release", "tab:green", ":", 1.0) for k in releases]
    losses = plotting.series(records, "loss")
    diverged = next(
        (r["step"] for r, v in zip(records, losses, strict=True) if not np.isfinite(v)),
        None,
    )
    notes = ()
    if diverged is not None:
        notes = (f"diverged at update {diverged}",)
        marks.append(
            plotting.Mark(diverged, "diverged", plotting.DIVERGED_COLOR, ":", 1.5)
        )

    def panel(ylabel, lines, title="", xlabel="", **fields):
        return plotting.Panel(
            title, xlabel, ylabel, tuple(lines), tuple(marks), log_y=True, **fields
        )

    return plotting.Chart(
        (
            panel(
                "loss",
                [
                    plotting.Line(
                        steps, losses, "minibatch loss", linewidth=0.4, alpha=0.5
                    ),
                    plotting.Line(
                        steps,
                        plotting.series(records, "monitored_loss"),
                        "monitored loss",
                        linewidth=1.0,
                    ),
                ],
                title=f"{title}\nred dashed: brake ({len(brakes)}), green dotted: "
                f"release ({len(releases)})",
                title_size=9,
                notes=notes,
                legend="right",
            ),
            panel(
                "friction in force",
                [plotting.Line(steps, plotting.series(records, "friction"))],
                legend=None,
            ),
            panel(
                "kinetic energy |p|^2/(2m)",
                [
                    plotting.Line(
                        steps,
                        plotting.series(records, "kinetic_energy"),
                        linewidth=0.8,
                    )
                ],
                xlabel="update",
                legend=None,
            ),
        ),
        panel_size=(8.0, 2.5),
        sharex=True,
    )


def plot_trace(records: Sequence[dict], title: str, path: Path) -> Path:
    """:func:`trace_chart` written as PNG at ``path``."""
    return plotting.save_chart(trace_chart(records, title), path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m phs_optax_training.trace", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--preset", required=True, help="a goal row, e.g. table2-lr0.01-goal-f1-m0.1"
    )
    parser.add_argument("--goal_reading", choices=presets.READINGS, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--out", required=True, help="output folder")
    for option in phs_optax.OPTIONS:  # every goal_phs option, off by default
        parser.add_argument(
            f"--{option.name}", type=option.kind, default=None, help=option.help
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    xla_flags.set_cpu_flags()  # before JAX initialises its backends
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        preset = presets.get_preset(args.preset)
    except KeyError as error:
        parser.error(str(error.args[0]))
    reading = args.goal_reading or presets.DEFAULT_GOAL_READING[preset.table]
    options = {
        name: getattr(args, name)
        for name in OPTION_NAMES
        if getattr(args, name) is not None
    }
    try:
        config = dataclasses.replace(
            TrainConfig(**presets.config_values(preset, reading)),
            seed=args.seed,
            num_epochs=args.num_epochs,
            batch_size=args.batch_size,
            data_dir=args.data_dir,
            **options,
        )
        records = trace_run(config)
    except errors.TrainingError as error:
        print(f"trace: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return error.exit_code
    except (ValueError, data_lib.DataUnavailableError) as error:
        print(f"trace: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / TRACE_FILE, "w") as f:
        f.write(strict_json.dumps({"config": dataclasses.asdict(config)}) + "\n")
        for record in records:
            f.write(strict_json.dumps(record) + "\n")
    title = f"{args.preset} ({reading}), seed {args.seed}" + "".join(
        f", {k}={v}" for k, v in options.items()
    )
    print(plot_trace(records, title, out / "trace.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
