"""LeNet-5 as a Flax Linen module."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._layers import conv_pool_space_to_depth


class ConvPool5x5(nn.Module):
    """5x5 VALID convolution with bias, then 2x2 max-pool with stride 2.

    Holds ``nn.Conv``'s parameters (``kernel``, ``bias``) with its initializers,
    so the parameter tree and initial values are those of ``nn.Conv``.
    """

    features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (5, 5, x.shape[-1], self.features),
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return conv_pool_space_to_depth(x, kernel, bias)


class LeNet5(nn.Module):
    """LeNet-5 for NHWC images, returning logits.

    Layers (both convolutions use VALID padding, i.e. no padding):

    1. ``conv1``: 5x5 convolution, 6 filters, ReLU, 2x2 max-pool with stride 2
    2. ``conv2``: 5x5 convolution, 16 filters, ReLU, 2x2 max-pool with stride 2
    3. flatten (16*4*4 = 256 features on 28x28, 16*5*5 = 400 on 32x32)
    4. ``fc1``: dense 120, ReLU
    5. ``fc2``: dense 84, ReLU
    6. ``fc3``: dense ``num_classes`` (logits, no activation)

    Parameter counts with ``num_classes=10``:

    * 28x28x1 (Fashion-MNIST): 156 + 2,416 + 30,840 + 10,164 + 850 = 44,426
    * 32x32x3 (CIFAR-10):      456 + 2,416 + 48,120 + 10,164 + 850 = 62,006

    Attributes:
        num_classes: Number of output logits.
        dtype: Computation dtype (e.g. ``jnp.bfloat16``); ``None`` follows the
            input and parameters. Parameters stay float32, and the returned
            logits are always float32 so that the loss is computed accurately.
    """

    num_classes: int = 10
    dtype: Any = None

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """Maps images of shape (batch, height, width, channels) to logits."""
        x = images
        for name, features in (("conv1", 6), ("conv2", 16)):
            # Pooling before the ReLU gives the same values (ReLU is monotone)
            # at a quarter of the ReLU's cost.
            x = nn.relu(ConvPool5x5(features, dtype=self.dtype, name=name)(x))
        x = x.reshape((x.shape[0], -1))
        for name, features in (("fc1", 120), ("fc2", 84)):
            x = nn.relu(nn.Dense(features, dtype=self.dtype, name=name)(x))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc3")(x)
        return logits.astype(jnp.float32)
