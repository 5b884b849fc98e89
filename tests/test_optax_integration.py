"""goal_phs and phs composed with optax's wrappers, jit, vmap and low precision."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import phs_optax
from phs_optax import GoalPHSState

# A quadratic bowl: the loss starts at 6.25 and falls by half within a few steps
# at these hyperparameters, so every run below brakes early.
# (Strongly typed: a weakly typed scalar param would retrace a jitted step once.)
PARAMS = {
    "w": jnp.array([2.0, -1.0, 0.5], jnp.float32),
    "b": jnp.array(1.0, jnp.float32),
}
HYPER = dict(learning_rate=0.3, mass=1.0, friction=0.1, goal=0.5, brake_factor=20.0)


def loss_fn(params):
    return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(params))


def make_step(tx):
    """A jitted training step that hands the loss to ``tx.update`` as ``value``."""

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss

    return step


def run(tx, n_steps, params=PARAMS, state=None):
    """Runs ``n_steps`` steps; returns (params, state, losses)."""
    step = make_step(tx)
    state = tx.init(params) if state is None else state
    losses = []
    for _ in range(n_steps):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    return params, state, losses


def assert_trees_close(actual, expected, rtol=1e-6, atol=1e-7):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(
            np.asarray(a, np.float64),
            np.asarray(e, np.float64),
            rtol=rtol,
            atol=atol,
            equal_nan=True,
        )


def assert_trees_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype
        assert a.shape == e.shape
        assert a.tobytes() == e.tobytes()


# --- inject_hyperparams ------------------------------------------------------


def test_inject_hyperparams_matches_plain_goal_phs():
    plain_params, plain_state, _ = run(phs_optax.goal_phs(**HYPER), 8)
    injected = optax.inject_hyperparams(phs_optax.goal_phs)(**HYPER)
    params, state, _ = run(injected, 8)

    assert_trees_close(params, plain_params)
    assert_trees_close(state.inner_state, plain_state)
    assert bool(state.inner_state.braked)
    assert set(state.hyperparams) == set(HYPER)


CHANGED = {
    "learning_rate": 0.15,
    "mass": 2.0,
    "friction": 1.0,
    "goal": 0.9,
    "brake_factor": 2.0,
}


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_hyperparameter_changed_in_state_takes_effect_from_next_step(name):
    injected = optax.inject_hyperparams(phs_optax.goal_phs)(**HYPER)
    switch_params, switch_state, _ = run(injected, 1)
    assert not bool(switch_state.inner_state.braked)

    hyperparams = dict(switch_state.hyperparams)
    hyperparams[name] = jnp.asarray(CHANGED[name], jnp.float32)
    changed_state = switch_state._replace(hyperparams=hyperparams)
    params, state, _ = run(injected, 9, switch_params, changed_state)

    # A goal_phs built with the new value, resumed from the same inner state.
    reference_tx = phs_optax.goal_phs(**{**HYPER, name: CHANGED[name]})
    ref_params, ref_state, _ = run(
        reference_tx, 9, switch_params, switch_state.inner_state
    )
    assert_trees_close(params, ref_params, rtol=1e-5, atol=1e-6)
    assert_trees_close(state.inner_state, ref_state, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.hyperparams[name], CHANGED[name], rtol=1e-6)

    # ... and the change did something: unchanged hyperparameters end elsewhere.
    unchanged_params, _, _ = run(injected, 9, switch_params, switch_state)
    assert not np.allclose(
        np.concatenate([np.ravel(x) for x in jax.tree.leaves(params)]),
        np.concatenate([np.ravel(x) for x in jax.tree.leaves(unchanged_params)]),
    )


def test_goal_changed_in_state_moves_the_brake_step():
    injected = optax.inject_hyperparams(phs_optax.goal_phs)(**HYPER)
    _, early, _ = run(injected, 10)
    state = injected.init(PARAMS)
    state = state._replace(hyperparams={**state.hyperparams, "goal": jnp.float32(0.9)})
    _, late, _ = run(injected, 10, state=state)

    assert bool(early.inner_state.braked) and bool(late.inner_state.braked)
    assert int(late.inner_state.brake_step) > int(early.inner_state.brake_step)


def test_learning_rate_schedule_in_inject_hyperparams():
    schedule = optax.linear_schedule(0.3, 0.05, transition_steps=10)
    hyper = {**HYPER, "learning_rate": schedule}
    injected = optax.inject_hyperparams(phs_optax.goal_phs)(**hyper)
    params, state, _ = run(injected, 8)
    ref_params, ref_state, _ = run(phs_optax.goal_phs(**hyper), 8)

    assert_trees_close(params, ref_params)
    assert_trees_close(state.inner_state, ref_state)
    # The recorded learning rate is the one the last (8th, count 7) update used.
    np.testing.assert_allclose(
        state.hyperparams["learning_rate"], schedule(7), rtol=1e-6
    )
    assert float(schedule(7)) < HYPER["learning_rate"]


# --- vmap over hyperparameters -----------------------------------------------


def test_vmap_over_stacked_hyperparameters_matches_each_run_alone():
    configs = {
        "learning_rate": [0.3, 0.2, 0.1],
        "mass": [1.0, 0.5, 2.0],
        "friction": [0.1, 0.5, 0.05],
        "goal": [0.5, 0.3, 0.2],
        "brake_factor": [20.0, 5.0, 10.0],
    }
    factory = optax.inject_hyperparams(phs_optax.goal_phs)
    stacked = {k: jnp.asarray(v, jnp.float32) for k, v in configs.items()}
    states = jax.vmap(lambda hp: factory(**hp).init(PARAMS))(stacked)
    # Any values build the update: it reads the hyperparameters from the state.
    tx = factory(**HYPER)

    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state

    batched_step = jax.jit(jax.vmap(step))
    params = jax.tree.map(lambda x: jnp.stack([x] * 3), PARAMS)
    for _ in range(10):
        params, states = batched_step(params, states)

    brake_steps = []
    for i in range(3):
        alone = factory(**{k: v[i] for k, v in configs.items()})
        alone_params, alone_state, _ = run(alone, 10)
        assert_trees_close(
            jax.tree.map(lambda x, i=i: x[i], params), alone_params, rtol=1e-5
        )
        assert_trees_close(
            jax.tree.map(lambda x, i=i: x[i], states), alone_state, rtol=1e-5
        )
        brake_steps.append(int(alone_state.inner_state.brake_step))
    assert len(set(brake_steps)) > 1  # the configurations really differ


# --- chain, apply_if_finite, MultiSteps --------------------------------------


def test_chain_passes_value_through_and_brakes():
    tx = optax.chain(optax.clip_by_global_norm(1.0), phs_optax.goal_phs(**HYPER))
    params, state, losses = run(tx, 30)

    phs_state = state[1]
    assert isinstance(phs_state, GoalPHSState)
    assert bool(phs_state.braked)
    np.testing.assert_allclose(phs_state.initial_loss, losses[0])
    assert losses[-1] < 0.5 * losses[0]


def test_chain_feeds_clipped_gradients_to_goal_phs():
    tx = optax.chain(optax.clip_by_global_norm(1.0), phs_optax.goal_phs(**HYPER))
    loss, grads = jax.value_and_grad(loss_fn)(PARAMS)
    updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS, value=loss)

    inner = phs_optax.goal_phs(**HYPER)
    norm = optax.tree.norm(grads)
    clipped = jax.tree.map(lambda g: g / norm, grads)
    expected, _ = inner.update(clipped, inner.init(PARAMS), PARAMS, value=loss)
    assert_trees_close(updates, expected)


def test_apply_if_finite_skips_a_nan_gradient_step_and_keeps_the_state():
    tx = optax.apply_if_finite(phs_optax.goal_phs(**HYPER), max_consecutive_errors=3)
    params, state, _ = run(tx, 2)
    assert not bool(state.inner_state.braked)
    grads = jax.grad(loss_fn)(params)

    nan_grads = jax.tree.map(lambda g: jnp.full_like(g, jnp.nan), grads)
    updates, skipped = jax.jit(tx.update)(nan_grads, state, params, value=0.01)

    assert_trees_equal(skipped.inner_state, state.inner_state)
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
    assert int(skipped.notfinite_count) == 1
    # value=0.01 would have met the goal; the skipped step did not brake.
    assert not bool(skipped.inner_state.braked)


def test_apply_if_finite_passes_value_to_goal_phs():
    tx = optax.apply_if_finite(phs_optax.goal_phs(**HYPER), max_consecutive_errors=3)
    state = tx.init(PARAMS)
    loss, grads = jax.value_and_grad(loss_fn)(PARAMS)
    _, state = tx.update(grads, state, PARAMS, value=loss)
    np.testing.assert_allclose(state.inner_state.initial_loss, loss)
    _, state = tx.update(grads, state, PARAMS, value=0.1 * loss)
    assert bool(state.inner_state.braked)
    assert int(state.inner_state.brake_step) == 1


def test_multisteps_runs_the_inner_update_every_k_steps_with_the_value():
    k = 3
    tx = optax.MultiSteps(phs_optax.goal_phs(**HYPER), every_k_schedule=k)
    inner = phs_optax.goal_phs(**HYPER)
    state = tx.init(PARAMS)
    inner_state = inner.init(PARAMS)
    grads_seen = []
    for i in range(3 * k):
        grads = jax.tree.map(lambda x, i=i: (i + 1.0) * x, PARAMS)
        value = 6.0 - 0.5 * i
        updates, state = tx.update(grads, state, PARAMS, value=value)
        grads_seen.append(grads)
        phs_state = phs_optax.find_phs_state(state)
        if (i + 1) % k:
            assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
            assert int(phs_state.count) == (i + 1) // k
            continue
        # The k-th mini-step: the inner update sees the mean gradient and the value.
        mean_grads = jax.tree.map(lambda *g: sum(g) / k, *grads_seen[-k:])
        expected, inner_state = inner.update(
            mean_grads, inner_state, PARAMS, value=value
        )
        assert_trees_close(updates, expected, rtol=1e-5)
        assert_trees_close(phs_state, inner_state, rtol=1e-5)
        assert int(phs_state.count) == (i + 1) // k
        np.testing.assert_allclose(phs_state.monitored_loss, value)
    np.testing.assert_allclose(phs_state.initial_loss, 6.0 - 0.5 * (k - 1))


# --- brake / find_phs_state inside wrappers ----------------------------------

WRAPPERS = {
    "goal_phs": lambda hyper: phs_optax.goal_phs(**hyper),
    "chain": lambda hyper: optax.chain(
        optax.clip_by_global_norm(1.0), phs_optax.goal_phs(**hyper)
    ),
    "inject_hyperparams": lambda hyper: optax.inject_hyperparams(phs_optax.goal_phs)(
        **hyper
    ),
    "MultiSteps": lambda hyper: optax.MultiSteps(
        phs_optax.goal_phs(**hyper), every_k_schedule=2
    ),
    "apply_if_finite": lambda hyper: optax.apply_if_finite(
        phs_optax.goal_phs(**hyper), max_consecutive_errors=2
    ),
}
# A goal out of reach, so no state below brakes by itself.
UNREACHED = {**HYPER, "goal": 0.99}


def unbraked_state(name):
    """The state of wrapper ``name`` after some steps, two inner updates done."""
    n_steps = 4 if name == "MultiSteps" else 2
    _, state, _ = run(WRAPPERS[name](UNREACHED), n_steps)
    assert not bool(phs_optax.find_phs_state(state).braked)
    assert int(phs_optax.find_phs_state(state).count) == 2
    return state


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_brake_finds_goal_phs_state_inside_wrapper(name):
    state = unbraked_state(name)
    braked = phs_optax.brake(state)

    found = phs_optax.find_phs_state(braked)
    assert isinstance(found, GoalPHSState)
    assert bool(found.braked)
    assert int(found.brake_step) == 2  # the next update, the first braked one
    assert int(found.last_brake_step) == 2  # ... and the start of exploitation
    # Nothing else changes.
    before = phs_optax.find_phs_state(state)
    assert_trees_equal(
        found._replace(
            friction=before.friction,
            braked=before.braked,
            brake_step=before.brake_step,
            last_brake_step=before.last_brake_step,
        ),
        before,
    )
    outside = lambda s: jax.tree.map(
        lambda n: None if isinstance(n, GoalPHSState) else n,
        s,
        is_leaf=lambda n: isinstance(n, GoalPHSState),
    )
    assert_trees_equal(outside(braked), outside(state))


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_brake_works_under_jit(name):
    state = unbraked_state(name)
    assert_trees_equal(jax.jit(phs_optax.brake)(state), phs_optax.brake(state))


def test_brake_raises_friction_at_once_and_keeps_it_from_the_next_update():
    tx = phs_optax.goal_phs(**UNREACHED)
    _, state, _ = run(tx, 2)
    raised = UNREACHED["friction"] * UNREACHED["brake_factor"]

    braked = phs_optax.brake(state)
    np.testing.assert_allclose(braked.friction, raised)
    _, after, _ = run(tx, 1, state=braked)
    np.testing.assert_allclose(after.friction, raised)
    assert int(after.brake_step) == 2
    assert bool(after.braked)


def test_brake_is_a_no_op_on_an_already_braked_state():
    _, state, _ = run(phs_optax.goal_phs(**HYPER), 8)
    assert bool(state.braked) and int(state.brake_step) < int(state.count)
    assert_trees_equal(phs_optax.brake(state), state)
    assert_trees_equal(jax.jit(phs_optax.brake)(state), state)


def test_brake_on_stacked_states_brakes_only_the_unbraked_ones():
    unbraked = run(phs_optax.goal_phs(**UNREACHED), 2)[1]
    braked = run(phs_optax.goal_phs(**HYPER), 8)[1]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), unbraked, braked)

    result = phs_optax.brake(stacked)

    np.testing.assert_array_equal(result.braked, [True, True])
    np.testing.assert_array_equal(result.brake_step, [2, braked.brake_step])
    assert_trees_equal(jax.tree.map(lambda x: x[1], result), braked)


# --- the state's fields, by name --------------------------------------------

INITIAL_FIELDS = {
    "count": 0,
    "friction": float(HYPER["friction"]),
    "brake_factor": float(HYPER["brake_factor"]),
    "braked": False,
    "brake_step": -1,
    "initial_loss": np.nan,
    "monitored_loss": np.nan,
    "loss_sum": 0.0,
    "loss_count": 0,
    "best_loss": np.nan,
    "goal_in_force": float(HYPER["goal"]),
    "phase_start": 0,
    "last_brake_step": -1,
    "releases": 0,
}


def test_goal_phs_state_is_a_namedtuple_of_named_scalar_fields():
    state = phs_optax.goal_phs(**HYPER).init(PARAMS)

    assert set(INITIAL_FIELDS) <= set(GoalPHSState._fields)
    assert state.best_params is None and state.kick_key is None
    for name, initial in INITIAL_FIELDS.items():
        field = getattr(state, name)
        expected_dtype = {bool: np.bool_, int: np.int32, float: np.float32}
        assert field.shape == (), name
        assert field.dtype == expected_dtype[type(initial)], name
        np.testing.assert_array_equal(
            field, np.asarray(initial, field.dtype), err_msg=name
        )


WRAPPED = {
    "plain": lambda tx: tx,
    "chain": lambda tx: optax.chain(optax.clip_by_global_norm(10.0), tx),
    "MultiSteps": lambda tx: optax.MultiSteps(tx, every_k_schedule=1),
}


@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_tree_get_and_tree_set_reach_the_fields_by_name(name):
    tx = WRAPPED[name](phs_optax.goal_phs(**UNREACHED))
    _, state, _ = run(tx, 2)

    assert not bool(optax.tree_utils.tree_get(state, "braked"))
    assert int(optax.tree_utils.tree_get(state, "brake_step")) == -1
    set_state = optax.tree_utils.tree_set(state, braked=jnp.array(True))
    assert bool(phs_optax.find_phs_state(set_state).braked)
    # The set flag takes effect: the next update runs with the raised friction.
    _, after, _ = run(tx, 1, state=set_state)
    np.testing.assert_allclose(
        optax.tree_utils.tree_get(after, "friction"),
        UNREACHED["friction"] * UNREACHED["brake_factor"],
    )


def test_tree_get_tells_the_state_friction_from_the_injected_hyperparameter():
    tx = optax.inject_hyperparams(phs_optax.goal_phs)(**UNREACHED)
    state = phs_optax.brake(tx.init(PARAMS))

    in_state = optax.tree_utils.tree_get(
        state,
        "friction",
        filtering=lambda path, _: (
            getattr(path[-1], "tuple_name", None) == "GoalPHSState"
        ),
    )
    np.testing.assert_allclose(
        in_state, UNREACHED["friction"] * UNREACHED["brake_factor"]
    )
    np.testing.assert_allclose(state.hyperparams["friction"], UNREACHED["friction"])


def test_replace_on_stacked_states_sets_each_configuration():
    tx = phs_optax.goal_phs(**HYPER)
    stacked = jax.vmap(lambda _: tx.init(PARAMS))(jnp.arange(3))

    replaced = stacked._replace(
        brake_step=jnp.array([4, 5, 6]), braked=jnp.array([True, False, True])
    )

    np.testing.assert_array_equal(replaced.brake_step, [4, 5, 6])
    np.testing.assert_array_equal(replaced.braked, [True, False, True])
    assert_trees_equal(replaced.momentum, stacked.momentum)


@pytest.mark.parametrize(
    "tx",
    [optax.sgd(0.1), optax.adam(1e-3), phs_optax.phs(0.1, mass=1.0, friction=0.1)],
    ids=["sgd", "adam", "phs"],
)
def test_brake_raises_value_error_without_a_goal_phs_state(tx):
    with pytest.raises(ValueError, match="GoalPHSState"):
        phs_optax.brake(tx.init(PARAMS))


def test_find_phs_state_raises_value_error_without_a_phs_state():
    with pytest.raises(ValueError, match="No phs_optax state"):
        phs_optax.find_phs_state(optax.sgd(0.1).init(PARAMS))


# --- jit: one trace ----------------------------------------------------------

NO_RETRACE = {
    "goal_phs": lambda: phs_optax.goal_phs(**HYPER),
    "goal_phs_ema": lambda: phs_optax.goal_phs(**HYPER, ema_decay=0.5),
    "goal_phs_window": lambda: phs_optax.goal_phs(**HYPER, accumulation_size=2),
    # phs accepts and ignores value, so it swaps freely with goal_phs.
    "phs": lambda: phs_optax.phs(0.3, mass=1.0, friction=0.1),
    "inject_hyperparams": lambda: optax.inject_hyperparams(phs_optax.goal_phs)(**HYPER),
    "inject_schedule": lambda: optax.inject_hyperparams(phs_optax.goal_phs)(
        **{**HYPER, "learning_rate": optax.cosine_decay_schedule(0.3, 10)}
    ),
    "chain_apply_if_finite": lambda: optax.apply_if_finite(
        optax.chain(optax.clip_by_global_norm(1.0), phs_optax.goal_phs(**HYPER)), 2
    ),
}


@pytest.mark.parametrize("name", sorted(NO_RETRACE))
def test_jitted_step_is_traced_once_over_ten_steps(name):
    tx = NO_RETRACE[name]()
    traces = 0

    @jax.jit
    def step(params, state):
        nonlocal traces
        traces += 1
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state

    params, state = PARAMS, tx.init(PARAMS)
    for _ in range(10):
        params, state = step(params, state)
    assert traces == 1
    if name.startswith(("goal", "inject", "chain")):
        assert bool(phs_optax.find_phs_state(state).braked)  # crossed the brake


# --- dtypes ------------------------------------------------------------------

SCALAR_DTYPES = {
    "count": jnp.int32,
    "friction": jnp.float32,
    "initial_loss": jnp.float32,
    "braked": jnp.bool_,
    "brake_step": jnp.int32,
    "monitored_loss": jnp.float32,
    "loss_sum": jnp.float32,
    "loss_count": jnp.int32,
}


def cast(params, dtype):
    return jax.tree.map(lambda x: x.astype(dtype), params)


def assert_scalar_fields_have_fixed_dtypes(state):
    for field, dtype in SCALAR_DTYPES.items():
        leaf = getattr(state, field)
        assert leaf.shape == (), field
        assert leaf.dtype == dtype, (field, leaf.dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=str)
def test_momentum_and_updates_follow_the_params_dtype(dtype):
    params = cast(PARAMS, dtype)
    tx = phs_optax.goal_phs(**HYPER, accumulation_size=2)
    state = tx.init(params)
    assert all(m.dtype == dtype for m in jax.tree.leaves(state.momentum))
    assert_scalar_fields_have_fixed_dtypes(state)

    params, state, losses = run(tx, 6, params, state)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = tx.update(grads, state, params, value=loss)

    assert all(m.dtype == dtype for m in jax.tree.leaves(state.momentum))
    assert all(u.dtype == dtype for u in jax.tree.leaves(updates))
    assert all(p.dtype == dtype for p in jax.tree.leaves(params))
    assert_scalar_fields_have_fixed_dtypes(state)
    assert bool(state.braked)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=str)
def test_momentum_dtype_overrides_the_params_dtype(dtype):
    params = cast(PARAMS, dtype)
    tx = phs_optax.goal_phs(**HYPER, momentum_dtype=jnp.float32)
    state = tx.init(params)
    assert all(m.dtype == jnp.float32 for m in jax.tree.leaves(state.momentum))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = tx.update(grads, state, params, value=loss)
    assert all(m.dtype == jnp.float32 for m in jax.tree.leaves(state.momentum))
    assert all(u.dtype == dtype for u in jax.tree.leaves(updates))
    assert_scalar_fields_have_fixed_dtypes(state)


def test_phs_momentum_follows_the_params_dtype_unless_overridden():
    params = cast(PARAMS, jnp.bfloat16)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    for momentum_dtype, expected in [(None, jnp.bfloat16), (jnp.float32, jnp.float32)]:
        tx = phs_optax.phs(0.3, mass=1.0, friction=0.1, momentum_dtype=momentum_dtype)
        updates, state = tx.update(grads, tx.init(params), params)
        assert all(m.dtype == expected for m in jax.tree.leaves(state.momentum))
        assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))


# --- energies ----------------------------------------------------------------


def numpy_kinetic_energy(momentum, mass):
    squared = sum(
        np.sum(np.square(np.asarray(leaf, np.float64)))
        for leaf in jax.tree.leaves(momentum)
    )
    return squared / (2.0 * mass)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=str)
def test_kinetic_energy_and_hamiltonian_match_numpy(dtype):
    mass = 2.5
    tx = optax.chain(
        optax.clip_by_global_norm(10.0), phs_optax.goal_phs(**{**HYPER, "mass": mass})
    )
    params, state, losses = run(tx, 4, cast(PARAMS, dtype))
    momentum = phs_optax.find_phs_state(state).momentum
    expected = numpy_kinetic_energy(momentum, mass)
    assert expected > 0

    kinetic = phs_optax.kinetic_energy(state, mass)
    assert kinetic.dtype == jnp.float32
    np.testing.assert_allclose(kinetic, expected, rtol=1e-5)
    total = phs_optax.hamiltonian(state, mass, losses[-1])
    assert total.dtype == jnp.float32
    np.testing.assert_allclose(total, expected + losses[-1], rtol=1e-5)


def test_kinetic_energy_of_fixed_friction_phs_matches_numpy():
    tx = phs_optax.phs(0.3, mass=0.5, friction=0.1)
    _, state, _ = run_plain(tx, 3)
    expected = numpy_kinetic_energy(state.momentum, 0.5)
    np.testing.assert_allclose(
        phs_optax.kinetic_energy(state, 0.5), expected, rtol=1e-6
    )
    np.testing.assert_allclose(
        jax.jit(phs_optax.hamiltonian)(state, 0.5, 1.25), expected + 1.25, rtol=1e-6
    )


def test_kinetic_energy_is_zero_at_init():
    state = phs_optax.goal_phs(**HYPER).init(PARAMS)
    assert float(phs_optax.kinetic_energy(state, 1.0)) == 0.0
    assert float(phs_optax.hamiltonian(state, 1.0, 3.0)) == 3.0


def run_plain(tx, n_steps, params=PARAMS):
    """Like ``run`` for transformations that take no ``value``."""
    state = tx.init(params)
    for _ in range(n_steps):
        grads = jax.grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params, state, None


def test_inject_hyperparams_with_bfloat16_params_and_float32_momentum():
    # momentum_dtype is callable, so inject_hyperparams must be told it is static;
    # hyperparam_dtype keeps the hyperparameters out of bfloat16 (goal 0.65 would
    # become 0.6484375).
    factory = optax.inject_hyperparams(
        phs_optax.goal_phs, static_args="momentum_dtype", hyperparam_dtype=jnp.float32
    )
    tx = factory(**{**HYPER, "goal": 0.65}, momentum_dtype=jnp.float32)
    params = cast(PARAMS, jnp.bfloat16)
    params, state, _ = run(tx, 3, params)

    assert set(state.hyperparams) == set(HYPER)
    assert state.hyperparams["goal"].dtype == jnp.float32
    assert float(state.hyperparams["goal"]) == np.float32(0.65)
    assert all(
        m.dtype == jnp.float32 for m in jax.tree.leaves(state.inner_state.momentum)
    )
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(params))
    assert_scalar_fields_have_fixed_dtypes(state.inner_state)


@pytest.mark.parametrize(
    "tx",
    [
        phs_optax.phs(learning_rate=0.3, mass=1.0, friction=0.1),
        phs_optax.goal_phs(**HYPER),
        phs_optax.goal_phs(**HYPER, initial_loss=6.25, track_best_params=True),
        phs_optax.goal_phs(**{**HYPER, "friction": jnp.float32(0.1)}),
    ],
    ids=["phs", "goal_phs", "goal_phs-options", "goal_phs-array-friction"],
)
def test_a_fresh_state_can_be_donated_to_a_jitted_step(tx):
    """No two state fields share a buffer (donating one buffer twice fails)."""

    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state

    donating_step = jax.jit(step, donate_argnums=(0, 1))
    params = jax.tree.map(jnp.copy, PARAMS)
    params, state = donating_step(params, tx.init(params))
    params, state = donating_step(params, state)
    assert int(state.count) == 2
