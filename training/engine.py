"""The training computation, defined once: the loss, one update with its
triggers, and the sums an evaluation adds up.

``train.py`` maps :func:`train_on_batch` over devices with ``jax.pmap`` (with
``axis_name``, so gradients and loss are averaged over the replicas), the
sweep maps it over configurations with ``jax.vmap``, and the trace jits it for
one run. The triggers are the same everywhere:

* goal: inside ``phs_optax.goal_phs`` (the loss reaches it as ``value``);
* step: ``phs_optax.brake`` before update ``brake_at`` (goal_phs), or SGD's
  updates scaled by ``1 / brake_factor`` from that update on (the baseline's
  learning-rate drop: optax's SGD scales by the learning rate last, so this is
  a drop of the learning rate);
* validation: :class:`ValidationBrake` on the host after an evaluation, and
  :func:`brake_where` for the runs that brake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import phs_optax
from phs_optax_training.config import TrainConfig

STEP_TRIGGERS = ("brake", "sgd_scale")


class StepTrigger(NamedTuple):
    """A run's fixed-step trigger, as arrays (so configurations can be stacked)."""

    brake_at: jax.Array  #: int32: the update that brakes or drops; -1: never.
    sgd_scale: jax.Array  #: float32: SGD's factor on updates from brake_at on.
    #: int32: SGD's cosine decay over this many updates (0: none).
    cosine_steps: jax.Array = np.int32(0)


def step_trigger_kind(config: TrainConfig) -> str | None:
    """What ``config``'s step trigger does: ``"brake"`` (goal_phs braked at a
    fixed update), ``"sgd_scale"`` (SGD's updates scaled by a learning-rate
    drop at a fixed update or a cosine decay) or None."""
    if config.optimizer == "sgd" and config.sgd_schedule == "cosine":
        return "sgd_scale"
    if config.brake_trigger != "step":
        return None
    return "sgd_scale" if config.optimizer == "sgd" else "brake"


def step_trigger(
    config: TrainConfig, steps_per_epoch: int | None = None
) -> StepTrigger:
    """The step trigger of ``config`` (never, unless ``brake_trigger="step"``
    or SGD's cosine schedule, which decays over all ``num_epochs *
    steps_per_epoch`` updates)."""
    on_step = config.brake_trigger == "step"
    cosine = config.optimizer == "sgd" and config.sgd_schedule == "cosine"
    if cosine and steps_per_epoch is None:
        raise ValueError("a cosine schedule needs steps_per_epoch")
    return StepTrigger(
        jnp.asarray(config.brake_at_step if on_step else -1, jnp.int32),
        jnp.asarray(1.0 / config.brake_factor if on_step else 1.0, jnp.float32),
        jnp.asarray(config.num_epochs * steps_per_epoch if cosine else 0, jnp.int32),
    )


def sgd_update_scale(trigger: StepTrigger, step: jax.Array) -> jax.Array:
    """SGD's learning-rate factor at update ``step`` (0-based): the drop from
    ``brake_at`` on, times ``(1 + cos(pi * step / T)) / 2`` with ``T =
    cosine_steps`` (optax.cosine_decay_schedule's curve; 1 without)."""
    dropped = (trigger.brake_at >= 0) & (step >= trigger.brake_at)
    scale = jnp.where(dropped, trigger.sgd_scale, 1.0)
    total = jnp.maximum(trigger.cosine_steps, 1).astype(jnp.float32)
    progress = jnp.minimum(step.astype(jnp.float32), total) / total
    cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return jnp.where(trigger.cosine_steps > 0, scale * cosine, scale)


def cross_entropy_sum(
    logits: jax.Array, labels: jax.Array, mask: jax.Array
) -> jax.Array:
    """The summed softmax cross-entropy of the examples where ``mask`` holds."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.sum(jnp.where(mask, losses, 0.0))


def correct_count(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """How many of the examples where ``mask`` holds are classified right."""
    return jnp.sum((jnp.argmax(logits, -1) == labels) & mask)


class BatchResult(NamedTuple):
    """What :func:`train_on_batch` returns."""

    params: optax.Params  #: the params after the update.
    opt_state: optax.OptState  #: the optimizer state after the update.
    loss: jax.Array  #: the batch's mean loss (averaged over axis_name if given)
    correct: jax.Array  #: float32: correct predictions in this replica's batch
    grads: optax.Updates  #: the gradients the update used


def train_on_batch(
    apply_fn: Callable[..., jax.Array],
    tx: optax.GradientTransformation,
    params: optax.Params,
    opt_state: optax.OptState,
    images: jax.Array,
    labels: jax.Array,
    step: jax.Array,
    trigger: StepTrigger,
    *,
    trigger_kind: str | None,
    axis_name: str | None = None,
) -> BatchResult:
    """One update on one batch: loss and gradients, step trigger, ``tx.update``
    with the loss as ``value``, and the new params.

    ``step`` is the number of updates done; ``trigger_kind`` (static) says
    what ``trigger`` does (see :data:`STEP_TRIGGERS`; None: nothing).
    """
    mask = jnp.ones(labels.shape[0], jnp.bool_)

    def loss_fn(p: optax.Params) -> tuple[jax.Array, jax.Array]:
        logits = apply_fn({"params": p}, images)
        return cross_entropy_sum(logits, labels, mask) / labels.shape[0], logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    if trigger_kind == "brake":
        opt_state = jax.lax.cond(
            step == trigger.brake_at, phs_optax.brake, lambda s: s, opt_state
        )
    if axis_name is not None:
        grads = jax.lax.pmean(grads, axis_name)
        loss = jax.lax.pmean(loss, axis_name)
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    if trigger_kind == "sgd_scale":
        scale = sgd_update_scale(trigger, step)
        updates = jax.tree.map(lambda u: u * scale, updates)
    correct = correct_count(logits, labels, mask).astype(jnp.float32)
    return BatchResult(
        optax.apply_updates(params, updates), opt_state, loss, correct, grads
    )


def batch_rows(
    permutation: jax.Array,
    step: jax.Array,
    steps_per_epoch: int,
    batch_size: int,
    *,
    part: jax.Array | int = 0,
    parts: int = 1,
) -> jax.Array:
    """The rows of part ``part`` of ``parts`` equal parts of the batch of update
    ``step`` in the epoch's ``permutation`` (the whole batch by default)."""
    size = batch_size // parts
    start = (step % steps_per_epoch) * batch_size + part * size
    return jax.lax.dynamic_slice(permutation, (start,), (size,))


def eval_sums(
    apply_fn: Callable[..., jax.Array],
    params: optax.Params,
    images: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
) -> jax.Array:
    """float32[3]: the loss sum, correct count and example count where ``mask``."""
    logits = apply_fn({"params": params}, images)
    return jnp.stack(
        [
            cross_entropy_sum(logits, labels, mask),
            correct_count(logits, labels, mask).astype(jnp.float32),
            jnp.sum(mask).astype(jnp.float32),
        ]
    )


def padded_batch(
    images: jax.Array, labels: jax.Array, first_row: jax.Array, size: int, total: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``size`` rows from ``first_row`` (the last row repeated past ``total``)
    and the mask of the real ones."""
    rows = first_row + jnp.arange(size)
    mask = rows < total
    safe_rows = jnp.minimum(rows, total - 1)
    return images[safe_rows], labels[safe_rows], mask


class ValidationBrake:
    """Brakes when the validation loss has risen for ``patience`` evaluations in a row."""

    def __init__(self, patience: int, last_loss: float = np.inf, rises: int = 0):
        self.patience = patience
        self.last_loss = last_loss
        self.rises = rises

    def should_brake(self, validation_loss: float) -> bool:
        self.rises = self.rises + 1 if validation_loss > self.last_loss else 0
        self.last_loss = validation_loss
        return self.rises >= self.patience

    def as_dict(self) -> dict[str, float]:
        return {"last_loss": self.last_loss, "rises": self.rises}


def brake_where(opt_state: optax.OptState, which: jax.Array) -> optax.OptState:
    """Stacked states with ``phs_optax.brake`` applied where ``which`` (bool[n])."""
    braked = phs_optax.brake(opt_state)
    return jax.tree.map(
        lambda b, s: jnp.where(which.reshape((-1,) + (1,) * (s.ndim - 1)), b, s),
        braked,
        opt_state,
    )
