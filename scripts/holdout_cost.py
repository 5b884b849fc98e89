"""What holding out a validation split costs: held-out minus full-data runs.

    python scripts/holdout_cost.py results/beyond/validation-table1-batch64-60epochs \
        results/table1/batch64-60epochs

Pairs every PHS and goal-oriented run (goal trigger) of the first folder that
held out a validation split (``validation_fraction > 0`` in its summary, e.g.
the ``phs`` and ``goal`` kinds of the validation-* sweeps) with the run of the
same optimizer, (alpha, friction, mass, goal) and seed in the second, trained
on the full set, and prints per optimizer the mean and sample std of the final
test accuracy difference in points.
"""

from __future__ import annotations

import sys

import numpy as np

from phs_optax_training import report


def main(holdout_folder: str, full_folder: str) -> None:
    held_out = report.load_beyond_runs([holdout_folder])
    full = report.load_beyond_runs([full_folder])
    for name in ("PHS", "goal"):
        diffs = []
        for (
            lr,
            friction,
            mass,
            fraction,
            goal,
            variant,
            seed,
        ), run in held_out.items():
            reference = full.get((lr, friction, mass, 0.0, goal, variant, seed))
            if variant == name and fraction > 0 and reference is not None:
                diffs.append(
                    100
                    * (run["final_test_accuracy"] - reference["final_test_accuracy"])
                )
        if not diffs:
            print(f"held-out minus full {name}: no paired runs")
            continue
        d = np.array(diffs)
        spread = f" ± {d.std(ddof=1):.2f}" if len(d) > 1 else ""
        print(
            f"held-out minus full {name}, final: {d.mean():+.2f}{spread} "
            f"points over {len(d)} (pair, seed) cells"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
