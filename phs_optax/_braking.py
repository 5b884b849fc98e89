"""The rules of goal-oriented braking, as small pure functions of arrays.

:func:`phs_optax.goal_phs` composes them; each is what its docstring says and
nothing else. Updates are numbered ``k = 0, 1, ...``; an exploration phase
begins at ``s`` (``phase_start``) and an exploitation phase at ``b``
(``last_brake_step``). Losses and energies are float32 scalars, counters
int32 scalars, flags bool scalars.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class LossSignal(NamedTuple):
    """What the goal compares at one update."""

    monitored: jax.Array  # the monitored loss (NaN until a finite loss was seen)
    compare_now: jax.Array  # whether the goal compares it at this update
    loss_sum: jax.Array  # the window's running sum (windowed signal only)
    loss_count: jax.Array  # how many losses the window holds (windowed only)


def raw_signal(
    loss: jax.Array, is_finite: jax.Array, monitored: jax.Array
) -> jax.Array:
    """The loss itself; a non-finite loss keeps the previous monitored loss."""
    return jnp.where(is_finite, loss, monitored)


def ema_signal(
    loss: jax.Array, is_finite: jax.Array, monitored: jax.Array, decay: jax.Array
) -> jax.Array:
    """``ema_k = decay * ema_{k-1} + (1 - decay) * loss_k``, started at the first
    finite loss; a non-finite loss leaves the average as it is."""
    averaged = jnp.where(
        jnp.isnan(monitored), loss, decay * monitored + (1.0 - decay) * loss
    )
    return jnp.where(is_finite, averaged, monitored)


def window_signal(
    loss: jax.Array,
    is_finite: jax.Array,
    monitored: jax.Array,
    loss_sum: jax.Array,
    loss_count: jax.Array,
    size: jax.Array,
) -> LossSignal:
    """The mean of consecutive windows of ``size`` finite losses, compared once
    per window (when it is full); in between the last mean stays monitored."""
    loss_sum = loss_sum + jnp.where(is_finite, loss, 0.0)
    loss_count = loss_count + is_finite.astype(jnp.int32)
    full = loss_count >= size
    mean = jnp.where(full, loss_sum / jnp.maximum(loss_count, 1), monitored)
    return LossSignal(
        mean, full, jnp.where(full, 0.0, loss_sum), jnp.where(full, 0, loss_count)
    )


def first_finite(reference: jax.Array, loss: jax.Array) -> jax.Array:
    """The reference of the goal: the first finite loss unless one is set."""
    return jnp.where(jnp.isnan(reference) & jnp.isfinite(loss), loss, reference)


def goal_reached(
    monitored: jax.Array,
    reference: jax.Array,
    goal: jax.Array,
    floor: jax.Array | None = None,
) -> jax.Array:
    """The goal rule: ``monitored - floor <= (1 - goal) * (reference - floor)``
    (``floor`` 0 if None), only for a reference above the floor: a loss that
    starts at or below its floor has no fraction left to fall by."""
    if floor is None:
        return (reference > 0) & (monitored <= (1.0 - goal) * reference)
    return (reference > floor) & (
        monitored - floor <= (1.0 - goal) * (reference - floor)
    )


def adapted_goal(
    goal: jax.Array, updates_in_phase: jax.Array, patience: jax.Array, decay: jax.Array
) -> jax.Array:
    """Goal adaptation: ``goal * decay ** floor((k - s) / patience)``."""
    return goal * jnp.power(decay, updates_in_phase // patience)


def deadline_passed(updates_in_phase: jax.Array, deadline: jax.Array) -> jax.Array:
    """The deadline: ``k - s >= deadline`` exploration updates have been done."""
    return updates_in_phase >= deadline


def release_due(
    braked: jax.Array,
    updates_braked: jax.Array,
    releases: jax.Array,
    *,
    kinetic_energy: jax.Array | None,
    release_after: jax.Array | None,
    release_energy: jax.Array | None,
    max_releases: jax.Array | None,
) -> jax.Array:
    """Whether exploitation ends at this update.

    It ends at the first update ``k > b`` with ``k - b >= release_after`` or
    whose starting momentum has ``kinetic_energy < release_energy`` (the
    criteria that are given), while fewer than ``max_releases`` releases were
    done (if given).
    """
    ends = jnp.zeros([], jnp.bool_)
    if release_after is not None:
        ends = ends | (updates_braked >= release_after)
    if release_energy is not None:
        ends = ends | (kinetic_energy < release_energy)
    due = braked & (updates_braked > 0) & ends
    if max_releases is not None:
        due = due & (releases < max_releases)
    return due


def kick(
    momentum: optax.Updates,
    key: jax.Array | None,
    *,
    mass: jax.Array,
    energy: jax.Array,
    direction: str,
) -> tuple[optax.Updates, jax.Array | None]:
    """The momentum plus ``sqrt(2 m K) * u``, ``u`` a unit vector (global norm).

    ``u = p / |p|`` for ``direction="momentum"`` (no kick if ``p = 0``), or
    ``z / |z|`` with standard normal ``z`` drawn from ``key`` for
    ``"random"``. Returns the kicked momentum and the next key.
    """
    if direction == "random":
        key, use = jax.random.split(key)
        leaves, treedef = jax.tree.flatten(momentum)
        leaf_keys = jax.random.split(use, len(leaves))
        unscaled = jax.tree.unflatten(
            treedef,
            [
                jax.random.normal(k, jnp.shape(leaf), jnp.float32)
                for k, leaf in zip(leaf_keys, leaves, strict=True)
            ],
        )
    else:
        unscaled = momentum
    norm = jnp.sqrt(squared_norm(unscaled))
    size = jnp.sqrt(2.0 * mass * energy)
    scale = jnp.where(norm > 0, size / jnp.where(norm > 0, norm, 1.0), 0.0)
    kicked = jax.tree.map(
        lambda p, d: (
            p.astype(jnp.promote_types(p.dtype, jnp.float32))
            + scale * d.astype(jnp.float32)
        ).astype(p.dtype),
        momentum,
        unscaled,
    )
    return kicked, key


def is_new_best(
    monitored: jax.Array, compare_now: jax.Array, best_loss: jax.Array
) -> jax.Array:
    """Whether the monitored loss is the lowest finite one so far (the first of
    equal ones)."""
    return compare_now & jnp.isfinite(monitored) & ~(monitored >= best_loss)


def squared_norm(tree: optax.Updates) -> jax.Array:
    """``sum |leaf|^2`` over the pytree, in float32."""
    return sum(
        (
            jnp.sum(jnp.square(leaf.astype(jnp.float32)))
            for leaf in jax.tree.leaves(tree)
        ),
        jnp.zeros([], jnp.float32),
    )


def tree_where(condition: jax.Array, on_true: Any, on_false: Any) -> Any:
    """``jnp.where(condition, a, b)`` leaf by leaf."""
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)
