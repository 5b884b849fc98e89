"""The experiments of "Who breaks early, loses" and those beyond it, as named
sweeps: each a list of :class:`~phs_optax_training.config.TrainConfig` that
``python -m phs_optax_training.sweep --sweep=<name>`` trains
(:mod:`phs_optax_training.vmap_sweep`). One module per experiment, its
docstring giving the paper's experiment and the command that runs it:

* :mod:`.table1`: ``table1``, Table 1 (CIFAR-10);
* :mod:`.table2`: ``table2-reduction``, ``table2-remaining``, Table 2
  (Fashion-MNIST) under either reading of its goal column;
* :mod:`.figure1`: ``figure1``, PHS over mass x friction;
* :mod:`.protocol`: ``protocol``, the pilot that settled the protocol;
* :mod:`.ablation`: ``ablation``, the goal trigger against the same drop at
  the same step and against braking at fixed epochs;
* :mod:`.batch_size`: ``batch-size``, goal-oriented PHS and PHS of four
  Table 2 pairs at one batch size of a sweep over batch sizes;
* :mod:`.beyond`: ``beyond-table1``, ``beyond-table2``, goal_phs options
  beyond the paper;
* :mod:`.rule`: ``rule-heldout``, the configurations that test the rule for
  when braking pays;
* :mod:`.tuning`: ``tuning``, ``tuned``, goal-oriented braking against
  schedules tuned with the same budget on the validation split;
* :mod:`.validation_trigger`: ``validation-table1``, ``validation-table2``,
  braking on a rising held-out loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from phs_optax_training.config import TrainConfig
from phs_optax_training.experiments import (
    ablation,
    batch_size,
    beyond,
    figure1,
    protocol,
    rule,
    table1,
    table2,
    tuning,
    validation_trigger,
)


@dataclasses.dataclass(frozen=True)
class NamedSweep:
    """How to build a named sweep: ``build(seeds, base, **options)``.

    ``needs_reference``: ``build`` takes ``reference`` (a finished sweep
    folder) and ``reading``; ``variants``: what ``build``'s ``variants`` may
    name (empty: it takes none).
    """

    build: Callable[..., list[TrainConfig]]
    needs_reference: bool = False
    variants: tuple[str, ...] = ()


SWEEPS: dict[str, NamedSweep] = {
    "table1": NamedSweep(table1.table1_configs),
    "table2-reduction": NamedSweep(partial(table2.table2_configs, "reduction")),
    "table2-remaining": NamedSweep(partial(table2.table2_configs, "remaining")),
    "figure1": NamedSweep(figure1.figure1_configs),
    "protocol": NamedSweep(protocol.protocol_configs),
    "ablation": NamedSweep(ablation.ablation_configs, needs_reference=True),
    "batch-size": NamedSweep(batch_size.batch_size_configs),
    "beyond-table1": NamedSweep(
        partial(beyond.beyond_configs, "table1"),
        variants=tuple(beyond.BEYOND_VARIANTS["table1"]),
    ),
    "beyond-table2": NamedSweep(
        partial(beyond.beyond_configs, "table2"),
        variants=tuple(beyond.BEYOND_VARIANTS["table2"]),
    ),
    "rule-heldout": NamedSweep(rule.heldout_configs),
    "tuning": NamedSweep(tuning.tuning_configs),
    "tuned": NamedSweep(tuning.tuned_configs, needs_reference=True),
    "validation-table1": NamedSweep(
        partial(validation_trigger.validation_configs, "table1"),
        variants=validation_trigger.VALIDATION_KINDS,
    ),
    "validation-table2": NamedSweep(
        partial(validation_trigger.validation_configs, "table2"),
        variants=validation_trigger.VALIDATION_KINDS,
    ),
}
NAMED_SWEEPS = tuple(SWEEPS)


def named_sweep(
    name: str,
    seeds: Sequence[int],
    base: TrainConfig,
    reference: str | Path | None = None,
    reading: str = "remaining",
    variants: Sequence[str] | None = None,
) -> list[TrainConfig]:
    """The configurations of the sweep ``name`` for ``seeds`` on top of ``base``.

    ``reference`` and ``reading``: the ablation's finished table2 sweep folder
    and the goal reading of its runs; ``variants``: the option sets (beyond-*)
    or kinds of run (validation-*) to run (None: the module's default).
    Raises ValueError for an unknown name or an option the sweep does not take.
    """
    if name not in SWEEPS:
        raise ValueError(
            f"unknown sweep {name!r}; choose one of {', '.join(NAMED_SWEEPS)}"
        )
    entry = SWEEPS[name]
    if variants is not None and not entry.variants:
        raise ValueError(
            f"--variants applies to the beyond-* and validation-* sweeps, not {name}"
        )
    options = {}
    if entry.needs_reference:
        if reference is None:
            raise ValueError(f"--sweep={name} needs --reference=<table2 sweep folder>")
        options.update(reference=reference, reading=reading)
    if entry.variants:
        options.update(variants=variants)
    return entry.build(seeds, base, **options)
