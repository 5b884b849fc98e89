"""Table 2 of the paper: SGD, PHS and goal-oriented PHS on Fashion-MNIST, every
row for each seed, under either reading of the ambiguous goal column
(``reduction``: the value is the reduction of the initial loss; ``remaining``:
the fraction of it left, see ``presets.DEFAULT_GOAL_READING``). One named sweep
per reading: ``table2-reduction`` and ``table2-remaining``.

    for r in remaining reduction; do
      python -m phs_optax_training.sweep --sweep=table2-$r --seeds=0,1,2 \\
        --num_epochs=20 --batch_size=64 --workdir=results/table2/batch64-20epochs
    done
"""

from __future__ import annotations

from collections.abc import Sequence

from phs_optax_training import presets
from phs_optax_training.config import TrainConfig
from phs_optax_training.experiments.common import table_configs

READINGS = presets.READINGS


def table2_configs(
    reading: str, seeds: Sequence[int], base: TrainConfig
) -> list[TrainConfig]:
    """Every row of Table 2 for each seed, goals read as ``reading``."""
    return table_configs("table2", reading, seeds, base)
