"""train.py's ``--help``: what the program does, its flags in groups, the presets
and the exit codes (every flag of ``FLAGS`` appears exactly once)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from absl import flags

import phs_optax
from phs_optax_training import errors, presets

DESCRIPTION = """\
Trains LeNet-5 with goal-oriented port-Hamiltonian momentum (goal_phs), its
fixed-friction baseline (phs) or SGD, as in "Who breaks early, loses", on one
CPU, one GPU or all devices of a machine. --demo runs the main job: one Table 2
pair at batch 10 and at batch 64, with a table and one sentence per batch size.
Rerunning with the same --workdir resumes from its latest good checkpoint."""

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("What to run", ("demo", "compare_baselines", "preset", "goal_reading", "workdir")),
    ("Optimizer", (
        "optimizer", "learning_rate", "mass", "friction", "goal", "brake_factor",
        "integrator", "drag", "sgd_momentum", "sgd_schedule",
    )),
    ("When to brake", (
        "brake_trigger", "brake_at_step", "validation_fraction", "validation_patience",
    )),
    ("Training", (
        "batch_size", "eval_batch_size", "num_epochs", "seed", "conv_impl",
        "stop_on_divergence",
    )),
    ("Data", ("dataset", "data_dir", "max_train_examples", "max_test_examples")),
    ("Outputs", (
        "checkpoint_every_epochs", "max_checkpoints", "plots", "quiet",
        "compilation_cache_dir",
    )),
    ("Several processes", (
        "coordinator_address", "num_processes", "process_id", "data_shards",
    )),
)  # fmt: skip

EXIT_CODES = (
    (0, "the run finished"),
    (errors.USAGE, "a bad flag or configuration, a --data_dir without the data, "
     "a workdir holding another configuration"),
    (errors.DIVERGED, "the training loss became non-finite (see summary.json)"),
    (errors.UNREADABLE, "a corrupt data file, no good checkpoint, an unwritable workdir"),
    (errors.WORKDIR_IN_USE, "another process trains in the workdir"),
)  # fmt: skip


def _flag_line(flag: flags.Flag) -> str:
    default = "" if flag.default is None else f"={flag.default}"
    if isinstance(flag, flags.BooleanFlag):
        default = "" if not flag.default else " (default; --no" + flag.name + ")"
    head = f"  --{flag.name}{default}"
    body = textwrap.fill(
        flag.help, width=88, initial_indent="      ", subsequent_indent="      "
    )
    return f"{head}\n{body}"


def _option_names() -> tuple[str, ...]:
    return tuple(option.name for option in phs_optax.OPTIONS)


def _groups(all_flags: Sequence[str]) -> list[tuple[str, list[str]]]:
    groups = [(title, [n for n in names if n in all_flags]) for title, names in GROUPS]
    groups.append(("goal_phs options (off by default)", list(_option_names())))
    grouped = {name for _, names in groups for name in names}
    other = sorted(name for name in all_flags if name not in grouped)
    if other:
        groups.append(("Other", other))
    return groups


def _presets_text() -> str:
    lines = []
    for table in presets.TABLES:
        names = [p.name for p in presets.table_presets(table)]
        lines.append(f"  {table} ({len(names)}):")
        lines.append(
            textwrap.fill(
                ", ".join(names),
                width=88,
                initial_indent="    ",
                subsequent_indent="    ",
            )  # fmt: skip
        )
    return "\n".join(lines)


def help_text(flag_values: flags.FlagValues, first_line: str) -> str:
    """The whole ``--help`` text."""
    own = flag_values.get_key_flags_for_module("phs_optax_training.cli") or [
        flag_values[name] for name in flag_values
    ]
    by_name = {flag.name: flag for flag in own}
    sections = [
        "usage: python train.py [--flag=value ...]",
        DESCRIPTION,
        first_line,
    ]
    for title, names in _groups(list(by_name)):
        sections.append(
            f"{title}:\n" + "\n".join(_flag_line(by_name[name]) for name in names)
        )
    sections.append(
        "Presets (--preset=NAME; the paper's table rows):\n" + _presets_text()
    )
    sections.append(
        "Exit codes:\n"
        + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES)
    )
    return "\n\n".join(sections)
