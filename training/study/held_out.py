"""The rule for when braking pays (``phs_optax_training.experiments.rule``),
scored on its held-out cells."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from phs_optax_training.experiments import rule
from phs_optax_training.stats import PairedTest
from phs_optax_training.study.render import (
    difference_text,
    p_text,
)
from phs_optax_training.study.runs import (
    RunResult,
    StudyError,
    paired,
    read_run,
    with_holm,
)


@dataclasses.dataclass(frozen=True)
class RuleCell:
    """Goal-oriented minus PHS of one held-out configuration, with the rule's
    prediction (``phs_optax_training.experiments.rule``)."""

    dataset: str
    alpha: float
    friction: float
    mass: float
    batch_size: int
    goal: float
    brake_factor: float
    final: PairedTest
    selected: PairedTest  # the rule's metric

    @property
    def temperature(self) -> float:
        return rule.temperature(self.alpha, self.friction, self.mass, self.batch_size)

    @property
    def prediction(self) -> str:
        return rule.prediction(self.alpha, self.friction, self.mass, self.batch_size)

    @property
    def outcome(self) -> str:
        """ "hit" when the mean difference has the predicted sign, "miss" when it
        has the other, "tie" when it is zero (it has no sign: the goal-oriented
        run selected what PHS did, e.g. it never braked); "abstain" where the
        rule predicts nothing."""
        if self.prediction == "none":
            return "abstain"
        mean = self.selected.difference.mean
        if mean == 0:
            return "tie"
        return "hit" if (mean > 0) == (self.prediction == "win") else "miss"


@dataclasses.dataclass
class _HeldOutRuns:
    goal_settings: set[tuple[float, float]] = dataclasses.field(default_factory=set)
    goal: dict[int, RunResult] = dataclasses.field(default_factory=dict)
    phs: dict[int, RunResult] = dataclasses.field(default_factory=dict)


def _held_out_runs(folder: Path) -> dict[tuple, _HeldOutRuns]:
    """(dataset, alpha, friction, mass, batch size) -> the finished
    goal-oriented and PHS runs of ``folder`` (other optimizers are skipped)."""
    cells: dict[tuple, _HeldOutRuns] = {}
    for path in sorted(folder.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        config = summary["config"]
        if config["optimizer"] not in ("goal_phs", "phs"):
            continue
        if summary["epochs_done"] < config["num_epochs"]:
            continue
        key = (
            config["dataset"], config["learning_rate"], config["friction"],
            config["mass"], config["batch_size"],
        )  # fmt: skip
        if not rule.is_held_out(*key):
            raise StudyError(
                f"{path.parent}: not a held-out configuration of the rule "
                "(see results/study/rule.md)"
            )
        cell = cells.setdefault(key, _HeldOutRuns())
        run = read_run(path.parent)
        if config["optimizer"] == "goal_phs":
            cell.goal_settings.add((config["goal"], config["brake_factor"]))
            cell.goal[run.seed] = run
        else:
            cell.phs[run.seed] = run
    return cells


def rule_study(folders: Sequence[str | Path]) -> tuple[RuleCell, ...]:
    """Every held-out cell in ``folders`` that has goal-oriented and PHS runs
    of common seeds, Holm-corrected over the cells (each metric a family)."""
    cells = []
    for folder in folders:
        for key, runs in sorted(_held_out_runs(Path(folder)).items()):
            if not set(runs.goal) & set(runs.phs):
                continue
            if len(runs.goal_settings) > 1:
                raise StudyError(f"{folder}: several goal settings for {key}")
            ((goal, brake_factor),) = runs.goal_settings
            cells.append(
                RuleCell(
                    *key, goal, brake_factor, paired(runs.goal, runs.phs, "final"),
                    paired(runs.goal, runs.phs, "selected"),
                )
            )  # fmt: skip
    if not cells:
        raise StudyError("no held-out cell has goal-oriented and PHS runs yet")
    return tuple(with_holm(with_holm(cells, ("selected",)), ("final",)))


DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def rule_markdown(cells: Sequence[RuleCell]) -> str:
    predicted = [c for c in cells if c.outcome != "abstain"]
    hits = [c for c in predicted if c.outcome == "hit"]
    misses = [c for c in predicted if c.outcome == "miss"]
    ties = len(predicted) - len(hits) - len(misses)
    lines = [
        f"- {len(hits)} hits, {len(misses)} misses and {ties} ties (a difference of "
        f"exactly zero) in {len(predicted)} predicted "
        f"cells ({len(cells) - len(predicted)} abstained); significant after Holm "
        f"over the {len(cells)} cells: {sum(c.selected.significant for c in hits)} "
        f"of the hits, {sum(c.selected.significant for c in misses)} of the misses.",
        "",
        "Goal-oriented minus PHS, paired by seed, accuracies in percent; "
        "`*`: significant after Holm's correction over the cells (each metric "
        "its own family).",
        "",
        "| data | alpha | friction | mass | batch | T | goal, brake factor | "
        "prediction | seeds | selected: difference [95% CI] | p (Holm) | "
        "seeds ahead | outcome | final: difference [95% CI] | p (Holm) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        lines.append(
            f"| {DATASET_NAMES.get(c.dataset, c.dataset)} | {c.alpha:g} | "
            f"{c.friction:g} | {c.mass:g} | {c.batch_size} | {c.temperature:.2g} | "
            f"{c.goal:g}, {c.brake_factor:g} | {c.prediction} | "
            f"{c.selected.difference.n} | {difference_text(c.selected.difference)} | "
            f"{p_text(c.selected)} | {c.selected.wins}/{c.selected.difference.n} | "
            f"**{c.outcome}** | {difference_text(c.final.difference)} | "
            f"{p_text(c.final)} |"
        )
    return "\n".join(lines)
