"""The folder map of README.md, enforced: what each part may import directly."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)

# part -> (its files, the top-level packages or project modules it may import)
RULES = {
    "the optimizer library": (
        ["phs_optax/*.py"],
        {"jax", "optax", "chex", "numpy", "phs_optax"},
    ),
    "the model": (["models/*.py"], {"jax", "flax"}),
    "the data sources": (
        ["training/data/*.py"],
        {
            "numpy", "PIL", "tensorflow_datasets", "phs_optax_training.errors",
            "phs_optax_training.data",
        },
    ),
    "the experiment definitions": (
        ["training/experiments/*.py"],
        {
            "numpy", "phs_optax_training.config", "phs_optax_training.presets",
            "phs_optax_training.experiments",
        },
    ),
    "the analysis": (
        ["training/report.py", "training/figures.py", "training/plotting.py",
         "training/presets.py", "training/stats.py", "training/study/*.py",
         "training/selection.py"],
        {
            "numpy", "scipy", "matplotlib", "phs_optax_training.config",
            "phs_optax_training.presets", "phs_optax_training.plotting",
            "phs_optax_training.experiments", "phs_optax_training.report",
            "phs_optax_training.stats", "phs_optax_training.selection",
            "phs_optax_training.study",
        },
    ),
}  # fmt: skip


def imported_names(path: Path) -> set[str]:
    """Every module ``path`` imports, ``from a import b`` giving ``a.b``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def allowed(name: str, rule: set[str]) -> bool:
    top = name.split(".")[0]
    if top in STDLIB or top == "__future__":
        return True
    return any(name == r or name.startswith(r + ".") for r in rule)


@pytest.mark.parametrize("part", sorted(RULES))
def test_each_part_imports_only_what_the_folder_map_allows(part):
    patterns, rule = RULES[part]
    files = [path for pattern in patterns for path in sorted(REPO.glob(pattern))]
    assert files, part
    for path in files:
        refused = sorted(n for n in imported_names(path) if not allowed(n, rule))
        assert not refused, f"{path.relative_to(REPO)} imports {refused} ({part})"
