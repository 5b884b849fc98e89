"""The model a training run uses: LeNet-5 with the layers its configuration picks."""

from __future__ import annotations

import jax

from phs_optax_models import LeNet5
from phs_optax_training.config import TrainConfig


def resolve_conv_impl(conv_impl: str) -> str:
    """``LeNet5``'s ``conv_impl`` for a configuration's ``conv_impl``.

    ``"auto"`` is ``"space_to_depth"`` (the layers written for XLA:CPU, faster
    there: ``benchmarks/RESULTS.md``) when JAX's default backend is the CPU,
    and ``"stock"`` otherwise. Asking for the backend initialises it.
    """
    if conv_impl != "auto":
        return conv_impl
    return "space_to_depth" if jax.default_backend() == "cpu" else "stock"


def create_model(config: TrainConfig, num_classes: int) -> LeNet5:
    """The LeNet-5 that ``config`` trains, for a dataset of ``num_classes``."""
    return LeNet5(
        num_classes=num_classes, conv_impl=resolve_conv_impl(config.conv_impl)
    )
