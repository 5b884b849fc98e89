"""``python -m phs_optax_training.study``: the study's tables and figures."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from phs_optax_training import plotting, presets
from phs_optax_training.study.batch_size import (
    batch_size_chart,
    batch_size_markdown,
    batch_size_study,
)
from phs_optax_training.study.held_out import rule_markdown, rule_study
from phs_optax_training.study.runs import StudyError
from phs_optax_training.study.tables import curves_chart, study_table, table_markdown
from phs_optax_training.study.tuned import tuned_chart, tuned_markdown, tuned_study


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m phs_optax_training.study",
        description="A study's tables over seeds: confidence intervals, paired "
        "tests with Holm's correction and the noise floor of identical dynamics.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("table", help="one sweep folder as its paper table")
    table.add_argument("folder")
    table.add_argument("--table", required=True, choices=("table1", "table2"))
    table.add_argument(
        "--reading",
        choices=presets.READINGS,
        help="the goal column's reading (default: remaining for table2, "
        "reduction for table1)",
    )
    table.add_argument("--figure", help="also write Figure 3 over seeds as PNG here")
    sizes = commands.add_parser(
        "batch-size", help="the batch-size sweep: one folder per batch size"
    )
    sizes.add_argument("folders", nargs="+")
    sizes.add_argument("--figure", help="also write the figure as PNG here")
    tuned = commands.add_parser(
        "tuned", help="the tuning folder's trials and the tuned comparison"
    )
    tuned.add_argument("tuning_folder")
    tuned.add_argument("tuned_folder")
    tuned.add_argument("--figure", help="also write the test curves as PNG here")
    held_out = commands.add_parser(
        "rule", help="the rule for when braking pays, on its held-out runs"
    )
    held_out.add_argument(
        "folders", nargs="+", help="rule-heldout and table1 (CIFAR-10) folders"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "table":
            print(table_markdown(study_table(args.folder, args.table, args.reading)))
            if args.figure:
                chart = curves_chart(args.folder, args.table, args.reading)
                plotting.save_chart(chart, args.figure)
        elif args.command == "tuned":
            tuned = tuned_study(args.tuning_folder, args.tuned_folder)
            print(tuned_markdown(tuned))
            if args.figure:
                plotting.save_chart(tuned_chart(tuned), args.figure)
        elif args.command == "rule":
            print(rule_markdown(rule_study(args.folders)))
        else:
            curves = batch_size_study(args.folders)
            print(batch_size_markdown(curves))
            if args.figure:
                plotting.save_chart(batch_size_chart(curves), args.figure)
    except (StudyError, plotting.PlotError) as error:
        print(f"study: error: {error}", file=sys.stderr)
        return 2
    return 0
