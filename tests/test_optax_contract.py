"""The checks that optax applies to its contributed optimizers, for phs and goal_phs.

Follows the list of ``optax/contrib/_common_test.py``: extra keyword arguments
and no recompilation, convergence inside ``jax.lax.scan``, ``optax.tree.map_params``,
``optax.inject_hyperparams``, dtype preservation, ``optax.MultiSteps``, state
stability under ``jax.lax.cond`` and learning-rate schedules. The states are
only ever compared as whole pytrees, never through their fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import phs_optax


class Case(NamedTuple):
    """An optimizer factory and the keyword arguments it is built with."""

    factory: Callable[..., optax.GradientTransformationExtraArgs]
    kwargs: dict[str, Any]

    def make(self, **overrides: Any) -> optax.GradientTransformationExtraArgs:
        """The optimizer, with ``overrides`` replacing some of the arguments."""
        return self.factory(**{**self.kwargs, **overrides})


CASES = [
    pytest.param(
        Case(phs_optax.phs, dict(learning_rate=0.1, mass=10.0, friction=0.1)),
        id="phs",
    ),
    pytest.param(
        Case(
            phs_optax.phs,
            dict(
                learning_rate=0.03,
                mass=1.0,
                friction=40.0,
                integrator="euler",
                drag="velocity",
            ),
        ),
        id="phs-eq2",
    ),
    pytest.param(
        Case(
            phs_optax.goal_phs,
            dict(
                learning_rate=0.1, mass=10.0, friction=0.1, goal=0.65, brake_factor=49.0
            ),
        ),
        id="goal_phs",
    ),
    pytest.param(
        Case(
            phs_optax.goal_phs,
            dict(
                learning_rate=0.03,
                mass=1.0,
                friction=10.0,
                goal=0.65,
                brake_factor=4.0,
                integrator="euler",
                drag="velocity",
            ),
        ),
        id="goal_phs-eq2",
    ),
    pytest.param(
        Case(
            phs_optax.goal_phs,
            dict(
                learning_rate=0.1,
                mass=10.0,
                friction=0.1,
                goal=0.65,
                brake_factor=49.0,
                ema_decay=0.9,
                integrator="symplectic",
            ),
        ),
        id="goal_phs-ema",
    ),
    pytest.param(
        Case(
            phs_optax.goal_phs,
            dict(
                learning_rate=0.1,
                mass=10.0,
                friction=0.1,
                goal=0.65,
                brake_factor=49.0,
                deadline=100,
                release_after=200,
                max_releases=2,
                kick_energy=0.01,
                track_best_params=True,
            ),
        ),
        id="goal_phs-release",
    ),
]

Target = tuple[optax.Params, optax.Params, Callable[[optax.Params], jax.Array]]


def parabola(dtype: Any = jnp.float32) -> Target:
    """A quadratic bowl in three coordinates."""
    initial = jnp.array([-1.0, 10.0, 1.0], dtype)
    optimum = jnp.array([1.0, -1.0, 1.0], dtype)
    return initial, optimum, lambda x: jnp.sum(jnp.square(x - optimum))


def rosenbrock(dtype: Any = jnp.float32) -> Target:
    """The Rosenbrock function with a = 1, b = 100 (minimum at (1, 1))."""
    initial = jnp.zeros(2, dtype)
    optimum = jnp.ones(2, dtype)

    def loss(x: jax.Array) -> jax.Array:
        return jnp.square(1.0 - x[0]) + 100.0 * jnp.square(x[1] - jnp.square(x[0]))

    return initial, optimum, loss


def matrix_parabola(dtype: Any = jnp.float32) -> Target:
    """A quadratic bowl over a 2 x 2 matrix."""
    initial = jnp.zeros((2, 2), dtype)
    optimum = jnp.array([[3.0, -2.0], [1.0, 4.0]], dtype)
    return initial, optimum, lambda x: jnp.sum(jnp.square(x - optimum))


def mixed_target(dtype: Any = jnp.float32) -> Target:
    """A quadratic bowl over a dict of a vector and a matrix."""
    initial = {"vector": jnp.zeros(3, dtype), "matrix": jnp.zeros((2, 2), dtype)}
    optimum = {
        "vector": jnp.array([1.0, -1.0, 2.0], dtype),
        "matrix": jnp.array([[1.0, 0.0], [-1.0, 1.0]], dtype),
    }

    def loss(x: optax.Params) -> jax.Array:
        return sum(
            jnp.sum(jnp.square(a - b))
            for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(optimum), strict=True)
        )

    return initial, optimum, loss


TARGETS = [parabola, rosenbrock, matrix_parabola, mixed_target]
CONVERGENCE_STEPS = 20_000


def training_step(
    tx: optax.GradientTransformationExtraArgs,
    loss_fn: Callable[[optax.Params], jax.Array],
    **extra_args: Any,
) -> Callable[[optax.Params, optax.OptState], tuple[optax.Params, optax.OptState]]:
    """One step of ``tx`` on ``loss_fn``, handing the loss over as ``value``."""

    def step(
        params: optax.Params, state: optax.OptState
    ) -> tuple[optax.Params, optax.OptState]:
        value, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=value, **extra_args)
        return optax.apply_updates(params, updates), state

    return step


def run_steps(
    tx: optax.GradientTransformationExtraArgs,
    target: Target,
    num_steps: int,
) -> tuple[optax.Params, optax.OptState]:
    """``num_steps`` steps of ``tx`` from the target's initial params, in a scan."""
    initial, _, loss_fn = target
    step = training_step(tx, loss_fn)

    @jax.jit
    def run(params: optax.Params) -> tuple[optax.Params, optax.OptState]:
        def body(carry: Any, _: Any) -> tuple[Any, None]:
            return step(*carry), None

        carry, _ = jax.lax.scan(body, (params, tx.init(params)), length=num_steps)
        return carry

    return run(initial)


def assert_same_types(tree: Any, other: Any) -> None:
    """Same pytree structure, and the same shape and dtype at every leaf."""
    chex.assert_trees_all_equal_structs(tree, other)
    chex.assert_trees_all_equal_shapes_and_dtypes(tree, other)


@pytest.mark.parametrize("case", CASES)
def test_update_accepts_extra_args_and_does_not_recompile(case: Case) -> None:
    """Unknown keyword arguments are ignored; a second jitted step reuses the trace."""
    tx = case.make()
    initial, _, loss_fn = rosenbrock()
    traces = []
    step = training_step(tx, loss_fn, unexpected_extra_arg=1.0, another_one="x")

    @jax.jit
    def jitted(
        params: optax.Params, state: optax.OptState
    ) -> tuple[optax.Params, optax.OptState]:
        traces.append(None)
        return step(params, state)

    state = tx.init(initial)
    params, new_state = jitted(initial, state)
    assert_same_types(new_state, state)
    for _ in range(2):
        params, new_state = jitted(params, new_state)
    assert len(traces) == 1, "update recompiles on its second call"
    assert jitted._cache_size() == 1
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))


@pytest.mark.parametrize("target_fn", TARGETS)
@pytest.mark.parametrize("case", CASES)
def test_converges_in_scan(case: Case, target_fn: Callable[..., Target]) -> None:
    """The optimum of each target is reached inside ``jax.lax.scan``."""
    target = target_fn()
    params, _ = run_steps(case.make(), target, CONVERGENCE_STEPS)
    chex.assert_trees_all_close(params, target[1], rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("case", CASES)
def test_tree_map_params(case: Case) -> None:
    """``optax.tree.map_params`` finds the params-shaped parts of the state."""
    tx = case.make()
    params, _, loss_fn = mixed_target()
    state = tx.init(params)
    _, state = jax.jit(training_step(tx, loss_fn))(params, state)

    unchanged = optax.tree.map_params(tx, lambda v: v, state)
    chex.assert_trees_all_equal(unchanged, state)
    assert_same_types(unchanged, state)

    sevens = optax.tree.map_params(tx, lambda v: jnp.full_like(v, 7.0), state)
    assert_same_types(sevens, state)
    param_leaves = jax.tree.leaves(params)
    changed = [
        new
        for old, new in zip(
            jax.tree.leaves(state), jax.tree.leaves(sevens), strict=True
        )
        if not np.array_equal(old, new)
    ]
    assert changed, "map_params mapped no leaf of the state"
    assert len(changed) % len(param_leaves) == 0
    param_shapes = {(p.shape, p.dtype) for p in param_leaves}
    for leaf in changed:
        assert (leaf.shape, leaf.dtype) in param_shapes
        np.testing.assert_array_equal(leaf, 7.0)

    # Extra trees are passed to the function, e.g. to replace params-shaped parts.
    replaced = optax.tree.map_params(tx, lambda _, p: p, state, params)
    assert_same_types(replaced, state)
    _, state_after = tx.update(
        jax.tree.map(jnp.zeros_like, params), replaced, params, value=jnp.asarray(1.0)
    )
    assert_same_types(state_after, state)


@pytest.mark.parametrize("case", CASES)
def test_inject_hyperparams_gives_the_same_updates_and_states(case: Case) -> None:
    """``optax.inject_hyperparams`` changes nothing over several steps."""
    tx = case.make()
    tx_inject = optax.inject_hyperparams(case.factory)(**case.kwargs)
    params = [-jnp.ones((2, 3)), jnp.ones((2, 5, 2))]

    def loss_fn(x: optax.Params) -> jax.Array:
        return sum(jnp.sum(jnp.square(leaf - 3.0)) for leaf in jax.tree.leaves(x))

    @jax.jit
    def both_steps(params: optax.Params, state: Any, state_inject: Any) -> Any:
        value, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=value)
        updates_inject, state_inject = tx_inject.update(
            grads, state_inject, params, value=value
        )
        return updates, state, updates_inject, state_inject

    state = tx.init(params)
    state_inject = tx_inject.init(params)
    chex.assert_trees_all_close(state_inject.inner_state, state)
    for _ in range(40):
        updates, state, updates_inject, state_inject = both_steps(
            params, state, state_inject
        )
        chex.assert_trees_all_close(updates_inject, updates, rtol=1e-5, atol=1e-7)
        chex.assert_trees_all_close(
            state_inject.inner_state, state, rtol=1e-5, atol=1e-7
        )
        params = optax.apply_updates(params, updates)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "mixed"])
@pytest.mark.parametrize("case", CASES)
def test_updates_keep_the_params_dtype(case: Case, dtype: str) -> None:
    """Updates (and so params) keep the dtype of each param."""
    if dtype == "mixed":
        params = {
            "low": jnp.array([1.0, 2.0], jnp.bfloat16),
            "high": jnp.array([[1.0, -2.0]], jnp.float32),
        }
    else:
        params = jnp.array([1.0, 2.0], dtype)

    def loss_fn(x: optax.Params) -> jax.Array:
        return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(x))

    tx = case.make()
    state = jax.jit(tx.init)(params)
    update = jax.jit(tx.update)
    for _ in range(3):
        value, grads = jax.value_and_grad(loss_fn)(params)
        updates, new_state = update(grads, state, params, value=value)
        assert_same_types(updates, params)
        assert_same_types(new_state, state)
        params, state = optax.apply_updates(params, updates), new_state
    assert_same_types(params, updates)


@pytest.mark.parametrize("case", CASES)
def test_multi_steps(case: Case) -> None:
    """``optax.MultiSteps`` averages two gradients per step of the optimizer."""
    tx = case.make()
    multi = optax.MultiSteps(tx, every_k_schedule=2)
    params = jnp.array([1.0, 2.0])
    grads = [jnp.array([0.5, -1.0]), jnp.array([1.5, 3.0])]
    values = [jnp.asarray(4.0), jnp.asarray(3.0)]
    update = jax.jit(multi.update)

    state = multi.init(params)
    initial_inner = tx.init(params)
    chex.assert_trees_all_equal(state.inner_opt_state, initial_inner)

    updates, state = update(grads[0], state, params, value=values[0])
    chex.assert_trees_all_equal(updates, jnp.zeros_like(params))
    chex.assert_trees_all_equal(state.inner_opt_state, initial_inner)
    assert not multi.has_updated(state)

    updates, state = update(grads[1], state, params, value=values[1])
    expected_updates, expected_inner = tx.update(
        (grads[0] + grads[1]) / 2, initial_inner, params, value=values[1]
    )
    assert multi.has_updated(state)
    chex.assert_trees_all_close(updates, expected_updates, rtol=1e-6)
    chex.assert_trees_all_close(state.inner_opt_state, expected_inner, rtol=1e-6)
    assert_same_types(state.inner_opt_state, initial_inner)
    params = optax.apply_updates(params, updates)

    updates, state = update(grads[0], state, params, value=values[0])
    chex.assert_trees_all_equal(updates, jnp.zeros_like(params))
    chex.assert_trees_all_close(state.inner_opt_state, expected_inner, rtol=1e-6)
    updates, state = update(grads[1], state, params, value=values[1])
    expected_updates, expected_inner = tx.update(
        (grads[0] + grads[1]) / 2, expected_inner, params, value=values[1]
    )
    chex.assert_trees_all_close(updates, expected_updates, rtol=1e-6)
    chex.assert_trees_all_close(state.inner_opt_state, expected_inner, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("case", CASES)
def test_state_is_stable_under_cond(case: Case, dtype: str) -> None:
    """Update and identity are interchangeable branches of ``jax.lax.cond``."""
    dtype = jnp.dtype(dtype)
    value_dtype = jnp.bfloat16 if dtype == jnp.float16 else jnp.float16
    tx = case.make()
    initial, _, loss_fn = parabola(dtype)

    @jax.jit
    def step(
        params: optax.Params, state: optax.OptState, key: jax.Array
    ) -> tuple[optax.Params, optax.OptState]:
        value, grads = jax.value_and_grad(loss_fn)(params)
        value = value.astype(value_dtype)
        take_update = jax.random.bernoulli(key)
        updates, state = jax.lax.cond(
            take_update,
            lambda: tx.update(grads, state, params, value=value),
            lambda: (jax.tree.map(jnp.zeros_like, params), state),
        )
        return optax.apply_updates(params, updates), state

    @jax.jit
    def pick(take_new: jax.Array, state: Any, new_state: Any) -> Any:
        return jax.lax.cond(take_new, lambda: new_state, lambda: state)

    params, state = initial, tx.init(initial)
    for i in range(3):
        params, new_state = step(params, state, jax.random.key(i))
        assert params.dtype == dtype
        assert_same_types(new_state, state)
        state = pick(jnp.asarray(i % 2 == 0), state, new_state)


@pytest.mark.parametrize("case", CASES)
def test_constant_schedule_equals_float(case: Case) -> None:
    """``optax.constant_schedule(lr)`` behaves exactly like the float ``lr``."""
    target = mixed_target()
    learning_rate = case.kwargs["learning_rate"]
    with_float = run_steps(case.make(), target, 30)
    with_schedule = run_steps(
        case.make(learning_rate=optax.constant_schedule(learning_rate)), target, 30
    )
    chex.assert_trees_all_close(with_schedule, with_float, rtol=1e-6, atol=1e-7)


SCHEDULES = {
    "linear": lambda count: 0.1 * (count + 1),
    "piecewise": optax.piecewise_constant_schedule(0.1, {3: 3.0, 6: 0.5}),
}
SCHEDULE_WEIGHTS = np.array([1.0, 4.0, 0.5])
SCHEDULE_OPTIMUM = np.array([1.0, -2.0, 3.0])
SCHEDULE_START = np.array([3.0, 1.0, -1.0])
SCHEDULE_STEPS = 10
DYNAMICS = dict(mass=2.0, friction=0.5)
GOAL = dict(goal=0.5, brake_factor=3.0)


def schedule_loss(x: Any) -> Any:
    """A weighted quadratic bowl; NumPy or JAX arrays alike."""
    return 0.5 * (SCHEDULE_WEIGHTS * (x - SCHEDULE_OPTIMUM) ** 2).sum()


def reference_trajectory(
    schedule: Callable[[int], float],
    integrator: str,
    drag: str,
    goal: float | None,
    brake_factor: float,
) -> tuple[list[np.ndarray], list[bool]]:
    """The params after each step of eq. 2's integrators, and whether it braked."""
    mass, friction = DYNAMICS["mass"], DYNAMICS["friction"]
    theta = SCHEDULE_START.copy()
    momentum = np.zeros_like(theta)
    initial_loss = None
    braked = False
    trajectory, brakes = [], []
    for k in range(SCHEDULE_STEPS):
        value = schedule_loss(theta)
        grad = SCHEDULE_WEIGHTS * (theta - SCHEDULE_OPTIMUM)
        if goal is not None:
            initial_loss = value if initial_loss is None else initial_loss
            braked = braked or value <= (1.0 - goal) * initial_loss
        gamma = friction * (brake_factor if braked else 1.0)
        rate = gamma / mass if drag == "velocity" else gamma
        alpha = float(schedule(k))
        if integrator == "conformal":
            decay = math.exp(-alpha * rate)
        else:
            decay = 1.0 - alpha * rate
        new_momentum = decay * momentum - alpha * grad
        moving = momentum if integrator == "euler" else new_momentum
        theta = theta + alpha / mass * moving
        momentum = new_momentum
        trajectory.append(theta.copy())
        brakes.append(braked)
    return trajectory, brakes


@pytest.mark.parametrize("schedule_name", sorted(SCHEDULES))
@pytest.mark.parametrize("drag", phs_optax.DRAGS)
@pytest.mark.parametrize("integrator", phs_optax.INTEGRATORS)
@pytest.mark.parametrize("name", ["phs", "goal_phs"])
def test_learning_rate_schedule_is_read_at_the_count_before_the_update(
    name: str, integrator: str, drag: str, schedule_name: str
) -> None:
    """Update k (0-based) steps with ``schedule(k)``, as a NumPy reference does."""
    schedule = SCHEDULES[schedule_name]
    options = dict(learning_rate=schedule, integrator=integrator, drag=drag)
    if name == "phs":
        tx = phs_optax.phs(**DYNAMICS, **options)
        goal, brake_factor = None, 1.0
    else:
        tx = phs_optax.goal_phs(**DYNAMICS, **GOAL, **options)
        goal, brake_factor = GOAL["goal"], GOAL["brake_factor"]
    expected, brakes = reference_trajectory(
        schedule, integrator, drag, goal, brake_factor
    )
    if goal is not None:
        assert 1 < brakes.index(True) < SCHEDULE_STEPS - 2, "the brake is not tested"

    step = jax.jit(training_step(tx, schedule_loss))
    params = jnp.asarray(SCHEDULE_START, jnp.float32)
    state = tx.init(params)
    for k in range(SCHEDULE_STEPS):
        params, state = step(params, state)
        np.testing.assert_allclose(
            params, expected[k], rtol=1e-5, atol=1e-5, err_msg=f"after update {k}"
        )


@pytest.mark.parametrize("factory", [phs_optax.phs, phs_optax.goal_phs])
def test_inject_hyperparams_with_a_schedule(factory: Callable[..., Any]) -> None:
    """A scheduled learning rate gives the same run with and without injection."""
    kwargs: dict[str, Any] = dict(DYNAMICS, learning_rate=SCHEDULES["linear"])
    if factory is phs_optax.goal_phs:
        kwargs.update(GOAL)
    tx = factory(**kwargs)
    tx_inject = optax.inject_hyperparams(factory)(**kwargs)
    target = (jnp.asarray(SCHEDULE_START, jnp.float32), None, schedule_loss)
    params, state = run_steps(tx, target, SCHEDULE_STEPS)
    params_inject, state_inject = run_steps(tx_inject, target, SCHEDULE_STEPS)
    chex.assert_trees_all_close(params_inject, params, rtol=1e-6)
    chex.assert_trees_all_close(state_inject.inner_state, state, rtol=1e-6)
