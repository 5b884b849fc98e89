"""Sweep folders read back as the paper's tables, with paired comparisons.

A sweep folder holds one ``summary.json`` per run (see :mod:`vmap_sweep`). This
module matches each run to its row of the paper's Table 1 or 2 (and, for goal
rows, to the reading of the goal column it used) and writes Markdown:

* ``rows``: per table row, final and best test accuracy (mean ± sample std
  over seeds) next to the paper's number, the epoch of the best accuracy and
  the braking epoch of every seed;
* ``pairs``: per (alpha, friction, mass) pair, goal-oriented minus PHS and
  goal-oriented minus SGD at that alpha, paired by seed (runs of one seed see
  the same batches), with the count of pairs won;
* ``compare``: one column per folder, for protocol studies;
* ``beyond``: the options of goal_phs beyond the paper, each minus the
  goal-oriented run and minus PHS of the same pair and seed.

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


def load_runs(folder: str | Path, table: str) -> Runs:
    """The runs in ``folder`` that are rows of ``table``; others are skipped."""
    runs: Runs = {}
    for path in sorted(Path(folder).glob("*/summary.json")):
        summary = json.loads(path.read_text())
        config = summary["config"]
        if config.get("brake_trigger", "goal") != "goal" or config.get("sgd_momentum"):
            continue  # an ablation, not a row of the paper
        preset = _preset_for(config, table)
        if preset is None:
            continue
        for reading in _readings_of(config, preset):
            runs.setdefault((preset.name, reading), {})[config["seed"]] = summary
    return runs


def _percent(summaries: Sequence[dict], key: str) -> np.ndarray:
    return np.array([s[key] for s in summaries]) * 100


def mean_std(values: np.ndarray) -> str:
    """``mean ± sample std`` (std 0 for a single value), two decimals."""
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.2f} ± {std:.2f}"


def _epochs(values: Sequence[float | None]) -> str:
    return ", ".join("-" if v is None else f"{v:g}" for v in values)


def _row_keys(runs: Runs, table: str) -> list[tuple[str, str]]:
    order = {p.name: i for i, p in enumerate(presets.table_presets(table))}
    return sorted(runs, key=lambda key: (order[key[0]], key[1]))


def rows_table(runs: Runs, table: str) -> str:
    """Per row: paper, seeds, final and best accuracy, best epoch, brake epoch."""
    lines = [
        "| row | goal reading | paper | seeds | final | best | best at epoch | brake epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, reading in _row_keys(runs, table):
        by_seed = runs[(name, reading)]
        summaries = [by_seed[s] for s in sorted(by_seed)]
        paper = presets.get_preset(name).paper_accuracy * 100
        brakes = [
            None if s["brake_epoch"] is None else round(s["brake_epoch"], 2)
            for s in summaries
        ]
        lines.append(
            f"| {name} | {reading} | {paper:.2f} | {len(summaries)} "
            f"| {mean_std(_percent(summaries, 'final_test_accuracy'))} "
            f"| {mean_std(_percent(summaries, 'best_test_accuracy'))} "
            f"| {_epochs([s['best_epoch'] for s in summaries])} "
            f"| {_epochs(brakes) if reading else ''} |"
        )
    return "\n".join(lines) + "\n"


def paired_difference(
    runs: Runs, first: tuple[str, str], second: tuple[str, str], key: str
) -> np.ndarray:
    """``first - second`` in percentage points, per seed both have run."""
    seeds = sorted(set(runs.get(first, {})) & set(runs.get(second, {})))
    return np.array([(runs[first][s][key] - runs[second][s][key]) * 100 for s in seeds])


def pairs_table(runs: Runs, table: str, reading: str) -> str:
    """Goal-oriented minus PHS and minus SGD per pair, paired by seed."""
    lines = [
        "| pair (alpha, friction, mass) | goal | seeds | goal - PHS final | goal - PHS best "
        "| goal - SGD final | goal - SGD best | paper goal - PHS | paper goal - SGD |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    won = {"phs": 0, "sgd": 0}
    won_every_seed = {"phs": 0, "sgd": 0}
    counted = 0
    for pair in presets.pairs(table):
        goal = (pair.goal.name, reading)
        if goal not in runs:
            continue
        cells = []
        for baseline in ("phs", "sgd"):
            other = (getattr(pair, baseline).name, "")
            final = paired_difference(runs, goal, other, "final_test_accuracy")
            best = paired_difference(runs, goal, other, "best_test_accuracy")
            if len(final) == 0:
                cells += ["", ""]
                continue
            won[baseline] += bool(final.mean() > 0)
            won_every_seed[baseline] += bool((final > 0).all())
            cells += [_signed(final), _signed(best)]
        counted += 1
        paper = pair.goal.paper_accuracy * 100
        lines.append(
            f"| {pair.goal.learning_rate:g}, {pair.goal.friction:g}, {pair.goal.mass:g} "
            f"| {presets.goal_for(pair.goal, reading):g} x{pair.goal.brake_factor:g} "
            f"| {len(paired_difference(runs, goal, (pair.phs.name, ''), 'final_test_accuracy'))} "
            f"| {' | '.join(cells)} "
            f"| {paper - pair.phs.paper_accuracy * 100:+.2f} "
            f"| {paper - pair.sgd.paper_accuracy * 100:+.2f} |"
        )
    lines += [
        "",
        f"Goal-oriented ahead on mean final accuracy: {won['phs']} of {counted} pairs "
        f"vs PHS ({won_every_seed['phs']} on every seed), {won['sgd']} of {counted} "
        f"vs SGD ({won_every_seed['sgd']} on every seed). Paper: {counted} of "
        f"{counted} vs PHS.",
    ]
    return "\n".join(lines) + "\n"


def _signed(values: np.ndarray) -> str:
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():+.2f} ± {std:.2f}"


def table_report(folder: str | Path, table: str) -> str:
    """The rows table, then the pairs table for each goal reading present."""
    runs = load_runs(folder, table)
    parts = [f"## Rows ({folder})\n", rows_table(runs, table)]
    for reading in presets.READINGS:
        if any(key[1] == reading for key in runs):
            parts += [
                f"\n## Pairs, goal read as {reading}\n",
                pairs_table(runs, table, reading),
            ]
    return "\n".join(parts)


def compare_table(folders: Sequence[str | Path], table: str) -> str:
    """One column per folder: final mean ± std / mean best; brake epochs."""
    sweeps = {Path(f).name: load_runs(f, table) for f in folders}
    keys: list[tuple[str, str]] = []
    for runs in sweeps.values():
        keys += [k for k in runs if k not in keys]
    merged: Runs = {k: {} for k in keys}
    lines = [
        "Cells: final test accuracy mean ± std over seeds / mean best; "
        "brake epoch per seed.\n",
        "| paper row | goal reading | paper | " + " | ".join(sweeps) + " |",
        "|---|---|---|" + "---|" * len(sweeps),
    ]
    for name, reading in _row_keys(merged, table):
        cells = []
        for runs in sweeps.values():
            by_seed = runs.get((name, reading))
            if not by_seed:
                cells.append("")
                continue
            summaries = [by_seed[s] for s in sorted(by_seed)]
            best = _percent(summaries, "best_test_accuracy").mean()
            text = (
                f"{mean_std(_percent(summaries, 'final_test_accuracy'))} / {best:.2f}"
            )
            if reading:
                text += " brake@" + _epochs(
                    [
                        None if s["brake_epoch"] is None else round(s["brake_epoch"], 2)
                        for s in summaries
                    ]
                )
            cells.append(text)
        paper = presets.get_preset(name).paper_accuracy * 100
        lines.append(
            f"| {name} | {reading} | {paper:.2f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def ablation_table(
    folder: str | Path, reference: str | Path, reading: str = "remaining"
) -> str:
    """Per pair and seed: PHS, goal-oriented (from ``reference``), SGD with the
    equivalent heavy-ball momentum and the same effective-step drop at the goal
    run's brake step, and goal_phs braked at fixed epochs (from ``folder``)."""

    def summary_of(directory: Path, config: TrainConfig) -> dict | None:
        path = directory / run_name(config) / "summary.json"
        return json.loads(path.read_text()) if path.exists() else None

    def cell(summary: dict | None) -> str:
        if summary is None:
            return "not run"
        return (
            f"{summary['final_test_accuracy'] * 100:.2f} / "
            f"{summary['best_test_accuracy'] * 100:.2f}"
        )

    folder, reference = Path(folder), Path(reference)
    summaries = [json.loads(p.read_text()) for p in folder.glob("*/summary.json")]
    if not summaries:
        raise ValueError(f"no runs in {folder}")
    shared = summaries[0]["config"]
    base = TrainConfig(num_epochs=shared["num_epochs"], batch_size=shared["batch_size"])
    seeds = sorted({s["config"]["seed"] for s in summaries})
    fixed = [e for e in ablation.ABLATION_FIXED_BRAKE_EPOCHS if e < base.num_epochs]
    lines = [
        "Cells: final / best test accuracy (%).\n",
        "| pair (alpha, friction, mass) | seed | PHS | goal-oriented (brake epoch) "
        "| heavy-ball SGD, same drop at the same step | "
        + " | ".join(f"brake at epoch {e}" for e in fixed)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(fixed),
    ]
    ablations = ablation.ablation_configs(seeds, base, reference, reading)
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
            fixed_cells = [
                cell(summary_of(folder, c))
                for c in sorted(mine, key=lambda c: c.brake_at_step)
                if c.optimizer == "goal_phs"
                and (c.learning_rate, c.friction, c.mass)
                == (goal.learning_rate, goal.friction, goal.mass)
            ]
            goal_summary = summary_of(reference, goal)
            brake = goal_summary and goal_summary["brake_epoch"]
            lines.append(
                f"| {goal.learning_rate:g}, {goal.friction:g}, {goal.mass:g} | {seed} "
                f"| {cell(summary_of(reference, phs))} "
                f"| {cell(goal_summary)} ({'-' if brake is None else f'{brake:.2f}'}) "
                f"| {cell(summary_of(folder, drop) if drop else None)} "
                f"| {' | '.join(fixed_cells)} |"
            )
    return "\n".join(lines) + "\n"


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


def _difference(values: list[float]) -> str:
    if not values:
        return "-"
    array = np.array(values)
    wins, ties = int((array > 0).sum()), int((array == 0).sum())
    return f"{_signed(array)} ({wins}/{len(array)}" + (
        f", {ties} tied)" if ties else ")"
    )


def beyond_table(folders: Sequence[str | Path]) -> str:
    """Per option and pair: accuracy, and option minus goal-oriented and minus
    PHS paired by seed (wins/seeds), final and best test accuracy."""
    runs = load_beyond_runs(folders)
    variants = sorted({k[5] for k in runs} - {"PHS", "goal"})
    lines = [
        "Cells: test accuracy (%) mean ± sample std over seeds; differences in "
        "points, paired by seed, with (seeds where the option is ahead / seeds, "
        "ties: equal to the last digit). "
        "† the reference trained on the full training set, the option on the "
        "set minus its validation split.\n"
    ]
    for variant in variants:
        lines += [
            f"\n### {variant}\n",
            "| pair (alpha, friction, mass), goal | seeds | final | best | - goal final "
            "| - goal best | - PHS final | - PHS best | brake epochs | releases |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        pairs = sorted({k[:5] for k in runs if k[5] == variant}, reverse=True)
        for pair in pairs:
            keys = sorted(k for k in runs if k[:5] == pair and k[5] == variant)
            mine = [runs[k] for k in keys]
            cells = []
            for reference in ("goal", "PHS"):
                for metric in ("final_test_accuracy", "best_test_accuracy"):
                    diffs, other_set = [], False
                    for key, summary in zip(keys, mine, strict=True):
                        ref, flagged = _reference(runs, key, reference)
                        if ref is not None:
                            diffs.append((summary[metric] - ref[metric]) * 100)
                            other_set |= flagged
                    cells.append(_difference(diffs) + (" †" if other_set else ""))
            brakes = [
                None if s["brake_epoch"] is None else round(s["brake_epoch"], 2)
                for s in mine
            ]
            releases = [s.get("releases") for s in mine]
            lines.append(
                f"| {pair[0]:g}, {pair[1]:g}, {pair[2]:g}, {pair[4]:g} | {len(mine)} "
                f"| {mean_std(_percent(mine, 'final_test_accuracy'))} "
                f"| {mean_std(_percent(mine, 'best_test_accuracy'))} "
                f"| {' | '.join(cells)} | {_epochs(brakes)} "
                f"| {_epochs(releases) if any(r is not None for r in releases) else ''} |"
            )
    return "\n".join(lines) + "\n"


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
