"""Tabulates protocol sweeps (one folder per setting) next to the paper's numbers.

    python scripts/protocol_report.py results/protocol/drag-momentum-batch64 \
        results/protocol/drag-velocity-batch64

For each row of the paper present in the sweeps: final and best test accuracy
(mean ± std over seeds) per sweep folder, and the braking epochs of each seed.
"""

import json
import sys
from pathlib import Path

import numpy as np

from phs_optax_training import presets


def preset_key(config: dict) -> tuple:
    friction = config["friction"] if config["optimizer"] != "sgd" else None
    mass = config["mass"] if config["optimizer"] != "sgd" else None
    return (config["optimizer"], config["learning_rate"], friction, mass)


def reading_of(config: dict, preset: presets.Preset) -> str:
    if preset.optimizer != "goal_phs":
        return ""
    for reading in presets.READINGS:
        if abs(presets.goal_for(preset, reading) - config["goal"]) < 1e-9:
            return reading
    return "?"


def load(folder: Path) -> dict:
    runs = {}
    for summary_path in sorted(folder.glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        config = summary["config"]
        matches = [
            p
            for p in presets.table_presets("table2")
            if (p.optimizer, p.learning_rate, p.friction, p.mass) == preset_key(config)
        ]
        if not matches:
            continue
        preset = matches[0]
        key = (preset.name, reading_of(config, preset))
        runs.setdefault(key, []).append(summary)
    return runs


def cell(summaries: list[dict]) -> str:
    final = np.array([s["final_test_accuracy"] for s in summaries]) * 100
    best = np.array([s["best_test_accuracy"] for s in summaries]) * 100
    brakes = [s["brake_epoch"] for s in summaries]
    brake_text = (
        ""
        if all(b is None for b in brakes)
        else " brake@" + ",".join("-" if b is None else f"{b:.2f}" for b in brakes)
    )
    return f"{final.mean():.2f} ± {final.std():.2f} / {best.mean():.2f}{brake_text}"


def main(folders: list[str]) -> None:
    sweeps = {Path(f).name: load(Path(f)) for f in folders}
    keys = []
    for runs in sweeps.values():
        keys += [k for k in runs if k not in keys]
    order = {p.name: i for i, p in enumerate(presets.PRESETS.values())}
    keys.sort(key=lambda k: (order[k[0]], k[1]))
    print(
        "Cells: final test accuracy mean ± std over seeds / mean best; brake epoch per seed.\n"
    )
    print("| paper row | goal reading | paper | " + " | ".join(sweeps) + " |")
    print("|---|---|---|" + "---|" * len(sweeps))
    for name, reading in keys:
        paper = presets.get_preset(name).paper_accuracy * 100
        cells = [
            cell(runs[(name, reading)]) if (name, reading) in runs else ""
            for runs in sweeps.values()
        ]
        print(f"| {name} | {reading} | {paper:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
