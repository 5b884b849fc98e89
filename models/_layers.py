"""LeNet-5's convolution + max-pool layer, written for speed on XLA's CPU backend.

Profiling the training step on the 2-core development CPU
(``benchmarks/RESULTS.md``) showed where the straightforward Flax layers
(``nn.Conv``, ``nn.max_pool``) lose time: a convolution with few input
channels runs at a small fraction of the machine's speed in XLA (its input
patches are tiny matrices), ``nn.max_pool``'s gradient (``select_and_scatter``)
costs more than the convolutions, and YNNPACK, which XLA picks for the kernel
gradient (a convolution over the batch), is slower here than XLA's Eigen path.

:func:`conv_pool_space_to_depth` computes ``max_pool_2x2(conv5x5(x) + b)`` as a
3x3 convolution on space-to-depth images (each 2x2 block of pixels becomes
one pixel with 4x the channels). Its output channels come in four groups, one
per position of the pooling window, so the pool is a max over groups: no
windowed reduction and no ``select_and_scatter``.

The convolution's images gradient is one matrix product whose windows are
added at their offsets (`_conv_images_grad`), not XLA's convolution of the
padded gradient.

The pool's gradient goes to each window's first maximum in row-major order,
as ``nn.max_pool``'s does; values agree with the stock layers up to float
rounding (``tests/test_layers.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def xla_conv(images: jax.Array, kernel: jax.Array) -> jax.Array:
    """VALID, stride-1 NHWC convolution with an HWIO kernel (XLA's own)."""
    return lax.conv_general_dilated(
        images, kernel, (1, 1), "VALID", dimension_numbers=_NHWC
    )


@jax.custom_vjp
def _conv(images: jax.Array, kernel: jax.Array) -> jax.Array:
    """:func:`xla_conv` whose images gradient is one matrix product (see below)."""
    return xla_conv(images, kernel)


def _conv_fwd(images, kernel):
    return xla_conv(images, kernel), (images, kernel)


def _conv_bwd(residuals, grad_out):
    images, kernel = residuals
    _, kernel_vjp = jax.vjp(lambda k: xla_conv(images, k), kernel)
    return _conv_images_grad(grad_out, kernel, images.dtype), *kernel_vjp(grad_out)


def _conv_images_grad(grad_out: jax.Array, kernel: jax.Array, dtype) -> jax.Array:
    """The images gradient of :func:`xla_conv`, as one matrix product.

    Each output pixel's gradient times the kernel is the gradient of its input
    window; the windows are then added at their offsets, one kernel row at a
    time. XLA's own transpose is a convolution of the gradient padded by the
    kernel size minus one on each side, which for LeNet-5's small maps (3x3
    kernel, 4x4 or 5x5 outputs) spends most of its multiplications on the
    padding. Adding the rows in place keeps XLA from fusing the window sums
    into the next (transposing) kernel, where they ran slower than this.
    Session 12 of benchmarks/RESULTS.md has the measurements.
    """
    n, rows, cols, out_channels = grad_out.shape
    height, width, in_channels, _ = kernel.shape
    windows = jnp.dot(
        grad_out.reshape(-1, out_channels),
        kernel.reshape(-1, out_channels).T,
        preferred_element_type=jnp.float32,
    ).reshape(n, rows, cols, height, width, in_channels)
    images_grad = jnp.zeros(
        (n, rows + height - 1, cols + width - 1, in_channels), jnp.float32
    )
    for i in range(height):
        kernel_row = sum(
            jnp.pad(
                windows[:, :, :, i, j], ((0, 0), (0, 0), (j, width - 1 - j), (0, 0))
            )
            for j in range(width)
        )
        images_grad = images_grad.at[:, i : i + rows].add(kernel_row)
    return images_grad.astype(dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def _space_to_depth(images: jax.Array) -> jax.Array:
    """(n, 2p, 2q, c) -> (n, p, q, 4c), channel index (row parity, column parity, c)."""
    n, h, w, c = images.shape
    blocks = images.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return blocks.reshape(n, h // 2, w // 2, 4 * c)


def _space_to_depth_kernel(kernel: jax.Array) -> jax.Array:
    """A 5x5 kernel as the 3x3 kernel that acts on space-to-depth images.

    Output channel (di, dj, o) computes the convolution at the output pixel
    (2a + di, 2b + dj); its taps sit at offset (di, dj) in a 6x6 window.
    """
    _, _, in_channels, out_channels = kernel.shape
    padded = jnp.pad(kernel, ((1, 1), (1, 1), (0, 0), (0, 0)))  # 7x7
    shifted = [
        padded[1 - di : 7 - di, 1 - dj : 7 - dj]  # 6x6: tap (2p + r, 2q + s)
        .reshape(3, 2, 3, 2, in_channels, out_channels)
        .transpose(0, 2, 1, 3, 4, 5)
        .reshape(3, 3, 4 * in_channels, out_channels)
        for di in range(2)
        for dj in range(2)
    ]
    return jnp.stack(shifted, axis=-2).reshape(3, 3, 4 * in_channels, 4 * out_channels)


def _first_max_mask(groups: jax.Array) -> jax.Array:
    """True at the first maximum along axis 3 (size 4), False elsewhere."""
    # Position i of a maximum scores 4 - i, any other position 0; the first
    # maximum is the position whose priority is the top score (all False if
    # the max is NaN). One max-reduction and a comparison with a constant,
    # instead of a chain over the positions joined by a concatenation, which
    # XLA:CPU compiled into slow scalar loops (benchmarks/RESULTS.md).
    positions = groups.shape[3]
    priority = positions - lax.broadcasted_iota(jnp.int32, groups.shape, 3)
    score = jnp.where(groups == groups.max(axis=3, keepdims=True), priority, 0)
    return priority == score.max(axis=3, keepdims=True)


def _conv_pool_s2d_parts(images, kernel):
    """The convolution, (n, rows, cols, 4, out_channels): one group per window position."""
    n, h, w, _ = images.shape
    rows, cols = (h - 4) // 2, (w - 4) // 2  # pooled output size
    s2d = _space_to_depth(images[:, : 2 * rows + 4, : 2 * cols + 4])
    conv = _conv(s2d, _space_to_depth_kernel(kernel))
    return conv.reshape(n, rows, cols, 4, kernel.shape[-1])


@jax.custom_vjp
def conv_pool_space_to_depth(
    images: jax.Array, kernel: jax.Array, bias: jax.Array
) -> jax.Array:
    """``max_pool_2x2(conv(images, kernel) + bias)`` for a 5x5 VALID kernel.

    Computed on space-to-depth images: the 5x5 convolution becomes a 3x3 one
    with 4x the input and output channels, each output channel group holding
    one position of the 2x2 pooling window, so the pool is a max over groups.
    """
    return _conv_pool_s2d_parts(images, kernel).max(axis=3) + bias


def _conv_pool_s2d_fwd(images, kernel, bias):
    groups = _conv_pool_s2d_parts(images, kernel)
    return groups.max(axis=3) + bias, (images, kernel, groups)


def _conv_pool_s2d_bwd(residuals, grad_out):
    images, kernel, groups = residuals
    grad_groups = jnp.where(_first_max_mask(groups), grad_out[:, :, :, None], 0)
    _, conv_vjp = jax.vjp(lambda x, k: _conv_pool_s2d_parts(x, k), images, kernel)
    return (*conv_vjp(grad_groups), grad_out.sum(axis=(0, 1, 2)))


conv_pool_space_to_depth.defvjp(_conv_pool_s2d_fwd, _conv_pool_s2d_bwd)
