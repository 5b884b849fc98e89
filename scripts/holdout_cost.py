"""What holding out a validation split costs PHS: held-out minus full-data runs.

    python scripts/holdout_cost.py results/beyond/validation-table1-batch64-60epochs \
        results/table1/batch64-60epochs

Pairs every ``phs-holdout_*`` run of the first folder with the PHS run of the
same (alpha, friction, mass, seed) in the second and prints the mean and
sample std of the final test accuracy difference in points.
"""

from __future__ import annotations

import sys

import numpy as np

from phs_optax_training import report


def main(holdout_folder: str, full_folder: str) -> None:
    held_out = report.load_beyond_runs([holdout_folder])
    full = report.load_beyond_runs([full_folder])
    diffs = []
    for (lr, friction, mass, fraction, _goal, variant, seed), run in held_out.items():
        reference = full.get((lr, friction, mass, 0.0, None, "PHS", seed))
        if variant == "PHS" and fraction > 0 and reference is not None:
            diffs.append(
                100 * (run["final_test_accuracy"] - reference["final_test_accuracy"])
            )
    d = np.array(diffs)
    print(
        f"held-out minus full PHS, final: {d.mean():+.2f} ± {d.std(ddof=1):.2f} "
        f"points over {len(d)} (pair, seed) cells"
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
