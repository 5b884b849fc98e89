"""Beyond the paper: the options of goal_phs that address the paper's outlook
(a goal never reached, re-acceleration after an exploitation phase) on a
table's goal rows, each row plain and with each option set of
BEYOND_VARIANTS[table]; results/beyond.md. Named sweeps ``beyond-table2``
(re-acceleration) and ``beyond-table1`` (deadline, goal adaptation);
``--variants`` picks option sets.

    python -m phs_optax_training.sweep --sweep=beyond-table2 --seeds=0,1,2 \\
        --num_epochs=20 --batch_size=64 --workdir=results/beyond/table2-batch64-20epochs
    python -m phs_optax_training.report beyond results/table2/batch64-20epochs \\
        results/beyond/table2-batch64-20epochs
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from phs_optax_training import presets
from phs_optax_training.config import TrainConfig
from phs_optax_training.experiments.common import goal_row_configs, steps_per_epoch


class RunFraction(float):
    """An option counted in updates, given as a fraction of the run's epochs."""


# The option values measured in results/beyond.md, in epochs where the option
# counts updates (or as a RunFraction). BEYOND_KICK_ENERGY: about the kinetic
# energy of the stable Table 2 PHS runs at epoch ends (0.01-0.1).
# BEYOND_RELEASE_ENERGY: the median kinetic energy of the first braked phase of
# the re-acceleration trace (results/beyond.md; 5th-95th percentile
# 0.007-0.023). Table 1's deadline is half the run: past the peak of PHS in the
# pairs where PHS declines (epochs 16-41 of 60; 10 of 20 at 20 epochs).
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


def variant_values(
    options: dict, steps_per_epoch: int, num_epochs: int
) -> dict[str, object]:
    """An option set as TrainConfig fields, options in epochs as updates."""
    return {
        name: _in_updates(value, steps_per_epoch, num_epochs)
        if name in _OPTIONS_IN_EPOCHS
        else value
        for name, value in options.items()
    }


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
    goal_rows = goal_row_configs(table, reading, seeds, base)
    epoch = steps_per_epoch(base, presets.DATASETS[table])
    configs = list(goal_rows)
    for variant in known if variants is None else variants:
        values = variant_values(known[variant], epoch, base.num_epochs)
        configs += [dataclasses.replace(c, **values) for c in goal_rows]
    return configs
