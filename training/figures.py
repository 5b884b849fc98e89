"""The paper's Figure 3 (accuracy over epochs, PHS vs goal-oriented) and Figure 1
(PHS accuracy over a mass x friction grid at alpha = 0.1), from sweep folders.

    python -m phs_optax_training.figures figure3 --table2=results/table2/runs \
        --reading=remaining --out=results/figure3.png
    python -m phs_optax_training.figures figure1 results/figure1/runs \
        --out=results/figure1.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from phs_optax_training import presets  # noqa: E402

# (table, alpha, friction, mass) of the paper's Figure 3 panels a-d.
FIGURE3_PANELS = (
    ("table2", 0.1, 0.1, 10.0),
    ("table2", 0.01, 1.0, 0.1),
    ("table1", 0.1, 0.1, 100.0),
    ("table1", 0.01, 0.1, 25.0),
)
PHS_COLOR, GOAL_COLOR = "tab:orange", "tab:blue"  # as in the paper


def _test_accuracy(folder: Path, run_dir_name: str) -> np.ndarray:
    lines = (folder / run_dir_name / "metrics.jsonl").read_text().splitlines()
    return np.array([json.loads(line)["test_accuracy"] * 100 for line in lines])


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


def _plot_runs(axes, folder: Path, names: list[str], color: str, label: str) -> None:
    curves = [_test_accuracy(folder, name) for name in names]
    length = min(len(c) for c in curves)
    epochs = np.arange(1, length + 1)
    for curve in curves:
        axes.plot(epochs, curve[:length], color=color, alpha=0.3, linewidth=0.8)
    axes.plot(
        epochs,
        np.mean([c[:length] for c in curves], axis=0),
        color=color,
        linewidth=2,
        label=f"{label} (mean of {len(curves)})",
    )


def figure3(
    folders: dict[str, Path],
    reading: str,
    out: Path,
    title_suffix: str = "",
    pairs: Sequence[tuple[str, float, float, float]] = FIGURE3_PANELS,
) -> Path:
    """One panel per pair (table, alpha, friction, mass) found in ``folders``
    (table -> folder); by default the paper's Figure 3 configurations."""
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
        runs = _run_dirs(folders[table])
        goal = presets.goal_for(pair.goal, reading)
        phs_names = [
            v for k, v in runs.items() if k[:5] == ("phs", lr, friction, mass, None)
        ]
        goal_names = [
            v
            for k, v in runs.items()
            if k[:5] == ("goal_phs", lr, friction, mass, goal)
        ]
        if phs_names and goal_names:
            panels.append(
                (table, pair, folders[table], sorted(phs_names), sorted(goal_names))
            )
    if not panels:
        raise ValueError("no Figure 3 configuration found in the given sweep folders")
    figure, axes_list = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False
    )
    for axes, (table, pair, folder, phs_names, goal_names) in zip(
        axes_list[0], panels, strict=True
    ):
        _plot_runs(axes, folder, phs_names, PHS_COLOR, "PHS")
        _plot_runs(
            axes,
            folder,
            goal_names,
            GOAL_COLOR,
            f"goal-oriented ({reading} {pair.goal.paper_goal:g}, x{pair.goal.brake_factor:g})",
        )
        for name in goal_names:
            summary = json.loads((folder / name / "summary.json").read_text())
            if summary["brake_epoch"] is not None:
                axes.axvline(
                    summary["brake_epoch"],
                    color=GOAL_COLOR,
                    linestyle=":",
                    linewidth=0.8,
                )
        dataset = "Fashion-MNIST" if table == "table2" else "CIFAR-10"
        axes.set_title(
            f"alpha={pair.goal.learning_rate:g}, friction={pair.goal.friction:g}, "
            f"mass={pair.goal.mass:g}, {dataset}{title_suffix}",
            fontsize=9,
        )
        axes.set_xlabel("epoch (dotted: brake of each goal-oriented run)")
        axes.set_ylabel("test accuracy (%)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def figure1(folder: Path, out: Path, metric: str = "final_test_accuracy") -> Path:
    """Heat map of PHS ``metric`` (mean over seeds) over mass x friction."""
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
    grid = np.full((len(masses), len(frictions)), np.nan)
    for (m, f), values in cells.items():
        grid[masses.index(m), frictions.index(f)] = np.mean(values)
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    image = axes.imshow(grid, cmap="viridis", origin="lower", vmin=10, vmax=100)
    for i in range(len(masses)):
        for j in range(len(frictions)):
            if not np.isnan(grid[i, j]):
                axes.text(
                    j,
                    i,
                    f"{grid[i, j]:.1f}",
                    ha="center",
                    va="center",
                    color="white" if grid[i, j] < 60 else "black",
                    fontsize=9,
                )
    axes.set_xticks(range(len(frictions)), [f"{f:g}" for f in frictions])
    axes.set_yticks(range(len(masses)), [f"{m:g}" for m in masses])
    axes.set_xlabel("friction")
    axes.set_ylabel("mass")
    seeds = max(len(v) for v in cells.values())
    axes.set_title(
        f"PHS, alpha=0.1, Fashion-MNIST: {metric.replace('_', ' ')} (%), "
        f"mean of {seeds} seed(s)",
        fontsize=9,
    )
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


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
