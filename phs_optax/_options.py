"""The optional mechanisms of :func:`phs_optax.goal_phs`, each declared once.

A declaration holds what every layer needs to know about an option: its
type, its default (``None`` or the documented default switches it off), a
one-line help text, the values it may take, and which other option it needs.
:func:`check_options` validates ``goal_phs``'s arguments from these
declarations; the training system derives its configuration fields, command
line flags and help texts from them (``phs_optax_training.config``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from phs_optax import _validation

ON_DEADLINE = ("brake", "restore_best")
KICK_DIRECTIONS = ("momentum", "random")

Condition = Callable[[Mapping[str, Any]], bool]


@dataclasses.dataclass(frozen=True)
class Option:
    """One optional argument of ``goal_phs``.

    Attributes:
      name: the keyword argument of ``goal_phs``.
      kind: ``int``, ``float`` or ``str``: the type of a value that switches
        the option on.
      default: the value of ``goal_phs``'s signature (``None``: off).
      help: one line for command lines and tables.
      requirement: what a value must be, as said in an error message.
      is_valid: for numeric options, whether the values (a NumPy array) are
        allowed; traced values are not checked.
      choices: for string options, the allowed values.
      needs: the condition on the other options under which a non-default
        value is meaningful, and ``needs_text`` says it in an error message.
      group: ``"signal"`` for the smoothing of the monitored loss, ``"goal"``
        for how the goal is measured, ``"beyond"`` for the mechanisms beyond
        the paper (deadline, goal adaptation, release, kick).
      in_updates: the option counts updates (a run may give it in epochs).
    """

    name: str
    kind: type
    default: Any
    help: str
    requirement: str = ""
    is_valid: Callable[[np.ndarray], np.ndarray] | None = None
    choices: tuple[str, ...] = ()
    needs: Condition | None = None
    needs_text: str = ""
    group: str = "beyond"
    in_updates: bool = False


def _whole_at_least_one(values: np.ndarray) -> np.ndarray:
    return (values >= 1) & (values == np.floor(values))


def _in_open_unit_interval(values: np.ndarray) -> np.ndarray:
    return (values > 0) & (values < 1)


def _positive(values: np.ndarray) -> np.ndarray:
    return values > 0


def _releasing(options: Mapping[str, Any]) -> bool:
    return (
        options.get("release_after") is not None
        or options.get("release_energy") is not None
    )


def _has_goal(options: Mapping[str, Any]) -> bool:
    return options.get("goal") is not None


_WHOLE = "a whole number >= 1 (or None)"
_NEEDS_GOAL = "needs a goal (goal is None)"
_NEEDS_RELEASE = "needs release_after or release_energy"

OPTIONS: tuple[Option, ...] = (
    Option(
        "ema_decay",
        float,
        None,
        "Brake on an exponential moving average of the loss with this decay.",
        "in [0, 1)",
        lambda v: (v >= 0) & (v < 1),
        needs=lambda o: o.get("accumulation_size") is None,
        needs_text="goes with accumulation_size=None: give at most one of ema_decay and accumulation_size",
        group="signal",
    ),
    Option(
        "accumulation_size",
        int,
        None,
        "Brake on the mean loss over windows of this many updates.",
        "a whole number >= 1",
        _whole_at_least_one,
        group="signal",
    ),
    Option(
        "loss_floor",
        float,
        None,
        "Lower bound of the loss; the goal is measured on loss - loss_floor (default 0).",
        "a finite number (or None)",
        np.isfinite,
        needs=_has_goal,
        needs_text=_NEEDS_GOAL,
        group="goal",
    ),
    Option(
        "deadline",
        int,
        None,
        "Brake anyway after this many exploration updates.",
        _WHOLE,
        _whole_at_least_one,
        needs=_has_goal,
        needs_text=_NEEDS_GOAL,
        in_updates=True,
    ),
    Option(
        "on_deadline",
        str,
        "brake",
        "At the deadline: brake, or restore_best (jump back to the best params).",
        choices=ON_DEADLINE,
        needs=lambda o: o.get("deadline") is not None,
        needs_text="needs a deadline",
    ),
    Option(
        "goal_patience",
        int,
        None,
        "Lower the goal after this many exploration updates without reaching it.",
        _WHOLE,
        _whole_at_least_one,
        needs=_has_goal,
        needs_text=_NEEDS_GOAL,
        in_updates=True,
    ),
    Option(
        "goal_decay",
        float,
        None,
        "Factor of the goal at each goal_patience (default 0.5).",
        "in (0, 1)",
        _in_open_unit_interval,
        needs=lambda o: o.get("goal_patience") is not None,
        needs_text="needs goal_patience",
    ),
    Option(
        "release_after",
        int,
        None,
        "Release the brake after this many braked updates.",
        _WHOLE,
        _whole_at_least_one,
        in_updates=True,
    ),
    Option(
        "release_energy",
        float,
        None,
        "Release the brake when the kinetic energy falls below this.",
        "> 0",
        _positive,
    ),
    Option(
        "max_releases",
        int,
        None,
        "Release the brake at most this many times.",
        _WHOLE,
        _whole_at_least_one,
        needs=_releasing,
        needs_text=_NEEDS_RELEASE,
    ),
    Option(
        "kick_energy",
        float,
        None,
        "Kinetic energy added to the momentum at each release.",
        "> 0",
        _positive,
        needs=_releasing,
        needs_text=_NEEDS_RELEASE,
    ),
    Option(
        "kick_direction",
        str,
        "momentum",
        "Direction of the kick: momentum or random.",
        choices=KICK_DIRECTIONS,
        needs=lambda o: o.get("kick_energy") is not None,
        needs_text="needs kick_energy",
    ),
    Option(
        "kick_seed",
        int,
        None,
        "Seed of random kicks (default 0).",
        "a whole number (or None)",
        lambda v: v == np.floor(v),
        needs=lambda o: (
            o.get("kick_energy") is not None and o.get("kick_direction") == "random"
        ),
        needs_text="needs kick_energy and kick_direction='random'",
    ),
)

OPTION_NAMES: tuple[str, ...] = tuple(option.name for option in OPTIONS)
DEFAULTS: Mapping[str, Any] = {option.name: option.default for option in OPTIONS}


def option(name: str) -> Option:
    """The declaration of ``name``."""
    for declared in OPTIONS:
        if declared.name == name:
            return declared
    raise KeyError(f"goal_phs has no option {name!r}; its options are {OPTION_NAMES}")


def is_default(declared: Option, value: Any) -> bool:
    """Whether ``value`` leaves the option ``declared`` at its default."""
    if declared.default is None:
        return value is None
    return isinstance(value, str) and value == declared.default


def check_options(owner: str, values: Mapping[str, Any]) -> None:
    """Raises ValueError (naming the option and its value) for a value that is
    not allowed or that needs another option; ``values`` also holds ``goal``."""
    for declared in OPTIONS:
        value = values.get(declared.name, declared.default)
        if declared.choices:
            _validation.check_choice(owner, declared.name, value, declared.choices)
        elif declared.is_valid is not None:
            _validation.check(
                owner, declared.name, value, declared.is_valid, declared.requirement
            )
    for declared in OPTIONS:
        value = values.get(declared.name, declared.default)
        if declared.needs is not None and not is_default(declared, value):
            _validation.require(
                owner,
                declared.name,
                value,
                declared.needs(values),
                declared.needs_text,
            )
