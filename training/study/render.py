"""How a study's numbers are shown: the text of its Markdown tables and the
lines of its charts."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from phs_optax_training import plotting
from phs_optax_training.stats import Estimate, PairedTest


def estimate_text(e: Estimate) -> str:
    if e.n < 2:
        return f"{e.mean:.2f} (n=1)"
    return f"{e.mean:.2f} ± {e.std:.2f} [{e.low:.2f}, {e.high:.2f}]"


def difference_text(e: Estimate) -> str:
    if e.n < 2:
        return f"{e.mean:+.2f} (n=1)"
    return f"{e.mean:+.2f} [{e.low:+.2f}, {e.high:+.2f}]"


def p_text(test: PairedTest) -> str:
    p = test.p_holm if test.p_holm is not None else test.p
    if math.isnan(p):
        return "n/a"
    mark = " *" if test.significant else ""
    return f"{p:.2g}{mark}"


def brakes_text(values: Sequence[float | None]) -> str:
    braked = sorted(v for v in values if v is not None)
    never = len(values) - len(braked)
    text = (
        f"{np.median(braked):.2f} ({braked[0]:.2f}-{braked[-1]:.2f})" if braked else "-"
    )
    return text + (f", {never} never" if never else "")


def mean_with_band(
    x: tuple[float, ...],
    estimates: Sequence[Estimate],
    *,
    color: str,
    label: str,
    marker: str | None = None,
) -> tuple[plotting.Line, plotting.Band]:
    """The estimates' means as a line and their 95 % intervals as a band."""
    line = plotting.Line(
        x, tuple(e.mean for e in estimates), label=label, color=color, marker=marker
    )
    band = plotting.Band(
        x, tuple(e.low for e in estimates), tuple(e.high for e in estimates),
        color=color,
    )  # fmt: skip
    return line, band
