"""Goal-oriented minus PHS against batch size
(``phs_optax_training.experiments.batch_size``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from phs_optax_training import plotting, presets
from phs_optax_training.experiments import batch_size as experiment
from phs_optax_training.stats import PairedTest
from phs_optax_training.study.render import (
    brakes_text,
    difference_text,
    mean_with_band,
)
from phs_optax_training.study.runs import (
    Results,
    StudyError,
    load_results,
    paired,
    with_holm,
)


@dataclasses.dataclass(frozen=True)
class BatchPoint:
    """Goal-oriented minus PHS of one pair at one batch size."""

    batch_size: int
    final: PairedTest
    selected: PairedTest
    brake_epochs: tuple[float | None, ...]


@dataclasses.dataclass(frozen=True)
class BatchCurve:
    """One pair over the batch sizes, smallest first."""

    alpha: float
    friction: float
    mass: float
    goal: float
    brake_factor: float
    points: tuple[BatchPoint, ...]

    @property
    def effective_step(self) -> float:
        """The heavy-ball step ``alpha / (m * gamma)`` before the brake."""
        return self.alpha / (self.mass * self.friction)

    @property
    def decay(self) -> float:
        """The momentum decay exponent ``alpha * gamma`` per update."""
        return self.alpha * self.friction


def batch_size_study(folders: Sequence[str | Path]) -> tuple[BatchCurve, ...]:
    """The chosen pairs of ``phs_optax_training.experiments.batch_size``
    in each of ``folders`` (one batch size each), Holm-corrected over every
    point's tests (both metrics)."""
    by_batch: dict[int, Results] = {}
    for folder in folders:
        results, config = load_results(folder, "table2")
        if config["batch_size"] in by_batch:
            raise StudyError(f"two folders hold batch size {config['batch_size']}")
        by_batch[config["batch_size"]] = results
    curves = []
    for pair in experiment.chosen_pairs():
        points = []
        for size in sorted(by_batch):
            goal = by_batch[size].get((pair.goal.name, experiment.READING))
            phs = by_batch[size].get((pair.phs.name, ""))
            if goal and phs and set(goal) & set(phs):
                points.append(
                    BatchPoint(
                        size,
                        paired(goal, phs, "final"),
                        paired(goal, phs, "selected"),
                        tuple(goal[s].brake_epoch for s in sorted(goal)),
                    )
                )
        curves.append(
            BatchCurve(
                pair.goal.learning_rate, pair.goal.friction, pair.goal.mass,
                presets.goal_for(pair.goal, experiment.READING),
                pair.goal.brake_factor, tuple(points),
            )
        )  # fmt: skip
    return _holm_over_points(curves)


def _holm_over_points(curves: list[BatchCurve]) -> tuple[BatchCurve, ...]:
    points = with_holm([p for c in curves for p in c.points], ("final", "selected"))
    corrected = iter(points)
    return tuple(
        dataclasses.replace(c, points=tuple(next(corrected) for _ in c.points))
        for c in curves
    )


def batch_size_markdown(curves: Sequence[BatchCurve]) -> str:
    sizes = sorted({p.batch_size for c in curves for p in c.points})
    header = (
        "| alpha | friction | mass | alpha/(m gamma) | alpha gamma | "
        + " | ".join(f"batch {b}" for b in sizes)
        + " |"
    )
    sections = []
    for metric, title in (
        ("selected", "test accuracy at the validation-best epoch"),
        ("final", "final test accuracy"),
    ):
        lines = [
            f"Goal-oriented minus PHS, {title}: mean difference [95% CI] "
            "(seeds), `*` significant after Holm over every cell of both tables.",
            "",
            header,
            "|---" * (5 + len(sizes)) + "|",
        ]
        for c in curves:
            cells = {p.batch_size: getattr(p, metric) for p in c.points}
            lines.append(
                f"| {c.alpha:g} | {c.friction:g} | {c.mass:g} | "
                f"{c.effective_step:g} | {c.decay:g} | "
                + " | ".join(_batch_cell(cells.get(b)) for b in sizes)
                + " |"
            )
        sections.append("\n".join(lines))
    lines = [
        "Goal run's brake epoch, median (range):",
        "",
        header,
        "|---" * (5 + len(sizes)) + "|",
    ]
    for c in curves:
        cells = {p.batch_size: p.brake_epochs for p in c.points}
        lines.append(
            f"| {c.alpha:g} | {c.friction:g} | {c.mass:g} | "
            f"{c.effective_step:g} | {c.decay:g} | "
            + " | ".join(brakes_text(cells[b]) if b in cells else "" for b in sizes)
            + " |"
        )
    sections.append("\n".join(lines))
    return "\n\n".join(sections)


def _batch_cell(test: PairedTest | None) -> str:
    if test is None:
        return ""
    mark = " *" if test.significant else ""
    return f"{difference_text(test.difference)}{mark} ({test.difference.n})"


def batch_size_chart(curves: Sequence[BatchCurve]) -> plotting.Chart:
    """Goal-oriented minus PHS against batch size, one line per pair with its
    95 % interval as a band; one panel per metric."""
    panels = []
    colors = plotting.PALETTE
    for metric, title in (
        ("selected", "test accuracy at the validation-best epoch"),
        ("final", "final test accuracy"),
    ):
        lines, bands = [], []
        for index, c in enumerate(curves):
            color = colors[index % len(colors)]
            x = tuple(float(p.batch_size) for p in c.points)
            estimates = [getattr(p, metric).difference for p in c.points]
            line, band = mean_with_band(
                x, estimates, marker="o", color=color,
                label=f"alpha {c.alpha:g}, gamma {c.friction:g}, m {c.mass:g} "
                f"(step {c.effective_step:g})",
            )  # fmt: skip
            lines.append(line)
            bands.append(band)
        sizes = sorted({p.batch_size for c in curves for p in c.points})
        if sizes:
            lines.append(
                plotting.Line(
                    (float(sizes[0]), float(sizes[-1])), (0.0, 0.0), color="black",
                    linewidth=0.8,
                )
            )  # fmt: skip
        panels.append(
            plotting.Panel(
                title=f"Goal-oriented minus PHS, {title}",
                xlabel="batch size",
                ylabel="difference (points)",
                lines=tuple(lines),
                bands=tuple(bands),
                log_x=True,
                xticks=tuple(float(b) for b in sizes),
            )
        )
    return plotting.Chart(tuple(panels), columns=2)
