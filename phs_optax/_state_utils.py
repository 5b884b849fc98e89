"""Working with PHS states inside any optimizer state: braking, finding, energy."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from phs_optax._transforms import GoalPHSState, PHSState

_PHS_STATES = (GoalPHSState, PHSState)


def _is_phs_state(node: Any) -> bool:
    return isinstance(node, _PHS_STATES)


def find_phs_state(opt_state: optax.OptState) -> GoalPHSState | PHSState:
    """The first :class:`GoalPHSState` or :class:`PHSState` inside ``opt_state``.

    Looks through any pytree of states: ``optax.chain`` tuples,
    ``inject_hyperparams``, ``apply_if_finite`` and ``MultiSteps`` states, dicts.

    Raises:
      ValueError: if ``opt_state`` holds no PHS state.
    """
    found = [
        node
        for node in jax.tree.leaves(opt_state, is_leaf=_is_phs_state)
        if _is_phs_state(node)
    ]
    if not found:
        raise ValueError(
            "No phs_optax state found in the optimizer state: was it built with "
            "phs_optax.phs or phs_optax.goal_phs?"
        )
    return found[0]


def brake(opt_state: optax.OptState) -> optax.OptState:
    """Applies the brake of every :class:`GoalPHSState` inside ``opt_state``.

    For braking on another signal than the loss goal, e.g. a rising validation
    loss: from the next update on the friction is ``friction * brake_factor``,
    and ``last_brake_step`` records that update (as does ``brake_step`` if it
    is the first brake of the run; with ``release_after`` the exploitation
    phase is counted from it). A state that has braked already is returned
    unchanged. Pure and jit-compatible; works on stacked (vmapped)
    states too.

    Raises:
      ValueError: if ``opt_state`` holds no :class:`GoalPHSState`.
    """
    found = False

    def brake_one(node: Any) -> Any:
        nonlocal found
        if not isinstance(node, GoalPHSState):
            return node
        found = True
        # Read through whatever wraps the packed scalars (flax.nnx Variables);
        # replace_scalars keeps the wrappers. brake_step keeps the first
        # brake: after a release it is set already.
        braked, first_brake, last_brake, count = (
            jax.tree.leaves(scalar)[0]
            for scalar in (
                node.braked,
                node.brake_step,
                node.last_brake_step,
                node.count,
            )
        )
        return node.replace_scalars(
            braked=jnp.ones_like(braked),
            brake_step=jnp.where(braked | (first_brake >= 0), first_brake, count),
            last_brake_step=jnp.where(braked, last_brake, count),
        )

    braked_state = jax.tree.map(
        brake_one, opt_state, is_leaf=lambda n: isinstance(n, GoalPHSState)
    )
    if not found:
        raise ValueError(
            "brake() found no GoalPHSState in the optimizer state: only "
            "phs_optax.goal_phs can brake."
        )
    return braked_state


def kinetic_energy(opt_state: optax.OptState, mass: float | jax.Array) -> jax.Array:
    """Kinetic energy ``|p|^2 / (2 m)`` of the momentum in ``opt_state`` (float32)."""
    momentum = find_phs_state(opt_state).momentum
    squared_norm = sum(
        jnp.sum(jnp.square(leaf.astype(jnp.float32)))
        for leaf in jax.tree.leaves(momentum)
    )
    return jnp.asarray(squared_norm, jnp.float32) / (
        2.0 * jnp.asarray(mass, jnp.float32)
    )


def hamiltonian(
    opt_state: optax.OptState, mass: float | jax.Array, loss: float | jax.Array
) -> jax.Array:
    """Total energy ``H = |p|^2 / (2 m) + L`` (kinetic plus potential)."""
    return kinetic_energy(opt_state, mass) + jnp.asarray(loss, jnp.float32)
