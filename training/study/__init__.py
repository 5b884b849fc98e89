"""The paper's claims measured over many seeds, with the statistics that
decide whether a gap is real.

Every run of the study holds out a validation split (``--validation_fraction``)
for every optimizer. Each run gives two numbers: its **final** test accuracy
and its **selected** test accuracy, the test accuracy at the epoch of its
highest validation accuracy (the earliest such epoch), which is model
selection without looking at the test set (``runs``). From the run
folders of one sweep (``tables``):

* per table row: mean, sample std and 95 % confidence interval over seeds of
  both numbers (:class:`RowStats`);
* per goal-oriented pair and baseline (PHS of the same alpha, friction and
  mass; SGD of the same alpha): the difference paired by seed, its 95 %
  interval and a paired t-test, Holm-corrected over every test of the table
  (:class:`Comparison`);
* the noise floor: PHS rows of the table that are the same dynamics (the same
  momentum decay ``alpha * c`` and step ``alpha**2 / m``) compared by seed like
  a pair; their differences come from float rounding alone
  (:class:`NoiseFloor`).

Beyond one table: goal-oriented minus PHS against batch size
(``batch_size``), baselines tuned on the validation split
(``tuned``), and the rule for when braking pays scored on its held-out
cells (``held_out``). The command line (``cli``):

    python -m phs_optax_training.study table results/study/table2/batch64 \\
        --table=table2
"""

from phs_optax_training.study.batch_size import (
    BatchCurve,
    BatchPoint,
    batch_size_chart,
    batch_size_markdown,
    batch_size_study,
)
from phs_optax_training.study.cli import main
from phs_optax_training.study.held_out import RuleCell, rule_markdown, rule_study
from phs_optax_training.study.runs import (
    RunResult,
    StudyError,
    load_results,
    read_run,
    validation_selected,
)
from phs_optax_training.study.tables import (
    DEFAULT_READINGS,
    FIGURE3_PAIRS,
    Comparison,
    IdenticalPair,
    NoiseFloor,
    RowStats,
    StudyTable,
    curves_chart,
    dynamics_key,
    study_table,
    table_markdown,
)
from phs_optax_training.study.tuned import (
    Trial,
    TunedRow,
    TunedStudy,
    tuned_chart,
    tuned_markdown,
    tuned_study,
)

__all__ = [
    "DEFAULT_READINGS",
    "FIGURE3_PAIRS",
    "BatchCurve",
    "BatchPoint",
    "Comparison",
    "IdenticalPair",
    "NoiseFloor",
    "RowStats",
    "RuleCell",
    "RunResult",
    "StudyError",
    "StudyTable",
    "Trial",
    "TunedRow",
    "TunedStudy",
    "batch_size_chart",
    "batch_size_markdown",
    "batch_size_study",
    "curves_chart",
    "dynamics_key",
    "load_results",
    "main",
    "read_run",
    "rule_markdown",
    "rule_study",
    "study_table",
    "table_markdown",
    "tuned_chart",
    "tuned_markdown",
    "tuned_study",
    "validation_selected",
]
