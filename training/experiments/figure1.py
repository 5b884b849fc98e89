"""Figure 1 of the paper: PHS at alpha = 0.1 on Fashion-MNIST over a
mass x friction grid.

    python -m phs_optax_training.sweep --sweep=figure1 --seeds=0 --num_epochs=20 \\
        --batch_size=64 --workdir=results/figure1/batch64-20epochs
    python -m phs_optax_training.figures figure1 results/figure1/batch64-20epochs \\
        --out=results/figure1/figure1.png
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from phs_optax_training.config import TrainConfig

FIGURE1_LEARNING_RATE = 0.1
FIGURE1_MASSES = (0.1, 1.0, 10.0, 100.0)
FIGURE1_FRICTIONS = (0.01, 0.1, 1.0, 10.0)


def figure1_configs(seeds: Sequence[int], base: TrainConfig) -> list[TrainConfig]:
    """PHS at each (mass, friction) of the grid, for each seed."""
    return [
        dataclasses.replace(
            base,
            dataset="fashion_mnist",
            optimizer="phs",
            learning_rate=FIGURE1_LEARNING_RATE,
            mass=m,
            friction=f,
            seed=s,
        )
        for m in FIGURE1_MASSES
        for f in FIGURE1_FRICTIONS
        for s in seeds
    ]
