"""Mean absolute gap between a sweep's rows and the paper's, per optimizer.

    python scripts/paper_gap.py table1 results/table1/batch10-20epochs \
        results/table1/batch64-60epochs

For each folder: the mean over the table's SGD, PHS and goal-oriented rows of
|paper - mean final test accuracy over seeds|, in points (the rows of
``python -m phs_optax_training.report table``).
"""

from __future__ import annotations

import re
import sys

from phs_optax_training import report

ROW = re.compile(r"\| (table\d-\S+) \|[^|]*\| ([\d.]+) \| \d+ \| ([\d.]+) ±")


def main(table: str, folders: list[str]) -> None:
    for folder in folders:
        rows = ROW.findall(report.table_report(folder, table))
        gaps = []
        for kind in ("sgd", "phs", "goal"):
            found = [abs(float(p) - float(f)) for n, p, f in rows if f"-{kind}" in n]
            gaps.append(f"{kind} {sum(found) / len(found):.1f} ({len(found)} rows)")
        print(f"{folder}: " + ", ".join(gaps))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
