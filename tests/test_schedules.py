"""SGD's schedules in the engine: a cosine decay as optax's, and a run with it
equal to optax.sgd with optax.cosine_decay_schedule."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from phs_optax_training import engine
from phs_optax_training.config import ConfigError, TrainConfig, run_name, validate

COSINE = TrainConfig(
    optimizer="sgd",
    learning_rate=0.1,
    sgd_momentum=0.9,
    sgd_schedule="cosine",
    num_epochs=3,
)


def test_cosine_scale_is_optaxs_cosine_decay_over_every_update():
    trigger = engine.step_trigger(COSINE, steps_per_epoch=5)
    assert int(trigger.cosine_steps) == 15
    schedule = optax.cosine_decay_schedule(1.0, decay_steps=15)
    for step in range(18):
        scale = engine.sgd_update_scale(trigger, jnp.asarray(step, jnp.int32))
        np.testing.assert_allclose(float(scale), float(schedule(step)), atol=1e-7)


def test_a_drop_and_no_schedule_keep_their_scale():
    drop = TrainConfig(
        optimizer="sgd", brake_trigger="step", brake_at_step=4, brake_factor=10.0
    )
    trigger = engine.step_trigger(drop)
    scales = [float(engine.sgd_update_scale(trigger, jnp.int32(s))) for s in (3, 4)]
    assert scales == pytest.approx([1.0, 0.1])
    constant = engine.step_trigger(TrainConfig(optimizer="sgd"))
    assert float(engine.sgd_update_scale(constant, jnp.int32(7))) == 1.0
    assert engine.step_trigger_kind(TrainConfig(optimizer="sgd")) is None
    assert engine.step_trigger_kind(COSINE) == "sgd_scale"
    with pytest.raises(ValueError, match="needs steps_per_epoch"):
        engine.step_trigger(COSINE)


def test_training_with_the_cosine_schedule_is_optax_sgd_with_it():
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 2, 8))
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}

    def apply_fn(variables, x):
        return x @ variables["params"]["w"]

    steps = 6
    config = dataclasses.replace(COSINE, num_epochs=steps)
    trigger = engine.step_trigger(config, steps_per_epoch=1)
    tx = optax.sgd(config.learning_rate, momentum=config.sgd_momentum)
    reference_tx = optax.sgd(
        optax.cosine_decay_schedule(config.learning_rate, steps),
        momentum=config.sgd_momentum,
    )
    ours, reference = params, params
    state, reference_state = tx.init(params), reference_tx.init(params)
    for step in range(steps):
        result = engine.train_on_batch(
            apply_fn, tx, ours, state, images, labels, jnp.int32(step), trigger,
            trigger_kind="sgd_scale",
        )  # fmt: skip
        ours, state = result.params, result.opt_state
        grads = jax.grad(
            lambda p: optax.softmax_cross_entropy_with_integer_labels(
                apply_fn({"params": p}, images), labels
            ).mean()
        )(reference)
        updates, reference_state = reference_tx.update(grads, reference_state)
        reference = optax.apply_updates(reference, updates)
    np.testing.assert_allclose(ours["w"], reference["w"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"sgd_schedule": "linear"}, "--sgd_schedule must be one of constant, cosine"),
        ({"optimizer": "phs"}, "--sgd_schedule=cosine needs --optimizer=sgd"),
        ({"brake_trigger": "step", "brake_at_step": 3}, "are two schedules"),
    ],
)
def test_schedule_misuse_is_a_one_line_config_error(changes, message):
    with pytest.raises(ConfigError, match=message):
        validate(dataclasses.replace(COSINE, **changes), 1)


def test_the_cosine_run_is_named_apart():
    assert run_name(COSINE) == "sgd_lr0.1_mom0.9_cos_s0"
    assert "_cos" not in run_name(dataclasses.replace(COSINE, sgd_schedule="constant"))
