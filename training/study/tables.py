"""A table of the paper over seeds: per row, per goal-oriented pair against its
baselines, and the noise floor of identical-dynamics rows; Figure 3 over
seeds."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np

from phs_optax_training import plotting, presets, report
from phs_optax_training.stats import CONFIDENCE, Estimate, PairedTest
from phs_optax_training.study.render import (
    brakes_text,
    difference_text,
    estimate_text,
    mean_with_band,
    p_text,
)
from phs_optax_training.study.runs import (
    Results,
    RunResult,
    StudyError,
    curve_band,
    load_results,
    paired,
    with_holm,
)


@dataclasses.dataclass(frozen=True)
class RowStats:
    name: str
    reading: str
    paper: float
    seeds: tuple[int, ...]
    final: Estimate
    selected: Estimate
    selected_epochs: tuple[int, ...]
    brake_epochs: tuple[float | None, ...]
    diverged_seeds: tuple[int, ...]
    decline: Estimate  # peak minus final test accuracy


def row_stats(name: str, reading: str, runs: dict[int, RunResult]) -> RowStats:
    seeds = tuple(sorted(runs))
    ordered = [runs[s] for s in seeds]
    return RowStats(
        name=name,
        reading=reading,
        paper=presets.get_preset(name).paper_accuracy * 100,
        seeds=seeds,
        final=Estimate.of([r.final for r in ordered]),
        selected=Estimate.of([r.selected for r in ordered]),
        selected_epochs=tuple(r.selected_epoch for r in ordered),
        brake_epochs=tuple(r.brake_epoch for r in ordered),
        diverged_seeds=tuple(r.seed for r in ordered if r.diverged),
        decline=Estimate.of([r.decline for r in ordered]),
    )


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Goal-oriented minus ``baseline`` for one pair of the table."""

    alpha: float
    friction: float
    mass: float
    goal: float
    brake_factor: float
    baseline: str  # "phs" or "sgd"
    final: PairedTest
    selected: PairedTest
    diverged_seeds: tuple[int, ...]  # seeds where either run diverged
    # goal's decline from its peak minus the baseline's (Holm over the table's
    # decline tests, a family of its own)
    decline: PairedTest | None = None


def comparisons(results: Results, table: str, reading: str) -> list[Comparison]:
    """Every pair of ``table`` against both baselines, Holm-corrected over all
    of their tests (both baselines, both metrics)."""
    found = []
    for pair in presets.pairs(table):
        goal = results.get((pair.goal.name, reading))
        for baseline in report.BASELINES:
            other = results.get((getattr(pair, baseline).name, ""))
            if not goal or not other or not set(goal) & set(other):
                continue
            seeds = sorted(set(goal) & set(other))
            found.append(
                Comparison(
                    alpha=pair.goal.learning_rate,
                    friction=pair.goal.friction,
                    mass=pair.goal.mass,
                    goal=presets.goal_for(pair.goal, reading),
                    brake_factor=pair.goal.brake_factor,
                    baseline=baseline,
                    final=paired(goal, other, "final"),
                    selected=paired(goal, other, "selected"),
                    decline=paired(goal, other, "decline"),
                    diverged_seeds=tuple(
                        s for s in seeds if goal[s].diverged or other[s].diverged
                    ),
                )
            )
    return _holm_over(found)


def _holm_over(found: list[Comparison]) -> list[Comparison]:
    return with_holm(with_holm(found, ("final", "selected")), ("decline",))


def dynamics_key(config: dict) -> tuple[float, float]:
    """What decides a PHS run's updates: the momentum decay exponent ``alpha *
    c`` (``c`` the damping rate of ``drag``) and the step ``alpha**2 / m``."""
    alpha, friction, mass = config["learning_rate"], config["friction"], config["mass"]
    rate = friction if config["drag"] == "momentum" else friction / mass
    return float(f"{alpha * rate:.9g}"), float(f"{alpha**2 / mass:.9g}")


@dataclasses.dataclass(frozen=True)
class IdenticalPair:
    first: str
    second: str
    decay: float
    step: float
    final: PairedTest
    selected: PairedTest


@dataclasses.dataclass(frozen=True)
class NoiseFloor:
    """Identical-dynamics PHS rows compared by seed; ``final`` and
    ``selected``: every per-seed difference of all of them pooled (their std is
    the spread that float rounding alone gives one comparison of one seed)."""

    pairs: tuple[IdenticalPair, ...]
    final: Estimate | None
    selected: Estimate | None

    def max_abs(self, metric: str) -> float:
        pooled = getattr(self, metric)
        return max(abs(v) for v in pooled.values) if pooled else math.nan


def noise_floor(results: Results, table: str, config: dict) -> NoiseFloor:
    by_key: dict[tuple[float, float], list[str]] = {}
    for preset in presets.table_presets(table):
        if preset.optimizer == "phs" and (preset.name, "") in results:
            values = {
                **config,
                "learning_rate": preset.learning_rate,
                "friction": preset.friction,
                "mass": preset.mass,
            }
            by_key.setdefault(dynamics_key(values), []).append(preset.name)
    pairs = []
    for (decay, step), names in by_key.items():
        for first, second in itertools.pairwise(names):
            a, b = results[(first, "")], results[(second, "")]
            pairs.append(
                IdenticalPair(
                    first, second, decay, step, paired(a, b, "final"),
                    paired(a, b, "selected"),
                )
            )  # fmt: skip
    pairs = with_holm(pairs, ("final", "selected"))

    def pooled(metric: str) -> Estimate | None:
        values = [v for p in pairs for v in getattr(p, metric).difference.values]
        return Estimate.of(values) if values else None

    return NoiseFloor(tuple(pairs), pooled("final"), pooled("selected"))


@dataclasses.dataclass(frozen=True)
class StudyTable:
    folder: str
    table: str
    reading: str
    batch_size: int
    num_epochs: int
    validation_fraction: float
    rows: tuple[RowStats, ...]
    comparisons: tuple[Comparison, ...]
    noise: NoiseFloor

    def ahead(self, baseline: str, metric: str) -> tuple[int, int, int, int]:
        """Pairs against ``baseline``: counted, ahead on the mean, and
        significantly (Holm) ahead and behind, on ``metric``."""
        tests = [getattr(c, metric) for c in self.comparisons if c.baseline == baseline]
        return (
            len(tests),
            sum(t.difference.mean > 0 for t in tests),
            sum(t.significant and t.difference.mean > 0 for t in tests),
            sum(t.significant and t.difference.mean < 0 for t in tests),
        )


DEFAULT_READINGS = {"table1": "reduction", "table2": "remaining"}


def study_table(
    folder: str | Path, table: str, reading: str | None = None
) -> StudyTable:
    """``folder``'s runs as ``table``, goals read as ``reading`` (default:
    the table's, see :data:`DEFAULT_READINGS`)."""
    reading = reading or DEFAULT_READINGS[table]
    results, config = load_results(folder, table)
    order = {p.name: i for i, p in enumerate(presets.table_presets(table))}
    keys = sorted(
        (k for k in results if k[1] in ("", reading)), key=lambda k: order[k[0]]
    )
    return StudyTable(
        folder=str(folder),
        table=table,
        reading=reading,
        batch_size=config["batch_size"],
        num_epochs=config["num_epochs"],
        validation_fraction=config["validation_fraction"],
        rows=tuple(row_stats(name, r, results[(name, r)]) for name, r in keys),
        comparisons=tuple(comparisons(results, table, reading)),
        noise=noise_floor(results, table, config),
    )


def _row_label(row: RowStats) -> str:
    return row.name + (f" ({row.reading})" if row.reading else "")


def rows_markdown(table: StudyTable) -> str:
    lines = [
        "| row | paper | seeds | final test acc: mean ± sd [95% CI] | "
        "test acc at the validation-best epoch | validation-best epochs "
        "(median, range) | decline from the peak | brake epoch (median, range) | "
        "diverged seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.rows:
        epochs = sorted(row.selected_epochs)
        lines.append(
            f"| {_row_label(row)} | {row.paper:.2f} | {len(row.seeds)} | "
            f"{estimate_text(row.final)} | {estimate_text(row.selected)} | "
            f"{np.median(epochs):g} ({epochs[0]}-{epochs[-1]}) | "
            f"{row.decline.mean:.2f} | "
            f"{brakes_text(row.brake_epochs) if 'goal' in row.name else ''} | "
            f"{', '.join(map(str, row.diverged_seeds)) or '-'} |"
        )
    return "\n".join(lines)


def comparisons_markdown(table: StudyTable) -> str:
    lines = [
        "| alpha | friction | mass | goal, brake factor | minus | seeds | "
        "final: difference [95% CI] | p (Holm) | seeds ahead | "
        "selected: difference [95% CI] | p (Holm) | seeds ahead | "
        "decline from the peak: difference [95% CI] | p (Holm) | diverged seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in table.comparisons:
        lines.append(
            f"| {c.alpha:g} | {c.friction:g} | {c.mass:g} | {c.goal:g}, "
            f"{c.brake_factor:g} | {c.baseline.upper()} | {c.final.difference.n} | "
            f"{difference_text(c.final.difference)} | {p_text(c.final)} | "
            f"{c.final.wins}/{c.final.difference.n} | "
            f"{difference_text(c.selected.difference)} | {p_text(c.selected)} | "
            f"{c.selected.wins}/{c.selected.difference.n} | "
            f"{difference_text(c.decline.difference)} | {p_text(c.decline)} | "
            f"{', '.join(map(str, c.diverged_seeds)) or '-'} |"
        )
    return "\n".join(lines)


def _spread(test: PairedTest) -> str:
    values = test.difference.values
    return f"{test.difference.std:.2f} / {max(abs(v) for v in values):.2f}"


def noise_markdown(noise: NoiseFloor) -> str:
    if not noise.pairs:
        return "No two PHS rows of this table share their dynamics."
    lines = [
        "Each pair's rows are the same iteration (momentum decay and step), so "
        "their per-seed differences come from float rounding alone.",
        "",
        "| first row | second row | decay alpha*c | step alpha^2/m | "
        "final: difference [95% CI] | sd / largest of one seed | p (Holm) | "
        "selected: difference [95% CI] | sd / largest of one seed | p (Holm) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in noise.pairs:
        lines.append(
            f"| {p.first} | {p.second} | {p.decay:g} | {p.step:g} | "
            f"{difference_text(p.final.difference)} | {_spread(p.final)} | "
            f"{p_text(p.final)} | {difference_text(p.selected.difference)} | "
            f"{_spread(p.selected)} | {p_text(p.selected)} |"
        )
    return "\n".join(lines)


def summary_markdown(table: StudyTable) -> str:
    lines = []
    for baseline in report.BASELINES:
        for metric in ("final", "selected"):
            counted, ahead, better, worse = table.ahead(baseline, metric)
            if counted:
                lines.append(
                    f"- goal-oriented minus {baseline.upper()}, {metric} accuracy: "
                    f"ahead on the mean in {ahead} of {counted} pairs; "
                    f"significantly ahead in {better}, significantly behind in "
                    f"{worse} (paired t-test, Holm over the table's "
                    f"{2 * len(table.comparisons)} tests, p < {1 - CONFIDENCE:.2g})."
                )
    return "\n".join(lines)


def table_markdown(table: StudyTable) -> str:
    return "\n\n".join(
        [
            f"{table.table}, batch {table.batch_size}, {table.num_epochs} epochs, "
            f"{table.validation_fraction:.0%} of the training set held out for "
            f"validation; goals read as {table.reading!r}. Accuracies in percent; "
            "`*`: significant after Holm's correction.",
            summary_markdown(table),
            "### Rows\n\n" + rows_markdown(table),
            "### Goal-oriented minus its baselines, paired by seed\n\n"
            + comparisons_markdown(table),
            "### Noise floor: identical dynamics\n\n" + noise_markdown(table.noise),
        ]
    )


# Figure 3 of the paper: (alpha, friction, mass) of its panels per table
FIGURE3_PAIRS = {
    "table2": ((0.1, 0.1, 10.0), (0.01, 1.0, 0.1)),
    "table1": ((0.1, 0.1, 100.0), (0.01, 0.1, 25.0)),
}


GOAL_COLOR, PHS_COLOR = "tab:blue", "tab:orange"  # as the paper's Figure 3


def curves_chart(
    folder: str | Path, table: str, reading: str | None = None
) -> plotting.Chart:
    """The paper's Figure 3 over seeds: per pair of its panels, the test
    accuracy of goal-oriented PHS (blue) and PHS (orange) after each epoch,
    mean with its 95 % interval as a band, and the goal runs' median brake."""
    reading = reading or DEFAULT_READINGS[table]
    results, config = load_results(folder, table)
    panels = []
    for pair in presets.pairs(table):
        key = (pair.goal.learning_rate, pair.goal.friction, pair.goal.mass)
        goal = results.get((pair.goal.name, reading))
        phs = results.get((pair.phs.name, ""))
        if key not in FIGURE3_PAIRS[table] or not goal or not phs:
            continue
        lines, bands = [], []
        for runs, color, label in (
            (goal, GOAL_COLOR, "goal-oriented"),
            (phs, PHS_COLOR, "PHS"),
        ):
            estimates = curve_band([r.test_curve for r in runs.values()])
            x = tuple(float(e + 1) for e in range(len(estimates)))
            line, band = mean_with_band(
                x, estimates, color=color,
                label=f"{label}: mean of {len(runs)} seeds, band 95% CI",
            )  # fmt: skip
            lines.append(line)
            bands.append(band)
        brakes = [r.brake_epoch for r in goal.values() if r.brake_epoch is not None]
        marks = (
            (plotting.Mark(float(np.median(brakes)), label="median brake"),)
            if brakes
            else ()
        )
        panels.append(
            plotting.Panel(
                title=f"alpha {key[0]:g}, friction {key[1]:g}, mass {key[2]:g}, "
                f"batch {config['batch_size']}",
                xlabel="epoch",
                ylabel="test accuracy (%)",
                lines=tuple(lines),
                bands=tuple(bands),
                marks=marks,
            )
        )
    if not panels:
        raise StudyError(f"{folder}: none of Figure 3's pairs has goal and PHS runs")
    return plotting.Chart(tuple(panels), columns=2)
