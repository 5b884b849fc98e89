"""Runs every PHS and goal-oriented row of the paper's tables briefly and reports
whether the loss stays finite, for the given integrator and drag.

    python scripts/check_table_rows.py --integrator=conformal --drag=momentum

Each row: --steps steps of batch 64 on the real data (goal read as a reduction,
which brakes earliest, so most steps run at the raised friction).
"""

import argparse
import json
import math
import tempfile

from phs_optax_training import data as data_lib
from phs_optax_training import presets, train_lib
from phs_optax_training.config import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--integrator", default="conformal")
    parser.add_argument("--drag", default="momentum")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--cifar10_dir", default=None)
    args = parser.parse_args()
    datasets = {}
    print(f"integrator={args.integrator} drag={args.drag} steps={args.steps}")
    print(
        "| row | brake step | train loss | test acc | finite |\n|---|---|---|---|---|"
    )
    for preset in presets.PRESETS.values():
        if preset.optimizer == "sgd":
            continue
        if preset.dataset not in datasets:
            data_dir = args.cifar10_dir if preset.dataset == "cifar10" else None
            datasets[preset.dataset] = data_lib.load_dataset(preset.dataset, data_dir)
        config = TrainConfig(
            **presets.config_values(preset, "reduction"),
            integrator=args.integrator,
            drag=args.drag,
            num_epochs=1,
            batch_size=64,
            max_train_examples=64 * args.steps,
            max_test_examples=2000,
        )
        with tempfile.TemporaryDirectory() as workdir:
            train_lib.train_and_evaluate(
                config, workdir, dataset=datasets[preset.dataset], progress=False
            )
            with open(f"{workdir}/metrics.jsonl") as f:
                row = json.loads(f.readline())
        finite = math.isfinite(row["train_loss"]) and math.isfinite(row["test_loss"])
        print(
            f"| {preset.name} | {row['brake_step']} | {row['train_loss']:.4g} | "
            f"{row['test_accuracy']:.3f} | {finite} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
