"""Baselines tuned with the same budget on the validation split, and their
choices on new seeds (``phs_optax_training.experiments.tuning``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from phs_optax_training import plotting
from phs_optax_training.config import TrainConfig, run_name
from phs_optax_training.experiments import tuning
from phs_optax_training.experiments.common import row_config
from phs_optax_training.stats import Estimate, PairedTest, holm_family
from phs_optax_training.study.render import (
    brakes_text,
    difference_text,
    estimate_text,
    mean_with_band,
    p_text,
)
from phs_optax_training.study.runs import (
    StudyError,
    curve_band,
    paired,
    read_run,
)

# The tuned goal-oriented rows, each compared by seed with every other row.
GOAL_LABELS = ("goal (tuned)", "goal-late (tuned)")


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
    # goal-oriented rows: each seed's brake epoch (None: the goal was never met)
    brake_epochs: tuple[float | None, ...] = ()


@dataclasses.dataclass(frozen=True)
class TunedStudy:
    tuning_seeds: tuple[int, ...]
    trials: tuple[Trial, ...]
    rows: tuple[TunedRow, ...]
    # (tuned goal row, other row, final, selected): the goal row minus the
    # other by seed; Holm over all of them (both metrics)
    versus: tuple[tuple[str, str, PairedTest, PairedTest], ...]


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
    # Found by run name, as the sweep named them: ``base`` comes from one run's
    # configuration, so fields no name holds (a goal run's goal in an SGD
    # configuration) may differ from the sweep's.
    runs = {}
    tuned_seeds = _seeds_in(tuned_folder)
    for label, config in labelled:
        found = {}
        for seed in tuned_seeds:
            run_dir = tuned_folder / run_name(dataclasses.replace(config, seed=seed))
            if (run_dir / "summary.json").exists():
                found[seed] = read_run(run_dir)
        if found:
            runs[label] = (config, found)
    rows = tuple(
        TunedRow(
            label,
            _setting(config),
            Estimate.of([r.final for r in found.values()]),
            Estimate.of([r.selected for r in found.values()]),
            tuple(s for s, r in sorted(found.items()) if r.diverged),
            curve_band([r.test_curve for r in found.values()]),
            tuple(r.brake_epoch for _, r in sorted(found.items()))
            if config.optimizer == "goal_phs"
            else (),
        )
        for label, (config, found) in runs.items()
    )
    references = [label for label in GOAL_LABELS if label in runs]
    pairs = [
        (reference, other)
        for k, reference in enumerate(references)
        for other in runs
        if other not in references[: k + 1]
    ]
    tests = holm_family(
        [paired(runs[a][1], runs[b][1], "final") for a, b in pairs]
        + [paired(runs[a][1], runs[b][1], "selected") for a, b in pairs]
    )
    versus = tuple(
        (a, b, tests[i], tests[len(pairs) + i]) for i, (a, b) in enumerate(pairs)
    )
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
        "at the validation-best epoch | brake epoch (median, range) | "
        "diverged seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in study.rows:
        lines.append(
            f"| {r.label} | {r.setting} | {r.final.n} | {estimate_text(r.final)} | "
            f"{estimate_text(r.selected)} | "
            f"{brakes_text(r.brake_epochs) if r.brake_epochs else ''} | "
            f"{', '.join(map(str, r.diverged_seeds)) or '-'} |"
        )
    if study.versus:
        lines += [
            "",
            "Tuned goal-oriented minus each, paired by seed (Holm over every test "
            "of this table):",
            "",
            "| goal-oriented | minus | final: difference [95% CI] | p (Holm) | "
            "selected: difference [95% CI] | p (Holm) | seeds ahead (selected) |",
            "|---|---|---|---|---|---|---|",
        ]
        for reference, label, final, selected in study.versus:
            lines.append(
                f"| {reference} | {label} | {difference_text(final.difference)} | "
                f"{p_text(final)} | {difference_text(selected.difference)} | "
                f"{p_text(selected)} | {selected.wins}/{selected.difference.n} |"
            )
    return "\n".join(lines)


def tuned_chart(study: TunedStudy) -> plotting.Chart:
    """Test accuracy after each epoch of the tuned rows and the paper's, mean
    over the new seeds with the 95 % interval as a band."""
    lines, bands = [], []
    for index, row in enumerate(study.rows):
        color = plotting.PALETTE[index % len(plotting.PALETTE)]
        x = tuple(float(e + 1) for e in range(len(row.curve)))
        line, band = mean_with_band(
            x, row.curve, color=color, label=f"{row.label}: {row.setting}"
        )
        if row.label.startswith("paper"):
            line = dataclasses.replace(line, linestyle="--")
        lines.append(line)
        bands.append(band)
    panel = plotting.Panel(
        title=f"Tuned on validation, then {study.rows[0].final.n} new seeds",
        xlabel="epoch",
        ylabel="test accuracy (%)",
        lines=tuple(lines),
        bands=tuple(bands),
    )
    return plotting.Chart((panel,), columns=1)
