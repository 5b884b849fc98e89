"""Tests for phs_optax_training.presets: the paper's Tables 1 and 2 as data."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from phs_optax_training import presets
from phs_optax_training.presets import (
    DEFAULT_GOAL_READING,
    PRESETS,
    get_preset,
    goal_for,
    pairs,
    table_presets,
)

TABLES = ("table1", "table2")
_REPO = Path(__file__).resolve().parents[1]
_PAPER_CANDIDATES = (
    _REPO / "shared" / "paper.txt",
    _REPO.parent / "shared" / "paper.txt",
)


@pytest.mark.parametrize("table", TABLES)
def test_table_has_20_rows_with_4_sgd_8_phs_8_goal(table: str) -> None:
    rows = table_presets(table)
    assert len(rows) == 20
    counts = Counter(p.optimizer for p in rows)
    assert counts == {"sgd": 4, "phs": 8, "goal_phs": 8}


def test_forty_presets_with_unique_names_matching_keys() -> None:
    assert len(PRESETS) == 40
    assert all(name == p.name for name, p in PRESETS.items())
    assert len({p.name for p in PRESETS.values()}) == 40


@pytest.mark.parametrize("table", TABLES)
def test_datasets_and_none_fields(table: str) -> None:
    dataset = {"table1": "cifar10", "table2": "fashion_mnist"}[table]
    for p in table_presets(table):
        assert p.dataset == dataset
        assert 0 < p.paper_accuracy < 1
        if p.optimizer == "sgd":
            assert p.friction is None and p.mass is None
        else:
            assert p.friction is not None and p.mass is not None
        if p.optimizer == "goal_phs":
            assert 0 < p.paper_goal < 1 and p.brake_factor >= 1
        else:
            assert p.paper_goal is None and p.brake_factor is None


@pytest.mark.parametrize("table", TABLES)
def test_every_goal_row_has_phs_and_sgd_partners(table: str) -> None:
    found = pairs(table)
    assert len(found) == 8
    for pair in found:
        goal, phs, sgd = pair
        assert goal.optimizer == "goal_phs"
        assert phs.optimizer == "phs" and sgd.optimizer == "sgd"
        assert (phs.learning_rate, phs.friction, phs.mass) == (
            goal.learning_rate,
            goal.friction,
            goal.mass,
        )
        assert sgd.learning_rate == goal.learning_rate
    assert len({pair.phs.name for pair in found}) == 8


def test_spot_checks_against_paper() -> None:
    p = get_preset("table2-lr0.1-goal-f0.1-m10")
    assert (p.learning_rate, p.friction, p.mass) == (0.1, 0.1, 10.0)
    assert (p.paper_goal, p.brake_factor) == (0.15, 50.0)
    assert p.paper_accuracy == pytest.approx(0.9102)
    assert get_preset("table1-lr0.1-sgd").paper_accuracy == pytest.approx(0.6482)
    p = get_preset("table1-lr0.1-goal-f0.1-m100")
    assert (p.paper_goal, p.brake_factor, p.paper_accuracy) == (0.65, 49.0, 0.671)
    p = get_preset("table1-lr0.0001-goal-f1-m0.001")
    assert (p.paper_goal, p.brake_factor, p.paper_accuracy) == (0.8, 100.0, 0.6356)
    p = get_preset("table2-lr0.0001-goal-f1-m0.001")
    assert (p.paper_goal, p.brake_factor, p.paper_accuracy) == (0.185, 100.0, 0.9012)
    p = get_preset("table2-lr0.01-phs-f1-m0.1")
    assert (p.friction, p.mass, p.paper_accuracy) == (1.0, 0.1, 0.9049)
    p = get_preset("table1-lr0.001-phs-f1-m0.25")
    assert p.paper_accuracy == pytest.approx(0.66)


_ROW = re.compile(
    r"^(?P<lr>[\d.]+)\t(?P<opt>SGD|PHS|Goal-Oriented)"
    r"(?: \(breaking at (?P<goal>[\d.]+) with factor (?P<factor>[\d.]+)\))?"
    r"\t(?P<fric>[\d./]+)\t(?P<mass>[\d./]+)\t(?P<acc>[\d.]+)%$"
)


def _paper_rows(text: str) -> list[tuple]:
    optimizers = {"SGD": "sgd", "PHS": "phs", "Goal-Oriented": "goal_phs"}
    num = lambda s: None if s in (None, "/") else float(s)
    rows = []
    for line in text.splitlines():
        m = _ROW.match(line.strip("\n"))
        if m:
            rows.append(
                (
                    float(m["lr"]),
                    optimizers[m["opt"]],
                    num(m["fric"]),
                    num(m["mass"]),
                    num(m["goal"]),
                    num(m["factor"]),
                    round(float(m["acc"]) / 100, 6),
                )
            )
    return rows


def test_all_rows_match_paper_text() -> None:
    paper = next((p for p in _PAPER_CANDIDATES if p.is_file()), None)
    if paper is None:
        pytest.skip("paper text (shared/paper.txt) not available")
    rows = _paper_rows(paper.read_text(encoding="utf-8"))
    assert len(rows) == 40
    ours = [
        (
            p.learning_rate,
            p.optimizer,
            p.friction,
            p.mass,
            p.paper_goal,
            p.brake_factor,
            p.paper_accuracy,
        )
        for table in TABLES
        for p in table_presets(table)
    ]
    assert ours == rows


def test_goal_for_readings() -> None:
    p = get_preset("table2-lr0.1-goal-f0.1-m10")
    assert goal_for(p, "reduction") == 0.15
    assert goal_for(p, "remaining") == pytest.approx(0.85)
    assert goal_for(p) == goal_for(p, DEFAULT_GOAL_READING["table2"])
    q = get_preset("table1-lr0.1-goal-f0.1-m100")
    assert goal_for(q) == 0.65
    assert goal_for(get_preset("table2-lr0.1-goal-f0.01-m10"), "remaining") == 0.45
    for preset in PRESETS.values():
        if preset.optimizer == "goal_phs":
            for reading in ("reduction", "remaining"):
                assert 0 < goal_for(preset, reading) < 1


def test_default_goal_reading() -> None:
    assert DEFAULT_GOAL_READING == {"table1": "reduction", "table2": "remaining"}


def test_goal_for_errors() -> None:
    with pytest.raises(ValueError, match="no goal"):
        goal_for(get_preset("table1-lr0.1-sgd"), "reduction")
    with pytest.raises(ValueError, match="reading"):
        goal_for(get_preset("table1-lr0.1-goal-f0.1-m100"), "fraction")


def test_get_preset_unknown_name() -> None:
    with pytest.raises(KeyError) as info:
        get_preset("table3-lr1-sgd")
    message = str(info.value)
    assert "table3-lr1-sgd" in message
    assert "python -m phs_optax_training.presets" in message
    assert "\n" not in message


def test_table_presets_unknown_table() -> None:
    with pytest.raises(ValueError):
        table_presets("table3")


def test_presets_are_frozen() -> None:
    p = get_preset("table1-lr0.1-sgd")
    with pytest.raises(AttributeError):
        p.learning_rate = 1.0  # type: ignore[misc]


def test_cli_lists_names() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "phs_optax_training.presets"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    lines = out.splitlines()
    assert len(lines) == 40
    assert lines[0].startswith("table1-lr0.1-sgd")
    assert presets.describe(get_preset("table2-lr0.1-sgd")) in lines
