"""What the experiments share: the paper's table rows as configurations and
the number of updates in an epoch."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from phs_optax_training import presets
from phs_optax_training.config import TrainConfig

TRAIN_SIZES = {"fashion_mnist": 60_000, "cifar10": 50_000}


def row_config(
    preset: presets.Preset, reading: str, seed: int, base: TrainConfig
) -> TrainConfig:
    """``base`` with the settings of the paper's row ``preset`` and ``seed``."""
    return dataclasses.replace(
        base, **presets.config_values(preset, reading), seed=seed
    )


def table_configs(
    table: str, reading: str, seeds: Sequence[int], base: TrainConfig
) -> list[TrainConfig]:
    """Every row of the paper's ``table`` for each seed, goals read as ``reading``."""
    return [
        row_config(preset, reading, seed, base)
        for preset in presets.table_presets(table)
        for seed in seeds
    ]


def goal_row_configs(
    table: str, reading: str, seeds: Sequence[int], base: TrainConfig
) -> list[TrainConfig]:
    """The goal-oriented rows of :func:`table_configs`."""
    return [
        c
        for c in table_configs(table, reading, seeds, base)
        if c.optimizer == "goal_phs"
    ]


def steps_per_epoch(base: TrainConfig, dataset: str) -> int:
    """Updates in one epoch of ``dataset`` under ``base``'s cap on training
    examples, validation split and batch size (as ``train_lib.split_data``)."""
    size = min(base.max_train_examples or TRAIN_SIZES[dataset], TRAIN_SIZES[dataset])
    if base.validation_fraction > 0:
        size -= max(1, int(round(base.validation_fraction * size)))
    return size // base.batch_size
