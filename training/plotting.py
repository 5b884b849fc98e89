"""Plots of training runs: accuracy, loss and energy, and runs side by side.

A run's workdir holds ``metrics.jsonl`` (one JSON object per epoch) and
``summary.json`` (``config``, ``brake_step``, ``brake_epoch``, ``diverged``,
``diverged_at``, ...). What is plotted is computed first, as data: a
:class:`Panel` holds the curves (:class:`Line`, x and y values, NaN where a
value is missing or non-finite), the events at one update (:class:`Mark`: a
brake or a divergence, an x position and no y value) and notes such as
"diverged at epoch 3". :func:`draw` turns a :class:`Chart` of panels into a
matplotlib figure (Agg canvas, no display, no pyplot state) and
:func:`write_png` writes it.

* :func:`run_panels` -> ``{"accuracy": Panel, "loss": Panel, "energy": Panel}``
  (no energy for SGD), written by :func:`plot_run`;
* :func:`compare_panel` -> one :class:`Panel` of several runs, written by
  :func:`plot_compare`.

Command line::

    python -m phs_optax_training.plotting run WORKDIR [--out-dir DIR]
    python -m phs_optax_training.plotting compare WORKDIR [WORKDIR ...] \\
        --out fig.png [--metric test_accuracy] [--labels a,b]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.transforms import offset_copy

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
_DPI = 120
BRAKE_COLOR = "black"
PALETTE = (
    "tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:cyan",
    "tab:olive", "tab:pink", "tab:gray",
)  # fmt: skip
DIVERGED_COLOR = "tab:red"


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


# ------------------------------------------------------------ what is plotted


@dataclasses.dataclass(frozen=True)
class Line:
    """A curve; ``y`` is NaN where the value is missing or non-finite."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    label: str | None = None
    color: str | None = None
    linestyle: str = "-"
    marker: str | None = None
    linewidth: float = 1.5
    alpha: float = 1.0

    @property
    def has_values(self) -> bool:
        return any(math.isfinite(v) for v in self.y)


@dataclasses.dataclass(frozen=True)
class Mark:
    """An event at one x position (a brake, a divergence): drawn as a vertical
    line with a marker on the x axis; it has no y value."""

    x: float
    label: str | None = None
    color: str = BRAKE_COLOR
    linestyle: str = "--"
    linewidth: float = 1.0


@dataclasses.dataclass(frozen=True)
class Band:
    """A shaded range between ``low`` and ``high`` over ``x`` (an interval
    around a curve)."""

    x: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    color: str | None = None
    alpha: float = 0.2


@dataclasses.dataclass(frozen=True)
class Panel:
    """One axes: curves, marks and notes (written on the axes).

    ``legend``: "below" (under the x axis label), "right" (outside, next to
    the axes) or None.
    """

    title: str
    xlabel: str
    ylabel: str
    lines: tuple[Line, ...] = ()
    marks: tuple[Mark, ...] = ()
    notes: tuple[str, ...] = ()
    log_y: bool = False
    bands: tuple[Band, ...] = ()
    log_x: bool = False
    xticks: tuple[float, ...] = ()  # labelled positions (none: matplotlib's)
    legend: str | None = "below"
    title_size: float | None = None


@dataclasses.dataclass(frozen=True)
class Chart:
    """Panels on a grid of ``columns`` columns, each ``panel_size`` inches."""

    panels: tuple[Panel, ...]
    columns: int = 1
    panel_size: tuple[float, float] = (7.0, 4.5)
    sharex: bool = False


def series(
    records: Sequence[dict[str, Any]], key: str, scale: float = 1.0
) -> tuple[float, ...]:
    """``scale`` times the values of ``key`` per record, NaN where null,
    missing or non-finite."""
    out = []
    for record in records:
        value = record.get(key)
        value = math.nan if value is None else float(value)
        out.append(scale * value if math.isfinite(value) else math.nan)
    return tuple(out)


def epochs(records: Sequence[dict[str, Any]]) -> tuple[float, ...]:
    """The epoch of each record (1 for the first epoch's end), else its position."""
    return tuple(float(r.get("epoch", i + 1)) for i, r in enumerate(records))


def steps_per_epoch(
    summary: dict[str, Any], records: Sequence[dict[str, Any]]
) -> float | None:
    """Updates per epoch: from the summary's config, else from a record."""
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
    """The (fractional) epoch of the first brake, or None if the run never braked.

    ``brake_step / steps_per_epoch`` from the summary, else its
    ``brake_epoch``, else a ``brake_step`` of the last record over the steps per
    epoch, else the first epoch whose record says ``braked``.
    """
    per_epoch = steps_per_epoch(summary, records)
    if summary.get("brake_step") is not None and per_epoch:
        return float(summary["brake_step"]) / per_epoch
    if summary.get("brake_epoch") is not None:
        return float(summary["brake_epoch"])
    step = records[-1].get("brake_step") if records else None
    if step is not None and per_epoch:
        return float(step) / per_epoch
    for record, epoch in zip(records, epochs(records), strict=True):
        if record.get("braked"):
            return epoch
    return None


def brake_epochs(
    summary: dict[str, Any], records: Sequence[dict[str, Any]]
) -> list[float]:
    """Every brake in epochs, ascending: the first (:func:`brake_epoch`) and,
    for runs that release and brake again, each ``last_brake_step`` logged."""
    first = brake_epoch(summary, records)
    if first is None:
        return []
    found = {first}
    per_epoch = steps_per_epoch(summary, records)
    if per_epoch:
        steps = [r.get("last_brake_step") for r in records]
        steps.append(summary.get("last_brake_step"))
        found |= {float(s) / per_epoch for s in steps if s is not None}
    return sorted(found)


@dataclasses.dataclass(frozen=True)
class Divergence:
    """Where the training loss first became non-finite: the epoch of the
    record, and the update if known (``x``: that update in epochs)."""

    epoch: int
    step: int | None
    x: float | None

    @property
    def note(self) -> str:
        return f"diverged at epoch {self.epoch}"


def divergence(
    summary: dict[str, Any], records: Sequence[dict[str, Any]]
) -> Divergence | None:
    """The run's divergence, or None: ``summary["diverged_at"]`` if present,
    else the first record with a ``diverged_at_step`` or a train loss that is
    null (non-finite, written as strict JSON) or non-finite."""
    per_epoch = steps_per_epoch(summary, records)

    def found(epoch: Any, step: Any) -> Divergence:
        step = None if step is None else int(step)
        x = step / per_epoch if step is not None and per_epoch else None
        return Divergence(int(epoch), step, x)

    at = summary.get("diverged_at")
    if isinstance(at, dict) and at.get("epoch") is not None:
        return found(at["epoch"], at.get("step"))
    for record, epoch in zip(records, epochs(records), strict=True):
        if record.get("diverged_at_step") is not None:
            return found(epoch, record["diverged_at_step"])
        if "train_loss" in record:
            value = record["train_loss"]
            if value is None or not math.isfinite(float(value)):
                return found(epoch, None)
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
        if key in ("friction", "mass") and optimizer == "sgd":
            continue
        parts.append(f"{short}={_fmt(value)}" if short != "x" else f"x{_fmt(value)}")
    return " ".join(parts)


def _log_y(lines: Sequence[Line]) -> bool:
    finite = [v for line in lines for v in line.y if math.isfinite(v)]
    return bool(finite) and min(finite) > 0


def _scale(metric: str) -> float:
    return 100.0 if "accuracy" in metric else 1.0


def _axis_label(metric: str) -> str:
    return metric.replace("_", " ") + (" (%)" if "accuracy" in metric else "")


def _event_marks(
    summary: dict[str, Any],
    records: Sequence[dict[str, Any]],
    color: str = BRAKE_COLOR,
    prefix: str = "",
) -> tuple[Mark, ...]:
    """The brakes and the divergence (if its update is known) of one run."""
    marks = [
        Mark(x, f"{prefix}brake at epoch {x:.2f}", color)
        for x in brake_epochs(summary, records)
    ]
    diverged = divergence(summary, records)
    if diverged is not None and diverged.x is not None:
        marks.append(
            Mark(
                diverged.x,
                f"{prefix}diverged at update {diverged.step}",
                DIVERGED_COLOR,
                linestyle=":",
                linewidth=1.5,
            )
        )
    return tuple(marks)


def _notes(summary, records, prefix: str = "") -> tuple[str, ...]:
    diverged = divergence(summary, records)
    return () if diverged is None else (prefix + diverged.note,)


def accuracy_panel(records, summary, title: str) -> Panel:
    """Test and train accuracy (%) per epoch, brakes marked."""
    x = epochs(records)
    lines = [
        Line(
            x,
            series(records, key, 100.0),
            key.replace("_", " "),
            linestyle=style,
            marker=".",
        )
        for key, style in (("test_accuracy", "-"), ("train_accuracy", ":"))
    ]
    return Panel(
        title,
        "epoch",
        "accuracy (%)",
        tuple(line for line in lines if line.has_values),
        _event_marks(summary, records),
        _notes(summary, records),
    )


def loss_panel(records, summary, title: str) -> Panel:
    """Train, test and validation loss per epoch (log scale when positive)."""
    x = epochs(records)
    lines = [
        Line(x, series(records, key), key.replace("_", " "), marker=".")
        for key in ("train_loss", "test_loss", "validation_loss")
    ]
    lines = [line for line in lines if line.has_values]
    return Panel(
        title,
        "epoch",
        "loss",
        tuple(lines),
        _event_marks(summary, records),
        _notes(summary, records),
        log_y=_log_y(lines),
    )


def energy_panel(records, summary, title: str) -> Panel | None:
    """Kinetic energy and Hamiltonian per epoch; None for a run that logs
    none (SGD). A diverged PHS or goal_phs run gets the panel, with its note,
    even when no energy is finite."""
    x = epochs(records)
    lines = [
        Line(x, series(records, key), key.replace("_", " "), marker=".")
        for key in ("kinetic_energy", "hamiltonian")
    ]
    lines = [line for line in lines if line.has_values]
    optimizer = (summary.get("config") or {}).get("optimizer")
    if optimizer:
        logs_energy = optimizer != "sgd"
    else:  # no config: SGD is the optimizer without a friction
        logs_energy = any(r.get("friction") is not None for r in records)
    diverged = divergence(summary, records) is not None
    if not lines and not (diverged and logs_energy):
        return None
    return Panel(
        title,
        "epoch",
        "energy",
        tuple(lines),
        _event_marks(summary, records),
        _notes(summary, records),
        log_y=_log_y(lines),
    )


def run_panels(
    records: Sequence[dict[str, Any]], summary: dict[str, Any], title: str
) -> dict[str, Panel]:
    """PNG name stem -> panel: accuracy, loss and (unless SGD) energy."""
    panels = {
        "accuracy": accuracy_panel(records, summary, title),
        "loss": loss_panel(records, summary, title),
    }
    energy = energy_panel(records, summary, title)
    if energy is not None:
        panels["energy"] = energy
    return panels


def compare_panel(
    runs: Sequence[tuple[Sequence[dict[str, Any]], dict[str, Any], str]],
    metric: str = "test_accuracy",
) -> Panel:
    """``metric`` per epoch of each (records, summary, label), in colors C0,
    C1, ...; each run's brakes are marks in its color, its divergence a note."""
    lines, marks, notes = [], [], []
    for index, (records, summary, label) in enumerate(runs):
        color = f"C{index}"
        lines.append(
            Line(epochs(records), series(records, metric, _scale(metric)), label, color)
        )
        marks += _event_marks(summary, records, color, prefix=f"{label}: ")
        notes += _notes(summary, records, prefix=f"{label}: ")
    return Panel(
        _axis_label(metric),
        "epoch",
        _axis_label(metric),
        tuple(lines),
        tuple(marks),
        tuple(notes),
    )


# ------------------------------------------------------------------- drawing


def _legend(axes: Any, figure: Figure, where: str, below_offset: float) -> None:
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if not unique:
        return
    if where == "right":
        axes.legend(
            unique.values(),
            unique.keys(),
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
        )
        return
    anchor = offset_copy(axes.transAxes, fig=figure, y=-below_offset, units="points")
    axes.legend(
        unique.values(),
        unique.keys(),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        bbox_transform=anchor,
        ncol=2 if max(len(k) for k in unique) < 40 else 1,
        fontsize=8,
        frameon=False,
    )


def _note(axes: Any, text: str, has_data: bool) -> None:
    """``text`` in a red box: where it covers the least data, or centred on
    axes without data."""
    note = Legend(axes, [], [], title=text, loc="best" if has_data else "center")
    note.get_title().set_color(DIVERGED_COLOR)
    note.get_frame().set_edgecolor(DIVERGED_COLOR)
    axes.add_artist(note)


def draw_panel(axes: Any, panel: Panel, figure: Figure, x_labels: bool = True) -> None:
    """Draw ``panel`` on ``axes``."""
    for band in panel.bands:
        axes.fill_between(
            band.x, band.low, band.high, color=band.color, alpha=band.alpha, lw=0
        )
    for line in panel.lines:
        axes.plot(
            line.x,
            line.y,
            color=line.color,
            linestyle=line.linestyle,
            marker=line.marker,
            linewidth=line.linewidth,
            alpha=line.alpha,
            label=line.label,
        )
    for mark in panel.marks:
        axes.axvline(
            mark.x,
            color=mark.color,
            linestyle=mark.linestyle,
            linewidth=mark.linewidth,
            label=mark.label,
        )
        axes.plot(
            [mark.x],
            [0.0],
            marker="^",
            markersize=7,
            color=mark.color,
            transform=axes.get_xaxis_transform(),
            clip_on=False,
            linestyle="none",
        )
    if panel.log_y:
        axes.set_yscale("log")
    if panel.log_x:
        axes.set_xscale("log")
    if panel.xticks:
        axes.set_xticks(panel.xticks, labels=[f"{t:g}" for t in panel.xticks])
        axes.minorticks_off()
    if panel.notes:
        _note(
            axes, "\n".join(panel.notes), any(line.has_values for line in panel.lines)
        )
    axes.set_title(panel.title, fontsize=panel.title_size)
    axes.set_ylabel(panel.ylabel)
    if x_labels:
        axes.set_xlabel(panel.xlabel)
    axes.grid(True, which="both", alpha=0.3)
    if panel.legend:
        _legend(axes, figure, panel.legend, 34.0 if x_labels else 20.0)


def draw(chart: Chart) -> Figure:
    """A figure with one axes per panel of ``chart``."""
    columns = max(1, min(chart.columns, len(chart.panels)))
    rows = math.ceil(len(chart.panels) / columns)
    width, height = chart.panel_size
    figure = Figure(figsize=(width * columns, height * rows), dpi=_DPI)
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, squeeze=False, sharex=chart.sharex)
    flat = [axes for row in grid for axes in row]
    for index, (axes, panel) in enumerate(zip(flat, chart.panels, strict=False)):
        last_row = index >= len(chart.panels) - columns
        draw_panel(axes, panel, figure, x_labels=last_row or not chart.sharex)
    for axes in flat[len(chart.panels) :]:
        axes.set_visible(False)
    figure.tight_layout()
    return figure


def write_png(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as PNG at ``path`` (folders created); `PlotError` in one
    line when the path cannot be written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    except OSError as error:
        raise PlotError(
            f"cannot write {path} ({error.strerror or error}): choose a writable path"
        ) from None
    return path


def save_chart(chart: Chart, path: str | Path) -> Path:
    """:func:`draw` ``chart`` and :func:`write_png` it."""
    return write_png(draw(chart), path)


# ----------------------------------------------------------------- commands


def plot_run(workdir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Plot one run; return the PNG paths written.

    Writes ``accuracy.png`` (test and train accuracy per epoch, brakes marked
    at their update), ``loss.png`` (train/test/validation loss, log scale when
    positive) and, when the run logged them (not SGD) or diverged (not SGD),
    ``energy.png`` (kinetic energy and Hamiltonian) into ``out_dir`` (default:
    the workdir). A diverged run's plots say so on the axes.
    """
    records = read_metrics(workdir)
    summary = read_summary(workdir)
    out = Path(workdir) if out_dir is None else Path(out_dir)
    title = run_label(summary, fallback=Path(workdir).name)
    return [
        save_chart(Chart((panel,)), out / f"{name}.png")
        for name, panel in run_panels(records, summary, title).items()
    ]


def plot_compare(
    workdirs: Sequence[str | Path],
    out_path: str | Path,
    labels: Sequence[str] | None = None,
    metric: str = "test_accuracy",
) -> Path:
    """Overlay ``metric`` per epoch of several runs in one PNG at ``out_path``.

    Each run's brake is a dashed vertical line at its update, with a marker on
    the x axis, in the run's color. Labels come from each summary's config
    unless given.
    """
    if not workdirs:
        raise PlotError("no workdirs to compare")
    if labels is not None and len(labels) != len(workdirs):
        raise PlotError(f"got {len(labels)} labels for {len(workdirs)} workdirs")
    runs = []
    for index, workdir in enumerate(workdirs):
        records, summary = read_metrics(workdir), read_summary(workdir)
        label = labels[index] if labels else run_label(summary, Path(workdir).name)
        runs.append((records, summary, label))
    panel = compare_panel(runs, metric)
    if not any(line.has_values for line in panel.lines):
        raise PlotError(f"no run has values for metric {metric!r}")
    return save_chart(Chart((panel,)), out_path)


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
