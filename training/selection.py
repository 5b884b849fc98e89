"""Model selection on the validation split, never on the test set: the epoch
whose validation accuracy is highest, shared by the training summary and the
study."""

from __future__ import annotations

import math
from collections.abc import Sequence


def validation_best(history: Sequence[dict]) -> dict | None:
    """The metrics row of the highest validation accuracy (the earliest on a
    tie). None without a validation split (or without a finite validation
    accuracy)."""
    scored = [
        (row["validation_accuracy"], -index)
        for index, row in enumerate(history)
        if row.get("validation_accuracy") is not None
        and math.isfinite(row["validation_accuracy"])
    ]
    return history[-max(scored)[1]] if scored else None
