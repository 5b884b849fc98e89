"""The paper's Figure 3 (accuracy over epochs, PHS vs goal-oriented) and Figure 1
(PHS accuracy over a mass x friction grid at alpha = 0.1), from sweep folders.

What is plotted is data first: :func:`figure3_panels` -> one
:class:`plotting.Panel` per pair (curves, brake marks, divergence notes),
:func:`figure1_grid` -> :class:`HeatMap`; :func:`figure3` and :func:`figure1`
draw them and write the PNG.

    python -m phs_optax_training.figures figure3 --table2=results/table2/runs \
        --reading=remaining --out=results/figure3.png
    python -m phs_optax_training.figures figure1 results/figure1/runs \
        --out=results/figure1.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from phs_optax_training import plotting, presets

# (table, alpha, friction, mass) of the paper's Figure 3 panels a-d.
FIGURE3_PANELS = (
    ("table2", 0.1, 0.1, 10.0),
    ("table2", 0.01, 1.0, 0.1),
    ("table1", 0.1, 0.1, 100.0),
    ("table1", 0.01, 0.1, 25.0),
)
PHS_COLOR, GOAL_COLOR = "tab:orange", "tab:blue"  # as in the paper


def _run_dirs(folder: Path) -> dict[tuple, str]:
    """(optimizer, lr, friction, mass, goal, seed) -> run folder name."""
    found = {}
    for path in folder.glob("*/summary.json"):
        config = json.loads(path.read_text())["config"]
        if config["brake_trigger"] != "goal" or config["sgd_momentum"]:
            continue
        key = (
            config["optimizer"],
            config["learning_rate"],
            config["friction"],
            config["mass"],
            config["goal"] if config["optimizer"] == "goal_phs" else None,
            config["seed"],
        )
        found[key] = path.parent.name
    return found


def _runs_lines(
    folder: Path, names: list[str], color: str, label: str
) -> tuple[list[plotting.Line], list[tuple[list[dict], dict, str]]]:
    """Test accuracy (%) of each run, faint, and their mean over the epochs
    all runs reached; also (records, summary, name) of each run."""
    runs = [
        (plotting.read_metrics(folder / n), plotting.read_summary(folder / n), n)
        for n in names
    ]
    curves = [
        plotting.series(records, "test_accuracy", 100.0) for records, _, _ in runs
    ]
    lines = [
        plotting.Line(
            plotting.epochs(records), curve, color=color, linewidth=0.8, alpha=0.3
        )
        for (records, _, _), curve in zip(runs, curves, strict=True)
    ]
    length = min(len(c) for c in curves)
    longest = max((records for records, _, _ in runs), key=len)
    mean = np.mean([c[:length] for c in curves], axis=0)
    lines.append(
        plotting.Line(
            plotting.epochs(longest)[:length],
            tuple(float(v) for v in mean),
            f"{label} (mean of {len(curves)})",
            color,
            linewidth=2.0,
        )
    )
    return lines, runs


def figure3_panels(
    folders: dict[str, Path],
    reading: str,
    pairs: Sequence[tuple[str, float, float, float]] = FIGURE3_PANELS,
    title_suffix: str = "",
) -> list[plotting.Panel]:
    """One panel per pair (table, alpha, friction, mass) found in ``folders``
    (table -> folder): test accuracy of each PHS and goal-oriented run and
    their means, each goal-oriented run's brake a mark at brake_step /
    steps_per_epoch, a note per run that diverged."""
    panels = []
    for table, lr, friction, mass in pairs:
        if table not in folders:
            continue
        pair = next(
            (
                p
                for p in presets.pairs(table)
                if (p.goal.learning_rate, p.goal.friction, p.goal.mass)
                == (lr, friction, mass)
            ),
            None,
        )
        if pair is None:
            raise ValueError(
                f"{table} has no pair alpha={lr:g}, friction={friction:g}, "
                f"mass={mass:g}; see its presets"
            )
        folder = folders[table]
        runs = _run_dirs(folder)
        goal = presets.goal_for(pair.goal, reading)
        phs_names = sorted(
            v for k, v in runs.items() if k[:5] == ("phs", lr, friction, mass, None)
        )
        goal_names = sorted(
            v
            for k, v in runs.items()
            if k[:5] == ("goal_phs", lr, friction, mass, goal)
        )
        if not (phs_names and goal_names):
            continue
        phs_lines, phs_runs = _runs_lines(folder, phs_names, PHS_COLOR, "PHS")
        goal_lines, goal_runs = _runs_lines(
            folder,
            goal_names,
            GOAL_COLOR,
            f"goal-oriented ({reading} {pair.goal.paper_goal:g}, "
            f"x{pair.goal.brake_factor:g})",
        )
        marks = [
            plotting.Mark(x, "brake of a goal-oriented run", GOAL_COLOR, ":", 0.8)
            for records, summary, _ in goal_runs
            if (x := plotting.brake_epoch(summary, records)) is not None
        ]
        notes = []
        for kind, kind_runs in (("PHS", phs_runs), ("goal", goal_runs)):
            for records, summary, name in kind_runs:
                diverged = plotting.divergence(summary, records)
                if diverged is not None:
                    seed = (summary.get("config") or {}).get("seed", name)
                    notes.append(f"{kind} seed {seed} {diverged.note}")
        dataset = "Fashion-MNIST" if table == "table2" else "CIFAR-10"
        panels.append(
            plotting.Panel(
                f"alpha={pair.goal.learning_rate:g}, friction={pair.goal.friction:g}, "
                f"mass={pair.goal.mass:g}, {dataset}{title_suffix}",
                "epoch",
                "test accuracy (%)",
                tuple(phs_lines + goal_lines),
                tuple(marks),
                tuple(notes),
                title_size=9,
            )
        )
    if not panels:
        raise ValueError("no Figure 3 configuration found in the given sweep folders")
    return panels


def figure3(
    folders: dict[str, Path],
    reading: str,
    out: Path,
    title_suffix: str = "",
    pairs: Sequence[tuple[str, float, float, float]] = FIGURE3_PANELS,
) -> Path:
    """:func:`figure3_panels` side by side, written as PNG at ``out``; by
    default the paper's Figure 3 configurations."""
    panels = figure3_panels(folders, reading, pairs, title_suffix)
    chart = plotting.Chart(tuple(panels), columns=len(panels), panel_size=(5.5, 4.5))
    return plotting.save_chart(chart, out)


@dataclasses.dataclass(frozen=True)
class HeatMap:
    """``values[i][j]``: mean over seeds of the metric (%) at ``masses[i]``,
    ``frictions[j]`` (NaN where no run); ``seeds``: most seeds of a cell."""

    masses: tuple[float, ...]
    frictions: tuple[float, ...]
    values: tuple[tuple[float, ...], ...]
    seeds: int
    metric: str


def figure1_grid(folder: Path, metric: str = "final_test_accuracy") -> HeatMap:
    """PHS ``metric`` (mean over seeds, in %) over mass x friction."""
    cells: dict[tuple[float, float], list[float]] = {}
    for path in folder.glob("*/summary.json"):
        summary = json.loads(path.read_text())
        config = summary["config"]
        if config["optimizer"] != "phs":
            continue
        cells.setdefault((config["mass"], config["friction"]), []).append(
            summary[metric] * 100
        )
    if not cells:
        raise ValueError(f"no PHS runs in {folder}")
    masses = sorted({m for m, _ in cells})
    frictions = sorted({f for _, f in cells})
    values = tuple(
        tuple(
            float(np.mean(cells[(m, f)])) if (m, f) in cells else float("nan")
            for f in frictions
        )
        for m in masses
    )
    seeds = max(len(v) for v in cells.values())
    return HeatMap(tuple(masses), tuple(frictions), values, seeds, metric)


def draw_heat_map(grid: HeatMap) -> Figure:
    figure = Figure(figsize=(5.5, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    values = np.array(grid.values)
    image = axes.imshow(values, cmap="viridis", origin="lower", vmin=10, vmax=100)
    for i in range(len(grid.masses)):
        for j in range(len(grid.frictions)):
            if not np.isnan(values[i, j]):
                axes.text(
                    j,
                    i,
                    f"{values[i, j]:.1f}",
                    ha="center",
                    va="center",
                    color="white" if values[i, j] < 60 else "black",
                    fontsize=9,
                )
    axes.set_xticks(range(len(grid.frictions)), [f"{f:g}" for f in grid.frictions])
    axes.set_yticks(range(len(grid.masses)), [f"{m:g}" for m in grid.masses])
    axes.set_xlabel("friction")
    axes.set_ylabel("mass")
    axes.set_title(
        f"PHS, alpha=0.1, Fashion-MNIST: {grid.metric.replace('_', ' ')} (%), "
        f"mean of {grid.seeds} seed(s)",
        fontsize=9,
    )
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    return figure


def figure1(folder: Path, out: Path, metric: str = "final_test_accuracy") -> Path:
    """Heat map of PHS ``metric`` (mean over seeds) over mass x friction."""
    return plotting.write_png(draw_heat_map(figure1_grid(folder, metric)), out)


def _pair_argument(text: str) -> tuple[str, float, float, float]:
    table, _, numbers = text.partition(":")
    try:
        lr, friction, mass = (float(x) for x in numbers.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not TABLE:ALPHA,FRICTION,MASS, e.g. table1:0.1,0.01,100"
        ) from None
    if table not in ("table1", "table2"):
        raise argparse.ArgumentTypeError(f"table {table!r} is not table1 or table2")
    return table, lr, friction, mass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phs_optax_training.figures")
    commands = parser.add_subparsers(dest="command", required=True)
    fig3 = commands.add_parser("figure3", help="accuracy over epochs, PHS vs goal")
    fig3.add_argument("--table2", help="sweep folder with Table 2 runs")
    fig3.add_argument("--table1", help="sweep folder with Table 1 runs")
    fig3.add_argument("--reading", default="remaining", choices=presets.READINGS)
    fig3.add_argument(
        "--pair",
        action="append",
        type=_pair_argument,
        help="TABLE:ALPHA,FRICTION,MASS of a panel (repeatable); "
        "default: the paper's Figure 3 panels",
    )
    fig3.add_argument("--out", required=True)
    fig1 = commands.add_parser("figure1", help="PHS mass x friction heat map")
    fig1.add_argument("folder")
    fig1.add_argument(
        "--metric",
        default="final_test_accuracy",
        choices=("final_test_accuracy", "best_test_accuracy"),
    )
    fig1.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "figure3":
            folders = {
                table: Path(folder)
                for table, folder in (("table1", args.table1), ("table2", args.table2))
                if folder
            }
            pairs = tuple(args.pair) if args.pair else FIGURE3_PANELS
            print(figure3(folders, args.reading, Path(args.out), pairs=pairs))
        else:
            print(figure1(Path(args.folder), Path(args.out), args.metric))
    except ValueError as error:
        print(f"figures: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
