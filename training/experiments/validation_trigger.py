"""Beyond the paper: braking when overfitting starts. On a table's goal rows,
with a held-out validation split (VALIDATION_FRACTION of the training set
unless the base configuration holds out another fraction; patience from the
base, 2 by default), the kinds of run in VALIDATION_KINDS:

* ``validation``: goal_phs braked the first time the held-out loss has risen
  ``validation_patience`` evaluations in a row (the goal is not used);
* ``both``: goal_phs braked at the goal or on the validation signal,
  whichever comes first;
* ``phs``: the pair's PHS row on the same held-out split (the reference);
* ``goal``: the goal-oriented row on the same held-out split.

Named sweeps ``validation-table2`` (Fashion-MNIST, goals read as the remaining
fraction) and ``validation-table1`` (CIFAR-10, goals read as reductions);
``--variants`` picks kinds (default: validation, phs). results/beyond.md:

    python -m phs_optax_training.sweep --sweep=validation-table2 --seeds=0,1,2 \\
        --num_epochs=20 --batch_size=64 --workdir=runs/beyond/validation-table2
    python -m phs_optax_training.sweep --sweep=validation-table1 \\
        --variants=validation,both,phs,goal --seeds=0,1,2 --num_epochs=60 \\
        --batch_size=64 --data_dir=../shared/data/cifar10-jpeg.tar.gz \\
        --workdir=runs/beyond/validation-table1
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from phs_optax_training import presets
from phs_optax_training.config import TrainConfig
from phs_optax_training.experiments.common import row_config

VALIDATION_FRACTION = 0.1
VALIDATION_KINDS = ("validation", "both", "phs", "goal")
DEFAULT_VALIDATION_KINDS = ("validation", "phs")


def held_out(base: TrainConfig) -> TrainConfig:
    """``base`` with a validation split: its own fraction, else VALIDATION_FRACTION."""
    if base.validation_fraction > 0:
        return base
    return dataclasses.replace(base, validation_fraction=VALIDATION_FRACTION)


def kind_config(
    kind: str, pair: presets.PresetPair, reading: str, seed: int, base: TrainConfig
) -> TrainConfig:
    """The run of ``kind`` for ``pair`` and ``seed`` (see the module docstring)."""
    if kind == "phs":
        return row_config(pair.phs, reading, seed, base)
    goal_run = row_config(pair.goal, reading, seed, base)
    if kind == "goal":
        return goal_run
    return dataclasses.replace(goal_run, brake_trigger=kind)


def validation_configs(
    table: str,
    seeds: Sequence[int],
    base: TrainConfig,
    variants: Sequence[str] | None = None,
) -> list[TrainConfig]:
    """The runs of the kinds in ``variants`` (default DEFAULT_VALIDATION_KINDS)
    for each goal row of ``table`` and seed, all on :func:`held_out` ``base``;
    kind by kind, rows in table order, seeds innermost."""
    kinds = DEFAULT_VALIDATION_KINDS if variants is None else tuple(variants)
    unknown = sorted(set(kinds) - set(VALIDATION_KINDS))
    if unknown:
        raise ValueError(
            f"unknown kind(s) {', '.join(unknown)} of validation-{table}; "
            f"choose from {', '.join(VALIDATION_KINDS)}"
        )
    reading = presets.DEFAULT_GOAL_READING[table]
    base = held_out(base)
    return [
        kind_config(kind, pair, reading, seed, base)
        for kind in dict.fromkeys(kinds)
        for pair in presets.pairs(table)
        for seed in seeds
    ]
