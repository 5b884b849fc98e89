"""Plots of training runs: accuracy, loss and energy, and runs side by side.

A run's workdir holds ``metrics.jsonl`` (one JSON object per epoch) and
``summary.json`` (``config``, ``brake_step``, ``brake_epoch``, ...). Figures are
drawn with matplotlib's Agg canvas (no display, no pyplot state) as PNG.

Command line::

    python -m phs_optax_training.plotting run WORKDIR [--out-dir DIR]
    python -m phs_optax_training.plotting compare WORKDIR [WORKDIR ...] \\
        --out fig.png [--metric test_accuracy] [--labels a,b]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
_DPI = 120


class PlotError(ValueError):
    """A workdir cannot be plotted (missing, empty or malformed files)."""


# --------------------------------------------------------------------- reading


def read_metrics(workdir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``workdir/metrics.jsonl``, in file order.

    Blank lines are skipped; a truncated last line (a run still writing) is
    ignored. Raises :class:`PlotError` if the workdir or the file is missing,
    if another line is not JSON, or if there is no record.
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise PlotError(f"workdir {str(workdir)!r} does not exist")
    path = workdir / METRICS_FILE
    if not path.is_file():
        raise PlotError(f"no {METRICS_FILE} in workdir {str(workdir)!r}")
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise PlotError(f"{path}: line {number} is not JSON ({err.msg})") from None
    if not records:
        raise PlotError(f"{path} holds no records")
    return records


def read_summary(workdir: str | Path) -> dict[str, Any]:
    """The object in ``workdir/summary.json``; an empty dict if there is none."""
    path = Path(workdir) / SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PlotError(f"{path} is not JSON ({err.msg})") from None
    return summary if isinstance(summary, dict) else {}


# ------------------------------------------------------------------ helpers


def _series(records: Sequence[dict[str, Any]], key: str) -> list[float]:
    """Values of ``key`` per record as floats, NaN where null or missing."""
    out = []
    for record in records:
        value = record.get(key)
        out.append(math.nan if value is None else float(value))
    return out


def _has_values(values: Sequence[float]) -> bool:
    return any(math.isfinite(v) for v in values)


def _epochs(records: Sequence[dict[str, Any]]) -> list[float]:
    return [float(r.get("epoch", i + 1)) for i, r in enumerate(records)]


def _steps_per_epoch(
    summary: dict[str, Any], records: Sequence[dict[str, Any]]
) -> float | None:
    config = summary.get("config") or {}
    if config.get("steps_per_epoch"):
        return float(config["steps_per_epoch"])
    for record in records:
        if record.get("step") and record.get("epoch"):
            return float(record["step"]) / float(record["epoch"])
    return None


def brake_epoch(
    summary: dict[str, Any], records: Sequence[dict[str, Any]]
) -> float | None:
    """The (fractional) epoch of the brake, or None if the run never braked.

    Taken from ``summary["brake_epoch"]``, else from a ``brake_step`` (summary
    or last record) over the steps per epoch, else the first epoch whose
    record says ``braked``.
    """
    if summary.get("brake_epoch") is not None:
        return float(summary["brake_epoch"])
    step = summary.get("brake_step")
    if step is None and records:
        step = records[-1].get("brake_step")
    per_epoch = _steps_per_epoch(summary, records)
    if step is not None and per_epoch:
        return float(step) / per_epoch
    for record, epoch in zip(records, _epochs(records), strict=True):
        if record.get("braked"):
            return epoch
    return None


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def run_label(summary: dict[str, Any], fallback: str = "run") -> str:
    """A legend label from the summary's config: optimizer and hyperparameters."""
    config = summary.get("config") or {}
    optimizer = config.get("optimizer")
    if not optimizer:
        return fallback
    parts = [str(optimizer)]
    for key, short in (
        ("learning_rate", "lr"),
        ("friction", "f"),
        ("mass", "m"),
        ("goal", "goal"),
        ("brake_factor", "x"),
    ):
        value = config.get(key)
        if value is None or (
            key in ("goal", "brake_factor") and "goal" not in optimizer
        ):
            continue
        parts.append(f"{short}={_fmt(value)}" if short != "x" else f"x{_fmt(value)}")
    return " ".join(parts)


def _value_at(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Linear interpolation of finite points (xs ascending) at ``x``."""
    points = [(a, b) for a, b in zip(xs, ys, strict=True) if math.isfinite(b)]
    if not points:
        return math.nan
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def _new_figure() -> Figure:
    figure = Figure(figsize=(7.0, 4.5), dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def _mark_brake(axes: Any, epoch: float | None, color: str = "black") -> None:
    if epoch is None:
        return
    axes.axvline(epoch, color=color, linestyle="--", linewidth=1.0)
    axes.annotate(
        f"brake @ {epoch:.2f}",
        xy=(epoch, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(3, -12),
        textcoords="offset points",
        fontsize=8,
        color=color,
    )


def _log_if_positive(axes: Any, *series: Sequence[float]) -> None:
    finite = [v for values in series for v in values if math.isfinite(v)]
    if finite and min(finite) > 0:
        axes.set_yscale("log")


def _scale(metric: str) -> float:
    return 100.0 if "accuracy" in metric else 1.0


def _axis_label(metric: str) -> str:
    return metric.replace("_", " ") + (" (%)" if "accuracy" in metric else "")


# -------------------------------------------------------------------- plots


def _plot_accuracy(records, summary, title: str, path: Path) -> Path:
    figure = _new_figure()
    axes = figure.add_subplot()
    epochs = _epochs(records)
    for key, style in (("test_accuracy", "-"), ("train_accuracy", ":")):
        values = [100.0 * v for v in _series(records, key)]
        if _has_values(values):
            axes.plot(epochs, values, style, marker=".", label=key.replace("_", " "))
    _mark_brake(axes, brake_epoch(summary, records))
    axes.set(xlabel="epoch", ylabel="accuracy (%)", title=title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")
    return _save(figure, path)


def _plot_loss(records, summary, title: str, path: Path) -> Path:
    figure = _new_figure()
    axes = figure.add_subplot()
    epochs = _epochs(records)
    plotted = []
    for key in ("train_loss", "test_loss", "validation_loss"):
        values = _series(records, key)
        if _has_values(values):
            axes.plot(epochs, values, marker=".", label=key.replace("_", " "))
            plotted.append(values)
    _log_if_positive(axes, *plotted)
    _mark_brake(axes, brake_epoch(summary, records))
    axes.set(xlabel="epoch", ylabel="loss", title=title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper right")
    return _save(figure, path)


def _plot_energy(records, summary, title: str, path: Path) -> Path | None:
    epochs = _epochs(records)
    series = {k: _series(records, k) for k in ("kinetic_energy", "hamiltonian")}
    series = {k: v for k, v in series.items() if _has_values(v)}
    if not series:
        return None
    figure = _new_figure()
    axes = figure.add_subplot()
    for key, values in series.items():
        axes.plot(epochs, values, marker=".", label=key.replace("_", " "))
    _log_if_positive(axes, *series.values())
    _mark_brake(axes, brake_epoch(summary, records))
    axes.set(xlabel="epoch", ylabel="energy", title=title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper right")
    return _save(figure, path)


def plot_run(workdir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Plot one run; return the PNG paths written.

    Writes ``accuracy.png`` (test and train accuracy per epoch, brake marked as
    in the paper's Figure 3), ``loss.png`` (train/test/validation loss, log
    scale when positive) and, when the run logged them (not SGD),
    ``energy.png`` (kinetic energy and Hamiltonian) into ``out_dir``
    (default: the workdir).
    """
    records = read_metrics(workdir)
    summary = read_summary(workdir)
    out = Path(workdir) if out_dir is None else Path(out_dir)
    title = run_label(summary, fallback=Path(workdir).name)
    written = [
        _plot_accuracy(records, summary, title, out / "accuracy.png"),
        _plot_loss(records, summary, title, out / "loss.png"),
    ]
    energy = _plot_energy(records, summary, title, out / "energy.png")
    if energy is not None:
        written.append(energy)
    return written


def plot_compare(
    workdirs: Sequence[str | Path],
    out_path: str | Path,
    labels: Sequence[str] | None = None,
    metric: str = "test_accuracy",
) -> Path:
    """Overlay ``metric`` per epoch of several runs in one PNG at ``out_path``.

    Each run's brake is a dashed vertical line with a dot on its curve, in the
    run's color. Labels come from each summary's config unless given.
    """
    if not workdirs:
        raise PlotError("no workdirs to compare")
    if labels is not None and len(labels) != len(workdirs):
        raise PlotError(f"got {len(labels)} labels for {len(workdirs)} workdirs")
    runs = [(read_metrics(w), read_summary(w)) for w in workdirs]
    if not any(_has_values(_series(records, metric)) for records, _ in runs):
        raise PlotError(f"no run has values for metric {metric!r}")
    figure = _new_figure()
    axes = figure.add_subplot()
    for index, (workdir, (records, summary)) in enumerate(
        zip(workdirs, runs, strict=True)
    ):
        label = labels[index] if labels else run_label(summary, Path(workdir).name)
        _plot_one(axes, records, summary, metric, label, f"C{index}")
    axes.set(xlabel="epoch", ylabel=_axis_label(metric), title=_axis_label(metric))
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, Path(out_path))


def _plot_one(axes, records, summary, metric: str, label: str, color: str) -> None:
    epochs = _epochs(records)
    values = [_scale(metric) * v for v in _series(records, metric)]
    axes.plot(epochs, values, color=color, label=label)
    epoch = brake_epoch(summary, records)
    if epoch is not None:
        axes.axvline(epoch, color=color, linestyle="--", linewidth=1.0, alpha=0.8)
        axes.plot([epoch], [_value_at(epochs, values, epoch)], "o", color=color)


# ---------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m phs_optax_training.plotting",
        description="Plot training runs written by phs_optax_training.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="accuracy/loss/energy PNGs of one run")
    run.add_argument("workdir")
    run.add_argument("--out-dir", default=None, help="default: the workdir")
    compare = commands.add_parser("compare", help="overlay several runs")
    compare.add_argument("workdirs", nargs="+")
    compare.add_argument("--out", required=True, help="output PNG path")
    compare.add_argument("--metric", default="test_accuracy")
    compare.add_argument("--labels", default=None, help="comma-separated labels")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry; returns the exit code (2 on unusable input)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            paths = plot_run(args.workdir, args.out_dir)
        else:
            labels = args.labels.split(",") if args.labels is not None else None
            paths = [plot_compare(args.workdirs, args.out, labels, args.metric)]
    except (PlotError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
