"""Batch size against the sign of the effect (beyond the paper): goal-oriented
PHS and PHS of four Table 2 pairs whose PHS runs train at batch 64 (the two
low-friction pairs collapse to chance there), at each batch size in
``BATCH_SIZES``, with a validation split. One sweep folder per batch size;
batches 10 and 64 are the study's Table 2 folders, which hold these runs.

    for b in 16 32 128; do
      python -m phs_optax_training.sweep --sweep=batch-size --seeds=0,1,2,3,4 \\
        --num_epochs=20 --batch_size=$b --validation_fraction=0.1 \\
        --workdir=results/study/batch-size/batch$b
    done

The four pairs span the heavy-ball momentum decay ``alpha * gamma`` (0.01 and
0.001) and effective step ``alpha / (m * gamma)`` (0.1 and 0.01).
"""

from __future__ import annotations

from collections.abc import Sequence

from phs_optax_training import presets
from phs_optax_training.config import TrainConfig
from phs_optax_training.experiments.common import row_config

BATCH_SIZES = (10, 16, 32, 64, 128)
READING = "remaining"
# (alpha, friction, mass) of the pairs
PAIRS = (
    (0.1, 0.1, 10.0),
    (0.001, 10.0, 0.01),
    (0.001, 1.0, 0.01),
    (0.0001, 10.0, 0.001),
)


def chosen_pairs() -> list[presets.PresetPair]:
    """The Table 2 pairs of ``PAIRS``, in that order."""
    by_key = {
        (p.goal.learning_rate, p.goal.friction, p.goal.mass): p
        for p in presets.pairs("table2")
    }
    return [by_key[key] for key in PAIRS]


def batch_size_configs(seeds: Sequence[int], base: TrainConfig) -> list[TrainConfig]:
    """The goal-oriented and PHS rows of the chosen pairs for each seed, at
    ``base``'s batch size."""
    return [
        row_config(preset, READING, seed, base)
        for pair in chosen_pairs()
        for preset in (pair.goal, pair.phs)
        for seed in seeds
    ]
