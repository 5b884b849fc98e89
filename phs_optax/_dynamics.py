"""One step of the damped Hamiltonian dynamics of eq. 2, for every integrator and drag.

The continuous system (paper eq. 3) is

    d theta / dt = p / m
    d p / dt     = -c p - grad L(theta)

with damping rate ``c = gamma / m`` when the friction force acts on the velocity
(``drag="velocity"``, the paper's eq. 3) and ``c = gamma`` when it acts on the
momentum (``drag="momentum"``). Every integrator advances the momentum as

    p_{k+1} = d_k * p_k - alpha_k * grad L(theta_k)

and differs in the damping factor ``d_k`` and in which momentum moves theta:

=================  =======================  ============================
integrator         d_k                      theta_{k+1} - theta_k
=================  =======================  ============================
``"euler"``        1 - alpha_k * c          (alpha_k / m) * p_k      (eq. 2)
``"symplectic"``   1 - alpha_k * c          (alpha_k / m) * p_{k+1}
``"conformal"``    exp(-alpha_k * c)        (alpha_k / m) * p_{k+1}
=================  =======================  ============================
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

INTEGRATORS = ("euler", "symplectic", "conformal")
DRAGS = ("momentum", "velocity")


def damping_rate(friction: jax.Array, mass: jax.Array, drag: str) -> jax.Array:
    """The rate c of the friction force -c * p for the given ``drag``."""
    return friction / mass if drag == "velocity" else friction


def damping_factor(
    learning_rate: jax.Array, rate: jax.Array, integrator: str
) -> jax.Array:
    """The factor d that multiplies the momentum over one step of length alpha."""
    if integrator == "conformal":
        return jnp.exp(-learning_rate * rate)
    return 1.0 - learning_rate * rate


def phs_step(
    grads: optax.Updates,
    momentum: optax.Updates,
    *,
    learning_rate: jax.Array,
    mass: jax.Array,
    friction: jax.Array,
    integrator: str,
    drag: str,
) -> tuple[optax.Updates, optax.Updates]:
    """Returns ``(updates, new_momentum)`` for one step; scalars are float32."""
    decay = damping_factor(
        learning_rate, damping_rate(friction, mass, drag), integrator
    )
    step_size = learning_rate / mass

    def new_leaf_momentum(g: jax.Array, p: jax.Array) -> jax.Array:
        # Computed in at least float32: in bfloat16 a decay such as 0.999 rounds to 1.
        compute_dtype = jnp.promote_types(p.dtype, jnp.float32)
        new_p = decay * p.astype(compute_dtype) - learning_rate * g.astype(
            compute_dtype
        )
        return new_p.astype(p.dtype)

    new_momentum = jax.tree.map(new_leaf_momentum, grads, momentum)
    moving_momentum = momentum if integrator == "euler" else new_momentum
    updates = jax.tree.map(
        lambda g, p: (
            step_size * p.astype(jnp.promote_types(p.dtype, jnp.float32))
        ).astype(g.dtype),
        grads,
        moving_momentum,
    )
    return updates, new_momentum
