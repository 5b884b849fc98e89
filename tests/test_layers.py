"""The fast LeNet-5 layers compute the same functions as Flax's and XLA's own."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from phs_optax_models import LeNet5
from phs_optax_models._layers import (
    _conv,
    _first_max_position,
    conv_pool_space_to_depth,
    conv_pool_to_blocks,
    xla_conv,
)
from phs_optax_models.lenet import ConvPool5x5


class ReferenceLeNet5(nn.Module):
    """LeNet-5 from Flax's stock layers (nn.Conv, ReLU, nn.max_pool)."""

    @nn.compact
    def __call__(self, x):
        for name, features in (("conv1", 6), ("conv2", 16)):
            x = nn.Conv(features, (5, 5), padding="VALID", name=name)(x)
            x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        for name, features in (("fc1", 120), ("fc2", 84)):
            x = nn.relu(nn.Dense(features, name=name)(x))
        return nn.Dense(10, name="fc3")(x)


def random(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, np.float32))


def relative_error(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def stock_max_pool(x):
    return nn.max_pool(x, (2, 2), strides=(2, 2))


def stock_conv_pool(images, kernel, bias):
    return stock_max_pool(xla_conv(images, kernel) + bias)


def weighted_sum(layer, weights):
    return lambda *args: jnp.sum(layer(*args) * weights)


def conv_pool_to_image(images, kernel, bias):
    """conv_pool_to_blocks with its 2x2 blocks put back as an image."""
    n, height, width, _ = images.shape
    rows, cols = (height - 4) // 2, (width - 4) // 2
    blocks = conv_pool_to_blocks(images, kernel, bias)
    _, p, q, _ = blocks.shape
    assert (p, q) == (-(-rows // 2), -(-cols // 2))
    image = blocks.reshape(n, p, q, 2, 2, -1).transpose(0, 1, 3, 2, 4, 5)
    return image.reshape(n, 2 * p, 2 * q, -1)[:, :rows, :cols]


@pytest.mark.parametrize(
    "shape",
    [(4, 28, 28, 1), (3, 32, 32, 3), (2, 14, 14, 6), (2, 9, 11, 2)],
    ids=["fashion-mnist", "cifar-10", "second-layer", "odd-sizes"],
)
def test_conv_pool_space_to_depth_matches_xla_convolution_and_max_pool(shape):
    assert_matches_stock_conv_pool(conv_pool_space_to_depth, shape)


@pytest.mark.parametrize(
    "shape",
    [(4, 28, 28, 1), (3, 32, 32, 3), (2, 30, 31, 2), (2, 9, 11, 2), (2, 13, 8, 1)],
    ids=["fashion-mnist", "cifar-10", "odd-pooled-size", "small", "one-block"],
)
def test_conv_pool_to_blocks_matches_xla_convolution_and_max_pool(shape):
    assert_matches_stock_conv_pool(conv_pool_to_image, shape)


def assert_matches_stock_conv_pool(layer, shape):
    images, kernel = random(shape), random((5, 5, shape[-1], 6), seed=1)
    bias = random((6,), seed=2)
    weights = random((shape[0], (shape[1] - 4) // 2, (shape[2] - 4) // 2, 6), 3)

    got = layer(images, kernel, bias)
    assert relative_error(got, stock_conv_pool(images, kernel, bias)) < 1e-6
    argnums = (0, 1, 2)
    fast = jax.grad(weighted_sum(layer, weights), argnums)
    stock = jax.grad(weighted_sum(stock_conv_pool, weights), argnums)
    for got, want in zip(
        fast(images, kernel, bias), stock(images, kernel, bias), strict=True
    ):
        assert relative_error(got, want) < 1e-5


@pytest.mark.parametrize(
    "images_shape, kernel_shape",
    [
        ((4, 6, 6, 24), (3, 3, 24, 64)),
        ((3, 7, 7, 24), (3, 3, 24, 64)),
        ((2, 9, 5, 3), (4, 2, 3, 5)),
    ],
    ids=["fashion-mnist-conv2", "cifar-10-conv2", "odd-sizes"],
)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_conv_gradients_are_those_of_xlas_convolution(
    images_shape, kernel_shape, dtype
):
    images = random(images_shape).astype(dtype)
    kernel = random(kernel_shape, seed=1).astype(dtype)
    outputs, fast_vjp = jax.vjp(_conv, images, kernel)
    want_outputs, xla_vjp = jax.vjp(xla_conv, images, kernel)
    np.testing.assert_array_equal(outputs, want_outputs)
    grad_out = random(outputs.shape, seed=2).astype(dtype)
    tolerance = 1e-5 if dtype == jnp.float32 else 1e-2
    for got, want in zip(fast_vjp(grad_out), xla_vjp(grad_out), strict=True):
        assert got.dtype == want.dtype == dtype
        assert relative_error(got.astype(jnp.float32), want.astype(jnp.float32)) < (
            tolerance
        )


@pytest.mark.parametrize(
    "layer", [conv_pool_space_to_depth, conv_pool_to_image], ids=["images", "blocks"]
)
def test_conv_pool_gives_a_tied_window_gradient_to_its_first_maximum_like_flax(layer):
    # A kernel with one tap passes the (integer, often tied) pixels through.
    images = jnp.asarray(
        np.random.default_rng(1).integers(0, 3, (2, 12, 14, 1)), jnp.float32
    )
    kernel = jnp.zeros((5, 5, 1, 1)).at[2, 2, 0, 0].set(1.0)
    bias = jnp.zeros(1)
    weights = random((2, 4, 5, 1), seed=2)
    np.testing.assert_array_equal(
        layer(images, kernel, bias), stock_conv_pool(images, kernel, bias)
    )
    np.testing.assert_array_equal(
        jax.grad(weighted_sum(layer, weights))(images, kernel, bias),
        jax.grad(weighted_sum(stock_conv_pool, weights))(images, kernel, bias),
    )


def test_first_max_position_is_the_first_maximum_of_each_window_and_4_if_nan():
    windows = jnp.array(
        [
            [1.0, 3.0, 3.0, 0.0],
            [2.0, 2.0, 2.0, 2.0],
            [0.0, 1.0, 2.0, 5.0],
            [jnp.nan, 1.0, 2.0, 3.0],
        ]
    )
    groups = windows.reshape(4, 1, 1, 1, 4)  # last axis: the 4 window positions
    np.testing.assert_array_equal(_first_max_position(groups).reshape(4), [1, 0, 3, 4])


def test_conv_pool_layer_takes_blocks_or_returns_them_not_both():
    layer = ConvPool5x5(6, input_image_size=(12, 12), output_blocks=True)
    with pytest.raises(ValueError, match="not both"):
        layer.init(jax.random.key(0), jnp.zeros((1, 6, 6, 4)))


@pytest.mark.parametrize("shape", [(8, 28, 28, 1), (8, 32, 32, 3), (4, 34, 30, 2)])
def test_both_conv_impls_have_flax_stock_parameters_and_the_same_logits_and_gradient(
    shape,
):
    """LeNet5's layer choices against ReferenceLeNet5: the stock default the
    same to the bit, space_to_depth up to float rounding."""
    images, labels = random(shape), jnp.arange(shape[0]) % 10
    models = {
        "reference": ReferenceLeNet5(),
        "stock": LeNet5(),
        "space_to_depth": LeNet5(conv_impl="space_to_depth"),
    }
    # Jitted: eagerly, every primitive compiles on its own (40 s on a 2-core CPU).
    inits = {
        name: jax.jit(model.init)(jax.random.key(0), images[:1])
        for name, model in models.items()
    }
    params = inits["reference"]
    for init in inits.values():
        jax.tree.map(np.testing.assert_array_equal, init, params)

    def logits_value_and_grad(model):
        def loss(p):
            logits = model.apply(p, images)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
            return loss.mean(), logits

        return jax.jit(jax.value_and_grad(loss, has_aux=True))

    results = {
        name: logits_value_and_grad(model)(params) for name, model in models.items()
    }
    (value, logits), grads = results["reference"]
    (stock_value, stock_logits), stock_grads = results["stock"]
    np.testing.assert_array_equal(stock_logits, logits)
    assert float(stock_value) == float(value)
    jax.tree.map(np.testing.assert_array_equal, stock_grads, grads)

    (fast_value, fast_logits), fast_grads = results["space_to_depth"]
    assert relative_error(fast_logits, logits) < 1e-5
    assert float(fast_value) == pytest.approx(float(value), rel=1e-6)
    for got, want in zip(
        jax.tree.leaves(fast_grads), jax.tree.leaves(grads), strict=True
    ):
        assert relative_error(got, want) < 1e-5
