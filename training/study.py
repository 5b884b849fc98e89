"""A table of the paper measured over many seeds, with the statistics that
decide whether a gap is real.

Every run of the study holds out a validation split (``--validation_fraction``)
for every optimizer. Each run gives two numbers: its **final** test accuracy
and its **selected** test accuracy, the test accuracy at the epoch of its
highest validation accuracy (the earliest such epoch), which is model
selection without looking at the test set. From the run folders of one sweep:

* per table row: mean, sample std and 95 % confidence interval over seeds of
  both numbers (:class:`RowStats`);
* per goal-oriented pair and baseline (PHS of the same alpha, friction and
  mass; SGD of the same alpha): the difference paired by seed, its 95 %
  interval and a paired t-test, Holm-corrected over every test of the table
  (:class:`Comparison`);
* the noise floor: PHS rows of the table that are the same dynamics (the same
  momentum decay ``alpha * c`` and step ``alpha**2 / m``) compared by seed like
  a pair; their differences come from float rounding alone
  (:class:`NoiseFloor`).

    python -m phs_optax_training.study table results/study/table2/batch64 \\
        --table=table2
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from phs_optax_training import plotting, presets, report, selection
from phs_optax_training.config import TrainConfig, run_name
from phs_optax_training.experiments import batch_size, rule, tuning
from phs_optax_training.experiments.common import row_config
from phs_optax_training.stats import CONFIDENCE, Estimate, PairedTest, holm_family


class StudyError(ValueError):
    """Run folders that cannot be read as a study (exit 2 at the command line)."""


@dataclasses.dataclass(frozen=True)
class RunResult:
    """One run; accuracies in percent, epochs counted from 1."""

    seed: int
    final: float
    selected: float
    selected_epoch: int
    best: float
    brake_epoch: float | None
    diverged: bool
    test_curve: tuple[float, ...] = ()  # test accuracy after each epoch

    @property
    def decline(self) -> float:
        """How far the test accuracy fell from its peak by the end (points)."""
        return self.best - self.final


def validation_selected(rows: Sequence[dict]) -> tuple[int, float]:
    """The epoch of the highest validation accuracy in a run's metrics rows
    (the earliest on a tie) and the test accuracy at that epoch."""
    row = selection.validation_best(rows)
    if row is None:
        raise StudyError(
            "the runs have no validation accuracy: train them with "
            "--validation_fraction above 0"
        )
    return row["epoch"], row["test_accuracy"]


def read_run(run_dir: Path) -> RunResult:
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    epoch, selected = validation_selected(rows)
    return RunResult(
        seed=summary["config"]["seed"],
        final=summary["final_test_accuracy"] * 100,
        selected=selected * 100,
        selected_epoch=epoch,
        best=summary["best_test_accuracy"] * 100,
        brake_epoch=summary["brake_epoch"],
        diverged=bool(summary.get("diverged")),
        test_curve=tuple(row["test_accuracy"] * 100 for row in rows),
    )


# (preset name, goal reading or "") -> seed -> run, and the shared settings
Results = dict[tuple[str, str], dict[int, RunResult]]


def load_results(folder: str | Path, table: str) -> tuple[Results, dict]:
    """The finished runs in ``folder`` that are rows of ``table``, and the
    configuration of one of them (what the sweep shares: batch size, epochs)."""
    results: Results = {}
    config = None
    for path in sorted(Path(folder).glob("*/summary.json")):
        summary = json.loads(path.read_text())
        keys = report.row_keys_of(summary["config"], table)
        if not keys or summary["epochs_done"] < summary["config"]["num_epochs"]:
            continue
        run = read_run(path.parent)
        config = config or summary["config"]
        for key in keys:
            results.setdefault(key, {})[run.seed] = run
    if config is None:
        raise StudyError(f"{folder}: no finished run of {table}")
    return results, config


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


def _paired(
    first: dict[int, RunResult], second: dict[int, RunResult], metric: str
) -> PairedTest:
    seeds = sorted(set(first) & set(second))
    return PairedTest.of(
        [getattr(first[s], metric) for s in seeds],
        [getattr(second[s], metric) for s in seeds],
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
                    final=_paired(goal, other, "final"),
                    selected=_paired(goal, other, "selected"),
                    decline=_paired(goal, other, "decline"),
                    diverged_seeds=tuple(
                        s for s in seeds if goal[s].diverged or other[s].diverged
                    ),
                )
            )
    return _holm_over(found)


def _with_holm(items: Sequence, fields: Sequence[str]) -> list:
    """``items`` (dataclasses) with the :class:`PairedTest` in each of
    ``fields`` Holm-corrected, the family being all of those tests."""
    tests = iter(holm_family([getattr(i, f) for f in fields for i in items]))
    adjusted = {f: [next(tests) for _ in items] for f in fields}
    return [
        dataclasses.replace(item, **{f: adjusted[f][k] for f in fields})
        for k, item in enumerate(items)
    ]


def _holm_over(found: list[Comparison]) -> list[Comparison]:
    return _with_holm(_with_holm(found, ("final", "selected")), ("decline",))


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
                    first, second, decay, step, _paired(a, b, "final"),
                    _paired(a, b, "selected"),
                )
            )  # fmt: skip
    pairs = _with_holm(pairs, ("final", "selected"))

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


# --------------------------------------------------------------- batch size


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
    for pair in batch_size.chosen_pairs():
        points = []
        for size in sorted(by_batch):
            goal = by_batch[size].get((pair.goal.name, batch_size.READING))
            phs = by_batch[size].get((pair.phs.name, ""))
            if goal and phs and set(goal) & set(phs):
                points.append(
                    BatchPoint(
                        size,
                        _paired(goal, phs, "final"),
                        _paired(goal, phs, "selected"),
                        tuple(goal[s].brake_epoch for s in sorted(goal)),
                    )
                )
        curves.append(
            BatchCurve(
                pair.goal.learning_rate, pair.goal.friction, pair.goal.mass,
                presets.goal_for(pair.goal, batch_size.READING),
                pair.goal.brake_factor, tuple(points),
            )
        )  # fmt: skip
    return _holm_over_points(curves)


def _holm_over_points(curves: list[BatchCurve]) -> tuple[BatchCurve, ...]:
    points = _with_holm([p for c in curves for p in c.points], ("final", "selected"))
    corrected = iter(points)
    return tuple(
        dataclasses.replace(c, points=tuple(next(corrected) for _ in c.points))
        for c in curves
    )


# ------------------------------------------------------- tuned baselines


@dataclasses.dataclass(frozen=True)
class Trial:
    method: str
    setting: str
    scores: tuple[float, ...]  # highest validation accuracy (%) per tuning seed
    chosen: bool

    @property
    def score(self) -> float:
        return float(np.mean(self.scores))


@dataclasses.dataclass(frozen=True)
class TunedRow:
    label: str  # a method's chosen trial, or the paper's goal or PHS row
    setting: str
    final: Estimate
    selected: Estimate
    diverged_seeds: tuple[int, ...]
    curve: tuple[Estimate, ...] = ()  # test accuracy after each epoch, over seeds


@dataclasses.dataclass(frozen=True)
class TunedStudy:
    tuning_seeds: tuple[int, ...]
    trials: tuple[Trial, ...]
    rows: tuple[TunedRow, ...]
    # tuned goal minus each other row, by seed; Holm over all (both metrics)
    versus: tuple[tuple[str, PairedTest, PairedTest], ...]


def _setting(config: TrainConfig) -> str:
    """The tuned values of a trial, in words."""
    if config.optimizer == "goal_phs":
        return f"goal {config.goal:g}, brake factor {config.brake_factor:g}"
    if config.optimizer == "phs":
        return f"alpha {config.learning_rate:g}, friction {config.friction:g}"
    if config.sgd_schedule == "cosine":
        return f"peak lr {config.learning_rate:g}, momentum {config.sgd_momentum:.4g}"
    if config.brake_trigger == "step":
        return (
            f"lr {config.learning_rate:g} / {config.brake_factor:g} at update "
            f"{config.brake_at_step}, momentum {config.sgd_momentum:.4g}"
        )
    return f"lr {config.learning_rate:g}"


def _base_config(config: dict) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in config.items() if k in names})


def _seeds_in(folder: Path) -> tuple[int, ...]:
    seeds = {
        json.loads(p.read_text())["config"]["seed"]
        for p in folder.glob("*/summary.json")
    }
    return tuple(sorted(seeds))


def tuned_study(tuning_folder: str | Path, tuned_folder: str | Path) -> TunedStudy:
    """The trials of the ``tuning`` folder, each method's choice, and the
    choices and the paper's rows on the new seeds of the ``tuned`` folder."""
    tuning_folder, tuned_folder = Path(tuning_folder), Path(tuned_folder)
    summaries = sorted(tuned_folder.glob("*/summary.json"))
    if not summaries:
        raise StudyError(f"{tuned_folder}: no finished run of --sweep=tuned")
    base = _base_config(json.loads(summaries[0].read_text())["config"])
    tuning_seeds = _seeds_in(tuning_folder)
    try:
        chosen = tuning.selected_trials(tuning_folder, base, tuning_seeds)
    except ValueError as error:
        raise StudyError(str(error)) from None
    trials = tuple(
        Trial(
            method,
            _setting(config),
            tuple(
                tuning.validation_score(
                    tuning_folder / run_name(dataclasses.replace(config, seed=seed))
                )
                * 100
                for seed in tuning_seeds
            ),
            config == chosen[method][0],
        )
        for method, found in tuning.trials(base).items()
        for config in found
    )
    pair = tuning.the_pair()
    labelled = [(f"{m} (tuned)", c) for m, (c, _) in chosen.items()] + [
        ("paper goal", row_config(pair.goal, tuning.READING, 0, base)),
        ("paper PHS", row_config(pair.phs, "", 0, base)),
    ]
    stored = [
        (_base_config(json.loads(path.read_text())["config"]), path.parent)
        for path in summaries
    ]
    runs = {}
    for label, config in labelled:
        found = {
            c.seed: read_run(run_dir)
            for c, run_dir in stored
            if dataclasses.replace(c, seed=0) == config
        }
        if found:
            runs[label] = (config, found)
    rows = tuple(
        TunedRow(
            label,
            _setting(config),
            Estimate.of([r.final for r in found.values()]),
            Estimate.of([r.selected for r in found.values()]),
            tuple(s for s, r in sorted(found.items()) if r.diverged),
            _band([r.test_curve for r in found.values()]),
        )
        for label, (config, found) in runs.items()
    )
    goal = runs.get("goal (tuned)")
    others = [label for label in runs if label != "goal (tuned)"] if goal else []
    tests = holm_family(
        [_paired(goal[1], runs[o][1], "final") for o in others]
        + [_paired(goal[1], runs[o][1], "selected") for o in others]
    )
    versus = tuple((o, tests[i], tests[len(others) + i]) for i, o in enumerate(others))
    return TunedStudy(tuning_seeds, trials, rows, versus)


def tuned_markdown(study: TunedStudy) -> str:
    lines = [
        f"Trials: highest validation accuracy (%), mean over tuning seeds "
        f"{', '.join(map(str, study.tuning_seeds))}; **chosen** per method.",
        "",
        "| method | setting | validation score | per seed |",
        "|---|---|---|---|",
    ]
    for t in study.trials:
        setting = f"**{t.setting}**" if t.chosen else t.setting
        lines.append(
            f"| {t.method} | {setting} | {t.score:.2f} | "
            f"{', '.join(f'{v:.2f}' for v in t.scores)} |"
        )
    lines += [
        "",
        "The chosen settings and the paper's rows on new seeds: test accuracy (%).",
        "",
        "| run | setting | seeds | final: mean ± sd [95% CI] | "
        "at the validation-best epoch | diverged seeds |",
        "|---|---|---|---|---|---|",
    ]
    for r in study.rows:
        lines.append(
            f"| {r.label} | {r.setting} | {r.final.n} | {_estimate(r.final)} | "
            f"{_estimate(r.selected)} | {', '.join(map(str, r.diverged_seeds)) or '-'} |"
        )
    if study.versus:
        lines += [
            "",
            "Tuned goal-oriented minus each, paired by seed (Holm over every test "
            "of this table):",
            "",
            "| minus | final: difference [95% CI] | p (Holm) | "
            "selected: difference [95% CI] | p (Holm) |",
            "|---|---|---|---|---|",
        ]
        for label, final, selected in study.versus:
            lines.append(
                f"| {label} | {_signed_estimate(final.difference)} | {_p(final)} | "
                f"{_signed_estimate(selected.difference)} | {_p(selected)} |"
            )
    return "\n".join(lines)


# --------------------------------------------------- the rule for braking


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
                    *key, goal, brake_factor, _paired(runs.goal, runs.phs, "final"),
                    _paired(runs.goal, runs.phs, "selected"),
                )
            )  # fmt: skip
    if not cells:
        raise StudyError("no held-out cell has goal-oriented and PHS runs yet")
    return tuple(_with_holm(_with_holm(cells, ("selected",)), ("final",)))


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
            f"{c.selected.difference.n} | {_signed_estimate(c.selected.difference)} | "
            f"{_p(c.selected)} | {c.selected.wins}/{c.selected.difference.n} | "
            f"**{c.outcome}** | {_signed_estimate(c.final.difference)} | "
            f"{_p(c.final)} |"
        )
    return "\n".join(lines)


def tuned_chart(study: TunedStudy) -> plotting.Chart:
    """Test accuracy after each epoch of the tuned rows and the paper's, mean
    over the new seeds with the 95 % interval as a band."""
    lines, bands = [], []
    for index, row in enumerate(study.rows):
        color = plotting.PALETTE[index % len(plotting.PALETTE)]
        x = tuple(float(e + 1) for e in range(len(row.curve)))
        lines.append(
            plotting.Line(
                x, tuple(e.mean for e in row.curve), color=color,
                label=f"{row.label}: {row.setting}",
            )
        )  # fmt: skip
        bands.append(
            plotting.Band(
                x, tuple(e.low for e in row.curve), tuple(e.high for e in row.curve),
                color=color,
            )
        )  # fmt: skip
    panel = plotting.Panel(
        title=f"Tuned on validation, then {study.rows[0].final.n} new seeds",
        xlabel="epoch",
        ylabel="test accuracy (%)",
        lines=tuple(lines),
        bands=tuple(bands),
    )
    return plotting.Chart((panel,), columns=1)


# ------------------------------------------------------------------ Markdown


def _estimate(e: Estimate) -> str:
    if e.n < 2:
        return f"{e.mean:.2f} (n=1)"
    return f"{e.mean:.2f} ± {e.std:.2f} [{e.low:.2f}, {e.high:.2f}]"


def _signed_estimate(e: Estimate) -> str:
    if e.n < 2:
        return f"{e.mean:+.2f} (n=1)"
    return f"{e.mean:+.2f} [{e.low:+.2f}, {e.high:+.2f}]"


def _p(test: PairedTest) -> str:
    p = test.p_holm if test.p_holm is not None else test.p
    if math.isnan(p):
        return "n/a"
    mark = " *" if test.significant else ""
    return f"{p:.2g}{mark}"


def _brakes(values: Sequence[float | None]) -> str:
    braked = sorted(v for v in values if v is not None)
    never = len(values) - len(braked)
    text = (
        f"{np.median(braked):.2f} ({braked[0]:.2f}-{braked[-1]:.2f})" if braked else "-"
    )
    return text + (f", {never} never" if never else "")


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
            f"{_estimate(row.final)} | {_estimate(row.selected)} | "
            f"{np.median(epochs):g} ({epochs[0]}-{epochs[-1]}) | "
            f"{row.decline.mean:.2f} | "
            f"{_brakes(row.brake_epochs) if 'goal' in row.name else ''} | "
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
            f"{_signed_estimate(c.final.difference)} | {_p(c.final)} | "
            f"{c.final.wins}/{c.final.difference.n} | "
            f"{_signed_estimate(c.selected.difference)} | {_p(c.selected)} | "
            f"{c.selected.wins}/{c.selected.difference.n} | "
            f"{_signed_estimate(c.decline.difference)} | {_p(c.decline)} | "
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
            f"{_signed_estimate(p.final.difference)} | {_spread(p.final)} | "
            f"{_p(p.final)} | {_signed_estimate(p.selected.difference)} | "
            f"{_spread(p.selected)} | {_p(p.selected)} |"
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
            + " | ".join(_brakes(cells[b]) if b in cells else "" for b in sizes)
            + " |"
        )
    sections.append("\n".join(lines))
    return "\n\n".join(sections)


def _batch_cell(test: PairedTest | None) -> str:
    if test is None:
        return ""
    mark = " *" if test.significant else ""
    return f"{_signed_estimate(test.difference)}{mark} ({test.difference.n})"


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
            lines.append(
                plotting.Line(
                    x, tuple(e.mean for e in estimates), marker="o", color=color,
                    label=f"alpha {c.alpha:g}, gamma {c.friction:g}, m {c.mass:g} "
                    f"(step {c.effective_step:g})",
                )
            )  # fmt: skip
            bands.append(
                plotting.Band(
                    x, tuple(e.low for e in estimates),
                    tuple(e.high for e in estimates), color=color,
                )
            )  # fmt: skip
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


# Figure 3 of the paper: (alpha, friction, mass) of its panels per table
FIGURE3_PAIRS = {
    "table2": ((0.1, 0.1, 10.0), (0.01, 1.0, 0.1)),
    "table1": ((0.1, 0.1, 100.0), (0.01, 0.1, 25.0)),
}
GOAL_COLOR, PHS_COLOR = "tab:blue", "tab:orange"  # as the paper's Figure 3


def _band(curves: Sequence[tuple[float, ...]]) -> tuple[Estimate, ...]:
    epochs = min(len(c) for c in curves)
    return tuple(Estimate.of([c[e] for c in curves]) for e in range(epochs))


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
            estimates = _band([r.test_curve for r in runs.values()])
            x = tuple(float(e + 1) for e in range(len(estimates)))
            lines.append(
                plotting.Line(
                    x, tuple(e.mean for e in estimates), color=color,
                    label=f"{label}: mean of {len(runs)} seeds, band 95% CI",
                )
            )  # fmt: skip
            bands.append(
                plotting.Band(
                    x, tuple(e.low for e in estimates),
                    tuple(e.high for e in estimates), color=color,
                )
            )  # fmt: skip
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m phs_optax_training.study",
        description="A study's tables over seeds: confidence intervals, paired "
        "tests with Holm's correction and the noise floor of identical dynamics.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("table", help="one sweep folder as its paper table")
    table.add_argument("folder")
    table.add_argument("--table", required=True, choices=("table1", "table2"))
    table.add_argument(
        "--reading",
        choices=presets.READINGS,
        help="the goal column's reading (default: remaining for table2, "
        "reduction for table1)",
    )
    table.add_argument("--figure", help="also write Figure 3 over seeds as PNG here")
    sizes = commands.add_parser(
        "batch-size", help="the batch-size sweep: one folder per batch size"
    )
    sizes.add_argument("folders", nargs="+")
    sizes.add_argument("--figure", help="also write the figure as PNG here")
    tuned = commands.add_parser(
        "tuned", help="the tuning folder's trials and the tuned comparison"
    )
    tuned.add_argument("tuning_folder")
    tuned.add_argument("tuned_folder")
    tuned.add_argument("--figure", help="also write the test curves as PNG here")
    held_out = commands.add_parser(
        "rule", help="the rule for when braking pays, on its held-out runs"
    )
    held_out.add_argument(
        "folders", nargs="+", help="rule-heldout and table1 (CIFAR-10) folders"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "table":
            print(table_markdown(study_table(args.folder, args.table, args.reading)))
            if args.figure:
                chart = curves_chart(args.folder, args.table, args.reading)
                plotting.save_chart(chart, args.figure)
        elif args.command == "tuned":
            tuned = tuned_study(args.tuning_folder, args.tuned_folder)
            print(tuned_markdown(tuned))
            if args.figure:
                plotting.save_chart(tuned_chart(tuned), args.figure)
        elif args.command == "rule":
            print(rule_markdown(rule_study(args.folders)))
        else:
            curves = batch_size_study(args.folders)
            print(batch_size_markdown(curves))
            if args.figure:
                plotting.save_chart(batch_size_chart(curves), args.figure)
    except StudyError as error:
        print(f"study: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
