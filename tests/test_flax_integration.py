"""goal_phs in Flax training loops (Linen TrainState, NNX Optimizer) and checkpoints."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx, serialization
from flax.training import train_state

import phs_optax
from phs_optax import GoalPHSState

HYPER = dict(learning_rate=0.3, mass=1.0, friction=0.1, goal=0.5, brake_factor=20.0)
N_STEPS = 30


def regression_data():
    """A tiny smooth regression problem, y = sin(x0) + x1 / 2."""
    x = jax.random.normal(jax.random.key(0), (32, 2), jnp.float32)
    y = jnp.sin(x[:, :1]) + 0.5 * x[:, 1:]
    return x, y


def assert_trees_bitwise_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        a, e = np.asarray(a), np.asarray(e)
        assert (a.dtype, a.shape) == (e.dtype, e.shape)
        assert a.tobytes() == e.tobytes()


# --- Linen TrainState --------------------------------------------------------


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(16)(x)))


class PHSTrainState(train_state.TrainState):
    """TrainState whose apply_gradients hands the loss to ``tx.update``."""

    def apply_gradients(self, *, grads, value, **kwargs):
        updates, opt_state = self.tx.update(
            grads, self.opt_state, self.params, value=value
        )
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            opt_state=opt_state,
            **kwargs,
        )


def linen_state(cls=PHSTrainState):
    model = LinenMLP()
    x, _ = regression_data()
    params = model.init(jax.random.key(1), x)["params"]
    return cls.create(
        apply_fn=model.apply, params=params, tx=phs_optax.goal_phs(**HYPER)
    )


def linen_loss(params, apply_fn):
    x, y = regression_data()
    return jnp.mean(jnp.square(apply_fn({"params": params}, x) - y))


def test_linen_train_state_loop_with_value_trains_and_brakes():
    @jax.jit
    def train_step(state):
        loss, grads = jax.value_and_grad(linen_loss)(state.params, state.apply_fn)
        return state.apply_gradients(grads=grads, value=loss), loss

    state = linen_state()
    losses = []
    for _ in range(N_STEPS):
        state, loss = train_step(state)
        losses.append(float(loss))

    phs_state = phs_optax.find_phs_state(state.opt_state)
    assert losses[-1] < 0.5 * losses[0]
    assert bool(phs_state.braked)
    assert 0 < int(phs_state.brake_step) < N_STEPS
    assert int(state.step) == N_STEPS
    np.testing.assert_allclose(phs_state.initial_loss, losses[0])


def test_linen_loop_calling_tx_update_directly_matches_subclass():
    state = linen_state(train_state.TrainState)
    sub = linen_state()
    for _ in range(3):
        loss, grads = jax.value_and_grad(linen_loss)(state.params, state.apply_fn)
        updates, opt_state = state.tx.update(
            grads, state.opt_state, state.params, value=loss
        )
        state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
        )
        sub = sub.apply_gradients(grads=grads, value=loss)
    assert_trees_bitwise_equal(state.params, sub.params)
    assert_trees_bitwise_equal(state.opt_state, sub.opt_state)


def test_stock_apply_gradients_without_value_raises_type_error():
    state = linen_state(train_state.TrainState)
    grads = jax.grad(linen_loss)(state.params, state.apply_fn)
    with pytest.raises(TypeError, match="value"):
        state.apply_gradients(grads=grads)


# --- NNX Optimizer -----------------------------------------------------------


class NNXMLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(2, 16, rngs=rngs)
        self.out = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


def nnx_loss(model):
    x, y = regression_data()
    return jnp.mean(jnp.square(model(x) - y))


@nnx.jit
def nnx_train_step(model, optimizer):
    loss, grads = nnx.value_and_grad(nnx_loss)(model)
    optimizer.update(model, grads, value=loss)
    return loss


def test_nnx_optimizer_update_with_value_trains_and_brakes():
    model = NNXMLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, phs_optax.goal_phs(**HYPER), wrt=nnx.Param)
    losses = [float(nnx_train_step(model, optimizer)) for _ in range(N_STEPS)]

    assert losses[-1] < 0.5 * losses[0]
    # nnx wraps each array of the state in an OptState Variable;
    # find_phs_state unwraps them, so the fields are arrays.
    is_variable = lambda node: isinstance(node, nnx.Variable)
    wrapped = jax.tree.leaves(optimizer.opt_state, is_leaf=is_variable)
    assert wrapped and all(is_variable(leaf) for leaf in wrapped)
    phs_state = phs_optax.find_phs_state(optimizer.opt_state)
    assert isinstance(phs_state, GoalPHSState)
    assert isinstance(phs_state.braked, jax.Array)
    assert bool(phs_state.braked)
    assert 0 < int(phs_state.brake_step) < N_STEPS
    assert int(phs_state.count) == N_STEPS == int(optimizer.step[...])
    pure = phs_optax.find_phs_state(nnx.as_pure(optimizer.opt_state))
    assert bool(pure.braked) and int(pure.brake_step) == int(phs_state.brake_step)


def test_nnx_optimizer_brakes_by_hand_on_its_variables():
    model = NNXMLP(nnx.Rngs(0))
    unreached = {**HYPER, "goal": 0.99}
    optimizer = nnx.Optimizer(model, phs_optax.goal_phs(**unreached), wrt=nnx.Param)
    nnx_train_step(model, optimizer)

    # brake() keeps the optimizer's Variables, so its result can be assigned back.
    braked = phs_optax.brake(optimizer.opt_state)
    assert jax.tree.structure(braked) == jax.tree.structure(optimizer.opt_state)
    raised = unreached["friction"] * unreached["brake_factor"]
    np.testing.assert_allclose(phs_optax.find_phs_state(braked).friction, raised)
    optimizer.opt_state = braked
    nnx_train_step(model, optimizer)

    phs_state = phs_optax.find_phs_state(optimizer.opt_state)
    assert bool(phs_state.braked)
    assert int(phs_state.brake_step) == 1
    np.testing.assert_allclose(phs_state.friction, raised)


def test_nnx_optimizer_kinetic_energy_sees_through_variables():
    model = NNXMLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, phs_optax.goal_phs(**HYPER), wrt=nnx.Param)
    for _ in range(3):
        nnx_train_step(model, optimizer)
    pure = nnx.as_pure(optimizer.opt_state)
    expected = sum(
        np.sum(np.square(np.asarray(leaf, np.float64)))
        for leaf in jax.tree.leaves(phs_optax.find_phs_state(pure).momentum)
    ) / (2.0 * HYPER["mass"])
    assert expected > 0
    np.testing.assert_allclose(
        phs_optax.kinetic_energy(optimizer.opt_state, HYPER["mass"]),
        expected,
        rtol=1e-5,
    )


# --- serialization -----------------------------------------------------------


def trained_state(tx, n_steps=8):
    """The state of ``tx`` after ``n_steps`` on a quadratic; it has braked."""
    params = {"w": jnp.array([2.0, -1.0, 0.5], jnp.float32)}
    state = tx.init(params)
    for _ in range(n_steps):
        loss, grads = jax.value_and_grad(lambda p: jnp.sum(p["w"] ** 2))(params)
        updates, state = tx.update(grads, state, params, value=loss)
        params = optax.apply_updates(params, updates)
    assert bool(phs_optax.find_phs_state(state).braked)
    return params, state


STATES = {
    "goal_phs": lambda: phs_optax.goal_phs(**HYPER),
    "goal_phs_window": lambda: phs_optax.goal_phs(**HYPER, accumulation_size=3),
    "inject_hyperparams": lambda: optax.inject_hyperparams(phs_optax.goal_phs)(**HYPER),
}


@pytest.fixture(params=sorted(STATES))
def state_and_target(request):
    """(trained state, freshly initialised state of the same transformation)."""
    tx = STATES[request.param]()
    params, state = trained_state(tx)
    return state, tx.init(params)


def test_to_bytes_from_bytes_round_trip_is_bitwise(state_and_target):
    state, target = state_and_target
    restored = serialization.from_bytes(target, serialization.to_bytes(state))
    assert_trees_bitwise_equal(restored, state)
    assert type(phs_optax.find_phs_state(restored)) is GoalPHSState
    assert bool(phs_optax.find_phs_state(restored).braked)


def test_msgpack_state_dict_round_trip_is_bitwise(state_and_target):
    state, target = state_and_target
    blob = serialization.msgpack_serialize(serialization.to_state_dict(state))
    restored = serialization.from_state_dict(
        target, serialization.msgpack_restore(blob)
    )
    assert_trees_bitwise_equal(restored, state)
    assert bool(phs_optax.find_phs_state(restored).braked)


def test_nan_initial_loss_survives_serialization():
    tx = phs_optax.goal_phs(**HYPER)
    state = tx.init({"w": jnp.zeros(3, jnp.float32)})
    assert np.isnan(state.initial_loss)
    restored = serialization.from_bytes(state, serialization.to_bytes(state))
    assert_trees_bitwise_equal(restored, state)


def test_orbax_standard_checkpointer_round_trip_is_bitwise(state_and_target, tmp_path):
    state, _ = state_and_target
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "ckpt", state)
        checkpointer.wait_until_finished()
        restored = checkpointer.restore(tmp_path / "ckpt", abstract)
    assert_trees_bitwise_equal(restored, state)
    assert type(phs_optax.find_phs_state(restored)) is GoalPHSState
    assert bool(phs_optax.find_phs_state(restored).braked)
