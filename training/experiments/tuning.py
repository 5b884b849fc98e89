"""Goal-oriented braking against schedules, each tuned with the same budget on
the validation split (beyond the paper): should a user brake on a goal or run
a learning-rate schedule?

For Table 2's headline pair (alpha 0.1, friction 0.1, mass 10), whose PHS
iteration is heavy-ball SGD with learning rate alpha**2 / m and momentum
exp(-alpha * gamma) (``ablation.heavy_ball_equivalent``), every method gets
``TRIALS`` settings, each trained on the tuning seeds:

* ``goal``: goal_phs, the goal (a reduction of the initial loss) and the brake
  factor tuned;
* ``step-drop``: the heavy-ball equivalent with one learning-rate drop, its
  epoch and factor tuned;
* ``cosine``: the heavy-ball momentum with a cosine decay of the learning
  rate, its peak tuned;
* ``sgd``: plain SGD, its learning rate tuned;
* ``goal-late`` and ``step-drop-late``: the goal and the step drop again,
  each with ``TRIALS`` settings that brake later (goals that leave less of the
  initial loss; drops later or larger), because the first grids' choices sat
  at their edge (the latest-braking goal; the latest and larger drop). They
  are their own methods, chosen on validation like the others, so each row of
  the comparison still comes from ``TRIALS`` trials.

``tuning`` trains the trials; ``tuned`` reads the tuning folder, takes each
method's trial of the highest mean validation accuracy (at each run's
validation-best epoch) and trains it on new seeds, next to the paper's own
goal and PHS rows of the pair:

    python -m phs_optax_training.sweep --sweep=tuning --seeds=0,1 \\
        --num_epochs=20 --batch_size=64 --validation_fraction=0.1 \\
        --workdir=results/study/tuning/batch64
    python -m phs_optax_training.sweep --sweep=tuned --seeds=10,11,12,13,14,15,16,17,18,19 \\
        --reference=results/study/tuning/batch64 \\
        --num_epochs=20 --batch_size=64 --validation_fraction=0.1 \\
        --workdir=results/study/tuned/batch64
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path

from phs_optax_training import presets
from phs_optax_training.config import TrainConfig, run_name
from phs_optax_training.experiments.ablation import heavy_ball_equivalent
from phs_optax_training.experiments.common import row_config, steps_per_epoch

PAIR = (0.1, 0.1, 10.0)  # alpha, friction, mass
READING = "remaining"
TRIALS = 8
METHODS = ("goal", "step-drop", "cosine", "sgd", "goal-late", "step-drop-late")
GOALS = (0.7, 0.8, 0.85, 0.9)  # reductions of the initial loss
BRAKE_FACTORS = (5.0, 50.0)
DROP_EPOCHS = (1, 5, 10, 15)
DROP_FACTORS = (5.0, 40.0)  # about what brake factors 5 and 50 do to the step
COSINE_PEAKS = (2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2)
SGD_RATES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
LATE_GOALS = (0.93, 0.96, 0.98, 0.99)  # with BRAKE_FACTORS
LATE_DROPS = (  # (epoch, factor)
    (15, 100.0), (15, 400.0), (17, 40.0), (17, 100.0), (17, 400.0),
    (19, 40.0), (19, 100.0), (19, 400.0),
)  # fmt: skip


def the_pair() -> presets.PresetPair:
    return next(
        p
        for p in presets.pairs("table2")
        if (p.goal.learning_rate, p.goal.friction, p.goal.mass) == PAIR
    )


def trials(base: TrainConfig) -> dict[str, list[TrainConfig]]:
    """Each method's ``TRIALS`` settings on top of ``base`` (seed 0)."""
    goal_row = row_config(the_pair().goal, READING, 0, base)
    lr, momentum, _ = heavy_ball_equivalent(goal_row)
    heavy_ball = dataclasses.replace(
        base, optimizer="sgd", learning_rate=lr, sgd_momentum=momentum, seed=0
    )
    epoch_steps = steps_per_epoch(base, "fashion_mnist")

    def goals(grid):
        return [
            dataclasses.replace(goal_row, goal=goal, brake_factor=factor)
            for goal, factor in grid
        ]

    def drops(grid):
        return [
            dataclasses.replace(
                heavy_ball,
                brake_trigger="step",
                brake_factor=factor,
                brake_at_step=epoch * epoch_steps,
            )
            for epoch, factor in grid
            if epoch < base.num_epochs
        ]

    found = {
        "goal": goals(itertools.product(GOALS, BRAKE_FACTORS)),
        "step-drop": drops(itertools.product(DROP_EPOCHS, DROP_FACTORS)),
        "cosine": [
            dataclasses.replace(heavy_ball, learning_rate=peak, sgd_schedule="cosine")
            for peak in COSINE_PEAKS
        ],
        "sgd": [
            dataclasses.replace(base, optimizer="sgd", learning_rate=rate, seed=0)
            for rate in SGD_RATES
        ],
        "goal-late": goals(itertools.product(LATE_GOALS, BRAKE_FACTORS)),
        "step-drop-late": drops(LATE_DROPS),
    }
    for method, settings in found.items():
        if len(settings) > TRIALS:
            raise ValueError(
                f"{method}: {len(settings)} trials, the budget is {TRIALS}"
            )
    return found


def _with_seeds(configs: Sequence[TrainConfig], seeds: Sequence[int]) -> list:
    return [dataclasses.replace(c, seed=s) for c in configs for s in seeds]


def tuning_configs(seeds: Sequence[int], base: TrainConfig) -> list[TrainConfig]:
    """Every trial of every method for each tuning seed."""
    return _with_seeds([c for found in trials(base).values() for c in found], seeds)


def validation_score(run_dir: Path) -> float:
    """A finished run's highest validation accuracy over its epochs (NaN
    where none is finite: a diverged run scores lowest)."""
    values = [
        json.loads(line).get("validation_accuracy")
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return max(finite) if finite else math.nan


def selected_trials(
    reference: str | Path, base: TrainConfig, seeds: Sequence[int]
) -> dict[str, tuple[TrainConfig, float]]:
    """Each method's trial of the highest mean validation score over the
    tuning ``seeds`` in the ``reference`` folder, and that score."""
    chosen = {}
    for method, found in trials(base).items():
        scored = []
        for config in found:
            scores = []
            for seed in seeds:
                run_dir = Path(reference) / run_name(
                    dataclasses.replace(config, seed=seed)
                )
                if not (run_dir / "summary.json").exists():
                    raise ValueError(
                        f"{run_dir} is missing: run --sweep=tuning with the same "
                        "settings and seeds first"
                    )
                scores.append(validation_score(run_dir))
            mean = sum(scores) / len(scores)
            scored.append((-math.inf if math.isnan(mean) else mean, config))
        score, config = max(scored, key=lambda item: item[0])
        chosen[method] = (config, score)
    return chosen


def tuned_configs(
    seeds: Sequence[int],
    base: TrainConfig,
    reference: str | Path,
    reading: str = READING,
    tuning_seeds: Sequence[int] = (0, 1),
) -> list[TrainConfig]:
    """Each method's selected trial and the paper's goal and PHS rows of the
    pair, for each of ``seeds`` (new seeds, not the tuning ones)."""
    if set(seeds) & set(tuning_seeds):
        raise ValueError(
            f"seeds {sorted(set(seeds) & set(tuning_seeds))} were used for tuning; "
            "the tuned comparison needs new seeds"
        )
    pair = the_pair()
    chosen = [c for c, _ in selected_trials(reference, base, tuning_seeds).values()]
    papers = [
        row_config(pair.goal, READING, 0, base),
        row_config(pair.phs, "", 0, base),
    ]
    distinct = {
        run_name(c): c for c in [*chosen, *papers]
    }  # a trial may be a paper row
    return _with_seeds(list(distinct.values()), seeds)
