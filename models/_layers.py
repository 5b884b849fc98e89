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
one pixel with 4x the channels). Each of its output channels comes four
times, once per position of the pooling window (the fastest-varying index),
so the pool is a max over 4 adjacent channels: no windowed reduction and no
``select_and_scatter``.

The first layer, whose images have few channels, goes further
(:func:`conv_pool_to_blocks`): on 4x4 space-to-depth images the 5x5
convolution + 2x2 pool is a 2x2 convolution with 16x the output channels,
and its pooled output comes out as 2x2 blocks, the layout the second layer
(:func:`conv_pool_from_blocks`) reads, so no transpose lies between them.

The convolution's images gradient is one matrix product whose windows are
added at their offsets (`_conv_images_grad`), not XLA's convolution of the
padded gradient.

The pool's gradient goes to each window's first maximum in row-major order,
as ``nn.max_pool``'s does; values agree with the stock layers up to float
rounding (``tests/test_layers.py``).
"""

from __future__ import annotations

import functools

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
    benchmarks/RESULTS.md has the measurements.
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


def _space_to_depth(images: jax.Array, block: int = 2) -> jax.Array:
    """(n, block p, block q, c) -> (n, p, q, block² c), channel (row offset, column offset, c)."""
    n, h, w, c = images.shape
    blocks = images.reshape(n, h // block, block, w // block, block, c)
    return blocks.transpose(0, 1, 3, 2, 4, 5).reshape(
        n, h // block, w // block, block * block * c
    )


def _space_to_depth_kernel(kernel: jax.Array, block: int = 2) -> jax.Array:
    """A 5x5 kernel as the kernel that acts on space-to-depth images of ``block``.

    Output channel (o, di, dj) computes the convolution at the output pixel
    (block a + di, block b + dj); its taps sit at offset (di, dj) in a window
    of ``taps`` x ``taps`` blocks. Block 2: a 3x3 kernel; block 4: 2x2.
    """
    size, _, in_channels, out_channels = kernel.shape
    taps = -(-(size + block - 1) // block)
    window = block * taps
    before, after = block - 1, window - size
    padded = jnp.pad(kernel, ((before, after), (before, after), (0, 0), (0, 0)))
    shifted = [
        padded[before - di : before - di + window, before - dj : before - dj + window]
        .reshape(taps, block, taps, block, in_channels, out_channels)
        .transpose(0, 2, 1, 3, 4, 5)
        .reshape(taps, taps, block * block * in_channels, out_channels)
        for di in range(block)
        for dj in range(block)
    ]
    return jnp.stack(shifted, axis=-1).reshape(
        taps, taps, block * block * in_channels, out_channels * block * block
    )


def _window_max(groups: jax.Array) -> jax.Array:
    """The max over the window positions (the last axis, size 4), as
    elementwise maxima of its slices: XLA:CPU runs a reduction over a minor
    axis of 4 several times slower (benchmarks/RESULTS.md)."""
    return jnp.maximum(
        jnp.maximum(groups[..., 0], groups[..., 1]),
        jnp.maximum(groups[..., 2], groups[..., 3]),
    )


def _first_max_position(groups: jax.Array) -> jax.Array:
    """The position (0-3) of each window's first maximum along the last axis; 4 if NaN.

    int8, the residual the forward pass keeps for the gradient (a quarter of
    the groups' size). XLA:CPU recomputes it inside the backward pass's
    kernel anyway (an optimization barrier did not stop it), where the chain
    of selects over the 4 positions costs less than the old masks' two
    reductions.
    """
    maximum = _window_max(groups)
    position = jnp.full(maximum.shape, 4, jnp.int8)
    for index in (3, 2, 1, 0):
        position = jnp.where(groups[..., index] == maximum, jnp.int8(index), position)
    return position


def _pool_forward(groups: jax.Array, bias: jax.Array) -> jax.Array:
    """The max over the window positions (the last axis) plus the bias."""
    return _window_max(groups) + bias


def _pool_grad(first_max: jax.Array, grad_out: jax.Array) -> jax.Array:
    """The gradient of the window max: to each window's first maximum.

    Broadcast along the last axis: along axis 3, XLA:CPU's kernel ran about
    4x slower (benchmarks/RESULTS.md).
    """
    positions = lax.broadcasted_iota(jnp.int8, (1, 1, 1, 1, 4), 4)
    return jnp.where(positions == first_max[..., None], grad_out[..., None], 0)


def _blocks_parts(blocks, kernel, rows, cols):
    """Conv of 2x2 blocks as (n, rows, cols, out_channels, 4): the last axis is the
    position in the pooling window."""
    n = blocks.shape[0]
    conv = _conv(blocks[:, : rows + 2, : cols + 2], _space_to_depth_kernel(kernel))
    return conv.reshape(n, rows, cols, kernel.shape[-1], 4)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def conv_pool_from_blocks(
    blocks: jax.Array, kernel: jax.Array, bias: jax.Array, height: int, width: int
) -> jax.Array:
    """``max_pool_2x2(conv(images, kernel) + bias)`` for a 5x5 VALID kernel,
    with ``images`` (height x width) given as 2x2 blocks (:func:`_space_to_depth`).

    ``blocks`` may hold more blocks than the image (padding, as
    :func:`conv_pool_to_blocks` returns); those are not read. Returns
    (n, (height - 4) // 2, (width - 4) // 2, out_channels).
    """
    rows, cols = (height - 4) // 2, (width - 4) // 2
    return _pool_forward(_blocks_parts(blocks, kernel, rows, cols), bias)


def _from_blocks_fwd(blocks, kernel, bias, height, width):
    rows, cols = (height - 4) // 2, (width - 4) // 2
    groups = _blocks_parts(blocks, kernel, rows, cols)
    return _pool_forward(groups, bias), (blocks, kernel, _first_max_position(groups))


def _from_blocks_bwd(height, width, residuals, grad_out):
    blocks, kernel, first_max = residuals
    rows, cols = (height - 4) // 2, (width - 4) // 2
    _, conv_vjp = jax.vjp(lambda x, k: _blocks_parts(x, k, rows, cols), blocks, kernel)
    return (
        *conv_vjp(_pool_grad(first_max, grad_out)),
        grad_out.sum(axis=(0, 1, 2)),
    )


conv_pool_from_blocks.defvjp(_from_blocks_fwd, _from_blocks_bwd)


def conv_pool_space_to_depth(
    images: jax.Array, kernel: jax.Array, bias: jax.Array
) -> jax.Array:
    """``max_pool_2x2(conv(images, kernel) + bias)`` for a 5x5 VALID kernel.

    Computed on space-to-depth images: the 5x5 convolution becomes a 3x3 one
    with 4x the input and output channels, each channel once per position of
    the 2x2 pooling window, so the pool is a max over 4 adjacent channels.
    """
    _, height, width, _ = images.shape
    rows, cols = (height - 4) // 2, (width - 4) // 2
    blocks = _space_to_depth(images[:, : 2 * rows + 4, : 2 * cols + 4])
    return conv_pool_from_blocks(blocks, kernel, bias, height, width)


def _to_blocks_parts(images, kernel):
    """Conv on 4x4 blocks as (n, p, q, 4 * out_channels, 4): the last axis is
    the position in the pooling window, axis 3 (row parity, column parity,
    out_channels) that of the pooled output's 2x2 blocks."""
    n, height, width, _ = images.shape
    out_channels = kernel.shape[-1]
    p, q = -(-((height - 4) // 2) // 2), -(-((width - 4) // 2) // 2)  # 2x2 blocks
    padded = jnp.pad(
        images[:, : 4 * p + 4, : 4 * q + 4],
        (
            (0, 0),
            (0, max(4 * p + 4 - height, 0)),
            (0, max(4 * q + 4 - width, 0)),
            (0, 0),
        ),
    )
    # Output channels (o, 2 pi + wi, 2 pj + wj) -> (pi, pj, o, wi, wj).
    kernel4 = _space_to_depth_kernel(kernel, block=4)
    kernel4 = kernel4.reshape(*kernel4.shape[:3], out_channels, 2, 2, 2, 2)
    kernel4 = kernel4.transpose(0, 1, 2, 4, 6, 3, 5, 7).reshape(
        kernel4.shape[:3] + (-1,)
    )
    conv = _conv(_space_to_depth(padded, block=4), kernel4)
    return conv.reshape(n, p, q, 4 * out_channels, 4)


@jax.custom_vjp
def conv_pool_to_blocks(
    images: jax.Array, kernel: jax.Array, bias: jax.Array
) -> jax.Array:
    """``max_pool_2x2(conv(images, kernel) + bias)`` for a 5x5 VALID kernel, as 2x2 blocks.

    Returns the pooled map in :func:`_space_to_depth`'s layout, (n, p, q,
    4 out_channels) with p = ceil(((height - 4) // 2) / 2): pooled pixel
    (2a + i, 2b + j) is ``out[:, a, b, (2 i + j) * out_channels:][:out_channels]``.
    Where the pooled map has an odd number of rows or columns, the last block
    row or column holds values of zero padding. For images with few channels
    (the first layer): a 2x2 convolution on 4x4 space-to-depth images.
    """
    return _pool_forward(_to_blocks_parts(images, kernel), jnp.tile(bias, 4))


def _to_blocks_fwd(images, kernel, bias):
    groups = _to_blocks_parts(images, kernel)
    return _pool_forward(groups, jnp.tile(bias, 4)), (
        images,
        kernel,
        _first_max_position(groups),
    )


def _to_blocks_bwd(residuals, grad_out):
    images, kernel, first_max = residuals
    _, conv_vjp = jax.vjp(_to_blocks_parts, images, kernel)
    bias_grad = grad_out.reshape(-1, 4, kernel.shape[-1]).sum(axis=(0, 1))
    return (*conv_vjp(_pool_grad(first_max, grad_out)), bias_grad)


conv_pool_to_blocks.defvjp(_to_blocks_fwd, _to_blocks_bwd)
