"""The helper scripts behind numbers in results/ (scripts/)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from phs_optax_training.config import TrainConfig

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def write_summary(folder: Path, config: TrainConfig, final_accuracy: float) -> None:
    run = folder / f"{config.optimizer}_{config.validation_fraction}_s{config.seed}"
    run.mkdir(parents=True)
    summary = {
        "config": dataclasses.asdict(config),
        "final_test_accuracy": final_accuracy,
        "best_test_accuracy": final_accuracy,
        "brake_epoch": None,
    }
    (run / "summary.json").write_text(json.dumps(summary))


def test_holdout_cost_pairs_held_out_runs_with_full_data_runs_per_optimizer(tmp_path):
    held_out, full = tmp_path / "held_out", tmp_path / "full"
    for seed, (phs_cost, goal_cost) in enumerate([(0.01, 0.03), (0.03, 0.01)]):
        for optimizer, cost in (("phs", phs_cost), ("goal_phs", goal_cost)):
            config = TrainConfig(optimizer=optimizer, seed=seed)
            write_summary(full, config, 0.80)
            holdout = dataclasses.replace(config, validation_fraction=0.1)
            write_summary(held_out, holdout, 0.80 - cost)
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "holdout_cost.py"), str(held_out), str(full)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.splitlines() == [
        "held-out minus full PHS, final: -2.00 ± 1.41 points over 2 (pair, seed) cells",
        "held-out minus full goal, final: -2.00 ± 1.41 points over 2 (pair, seed) cells",
    ]
