"""The rule for when braking pays, and the configurations that test it, none
of which were used to form it (beyond the paper).

The rule, formed on Table 2 at batch 10 and 64 and the batch-size sweep
(results/study/rule.md): goal-oriented PHS beats PHS on the test accuracy at
the validation-best epoch when PHS's gradient-noise temperature

    T = alpha / (m * gamma * B)      (effective step over batch size)

is above ``WIN_ABOVE`` and loses to it below ``LOSE_BELOW``; in between it
predicts nothing. The held-out configurations: new (alpha, friction, mass)
triples on Fashion-MNIST at the batch sizes of ``HELD_OUT``, each with goal
0.8 (a reduction of the initial loss) and brake factor 10, and Table 1 on
CIFAR-10 at batch 64 (its own sweep, ``table1``). One folder per batch size:

    for b in 10 16 64 128; do
      python -m phs_optax_training.sweep --sweep=rule-heldout --seeds=0,1,2,3,4 \\
        --num_epochs=20 --batch_size=$b --validation_fraction=0.1 \\
        --workdir=results/study/rule/batch$b
    done
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from phs_optax_training import presets
from phs_optax_training.config import TrainConfig

WIN_ABOVE = 0.008
LOSE_BELOW = 0.004
GOAL, BRAKE_FACTOR = 0.8, 10.0
# batch size -> (alpha, friction, mass) of the held-out triples run at it
HELD_OUT = {
    10: ((0.02, 0.2, 0.5), (0.001, 0.5, 0.02), (0.01, 10.0, 0.01)),
    16: ((0.003, 3.0, 0.005),),
    64: ((0.003, 3.0, 0.005), (0.3, 0.3, 0.3)),
    128: ((0.02, 0.2, 0.5), (0.05, 1.0, 0.5)),
}


def temperature(alpha: float, friction: float, mass: float, batch_size: int) -> float:
    """PHS's effective step ``alpha / (m * gamma)`` over the batch size."""
    return alpha / (mass * friction * batch_size)


def prediction(alpha: float, friction: float, mass: float, batch_size: int) -> str:
    """ "win", "lose" or "none" (between the thresholds) for goal minus PHS."""
    t = temperature(alpha, friction, mass, batch_size)
    return "win" if t > WIN_ABOVE else "lose" if t < LOSE_BELOW else "none"


def is_held_out(
    dataset: str, alpha: float, friction: float, mass: float, batch_size: int
) -> bool:
    """Whether a goal-vs-PHS cell is one the rule was tested on (not formed on):
    a triple of ``HELD_OUT`` on Fashion-MNIST, or a Table 1 pair on CIFAR-10 at
    batch 64."""
    triple = (alpha, friction, mass)
    if dataset == "fashion_mnist":
        return triple in HELD_OUT.get(batch_size, ())
    if dataset == "cifar10":
        return batch_size == 64 and triple in {
            (p.goal.learning_rate, p.goal.friction, p.goal.mass)
            for p in presets.pairs("table1")
        }
    return False


def heldout_configs(seeds: Sequence[int], base: TrainConfig) -> list[TrainConfig]:
    """goal_phs and PHS of each held-out triple at ``base``'s batch size."""
    if base.batch_size not in HELD_OUT:
        raise ValueError(
            f"rule-heldout runs at batch sizes {', '.join(map(str, HELD_OUT))}, "
            f"not {base.batch_size}"
        )
    configs = []
    for alpha, friction, mass in HELD_OUT[base.batch_size]:
        run = dataclasses.replace(
            base, learning_rate=alpha, friction=friction, mass=mass,
            goal=GOAL, brake_factor=BRAKE_FACTOR,
        )  # fmt: skip
        for optimizer in ("goal_phs", "phs"):
            configs += [
                dataclasses.replace(run, optimizer=optimizer, seed=s) for s in seeds
            ]
    return configs
