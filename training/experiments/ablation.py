"""Ablation of the goal trigger (beyond the paper): does the goal trigger
carry the effect, or the drop of the effective step that braking causes, or
its timing? Built on a finished Table 2 sweep (``--reference``), whose goal
runs' brake steps it reads.

    python -m phs_optax_training.sweep --sweep=ablation \\
        --reference=results/table2/batch64-20epochs --reading=remaining --seeds=0,1,2 \\
        --num_epochs=20 --batch_size=64 --workdir=results/ablation/batch64-20epochs
    python -m phs_optax_training.report ablation results/ablation/batch64-20epochs \\
        --reference=results/table2/batch64-20epochs
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from phs_optax_training.config import TrainConfig, run_name
from phs_optax_training.experiments.common import goal_row_configs, steps_per_epoch

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


def reference_brake_step(
    reference: str | Path, goal_run: TrainConfig, reading: str
) -> int | None:
    """The update where ``goal_run`` braked in the ``reference`` sweep folder
    (of the table2 sweep with goals read as ``reading``); None: never."""
    summary_path = Path(reference) / run_name(goal_run) / "summary.json"
    if not summary_path.exists():
        raise ValueError(
            f"{summary_path} is missing: run the table2-{reading} sweep "
            "with the same settings first"
        )
    return json.loads(summary_path.read_text())["brake_step"]


def heavy_ball_config(goal_run: TrainConfig, brake_step: int) -> TrainConfig:
    """SGD with the momentum of ``goal_run``'s PHS iteration, its learning rate
    dropped by the braking's drop at ``brake_step``."""
    lr, momentum, drop = heavy_ball_equivalent(goal_run)
    return dataclasses.replace(
        goal_run,
        optimizer="sgd",
        learning_rate=lr,
        sgd_momentum=momentum,
        brake_factor=drop,
        brake_trigger="step",
        brake_at_step=brake_step,
    )


def ablation_configs(
    seeds: Sequence[int], base: TrainConfig, reference: str | Path, reading: str
) -> list[TrainConfig]:
    """For Table 2's goal rows at alpha in ABLATION_LEARNING_RATES, per seed:
    (a) :func:`heavy_ball_config` at the update where the goal run of that
    seed braked in ``reference`` (skipped if that run never braked); (b)
    goal_phs braked at the fixed epochs ABLATION_FIXED_BRAKE_EPOCHS (those
    before the end of the run) instead of at the goal.
    """
    goal_rows = [
        c
        for c in goal_row_configs("table2", reading, seeds, base)
        if c.learning_rate in ABLATION_LEARNING_RATES
    ]
    epoch_steps = steps_per_epoch(base, "fashion_mnist")
    configs = []
    for seed in seeds:
        for goal_run in (c for c in goal_rows if c.seed == seed):
            brake_step = reference_brake_step(reference, goal_run, reading)
            if brake_step is not None:
                configs.append(heavy_ball_config(goal_run, brake_step))
            configs += [
                dataclasses.replace(
                    goal_run, brake_trigger="step", brake_at_step=epoch * epoch_steps
                )
                for epoch in ABLATION_FIXED_BRAKE_EPOCHS
                if epoch < base.num_epochs
            ]
    return configs
