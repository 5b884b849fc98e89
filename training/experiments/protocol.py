"""The protocol pilot (not an experiment of the paper): Table 2's alpha = 0.1
and 0.001 rows with the goals under both readings, run once per candidate
protocol (drag, batch size, smoothing) to settle the protocol of the
reproduction (results/protocol/README.md).

    python -m phs_optax_training.sweep --sweep=protocol --seeds=0,1 --num_epochs=10 \\
        --batch_size=64 --drag=momentum --workdir=results/protocol/drag-momentum-batch64
"""

from __future__ import annotations

from collections.abc import Sequence

from phs_optax_training import presets
from phs_optax_training.config import TrainConfig
from phs_optax_training.experiments.common import table_configs

PROTOCOL_LEARNING_RATES = (0.1, 0.001)


def protocol_configs(seeds: Sequence[int], base: TrainConfig) -> list[TrainConfig]:
    """The rows at PROTOCOL_LEARNING_RATES under each reading, each once (SGD
    and PHS rows do not depend on the reading)."""
    configs = []
    for reading in presets.READINGS:
        for config in table_configs("table2", reading, seeds, base):
            if (
                config.learning_rate in PROTOCOL_LEARNING_RATES
                and config not in configs
            ):
                configs.append(config)
    return configs
