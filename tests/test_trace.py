"""The per-update trace of a goal_phs run (loss, friction, energy, phases)."""

import dataclasses
import json

import numpy as np
import pytest

from phs_optax_training import data as data_lib
from phs_optax_training import trace
from phs_optax_training.config import TrainConfig


def record(step, friction, releases, braked):
    return {"step": step, "friction": friction, "releases": releases, "braked": braked}


def test_phase_changes_are_the_updates_where_friction_rises_or_a_release_counts():
    records = [
        record(0, 1.0, 0, False),
        record(1, 10.0, 0, True),
        record(2, 10.0, 0, True),
        record(3, 1.0, 1, True),
        record(4, 10.0, 1, True),
    ]
    assert trace.phase_changes(records) == ([1, 4], [3])


@pytest.fixture(scope="module")
def config(small_fashion_mnist_dir):
    return TrainConfig(
        data_dir=str(small_fashion_mnist_dir),
        learning_rate=0.01,
        mass=0.1,
        friction=1.0,
        goal=0.05,
        brake_factor=10.0,
        release_after=3,
        batch_size=64,
        num_epochs=2,
    )


def test_trace_has_one_record_per_update_with_the_friction_in_force(config):
    dataset = data_lib.load_dataset("fashion_mnist", config.data_dir)
    records = trace.trace_run(config, dataset)
    assert [r["step"] for r in records] == list(range(2 * (512 // 64)))
    frictions = {r["friction"] for r in records}
    assert frictions <= {1.0, 10.0}
    brakes, releases = trace.phase_changes(records)
    assert len(brakes) >= 2 and releases
    for k, release in zip(brakes, releases, strict=False):
        assert release - k == config.release_after  # the exploitation phase
    exploiting = set()
    for k, release in zip(brakes, releases + [len(records)], strict=False):
        exploiting |= set(range(k, release))
    assert [r["friction"] for r in records] == [
        10.0 if r["step"] in exploiting else 1.0 for r in records
    ]
    assert all(np.isfinite(r["kinetic_energy"]) for r in records)


def test_trace_command_writes_records_and_a_plot(small_fashion_mnist_dir, tmp_path):
    exit_code = trace.main(
        [
            "--preset=table2-lr0.01-goal-f1-m0.1",
            "--num_epochs=1",
            "--release_after=2",
            f"--data_dir={small_fashion_mnist_dir}",
            f"--out={tmp_path}",
        ]
    )
    assert exit_code == 0
    lines = (tmp_path / trace.TRACE_FILE).read_text().splitlines()
    assert json.loads(lines[0])["config"]["release_after"] == 2
    assert len(lines) == 1 + 512 // 64
    assert (tmp_path / "trace.png").stat().st_size > 0


def test_trace_refuses_a_baseline_optimizer(config):
    with pytest.raises(ValueError, match="goal_phs"):
        trace.trace_run(dataclasses.replace(config, optimizer="phs"))


def traced(step, friction, releases, braked, loss=1.0):
    return {
        **record(step, friction, releases, braked),
        "loss": loss,
        "monitored_loss": loss,
        "kinetic_energy": 0.5,
    }


def test_trace_chart_marks_brakes_and_releases_at_their_update():
    records = [
        traced(0, 1.0, 0, False),
        traced(1, 10.0, 0, True),
        traced(2, 10.0, 0, True),
        traced(3, 1.0, 1, True),
        traced(4, 1.0, 1, True),
    ]
    chart = trace.trace_chart(records, "run")
    assert len(chart.panels) == 3 and chart.sharex
    for panel in chart.panels:
        assert [(m.x, m.label) for m in panel.marks] == [(1, "brake"), (3, "release")]
        assert not panel.notes
    friction = chart.panels[1].lines[0]
    assert friction.x == (0.0, 1.0, 2.0, 3.0, 4.0)
    assert friction.y == (1.0, 10.0, 10.0, 1.0, 1.0)
    assert "brake (1)" in chart.panels[0].title


def test_trace_chart_notes_the_first_update_with_a_non_finite_loss(tmp_path):
    records = [traced(0, 1.0, 0, False), traced(1, 1.0, 0, False, loss=None)]
    records.append(traced(2, 1.0, 0, False, loss=float("nan")))
    chart = trace.trace_chart(records, "run")
    assert chart.panels[0].notes == ("diverged at update 1",)
    assert [m.x for m in chart.panels[0].marks] == [1]
    loss = chart.panels[0].lines[0]
    assert loss.y[0] == 1.0 and all(np.isnan(v) for v in loss.y[1:])
    assert trace.plot_trace(records, "run", tmp_path / "t.png").stat().st_size > 0
