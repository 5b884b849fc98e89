"""Strict JSON for every file the training system writes: ``null`` for a
non-finite number, never the ``NaN``/``Infinity`` that strict parsers reject."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (also inside lists and dicts) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``value`` with non-finite numbers as ``null``."""
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)


def write(path: str | Path, value: Any) -> None:
    """Writes ``value`` as indented strict JSON, atomically (temporary file, rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(value, indent=2) + "\n")
    tmp.replace(path)


def write_lines(path: str | Path, rows: list[Any]) -> None:
    """Writes one strict JSON line per row, atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(dumps(row) + "\n" for row in rows))
    tmp.replace(path)
