"""How a study's numbers are written in its Markdown tables."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

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
