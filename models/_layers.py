"""LeNet-5's layers written for speed on XLA's CPU backend.

Profiling the training step on the 2-core development CPU
(``benchmarks/RESULTS.md``) showed two slow spots in the straightforward Flax
layers; each is replaced here by the same function computed another way:

* a convolution with one input channel (Fashion-MNIST's first layer) runs at
  a small fraction of the machine's speed as ``lax.conv_general_dilated``, and
  its kernel gradient is slower still. :func:`conv_pool_few_channels` sums the
  shifted input windows times the kernel taps (one fused elementwise loop) and
  computes the kernel gradient as one contraction of the gathered windows with
  the output gradient. It includes the bias and the max-pool: XLA fuses the
  unrolled sum into every consumer of its result and recomputes it there, so
  the sum must have exactly one consumer, the pooling reduction.
* ``nn.max_pool``'s gradient (``select_and_scatter``) costs more than the
  convolutions; :func:`max_pool_2x2` records the position of each window's
  maximum in the forward pass (one variadic reduction) and routes the gradient
  there elementwise.

Both give the gradient of a window to its first maximum in row-major order,
as ``nn.max_pool`` does; values agree with the stock layers up to float
rounding (``tests/test_layers.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def xla_conv(images: jax.Array, kernel: jax.Array) -> jax.Array:
    """VALID, stride-1 NHWC convolution with an HWIO kernel (XLA's own)."""
    return lax.conv_general_dilated(
        images, kernel, (1, 1), "VALID", dimension_numbers=_NHWC
    )


def _taps_forward(images: jax.Array, kernel: jax.Array) -> jax.Array:
    size, _, in_channels, _ = kernel.shape
    out_h, out_w = images.shape[1] - size + 1, images.shape[2] - size + 1
    out = None
    for i in range(size):
        for j in range(size):
            window = images[:, i : i + out_h, j : j + out_w, :]
            for c in range(in_channels):
                term = window[..., c : c + 1] * kernel[i, j, c]
                out = term if out is None else out + term
    return out


def _window_indices(size: int, height: int, width: int) -> np.ndarray:
    """(taps, out_h * out_w): the flat input position each kernel tap reads."""
    out_h, out_w = height - size + 1, width - size + 1
    rows, cols = np.meshgrid(np.arange(out_h), np.arange(out_w), indexing="ij")
    taps = [(i, j) for i in range(size) for j in range(size)]
    return np.stack([((rows + i) * width + cols + j).ravel() for i, j in taps])


def _kernel_gradient(images: jax.Array, grad_out: jax.Array, size: int) -> jax.Array:
    """d(loss)/d(kernel) of a VALID, stride-1 convolution, from its output gradient."""
    batch, height, width, in_channels = images.shape
    out_channels = grad_out.shape[-1]
    # All windows gathered at once in one loop (slicing them one by one and
    # stacking costs several times more on CPU), then one contraction.
    flat = images.transpose(0, 3, 1, 2).reshape(batch, in_channels, height * width)
    windows = flat[:, :, _window_indices(size, height, width).astype(np.int32)]
    grad_kernel = jnp.einsum(
        "nctp,npo->cto", windows, grad_out.reshape(batch, -1, out_channels)
    )
    grad_kernel = grad_kernel.reshape(in_channels, size, size, out_channels)
    return grad_kernel.transpose(1, 2, 0, 3)


def _pool_with_position(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """2x2 max-pool and the position (0-3, row-major) of each window's first max."""
    n, h, w, c = x.shape
    windows = x[:, : h - h % 2, : w - w % 2, :].reshape(n, h // 2, 2, w // 2, 2, c)
    iota = lambda axis: lax.broadcasted_iota(jnp.int8, windows.shape, axis)
    position = 2 * iota(2) + iota(4)

    def first_max(a, b):
        (value_a, position_a), (value_b, position_b) = a, b
        take_b = (value_b > value_a) | (
            (value_b == value_a) & (position_b < position_a)
        )
        return (
            jnp.where(take_b, value_b, value_a),
            jnp.where(take_b, position_b, position_a),
        )

    lowest = jnp.array(-jnp.inf, x.dtype)
    return lax.reduce((windows, position), (lowest, jnp.int8(4)), first_max, (2, 4))


def _unpool(grad_out: jax.Array, position: jax.Array, shape) -> jax.Array:
    """The gradient of the pool's input: each window's to its recorded position."""
    n, h2, w2, c = grad_out.shape
    rows = [
        jnp.stack([jnp.where(position == 2 * i + j, grad_out, 0) for j in range(2)], 3)
        for i in range(2)
    ]
    grad = jnp.stack(rows, axis=2).reshape(n, 2 * h2, 2 * w2, c)
    pad = ((0, 0), (0, shape[1] - 2 * h2), (0, shape[2] - 2 * w2), (0, 0))
    return jnp.pad(grad, pad)


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool with stride 2 (VALID: an odd last row or column is dropped).

    Equal to ``nn.max_pool(x, (2, 2), strides=(2, 2))``, gradient included.
    """
    return _pool_with_position(x)[0]


def _max_pool_fwd(x):
    pooled, position = _pool_with_position(x)
    return pooled, (position, x.shape)


def _max_pool_bwd(residuals, grad_out):
    position, shape = residuals
    return (_unpool(grad_out, position, shape),)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


@jax.custom_vjp
def conv_pool_few_channels(
    images: jax.Array, kernel: jax.Array, bias: jax.Array
) -> jax.Array:
    """``max_pool_2x2(conv(images, kernel) + bias)`` for few input channels.

    The convolution is VALID and stride 1, NHWC with an HWIO kernel; fast when
    ``in_channels`` is small (the sum is unrolled over ``kh * kw * in_channels``
    terms).
    """
    return _pool_with_position(_taps_forward(images, kernel) + bias)[0]


def _conv_pool_fwd(images, kernel, bias):
    conv = _taps_forward(images, kernel) + bias
    pooled, position = _pool_with_position(conv)
    return pooled, (images, kernel, position, conv.shape)


def _conv_pool_bwd(residuals, grad_out):
    images, kernel, position, conv_shape = residuals
    grad_conv = _unpool(grad_out, position, conv_shape)
    # The input gradient (unused for a first layer, and then removed by XLA).
    _, input_vjp = jax.vjp(lambda x: xla_conv(x, kernel), images)
    return (
        input_vjp(grad_conv)[0],
        _kernel_gradient(images, grad_conv, kernel.shape[0]),
        grad_conv.sum(axis=(0, 1, 2)),
    )


conv_pool_few_channels.defvjp(_conv_pool_fwd, _conv_pool_bwd)
