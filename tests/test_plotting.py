"""Tests for phs_optax_training.plotting on small fake workdirs."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import matplotlib.text
import pytest

from phs_optax_training import plotting

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STEPS_PER_EPOCH = 100


def _record(epoch: int, optimizer: str, brake_step: int | None) -> dict:
    braked = (
        None
        if optimizer != "goal_phs"
        else brake_step is not None and (epoch * STEPS_PER_EPOCH >= brake_step)
    )
    energy = None if optimizer == "sgd" else 1.0 / epoch
    return {
        "epoch": epoch,
        "step": epoch * STEPS_PER_EPOCH,
        "train_loss": 2.0 / epoch,
        "train_accuracy": 0.5 + 0.04 * epoch,
        "test_loss": 2.1 / epoch + 0.01 * epoch,
        "test_accuracy": 0.45 + 0.035 * epoch,
        "validation_loss": None,
        "friction": None if optimizer == "sgd" else 0.1,
        "braked": braked,
        "brake_step": brake_step if braked else None,
        "kinetic_energy": energy,
        "hamiltonian": None if energy is None else energy + 2.0 / epoch,
        "images_per_second": 1000.0,
        "wall_time": 1.5 * epoch,
    }


def _write_run(
    root: Path,
    name: str,
    optimizer: str = "goal_phs",
    brake_step: int | None = 250,
    epochs: int = 6,
) -> Path:
    workdir = root / name
    workdir.mkdir()
    records = [_record(e, optimizer, brake_step) for e in range(1, epochs + 1)]
    (workdir / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records), encoding="utf-8"
    )
    goal = optimizer == "goal_phs"
    summary = {
        "config": {
            "optimizer": optimizer,
            "learning_rate": 0.1,
            "mass": None if optimizer == "sgd" else 10.0,
            "friction": None if optimizer == "sgd" else 0.1,
            "goal": 0.85 if goal else None,
            "brake_factor": 50.0 if goal else None,
            "steps_per_epoch": STEPS_PER_EPOCH,
        },
        "brake_step": brake_step if goal else None,
        "brake_epoch": brake_step / STEPS_PER_EPOCH if goal and brake_step else None,
    }
    (workdir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return workdir


def _assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] > 100 and image.shape[1] > 100


def test_read_metrics_and_summary(tmp_path: Path) -> None:
    workdir = _write_run(tmp_path, "goal")
    records = plotting.read_metrics(workdir)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5, 6]
    summary = plotting.read_summary(workdir)
    assert summary["brake_epoch"] == 2.5
    assert plotting.read_summary(tmp_path) == {}


def test_read_metrics_ignores_truncated_last_line(tmp_path: Path) -> None:
    workdir = _write_run(tmp_path, "goal", epochs=3)
    with (workdir / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"epoch": 4, "ste')
    assert len(plotting.read_metrics(workdir)) == 3


def test_read_metrics_errors(tmp_path: Path) -> None:
    with pytest.raises(plotting.PlotError, match="does not exist"):
        plotting.read_metrics(tmp_path / "missing")
    with pytest.raises(plotting.PlotError, match="metrics.jsonl"):
        plotting.read_metrics(tmp_path)


def test_brake_epoch_fallbacks() -> None:
    records = [{"epoch": 1, "step": 10, "braked": False}]
    records.append({"epoch": 2, "step": 20, "braked": True, "brake_step": 15})
    assert plotting.brake_epoch({"brake_epoch": 1.25}, records) == 1.25
    assert plotting.brake_epoch({}, records) == 1.5
    assert plotting.brake_epoch({}, [{"epoch": 1, "braked": True}]) == 1.0
    assert plotting.brake_epoch({}, [{"epoch": 1, "braked": None}]) is None


def test_run_label() -> None:
    config = {"optimizer": "goal_phs", "learning_rate": 0.1, "friction": 0.1}
    config |= {"mass": 10.0, "goal": 0.85, "brake_factor": 50.0}
    assert plotting.run_label({"config": config}) == (
        "goal_phs lr=0.1 f=0.1 m=10 goal=0.85 x50"
    )
    sgd = {"optimizer": "sgd", "learning_rate": 0.01, "friction": None}
    assert plotting.run_label({"config": sgd}) == "sgd lr=0.01"
    assert plotting.run_label({}, fallback="dir") == "dir"


def test_plot_run_goal(tmp_path: Path) -> None:
    workdir = _write_run(tmp_path, "goal")
    paths = plotting.plot_run(workdir)
    assert [p.name for p in paths] == ["accuracy.png", "loss.png", "energy.png"]
    for path in paths:
        assert path.parent == workdir
        _assert_png(path)


def test_plot_run_sgd_skips_energy_and_uses_out_dir(tmp_path: Path) -> None:
    workdir = _write_run(tmp_path, "sgd", optimizer="sgd", brake_step=None)
    out_dir = tmp_path / "figs" / "sgd"
    paths = plotting.plot_run(workdir, out_dir=out_dir)
    assert [p.name for p in paths] == ["accuracy.png", "loss.png"]
    for path in paths:
        assert path.parent == out_dir
        _assert_png(path)
    assert not (out_dir / "energy.png").exists()


def test_plot_compare(tmp_path: Path) -> None:
    goal = _write_run(tmp_path, "goal")
    phs = _write_run(tmp_path, "phs", optimizer="phs", brake_step=None)
    out = plotting.plot_compare([phs, goal], tmp_path / "out" / "cmp.png")
    _assert_png(out)
    labelled = plotting.plot_compare(
        [phs, goal], tmp_path / "loss.png", labels=["PHS", "goal"], metric="test_loss"
    )
    _assert_png(labelled)


def test_plot_compare_errors(tmp_path: Path) -> None:
    goal = _write_run(tmp_path, "goal")
    with pytest.raises(plotting.PlotError, match="labels"):
        plotting.plot_compare([goal], tmp_path / "x.png", labels=["a", "b"])
    with pytest.raises(plotting.PlotError, match="metric"):
        plotting.plot_compare([goal], tmp_path / "x.png", metric="nope")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "phs_optax_training.plotting", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_run_and_compare(tmp_path: Path) -> None:
    goal = _write_run(tmp_path, "goal")
    phs = _write_run(tmp_path, "phs", optimizer="phs", brake_step=None)
    result = _cli("run", goal)
    assert result.returncode == 0, result.stderr
    _assert_png(goal / "accuracy.png")
    out = tmp_path / "fig.png"
    result = _cli(
        "compare",
        phs,
        goal,
        "--out",
        out,
        "--metric",
        "test_accuracy",
        "--labels",
        "PHS,goal",
    )
    assert result.returncode == 0, result.stderr
    _assert_png(out)


@pytest.mark.parametrize("case", ["missing_workdir", "missing_metrics"])
def test_cli_errors_exit_2_with_one_line(tmp_path: Path, case: str) -> None:
    workdir = tmp_path / "nothing"
    if case == "missing_metrics":
        workdir.mkdir()
    for args in (("run", workdir), ("compare", workdir, "--out", tmp_path / "f.png")):
        result = _cli(*args)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "Traceback" not in result.stderr
        expected = "does not exist" if case == "missing_workdir" else "metrics.jsonl"
        assert expected in lines[0]


# ------------------------------------------------------- data of the plots


def _write_diverged_run(
    root: Path, name: str, optimizer: str = "goal_phs", in_summary: bool = True
) -> Path:
    """A run whose train loss became non-finite in epoch 3 (update 240): the
    metrics of epoch 3 hold null for it, as strict JSON writes them."""
    workdir = _write_run(root, name, optimizer=optimizer, epochs=3)
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for key in ("train_loss", "test_loss", "kinetic_energy", "hamiltonian"):
        records[-1][key] = None
    records[-1]["test_accuracy"] = records[-1]["train_accuracy"] = 0.1
    (workdir / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records), encoding="utf-8"
    )
    if in_summary:
        summary = json.loads((workdir / "summary.json").read_text())
        summary |= {"diverged": True, "diverged_at": {"epoch": 3, "step": 240}}
        (workdir / "summary.json").write_text(json.dumps(summary))
    return workdir


def _panels(workdir: Path) -> dict[str, plotting.Panel]:
    records, summary = plotting.read_metrics(workdir), plotting.read_summary(workdir)
    return plotting.run_panels(records, summary, "title")


def test_brake_epoch_is_the_brake_step_over_the_steps_per_epoch() -> None:
    summary = {"brake_step": 28, "brake_epoch": 0.3, "config": {"steps_per_epoch": 100}}
    assert plotting.brake_epoch(summary, []) == pytest.approx(0.28)
    records = [{"epoch": 1, "step": 100, "last_brake_step": 28}]
    records.append({"epoch": 2, "step": 200, "last_brake_step": 150})
    assert plotting.brake_epochs(summary, records) == pytest.approx([0.28, 1.5])
    assert plotting.brake_epochs({}, [{"epoch": 1, "braked": False}]) == []


def test_the_brake_is_a_mark_at_its_update_with_no_y_value(tmp_path: Path) -> None:
    panels = _panels(_write_run(tmp_path, "goal", brake_step=250))
    for name in ("accuracy", "loss", "energy"):
        (mark,) = panels[name].marks
        assert mark.x == 2.5  # brake_step 250 / 100 steps per epoch
        assert mark.label == "brake at epoch 2.50"
        assert {f.name for f in dataclasses.fields(mark)} == {
            "x",
            "label",
            "color",
            "linestyle",
            "linewidth",
        }
    accuracy = panels["accuracy"]
    assert [line.label for line in accuracy.lines] == [
        "test accuracy",
        "train accuracy",
    ]
    test = accuracy.lines[0]
    assert test.x == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    assert test.y == pytest.approx([100 * (0.45 + 0.035 * e) for e in range(1, 7)])
    assert panels["loss"].log_y and not accuracy.log_y
    assert not accuracy.notes


def test_the_comparison_marks_each_brake_in_its_run_color_off_the_curves(
    tmp_path: Path,
) -> None:
    goal = _write_run(tmp_path, "goal", brake_step=28)
    phs = _write_run(tmp_path, "phs", optimizer="phs", brake_step=None)
    runs = [
        (plotting.read_metrics(w), plotting.read_summary(w), label)
        for w, label in ((phs, "PHS"), (goal, "goal"))
    ]
    panel = plotting.compare_panel(runs, "test_accuracy")
    assert [(line.label, line.color) for line in panel.lines] == [
        ("PHS", "C0"),
        ("goal", "C1"),
    ]
    (mark,) = panel.marks
    assert (mark.x, mark.color) == (pytest.approx(0.28), "C1")
    assert mark.label == "goal: brake at epoch 0.28"
    # no point is drawn at the brake: every line holds only measured epochs
    assert all(line.x == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0) for line in panel.lines)


def test_divergence_from_the_summary_or_from_the_metrics(tmp_path: Path) -> None:
    stated = _write_diverged_run(tmp_path, "stated")
    found = plotting.divergence(
        plotting.read_summary(stated), plotting.read_metrics(stated)
    )
    assert (found.epoch, found.step, found.x) == (3, 240, 2.4)
    assert found.note == "diverged at epoch 3"
    detected = _write_diverged_run(tmp_path, "detected", in_summary=False)
    found = plotting.divergence(
        plotting.read_summary(detected), plotting.read_metrics(detected)
    )
    assert (found.epoch, found.step, found.x) == (3, None, None)
    records = [{"epoch": 1, "step": 100, "train_loss": 1.0, "diverged_at_step": 42}]
    assert plotting.divergence({}, records).x == pytest.approx(0.42)
    assert plotting.divergence({}, [{"epoch": 1, "train_loss": float("nan")}])
    assert plotting.divergence({}, [{"epoch": 1, "train_loss": 1.0}]) is None


@pytest.mark.parametrize("in_summary", [True, False])
def test_plots_of_a_diverged_run_say_so_and_keep_the_finite_data(
    tmp_path: Path, in_summary: bool
) -> None:
    workdir = _write_diverged_run(tmp_path, "run", in_summary=in_summary)
    panels = _panels(workdir)
    assert set(panels) == {"accuracy", "loss", "energy"}
    for panel in panels.values():
        assert panel.notes == ("diverged at epoch 3",)
    (train_loss, test_loss) = panels["loss"].lines
    assert train_loss.y[:2] == (2.0, 1.0) and math.isnan(train_loss.y[2])
    kinetic = panels["energy"].lines[0]
    assert kinetic.y[:2] == (1.0, 0.5) and math.isnan(kinetic.y[2])
    divergence_marks = [m for m in panels["loss"].marks if "diverged" in m.label]
    assert [m.x for m in divergence_marks] == ([2.4] if in_summary else [])
    paths = plotting.plot_run(workdir)
    assert [p.name for p in paths] == ["accuracy.png", "loss.png", "energy.png"]
    for path in paths:
        _assert_png(path)
    figure = plotting.draw(plotting.Chart((panels["energy"],)))
    texts = [t.get_text() for t in figure.findobj(matplotlib.text.Text)]
    assert "diverged at epoch 3" in texts


def test_energy_of_a_run_without_finite_energy_is_a_note(tmp_path: Path) -> None:
    workdir = _write_diverged_run(tmp_path, "run")
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    records = [
        {**json.loads(line), "kinetic_energy": None, "hamiltonian": None}
        for line in lines
    ]
    energy = plotting.energy_panel(records, plotting.read_summary(workdir), "t")
    assert energy.lines == () and energy.notes == ("diverged at epoch 3",)
    sgd = _write_diverged_run(tmp_path, "sgd", optimizer="sgd")
    assert "energy" not in _panels(sgd)


def test_legends_are_below_the_axes(tmp_path: Path) -> None:
    panels = _panels(_write_run(tmp_path, "goal"))
    for panel in panels.values():
        figure = plotting.draw(plotting.Chart((panel,)))
        (axes,) = figure.axes
        renderer = figure.canvas.get_renderer()
        legend = axes.get_legend().get_window_extent(renderer)
        assert legend.y1 <= axes.get_window_extent(renderer).y0
        brake_lines = [
            line for line in axes.lines if list(line.get_xdata()) == [2.5, 2.5]
        ]
        assert len(brake_lines) == 1


def test_a_figure_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path):
    panel = plotting.Panel(title="t", xlabel="x", ylabel="y")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(plotting.PlotError, match=r"^cannot write .*a_file/x\.png \("):
        plotting.save_chart(plotting.Chart((panel,)), blocker / "x.png")
    assert not (blocker / "x.png").exists()
