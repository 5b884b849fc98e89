"""Statistics over seeds: a mean with its t-based confidence interval, a paired
difference with its paired t-test, and Holm's step-down correction for a
family of tests.

Seeds are the unit of replication: two runs of one seed share the
initialisation, the validation split and the order of the batches, so a
comparison of two optimizers is paired by seed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Mean, sample standard deviation and the two-sided ``CONFIDENCE``
    interval of the mean (Student's t) of ``values``; std and interval are NaN
    for fewer than two values."""

    values: tuple[float, ...]
    mean: float
    std: float
    n: int
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> Estimate:
        array = np.asarray(values, dtype=float)
        if array.size == 0:
            raise ValueError("an estimate needs at least one value")
        n, mean = array.size, float(array.mean())
        if n < 2:
            return cls(tuple(array.tolist()), mean, math.nan, n, math.nan, math.nan)
        std = float(array.std(ddof=1))
        half = float(scipy_stats.t.ppf((1 + CONFIDENCE) / 2, n - 1)) * std / n**0.5
        return cls(tuple(array.tolist()), mean, std, n, mean - half, mean + half)


@dataclasses.dataclass(frozen=True)
class PairedTest:
    """``first - second`` per seed: the estimate of the difference, the paired
    t statistic and its two-sided p value, the seeds where ``first`` is ahead
    (``wins``) or level (``ties``), and the p value after Holm's correction
    within its family (None until :func:`holm_family` sets it)."""

    difference: Estimate
    t: float
    p: float
    wins: int
    ties: int
    p_holm: float | None = None

    @classmethod
    def of(
        cls, first: Sequence[float] | np.ndarray, second: Sequence[float] | np.ndarray
    ) -> PairedTest:
        first, second = np.asarray(first, float), np.asarray(second, float)
        if first.shape != second.shape:
            raise ValueError(
                f"paired values differ in number: {first.size} and {second.size}"
            )
        differences = first - second
        estimate = Estimate.of(differences)
        t, p = _one_sample_t(differences)
        return cls(
            estimate, t, p, int((differences > 0).sum()), int((differences == 0).sum())
        )

    @property
    def significant(self) -> bool:
        """Holm-corrected p below ``1 - CONFIDENCE``."""
        p = self.p if self.p_holm is None else self.p_holm
        return p < 1 - CONFIDENCE


def _one_sample_t(differences: np.ndarray) -> tuple[float, float]:
    """t and two-sided p of mean(differences) = 0. With no spread the mean is
    exact: p is 1 for a zero mean, 0 otherwise; fewer than two values: NaN."""
    if differences.size < 2:
        return math.nan, math.nan
    std = differences.std(ddof=1)
    if std == 0:
        mean = float(differences.mean())
        return (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    result = scipy_stats.ttest_1samp(differences, 0.0)
    return float(result.statistic), float(result.pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p values, in the order given: the k-th smallest
    of m is multiplied by m - k + 1, made monotone and capped at 1. NaN stays
    NaN and does not count towards m."""
    order = [
        i for i in np.argsort(p_values, kind="stable") if not np.isnan(p_values[i])
    ]
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def holm_family(tests: Sequence[PairedTest]) -> list[PairedTest]:
    """``tests`` with ``p_holm`` set, the family being ``tests`` themselves."""
    adjusted = holm([test.p for test in tests])
    return [
        dataclasses.replace(test, p_holm=p)
        for test, p in zip(tests, adjusted, strict=True)
    ]
