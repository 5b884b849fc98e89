"""Checks of hyperparameters at construction, skipped for traced values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _concrete_values(value: Any) -> np.ndarray | None:
    """The value as a NumPy array, or None when it is traced or not numeric."""
    if isinstance(value, jax.core.Tracer) or callable(value) or value is None:
        return None
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def is_concrete(value: Any) -> bool:
    """Whether ``value`` is a number known now (not traced, not a schedule)."""
    return _concrete_values(value) is not None


def check(
    owner: str,
    name: str,
    value: Any,
    is_valid: Callable[[np.ndarray], np.ndarray],
    requirement: str,
) -> None:
    """Raises ValueError naming ``name`` and ``value`` when a concrete value fails."""
    values = _concrete_values(value)
    if values is not None and not np.all(is_valid(values)):
        raise ValueError(
            f"{owner}: {name} must be {requirement}, got {name}={value!r}."
        )


def is_whole_at_least_one(values: np.ndarray) -> np.ndarray:
    return (values >= 1) & (values == np.floor(values))


def require(
    owner: str, name: str, value: Any, condition: bool, requirement: str
) -> None:
    """Raises ValueError naming ``name`` and ``value`` unless ``condition``: for
    arguments that are only meaningful together with another one."""
    if not condition:
        raise ValueError(f"{owner}: {name} {requirement}, got {name}={value!r}.")


def check_choice(owner: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(
            f"{owner}: {name} must be one of {', '.join(map(repr, choices))}, "
            f"got {name}={value!r}."
        )


def check_dynamics(
    owner: str, learning_rate: Any, mass: Any, friction: Any, integrator: str, drag: str
) -> None:
    from phs_optax._dynamics import DRAGS, INTEGRATORS

    check(owner, "learning_rate", learning_rate, lambda v: v > 0, "> 0")
    check(owner, "mass", mass, lambda v: v > 0, "> 0")
    check(owner, "friction", friction, lambda v: v >= 0, ">= 0")
    check_choice(owner, "integrator", integrator, INTEGRATORS)
    check_choice(owner, "drag", drag, DRAGS)


def check_dtype(owner: str, name: str, dtype: Any) -> None:
    """A floating dtype or None; arrays (what inject_hyperparams makes of a
    dtype it mistakes for a schedule) are rejected rather than ignored."""
    if dtype is None:
        return
    try:
        is_float = not isinstance(dtype, jax.Array) and jnp.issubdtype(
            jnp.dtype(dtype), jnp.floating
        )
    except TypeError:
        is_float = False
    if not is_float:
        raise ValueError(
            f"{owner}: {name} must be a floating dtype such as 'float32' (with "
            f"optax.inject_hyperparams, give it as a string or in static_args), "
            f"got {name}={dtype!r}."
        )
