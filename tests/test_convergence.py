"""Convergence on classic problems, the way optax tests its optimizers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import phs_optax

TARGET = jnp.array([1.0, -2.0, 3.0])


def quadratic(x):
    return jnp.sum((x - TARGET) ** 2)


def rosenbrock(x):
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2


def run(tx, loss_fn, x0, num_steps, *, pass_value):
    """Runs ``num_steps`` updates in one scan; returns final params, state, losses."""

    def step(carry, _):
        x, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(x)
        extra = {"value": loss} if pass_value else {}
        updates, state = tx.update(grads, state, x, **extra)
        return (optax.apply_updates(x, updates), state), loss

    (x, state), losses = jax.lax.scan(step, (x0, tx.init(x0)), length=num_steps)
    return x, state, np.asarray(losses)


@pytest.mark.parametrize("drag", phs_optax.DRAGS)
@pytest.mark.parametrize("integrator", phs_optax.INTEGRATORS)
def test_phs_converges_on_quadratic(integrator, drag):
    tx = phs_optax.phs(0.1, mass=1.0, friction=1.0, integrator=integrator, drag=drag)
    x, _, _ = run(tx, quadratic, jnp.zeros(3), 500, pass_value=False)
    np.testing.assert_allclose(x, TARGET, atol=1e-4)


@pytest.mark.parametrize("integrator", phs_optax.INTEGRATORS)
def test_phs_converges_on_rosenbrock(integrator):
    tx = phs_optax.phs(0.01, mass=1.0, friction=10.0, integrator=integrator)
    x, _, _ = run(tx, rosenbrock, jnp.array([-1.2, 1.0]), 30_000, pass_value=False)
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-3)


@pytest.mark.parametrize("integrator", phs_optax.INTEGRATORS)
def test_goal_phs_converges_on_rosenbrock(integrator):
    tx = phs_optax.goal_phs(
        0.01, mass=1.0, friction=2.0, goal=0.9, brake_factor=5.0, integrator=integrator
    )
    x, state, _ = run(tx, rosenbrock, jnp.array([-1.2, 1.0]), 30_000, pass_value=True)
    assert bool(state.braked)
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-3)


def test_brake_stops_oscillation_that_low_friction_keeps():
    low_friction = dict(learning_rate=0.1, mass=1.0, friction=0.01)
    _, _, phs_losses = run(
        phs_optax.phs(**low_friction), quadratic, jnp.zeros(3), 300, pass_value=False
    )
    _, state, goal_losses = run(
        phs_optax.goal_phs(**low_friction, goal=0.5, brake_factor=100.0),
        quadratic,
        jnp.zeros(3),
        300,
        pass_value=True,
    )
    # Fixed low friction: the ball still swings through the minimum after 300 steps.
    assert phs_losses[-50:].max() > 1.0
    assert np.any(np.diff(np.sign(np.diff(phs_losses[-50:]))) != 0)
    # Braked: at rest at the minimum.
    assert bool(state.braked)
    assert goal_losses[-50:].max() < 1e-8
