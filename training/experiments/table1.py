"""Table 1 of the paper: SGD, PHS and goal-oriented PHS on CIFAR-10, every row
for each seed, the goal column read as a reduction of the initial loss (its
values 0.65-0.9 fit Section 4's "reduction of 65% to 90%").

    python -m phs_optax_training.sweep --sweep=table1 --seeds=0,1,2 \\
        --num_epochs=60 --batch_size=64 --data_dir=../shared/data/cifar10-jpeg.tar.gz \\
        --workdir=results/table1/batch64-60epochs
"""

from __future__ import annotations

from collections.abc import Sequence

from phs_optax_training.config import TrainConfig
from phs_optax_training.experiments.common import table_configs

READING = "reduction"


def table1_configs(seeds: Sequence[int], base: TrainConfig) -> list[TrainConfig]:
    """Every row of Table 1 for each seed."""
    return table_configs("table1", READING, seeds, base)
