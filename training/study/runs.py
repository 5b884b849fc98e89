"""A study's runs as read from their folders: final and selected accuracy per
run, and the paired tests and Holm families every study table is built from."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from phs_optax_training import report, selection
from phs_optax_training.stats import Estimate, PairedTest, holm_family


class StudyError(ValueError):
    """Run folders that cannot be read as a study (exit 2 at the command line)."""


@dataclasses.dataclass(frozen=True)
class RunResult:
    """One run; accuracies in percent, epochs counted from 1."""

    seed: int
    final: float
    selected: float
    selected_epoch: int
    best: float
    brake_epoch: float | None
    diverged: bool
    test_curve: tuple[float, ...] = ()  # test accuracy after each epoch

    @property
    def decline(self) -> float:
        """How far the test accuracy fell from its peak by the end (points)."""
        return self.best - self.final


def validation_selected(rows: Sequence[dict]) -> tuple[int, float]:
    """The epoch of the highest validation accuracy in a run's metrics rows
    (the earliest on a tie) and the test accuracy at that epoch."""
    row = selection.validation_best(rows)
    if row is None:
        raise StudyError(
            "the runs have no validation accuracy: train them with "
            "--validation_fraction above 0"
        )
    return row["epoch"], row["test_accuracy"]


def read_run(run_dir: Path) -> RunResult:
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    epoch, selected = validation_selected(rows)
    return RunResult(
        seed=summary["config"]["seed"],
        final=summary["final_test_accuracy"] * 100,
        selected=selected * 100,
        selected_epoch=epoch,
        best=summary["best_test_accuracy"] * 100,
        brake_epoch=summary["brake_epoch"],
        diverged=bool(summary.get("diverged")),
        test_curve=tuple(row["test_accuracy"] * 100 for row in rows),
    )


# (preset name, goal reading or "") -> seed -> run, and the shared settings
Results = dict[tuple[str, str], dict[int, RunResult]]


def load_results(folder: str | Path, table: str) -> tuple[Results, dict]:
    """The finished runs in ``folder`` that are rows of ``table``, and the
    configuration of one of them (what the sweep shares: batch size, epochs)."""
    results: Results = {}
    config = None
    for path in sorted(Path(folder).glob("*/summary.json")):
        summary = json.loads(path.read_text())
        keys = report.row_keys_of(summary["config"], table)
        if not keys or summary["epochs_done"] < summary["config"]["num_epochs"]:
            continue
        run = read_run(path.parent)
        config = config or summary["config"]
        for key in keys:
            results.setdefault(key, {})[run.seed] = run
    if config is None:
        raise StudyError(f"{folder}: no finished run of {table}")
    return results, config


def paired(
    first: dict[int, RunResult], second: dict[int, RunResult], metric: str
) -> PairedTest:
    seeds = sorted(set(first) & set(second))
    return PairedTest.of(
        [getattr(first[s], metric) for s in seeds],
        [getattr(second[s], metric) for s in seeds],
    )


def with_holm(items: Sequence, fields: Sequence[str]) -> list:
    """``items`` (dataclasses) with the :class:`PairedTest` in each of
    ``fields`` Holm-corrected, the family being all of those tests."""
    tests = iter(holm_family([getattr(i, f) for f in fields for i in items]))
    adjusted = {f: [next(tests) for _ in items] for f in fields}
    return [
        dataclasses.replace(item, **{f: adjusted[f][k] for f in fields})
        for k, item in enumerate(items)
    ]


def curve_band(curves: Sequence[tuple[float, ...]]) -> tuple[Estimate, ...]:
    epochs = min(len(c) for c in curves)
    return tuple(Estimate.of([c[e] for c in curves]) for e in range(epochs))
