"""Working with PHS states inside any optimizer state: braking, finding, energy."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from phs_optax._goal_phs import GoalPHSState
from phs_optax._phs import PHSState

_PHS_STATES = (GoalPHSState, PHSState)


def _is_phs_state(node: Any) -> bool:
    return isinstance(node, _PHS_STATES)


def _is_variable(node: Any) -> bool:
    """A wrapper of one value, such as a ``flax.nnx`` Variable (nnx.Optimizer
    wraps every array of its optimizer state in one)."""
    return callable(getattr(node, "get_value", None)) and not isinstance(
        node, (jax.Array, np.ndarray)
    )


def _unwrapped(tree: Any) -> Any:
    """``tree`` with every wrapped value (nnx Variable) replaced by its value."""
    return jax.tree.map(
        lambda node: node.get_value() if _is_variable(node) else node,
        tree,
        is_leaf=_is_variable,
    )


def find_phs_state(opt_state: optax.OptState) -> GoalPHSState | PHSState:
    """The first :class:`GoalPHSState` or :class:`PHSState` inside ``opt_state``.

    Looks through any pytree of states: ``optax.chain`` tuples,
    ``inject_hyperparams``, ``apply_if_finite`` and ``MultiSteps`` states,
    dicts, and ``flax.nnx.Optimizer``'s ``opt_state``, whose Variables are
    unwrapped: the fields of the returned state are arrays
    (``bool(find_phs_state(optimizer.opt_state).braked)``).

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
    return _unwrapped(found[0])


def _braked(state: GoalPHSState) -> GoalPHSState:
    """``state`` with the brake applied, unless it is braked already."""
    braked = state.braked
    return state._replace(
        friction=jnp.where(braked, state.friction, state.friction * state.brake_factor),
        braked=jnp.ones_like(braked),
        # brake_step keeps the first brake: after a release it is set already.
        brake_step=jnp.where(
            braked | (state.brake_step >= 0), state.brake_step, state.count
        ),
        last_brake_step=jnp.where(braked, state.last_brake_step, state.count),
    )


def brake(opt_state: optax.OptState) -> optax.OptState:
    """Applies the brake of every :class:`GoalPHSState` inside ``opt_state``.

    For braking on another signal than the loss goal, e.g. a rising validation
    loss: the returned state's ``friction`` is ``friction * brake_factor`` and
    stays so from the next update on; ``last_brake_step`` records that update
    (as does ``brake_step`` if it is the first brake of the run; with
    ``release_after`` the exploitation phase is counted from it). A state that
    has braked already is returned unchanged. Pure and jit-compatible; works on
    stacked (vmapped) states, and on ``flax.nnx.Optimizer``'s ``opt_state``,
    whose Variables it keeps (assign the result back to ``opt_state``).

    Raises:
      ValueError: if ``opt_state`` holds no :class:`GoalPHSState`.
    """
    found = False

    def brake_one(node: Any) -> Any:
        nonlocal found
        if not isinstance(node, GoalPHSState):
            return node
        found = True
        # The braked values go back into the node's own structure, so that
        # wrappers (nnx Variables) around its arrays stay.
        return jax.tree.unflatten(
            jax.tree.structure(node), jax.tree.leaves(_braked(_unwrapped(node)))
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
