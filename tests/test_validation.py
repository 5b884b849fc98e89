"""Bad input gets a clear error that names the argument and the value."""

import subprocess
import sys

import jax.numpy as jnp
import optax
import pytest

import phs_optax

GOOD = dict(learning_rate=0.1, mass=10.0, friction=0.1, goal=0.65, brake_factor=49.0)


@pytest.mark.parametrize(
    "name, bad_value",
    [
        ("mass", 0.0),
        ("mass", -1.0),
        ("friction", -0.1),
        ("goal", 0.0),
        ("goal", 1.0),
        ("goal", 1.5),
        ("brake_factor", 0.5),
        ("learning_rate", 0.0),
        ("learning_rate", -0.1),
    ],
)
def test_goal_phs_rejects_bad_hyperparameter(name, bad_value):
    with pytest.raises(ValueError, match=rf"{name}.*{name}={bad_value!r}"):
        phs_optax.goal_phs(**{**GOOD, name: bad_value})


@pytest.mark.parametrize(
    "name, bad_value",
    [("mass", 0.0), ("friction", -1.0), ("learning_rate", -1e-3)],
)
def test_phs_rejects_bad_hyperparameter(name, bad_value):
    kwargs = dict(learning_rate=0.1, mass=1.0, friction=0.1)
    with pytest.raises(ValueError, match=rf"{name}={bad_value!r}"):
        phs_optax.phs(**{**kwargs, name: bad_value})


@pytest.mark.parametrize("transform", [phs_optax.phs, phs_optax.goal_phs])
def test_unknown_integrator_is_rejected(transform):
    kwargs = GOOD if transform is phs_optax.goal_phs else dict(list(GOOD.items())[:3])
    with pytest.raises(ValueError, match="integrator='leapfrog'"):
        transform(**kwargs, integrator="leapfrog")


def test_unknown_drag_is_rejected():
    with pytest.raises(ValueError, match="drag='air'"):
        phs_optax.goal_phs(**GOOD, drag="air")


@pytest.mark.parametrize(
    "name, bad_value",
    [("ema_decay", 1.0), ("ema_decay", -0.1), ("accumulation_size", 0)],
)
def test_bad_smoothing_is_rejected(name, bad_value):
    with pytest.raises(ValueError, match=rf"{name}={bad_value!r}"):
        phs_optax.goal_phs(**GOOD, **{name: bad_value})


def test_two_smoothings_at_once_are_rejected():
    with pytest.raises(ValueError, match="ema_decay.*accumulation_size"):
        phs_optax.goal_phs(**GOOD, ema_decay=0.9, accumulation_size=10)


def test_array_hyperparameter_with_one_bad_entry_is_rejected():
    with pytest.raises(ValueError, match="mass"):
        phs_optax.goal_phs(**{**GOOD, "mass": jnp.array([1.0, -1.0])})


def test_inject_hyperparams_rejects_bad_value_at_init():
    tx = optax.inject_hyperparams(phs_optax.goal_phs)(**{**GOOD, "goal": 2.0})
    with pytest.raises(ValueError, match="goal"):
        tx.init(jnp.zeros(2))


def test_learning_rate_schedule_is_accepted():
    schedule = optax.linear_schedule(0.1, 0.01, 100)
    tx = phs_optax.goal_phs(**{**GOOD, "learning_rate": schedule})
    tx.init(jnp.zeros(2))


def test_update_without_value_names_value_and_the_call_to_make():
    tx = phs_optax.goal_phs(**GOOD)
    params = jnp.zeros(2)
    state = tx.init(params)
    with pytest.raises(TypeError, match=r"`value`.*tx\.update\(.*value=loss\)"):
        tx.update(params, state, params)


def test_update_without_value_inside_chain_names_value():
    tx = optax.chain(optax.clip_by_global_norm(1.0), phs_optax.goal_phs(**GOOD))
    params = jnp.zeros(2)
    state = tx.init(params)
    with pytest.raises(TypeError, match="value"):
        tx.update(params, state, params)


def test_importing_phs_optax_imports_neither_flax_nor_tfds():
    code = (
        "import sys, phs_optax; "
        "bad = [m for m in ('flax', 'tensorflow_datasets', 'tensorflow') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_option_declarations_are_goal_phs_keyword_arguments_with_their_defaults():
    import inspect

    signature = inspect.signature(phs_optax.goal_phs).parameters
    for option in phs_optax.OPTIONS:
        assert option.name in signature, option.name
        parameter = signature[option.name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
        assert parameter.default == option.default, option.name
        assert option.help and option.help.endswith("."), option.name
        assert bool(option.choices) == (option.kind is str), option.name
