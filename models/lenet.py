"""LeNet-5 as a Flax Linen module."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._layers import (
    conv_pool_from_blocks,
    conv_pool_space_to_depth,
    conv_pool_to_blocks,
)


class ConvPool5x5(nn.Module):
    """5x5 VALID convolution with bias, then 2x2 max-pool with stride 2.

    Holds ``nn.Conv``'s parameters (``kernel``, ``bias``) with its initializers,
    so the parameter tree and initial values are those of ``nn.Conv``. Takes
    and returns images (n, height, width, channels), or, as LeNet-5's layers
    pass them to each other, the 2x2 blocks of ``models/_layers.py``:
    ``output_blocks`` returns the pooled map as blocks; ``input_image_size``
    (height, width) says the input is blocks of an image of that size.
    """

    features: int
    dtype: Any = None
    input_image_size: tuple[int, int] | None = None
    output_blocks: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.input_image_size is not None and self.output_blocks:
            raise ValueError("ConvPool5x5 takes blocks or returns them, not both.")
        in_channels = x.shape[-1] // (4 if self.input_image_size else 1)
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (5, 5, in_channels, self.features),
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        if self.output_blocks:
            return conv_pool_to_blocks(x, kernel, bias)
        if self.input_image_size is not None:
            return conv_pool_from_blocks(x, kernel, bias, *self.input_image_size)
        return conv_pool_space_to_depth(x, kernel, bias)


CONV_IMPLS = ("stock", "space_to_depth")


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
        conv_impl: How the two convolution + max-pool layers are computed.
            ``"stock"`` (the default): Flax's ``nn.Conv``, ReLU and
            ``nn.max_pool``; the model supports every JAX transformation
            (``jax.jvp`` and so Hessian-vector products included), and
            ``capture_intermediates`` gives the convolutions' feature maps.
            ``"space_to_depth"``: the layers of ``models/_layers.py``, written
            for speed on XLA's CPU backend; the same function and gradient up
            to float rounding, but reverse-mode only (``custom_vjp``: no
            ``jax.jvp``), and conv1's output is the 2x2-block layout conv2
            reads, not a feature map. Both have the same parameters with the
            same initial values.
    """

    num_classes: int = 10
    dtype: Any = None
    conv_impl: str = "stock"

    def __post_init__(self) -> None:
        if self.conv_impl not in CONV_IMPLS:
            raise ValueError(
                f"unknown conv_impl={self.conv_impl!r}; choose one of "
                f"{', '.join(CONV_IMPLS)}"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """Maps images of shape (batch, height, width, channels) to logits."""
        if self.conv_impl == "space_to_depth":
            x = self._space_to_depth_features(images)
        else:
            x = images
            for name, features in (("conv1", 6), ("conv2", 16)):
                x = nn.Conv(
                    features, (5, 5), padding="VALID", dtype=self.dtype, name=name
                )(x)
                x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        for name, features in (("fc1", 120), ("fc2", 84)):
            x = nn.relu(nn.Dense(features, dtype=self.dtype, name=name)(x))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc3")(x)
        return logits.astype(jnp.float32)

    def _space_to_depth_features(self, images: jax.Array) -> jax.Array:
        """conv1 and conv2 (with ReLU and pool) by ``models/_layers.py``."""
        # Pooling before the ReLU gives the same values (ReLU is monotone) at a
        # quarter of the ReLU's cost. conv1 hands conv2 its pooled map as 2x2
        # blocks, the layout conv2 computes on (models/_layers.py).
        x = ConvPool5x5(6, dtype=self.dtype, output_blocks=True, name="conv1")(images)
        pooled_size = ((images.shape[1] - 4) // 2, (images.shape[2] - 4) // 2)
        x = ConvPool5x5(
            16, dtype=self.dtype, input_image_size=pooled_size, name="conv2"
        )(nn.relu(x))
        return nn.relu(x)
