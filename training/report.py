"""Sweep folders read back as the paper's tables, with paired comparisons.

A sweep folder holds one ``summary.json`` per run (see :mod:`vmap_sweep`). This
module matches each run to its row of the paper's Table 1 or 2 (and, for goal
rows, to the reading of the goal column it used). Each table is first computed
as plain data (dataclasses of numbers), then written as Markdown:

* ``rows``: :func:`rows_data` -> :class:`Row` per table row: final and best
  test accuracy (mean, sample std, n over seeds) next to the paper's number,
  the epoch of the best accuracy and the braking epoch of every seed;
* ``pairs``: :func:`pairs_data` -> :class:`Pairs`: per (alpha, friction,
  mass) pair, goal-oriented minus PHS and goal-oriented minus SGD at that
  alpha, paired by seed (runs of one seed see the same batches), with the
  count of pairs won;
* ``compare``: :func:`compare_data` -> :class:`Comparison`, one column per
  folder, for protocol studies;
* ``ablation``: :func:`ablation_data` -> :class:`Ablation`;
* ``beyond``: :func:`beyond_data` -> :class:`BeyondSection` per option of
  goal_phs beyond the paper, each minus the goal-oriented run and minus PHS of
  the same pair and seed.

The ``*_markdown`` functions render that data; ``rows_table``, ``pairs_table``,
``table_report``, ``compare_table``, ``ablation_table`` and ``beyond_table``
do both.

    python -m phs_optax_training.report table results/table2/batch10 --table=table2
    python -m phs_optax_training.report compare results/protocol/a results/protocol/b
    python -m phs_optax_training.report beyond results/table2/batch64-20epochs \
        results/beyond/table2-batch64-20epochs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from phs_optax_training import presets
from phs_optax_training.config import EXTENSION_DEFAULTS, TrainConfig, run_name
from phs_optax_training.experiments import ablation

# (preset name, goal reading or "") -> seed -> summary.json contents
Runs = dict[tuple[str, str], dict[int, dict]]


def _preset_for(config: dict, table: str) -> presets.Preset | None:
    is_sgd = config["optimizer"] == "sgd"
    key = (
        config["optimizer"],
        config["learning_rate"],
        None if is_sgd else config["friction"],
        None if is_sgd else config["mass"],
    )
    for preset in presets.table_presets(table):
        if (
            preset.optimizer,
            preset.learning_rate,
            preset.friction,
            preset.mass,
        ) == key:
            return preset
    return None


def _readings_of(config: dict, preset: presets.Preset) -> list[str]:
    """The goal readings the run stands for: [""] for SGD and PHS; both for a
    goal of 0.5, which reads the same either way (one run serves both)."""
    if preset.optimizer != "goal_phs":
        return [""]
    if config["brake_factor"] != preset.brake_factor:
        return []
    return [
        reading
        for reading in presets.READINGS
        if abs(presets.goal_for(preset, reading) - config["goal"]) < 1e-9
    ]


def row_keys_of(config: dict, table: str) -> list[tuple[str, str]]:
    """The rows ``(preset name, goal reading or "")`` of ``table`` that a run
    of ``config`` stands for; none for a run that is not a row of the paper
    (an ablation, another option or pair)."""
    if config.get("brake_trigger", "goal") != "goal" or config.get("sgd_momentum"):
        return []
    preset = _preset_for(config, table)
    if preset is None:
        return []
    return [(preset.name, reading) for reading in _readings_of(config, preset)]


def load_runs(folder: str | Path, table: str) -> Runs:
    """The runs in ``folder`` that are rows of ``table``; others are skipped."""
    runs: Runs = {}
    for path in sorted(Path(folder).glob("*/summary.json")):
        summary = json.loads(path.read_text())
        config = summary["config"]
        for key in row_keys_of(config, table):
            runs.setdefault(key, {})[config["seed"]] = summary
    return runs


# ------------------------------------------------------------------ numbers


@dataclasses.dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (0 for a single value) of ``values``."""

    values: tuple[float, ...]
    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> Spread:
        array = np.asarray(values, dtype=float)
        std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
        return cls(tuple(float(v) for v in array), float(array.mean()), std, len(array))


@dataclasses.dataclass(frozen=True)
class Difference:
    """Paired differences in points (one per seed): their spread, the seeds
    where the first run is ahead (``wins``) and those equal (``ties``)."""

    values: tuple[float, ...]
    mean: float
    std: float
    n: int
    wins: int
    ties: int

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> Difference | None:
        """None for no pair."""
        array = np.asarray(values, dtype=float)
        if len(array) == 0:
            return None
        spread = Spread.of(array)
        return cls(
            spread.values,
            spread.mean,
            spread.std,
            spread.n,
            int((array > 0).sum()),
            int((array == 0).sum()),
        )


def _percent(summaries: Sequence[dict], key: str) -> np.ndarray:
    return np.array([s[key] for s in summaries]) * 100


def _row_keys(runs: Runs, table: str) -> list[tuple[str, str]]:
    order = {p.name: i for i, p in enumerate(presets.table_presets(table))}
    return sorted(runs, key=lambda key: (order[key[0]], key[1]))


def _seed_summaries(by_seed: dict[int, dict]) -> tuple[tuple[int, ...], list[dict]]:
    seeds = tuple(sorted(by_seed))
    return seeds, [by_seed[s] for s in seeds]


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a table over seeds; accuracies in percent, epochs as stored
    (``brake_epochs`` None for a seed that never braked)."""

    name: str
    reading: str
    paper: float
    seeds: tuple[int, ...]
    final: Spread
    best: Spread
    best_epochs: tuple[int | None, ...]
    brake_epochs: tuple[float | None, ...]
    diverged_seeds: tuple[int, ...] = ()  # seeds whose training loss went non-finite


def rows_data(runs: Runs, table: str) -> list[Row]:
    """Per table row present in ``runs``, in the table's order."""
    rows = []
    for name, reading in _row_keys(runs, table):
        seeds, summaries = _seed_summaries(runs[(name, reading)])
        rows.append(
            Row(
                name=name,
                reading=reading,
                paper=presets.get_preset(name).paper_accuracy * 100,
                seeds=seeds,
                final=Spread.of(_percent(summaries, "final_test_accuracy")),
                best=Spread.of(_percent(summaries, "best_test_accuracy")),
                best_epochs=tuple(s["best_epoch"] for s in summaries),
                brake_epochs=tuple(s["brake_epoch"] for s in summaries),
                diverged_seeds=tuple(
                    seed
                    for seed, s in zip(seeds, summaries, strict=True)
                    if s.get("diverged")
                ),
            )
        )
    return rows


def paired_difference(
    runs: Runs, first: tuple[str, str], second: tuple[str, str], key: str
) -> np.ndarray:
    """``first - second`` in percentage points, per seed both have run."""
    seeds = sorted(set(runs.get(first, {})) & set(runs.get(second, {})))
    return np.array([(runs[first][s][key] - runs[second][s][key]) * 100 for s in seeds])


BASELINES = ("phs", "sgd")


@dataclasses.dataclass(frozen=True)
class PairRow:
    """Goal-oriented minus each baseline of one (alpha, friction, mass) pair,
    paired by seed (None where no seed has both runs), and the paper's gaps."""

    alpha: float
    friction: float
    mass: float
    goal: float
    brake_factor: float
    seeds: int
    minus_phs_final: Difference | None
    minus_phs_best: Difference | None
    minus_sgd_final: Difference | None
    minus_sgd_best: Difference | None
    paper_minus_phs: float
    paper_minus_sgd: float


@dataclasses.dataclass(frozen=True)
class Pairs:
    """The pairs of one goal reading; ``ahead[baseline]``: pairs whose mean
    final difference is positive, ``ahead_every_seed``: positive on every seed."""

    reading: str
    rows: tuple[PairRow, ...]
    ahead: dict[str, int]
    ahead_every_seed: dict[str, int]

    @property
    def counted(self) -> int:
        return len(self.rows)


def pairs_data(runs: Runs, table: str, reading: str) -> Pairs:
    """Goal-oriented minus PHS and minus SGD per pair, paired by seed."""
    ahead = dict.fromkeys(BASELINES, 0)
    ahead_every_seed = dict.fromkeys(BASELINES, 0)
    rows = []
    for pair in presets.pairs(table):
        goal = (pair.goal.name, reading)
        if goal not in runs:
            continue
        differences = {}
        for baseline in BASELINES:
            other = (getattr(pair, baseline).name, "")
            for metric in ("final", "best"):
                differences[f"minus_{baseline}_{metric}"] = Difference.of(
                    paired_difference(runs, goal, other, f"{metric}_test_accuracy")
                )
            final = differences[f"minus_{baseline}_final"]
            if final is not None:
                ahead[baseline] += final.mean > 0
                ahead_every_seed[baseline] += final.wins == final.n
        paper = pair.goal.paper_accuracy * 100
        rows.append(
            PairRow(
                alpha=pair.goal.learning_rate,
                friction=pair.goal.friction,
                mass=pair.goal.mass,
                goal=presets.goal_for(pair.goal, reading),
                brake_factor=pair.goal.brake_factor,
                seeds=len(
                    paired_difference(
                        runs, goal, (pair.phs.name, ""), "final_test_accuracy"
                    )
                ),
                paper_minus_phs=paper - pair.phs.paper_accuracy * 100,
                paper_minus_sgd=paper - pair.sgd.paper_accuracy * 100,
                **differences,
            )
        )
    return Pairs(reading, tuple(rows), ahead, ahead_every_seed)


@dataclasses.dataclass(frozen=True)
class SweepTables:
    """The rows of a sweep folder, and the pairs of each goal reading present."""

    folder: str
    rows: tuple[Row, ...]
    pairs: tuple[Pairs, ...]


def table_data(folder: str | Path, table: str) -> SweepTables:
    runs = load_runs(folder, table)
    pairs = tuple(
        pairs_data(runs, table, reading)
        for reading in presets.READINGS
        if any(key[1] == reading for key in runs)
    )
    return SweepTables(str(folder), tuple(rows_data(runs, table)), pairs)


@dataclasses.dataclass(frozen=True)
class CompareRow:
    """One table row across sweeps: a :class:`Row` per sweep, None where the
    sweep lacks it."""

    name: str
    reading: str
    paper: float
    cells: tuple[Row | None, ...]


@dataclasses.dataclass(frozen=True)
class Comparison:
    sweeps: tuple[str, ...]
    rows: tuple[CompareRow, ...]


def compare_data(folders: Sequence[str | Path], table: str) -> Comparison:
    """The rows of ``table`` in each folder (named by its last component)."""
    sweeps = {Path(f).name: load_runs(f, table) for f in folders}
    keys: list[tuple[str, str]] = []
    for runs in sweeps.values():
        keys += [k for k in runs if k not in keys]
    per_sweep = [
        {(row.name, row.reading): row for row in rows_data(runs, table)}
        for runs in sweeps.values()
    ]
    rows = tuple(
        CompareRow(
            name=name,
            reading=reading,
            paper=presets.get_preset(name).paper_accuracy * 100,
            cells=tuple(rows.get((name, reading)) for rows in per_sweep),
        )
        for name, reading in _row_keys(dict.fromkeys(keys), table)
    )
    return Comparison(tuple(sweeps), rows)


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """Final and best test accuracy of one run, in percent."""

    final: float
    best: float

    @classmethod
    def of(cls, summary: dict | None) -> Accuracy | None:
        if summary is None:
            return None
        return cls(
            summary["final_test_accuracy"] * 100, summary["best_test_accuracy"] * 100
        )


@dataclasses.dataclass(frozen=True)
class AblationRow:
    """One pair and seed; None for a run not in its folder."""

    alpha: float
    friction: float
    mass: float
    seed: int
    phs: Accuracy | None
    goal: Accuracy | None
    goal_brake_epoch: float | None
    heavy_ball: Accuracy | None
    fixed: tuple[Accuracy | None, ...]


@dataclasses.dataclass(frozen=True)
class Ablation:
    fixed_epochs: tuple[int, ...]
    rows: tuple[AblationRow, ...]


def ablation_data(
    folder: str | Path, reference: str | Path, reading: str = "remaining"
) -> Ablation:
    """Per pair and seed: PHS, goal-oriented (from ``reference``), SGD with the
    equivalent heavy-ball momentum and the same effective-step drop at the goal
    run's brake step, and goal_phs braked at fixed epochs (from ``folder``)."""

    def summary_of(directory: Path, config: TrainConfig) -> dict | None:
        path = directory / run_name(config) / "summary.json"
        return json.loads(path.read_text()) if path.exists() else None

    folder, reference = Path(folder), Path(reference)
    summaries = [json.loads(p.read_text()) for p in folder.glob("*/summary.json")]
    if not summaries:
        raise ValueError(f"no runs in {folder}")
    shared = summaries[0]["config"]
    base = TrainConfig(num_epochs=shared["num_epochs"], batch_size=shared["batch_size"])
    seeds = sorted({s["config"]["seed"] for s in summaries})
    fixed = tuple(
        e for e in ablation.ABLATION_FIXED_BRAKE_EPOCHS if e < base.num_epochs
    )
    ablations = ablation.ablation_configs(seeds, base, reference, reading)
    rows = []
    for pair in presets.pairs("table2"):
        if pair.goal.learning_rate not in ablation.ABLATION_LEARNING_RATES:
            continue
        for seed in seeds:
            goal = dataclasses.replace(
                base, **presets.config_values(pair.goal, reading), seed=seed
            )
            phs = dataclasses.replace(
                base, **presets.config_values(pair.phs, reading), seed=seed
            )
            lr, momentum, _ = ablation.heavy_ball_equivalent(goal)
            mine = [c for c in ablations if c.seed == seed]
            drop = next(
                (
                    c
                    for c in mine
                    if (c.optimizer, c.learning_rate, c.sgd_momentum)
                    == ("sgd", lr, momentum)
                ),
                None,
            )
            goal_summary = summary_of(reference, goal)
            rows.append(
                AblationRow(
                    alpha=goal.learning_rate,
                    friction=goal.friction,
                    mass=goal.mass,
                    seed=seed,
                    phs=Accuracy.of(summary_of(reference, phs)),
                    goal=Accuracy.of(goal_summary),
                    goal_brake_epoch=goal_summary and goal_summary["brake_epoch"],
                    heavy_ball=Accuracy.of(summary_of(folder, drop) if drop else None),
                    fixed=tuple(
                        Accuracy.of(summary_of(folder, c))
                        for c in sorted(mine, key=lambda c: c.brake_at_step)
                        if c.optimizer == "goal_phs"
                        and (c.learning_rate, c.friction, c.mass)
                        == (goal.learning_rate, goal.friction, goal.mass)
                    ),
                )
            )
    return Ablation(fixed, tuple(rows))


# ----------------------------------------------------------------- beyond


def variant_of(config: dict) -> str:
    """``PHS``, ``goal`` (the paper's method) or the options beyond it, e.g.
    ``release_after=937, kick_energy=0.05`` or ``brake on validation``."""
    if config["optimizer"] == "phs":
        return "PHS"
    parts = [
        f"{name}={config[name]}"
        for name, default in EXTENSION_DEFAULTS.items()
        if config.get(name, default) != default
    ]
    trigger = config.get("brake_trigger", "goal")
    if trigger == "validation":
        parts.insert(0, "brake on validation")
    elif trigger == "both":
        parts.insert(0, "brake on goal or validation")
    elif trigger != "goal":
        parts.insert(0, f"brake_trigger={trigger}")
    return ", ".join(parts) or "goal"


# (alpha, friction, mass, validation fraction, goal (None for PHS), variant,
# seed) -> summary
BeyondRuns = dict[tuple[float, float, float, float, float | None, str, int], dict]


def load_beyond_runs(folders: Sequence[str | Path]) -> BeyondRuns:
    """PHS and goal_phs runs of ``folders``; a configuration found in a later
    folder replaces the same configuration of an earlier one."""
    runs: BeyondRuns = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*/summary.json")):
            summary = json.loads(path.read_text())
            config = summary["config"]
            if config["optimizer"] == "sgd" or config.get("brake_at_step") is not None:
                continue
            key = (
                config["learning_rate"],
                config["friction"],
                config["mass"],
                config.get("validation_fraction", 0.0),
                None if config["optimizer"] == "phs" else config["goal"],
                variant_of(config),
                config["seed"],
            )
            runs[key] = summary
    return runs


def _reference(runs: BeyondRuns, key: tuple, variant: str) -> tuple[dict | None, bool]:
    """The ``variant`` run paired with ``key``: same pair, seed and training
    split if there is one (second value False), else trained on the full set."""
    lr, friction, mass, fraction, goal, _, seed = key
    goal = None if variant == "PHS" else goal
    same = runs.get((lr, friction, mass, fraction, goal, variant, seed))
    if same is not None:
        return same, False
    return runs.get((lr, friction, mass, 0.0, goal, variant, seed)), fraction != 0.0


@dataclasses.dataclass(frozen=True)
class Paired:
    """Differences to a reference run per seed; ``full_set_reference``: some
    reference trained on the full training set, the option on a smaller one."""

    difference: Difference | None
    full_set_reference: bool


@dataclasses.dataclass(frozen=True)
class BeyondRow:
    """One option on one pair over seeds; accuracies in percent."""

    alpha: float
    friction: float
    mass: float
    validation_fraction: float
    goal: float
    seeds: tuple[int, ...]
    final: Spread
    best: Spread
    minus_goal_final: Paired
    minus_goal_best: Paired
    minus_phs_final: Paired
    minus_phs_best: Paired
    brake_epochs: tuple[float | None, ...]
    releases: tuple[int | None, ...]


@dataclasses.dataclass(frozen=True)
class BeyondSection:
    variant: str
    rows: tuple[BeyondRow, ...]


def beyond_data(folders: Sequence[str | Path]) -> list[BeyondSection]:
    """Per option (sorted by name) and pair: accuracy, and option minus
    goal-oriented and minus PHS paired by seed, final and best test accuracy."""
    runs = load_beyond_runs(folders)
    variants = sorted({k[5] for k in runs} - {"PHS", "goal"})
    sections = []
    for variant in variants:
        rows = []
        pairs = sorted({k[:5] for k in runs if k[5] == variant}, reverse=True)
        for pair in pairs:
            keys = sorted(k for k in runs if k[:5] == pair and k[5] == variant)
            mine = [runs[k] for k in keys]
            paired = {}
            for reference in ("goal", "PHS"):
                for metric in ("final", "best"):
                    diffs, other_set = [], False
                    for key, summary in zip(keys, mine, strict=True):
                        ref, flagged = _reference(runs, key, reference)
                        if ref is not None:
                            name = f"{metric}_test_accuracy"
                            diffs.append((summary[name] - ref[name]) * 100)
                            other_set |= flagged
                    paired[f"minus_{reference.lower()}_{metric}"] = Paired(
                        Difference.of(diffs), other_set
                    )
            rows.append(
                BeyondRow(
                    alpha=pair[0],
                    friction=pair[1],
                    mass=pair[2],
                    validation_fraction=pair[3],
                    goal=pair[4],
                    seeds=tuple(k[6] for k in keys),
                    final=Spread.of(_percent(mine, "final_test_accuracy")),
                    best=Spread.of(_percent(mine, "best_test_accuracy")),
                    brake_epochs=tuple(s["brake_epoch"] for s in mine),
                    releases=tuple(s.get("releases") for s in mine),
                    **paired,
                )
            )
        sections.append(BeyondSection(variant, tuple(rows)))
    return sections


# ---------------------------------------------------------------- Markdown


def mean_std(values: np.ndarray | Spread) -> str:
    """``mean ± sample std`` (std 0 for a single value), two decimals."""
    spread = values if isinstance(values, Spread) else Spread.of(values)
    return f"{spread.mean:.2f} ± {spread.std:.2f}"


def _signed(spread: Spread | Difference) -> str:
    return f"{spread.mean:+.2f} ± {spread.std:.2f}"


def _epochs(values: Sequence[float | None]) -> str:
    return ", ".join("-" if v is None else f"{v:g}" for v in values)


def _brakes(values: Sequence[float | None]) -> str:
    """Brake epochs to two decimals, ``-`` for a seed that never braked."""
    return _epochs([None if v is None else round(v, 2) for v in values])


def _diverged_mark(row: Row) -> str:
    """ " (diverged: seeds 0, 2)" for a row with diverged runs (kept in the means)."""
    if not row.diverged_seeds:
        return ""
    return f" (diverged: seed{'s' if len(row.diverged_seeds) > 1 else ''} " + (
        ", ".join(map(str, row.diverged_seeds)) + ")"
    )


def rows_markdown(rows: Sequence[Row]) -> str:
    lines = [
        "| row | goal reading | paper | seeds | final | best | best at epoch | brake epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name}{_diverged_mark(row)} | {row.reading} | {row.paper:.2f} "
            f"| {len(row.seeds)} "
            f"| {mean_std(row.final)} | {mean_std(row.best)} "
            f"| {_epochs(row.best_epochs)} "
            f"| {_brakes(row.brake_epochs) if row.reading else ''} |"
        )
    return "\n".join(lines) + "\n"


def _difference_cell(difference: Difference | None) -> str:
    return "" if difference is None else _signed(difference)


def pairs_markdown(pairs: Pairs) -> str:
    lines = [
        "| pair (alpha, friction, mass) | goal | seeds | goal - PHS final | goal - PHS best "
        "| goal - SGD final | goal - SGD best | paper goal - PHS | paper goal - SGD |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in pairs.rows:
        cells = [
            _difference_cell(d)
            for d in (
                row.minus_phs_final,
                row.minus_phs_best,
                row.minus_sgd_final,
                row.minus_sgd_best,
            )
        ]
        lines.append(
            f"| {row.alpha:g}, {row.friction:g}, {row.mass:g} "
            f"| {row.goal:g} x{row.brake_factor:g} | {row.seeds} "
            f"| {' | '.join(cells)} "
            f"| {row.paper_minus_phs:+.2f} | {row.paper_minus_sgd:+.2f} |"
        )
    counted, ahead, every = pairs.counted, pairs.ahead, pairs.ahead_every_seed
    lines += [
        "",
        f"Goal-oriented ahead on mean final accuracy: {ahead['phs']} of {counted} pairs "
        f"vs PHS ({every['phs']} on every seed), {ahead['sgd']} of {counted} "
        f"vs SGD ({every['sgd']} on every seed). Paper: {counted} of "
        f"{counted} vs PHS.",
    ]
    return "\n".join(lines) + "\n"


def table_markdown(tables: SweepTables) -> str:
    parts = [f"## Rows ({tables.folder})\n", rows_markdown(tables.rows)]
    for pairs in tables.pairs:
        parts += [
            f"\n## Pairs, goal read as {pairs.reading}\n",
            pairs_markdown(pairs),
        ]
    return "\n".join(parts)


def compare_markdown(comparison: Comparison) -> str:
    lines = [
        "Cells: final test accuracy mean ± std over seeds / mean best; "
        "brake epoch per seed.\n",
        "| paper row | goal reading | paper | " + " | ".join(comparison.sweeps) + " |",
        "|---|---|---|" + "---|" * len(comparison.sweeps),
    ]
    for row in comparison.rows:
        cells = []
        for cell in row.cells:
            if cell is None:
                cells.append("")
                continue
            text = f"{mean_std(cell.final)} / {cell.best.mean:.2f}"
            if row.reading:
                text += " brake@" + _brakes(cell.brake_epochs)
            cells.append(text)
        lines.append(
            f"| {row.name} | {row.reading} | {row.paper:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def _accuracy_cell(accuracy: Accuracy | None) -> str:
    if accuracy is None:
        return "not run"
    return f"{accuracy.final:.2f} / {accuracy.best:.2f}"


def ablation_markdown(table: Ablation) -> str:
    lines = [
        "Cells: final / best test accuracy (%).\n",
        "| pair (alpha, friction, mass) | seed | PHS | goal-oriented (brake epoch) "
        "| heavy-ball SGD, same drop at the same step | "
        + " | ".join(f"brake at epoch {e}" for e in table.fixed_epochs)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(table.fixed_epochs),
    ]
    for row in table.rows:
        brake = row.goal_brake_epoch
        lines.append(
            f"| {row.alpha:g}, {row.friction:g}, {row.mass:g} | {row.seed} "
            f"| {_accuracy_cell(row.phs)} "
            f"| {_accuracy_cell(row.goal)} ({'-' if brake is None else f'{brake:.2f}'}) "
            f"| {_accuracy_cell(row.heavy_ball)} "
            f"| {' | '.join(_accuracy_cell(a) for a in row.fixed)} |"
        )
    return "\n".join(lines) + "\n"


def _paired_cell(paired: Paired) -> str:
    difference = paired.difference
    if difference is None:
        text = "-"
    else:
        ties = f", {difference.ties} tied)" if difference.ties else ")"
        text = f"{_signed(difference)} ({difference.wins}/{difference.n}" + ties
    return text + (" †" if paired.full_set_reference else "")


def beyond_markdown(sections: Sequence[BeyondSection]) -> str:
    lines = [
        "Cells: test accuracy (%) mean ± sample std over seeds; differences in "
        "points, paired by seed, with (seeds where the option is ahead / seeds, "
        "ties: equal to the last digit). "
        "† the reference trained on the full training set, the option on the "
        "set minus its validation split.\n"
    ]
    for section in sections:
        lines += [
            f"\n### {section.variant}\n",
            "| pair (alpha, friction, mass), goal | seeds | final | best | - goal final "
            "| - goal best | - PHS final | - PHS best | brake epochs | releases |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in section.rows:
            cells = [
                _paired_cell(p)
                for p in (
                    row.minus_goal_final,
                    row.minus_goal_best,
                    row.minus_phs_final,
                    row.minus_phs_best,
                )
            ]
            releases = (
                _epochs(row.releases)
                if any(r is not None for r in row.releases)
                else ""
            )
            lines.append(
                f"| {row.alpha:g}, {row.friction:g}, {row.mass:g}, {row.goal:g} "
                f"| {len(row.seeds)} | {mean_std(row.final)} | {mean_std(row.best)} "
                f"| {' | '.join(cells)} | {_brakes(row.brake_epochs)} | {releases} |"
            )
    return "\n".join(lines) + "\n"


# --------------------------------------------- data and Markdown in one call


def rows_table(runs: Runs, table: str) -> str:
    """Per row: paper, seeds, final and best accuracy, best epoch, brake epoch."""
    return rows_markdown(rows_data(runs, table))


def pairs_table(runs: Runs, table: str, reading: str) -> str:
    """Goal-oriented minus PHS and minus SGD per pair, paired by seed."""
    return pairs_markdown(pairs_data(runs, table, reading))


def table_report(folder: str | Path, table: str) -> str:
    """The rows table, then the pairs table for each goal reading present."""
    return table_markdown(table_data(folder, table))


def compare_table(folders: Sequence[str | Path], table: str) -> str:
    """One column per folder: final mean ± std / mean best; brake epochs."""
    return compare_markdown(compare_data(folders, table))


def ablation_table(
    folder: str | Path, reference: str | Path, reading: str = "remaining"
) -> str:
    """:func:`ablation_data` as Markdown."""
    return ablation_markdown(ablation_data(folder, reference, reading))


def beyond_table(folders: Sequence[str | Path]) -> str:
    """:func:`beyond_data` as Markdown."""
    return beyond_markdown(beyond_data(folders))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phs_optax_training.report")
    parser.add_argument("command", choices=("table", "compare", "ablation", "beyond"))
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--table", default="table2", choices=presets.TABLES)
    parser.add_argument("--reference", help="ablation: the table2 sweep folder")
    parser.add_argument("--reading", default="remaining", choices=presets.READINGS)
    args = parser.parse_args(argv)
    missing = [f for f in args.folders if not Path(f).is_dir()]
    if missing:
        print(f"report: error: no such sweep folder: {missing[0]}", file=sys.stderr)
        return 2
    if args.command == "ablation":
        if not args.reference:
            print(
                "report: error: ablation needs --reference=<table2 folder>",
                file=sys.stderr,
            )
            return 2
        print(ablation_table(args.folders[0], args.reference, args.reading))
    elif args.command == "beyond":
        print(beyond_table(args.folders))
    elif args.command == "table":
        print("\n".join(table_report(f, args.table) for f in args.folders))
    else:
        print(compare_table(args.folders, args.table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
