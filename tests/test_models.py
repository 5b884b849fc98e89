"""Tests for phs_optax_models: LeNet-5 shape, size, jit, transformations, and
package naming."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import phs_optax_models
from phs_optax_models import CONV_IMPLS, LeNet5

REPO_ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "phs-optax"


def count_params(params) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(params))


def init_shapes(model: LeNet5, input_shape: tuple[int, ...]):
    """Parameter shapes without allocating or computing anything."""
    return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(input_shape))


@pytest.mark.parametrize("conv_impl", CONV_IMPLS)
@pytest.mark.parametrize(
    ("input_shape", "expected"),
    [((1, 28, 28, 1), 44_426), ((1, 32, 32, 3), 62_006)],
    ids=["fashion_mnist", "cifar10"],
)
def test_parameter_count(input_shape, expected, conv_impl):
    model = LeNet5(conv_impl=conv_impl)
    assert count_params(init_shapes(model, input_shape)) == expected


def test_default_layers_are_flax_stock():
    assert LeNet5().conv_impl == "stock"
    assert CONV_IMPLS == ("stock", "space_to_depth")


def test_unknown_conv_impl_is_rejected_naming_the_value_and_the_choices():
    with pytest.raises(ValueError, match="'fast'.*stock, space_to_depth"):
        LeNet5(conv_impl="fast")


def test_layer_names_and_shapes():
    params = init_shapes(LeNet5(), (1, 28, 28, 1))["params"]
    assert set(params) == {"conv1", "conv2", "fc1", "fc2", "fc3"}
    assert params["conv1"]["kernel"].shape == (5, 5, 1, 6)
    assert params["conv2"]["kernel"].shape == (5, 5, 6, 16)
    assert params["fc1"]["kernel"].shape == (256, 120)
    assert params["fc3"]["kernel"].shape == (84, 10)


@pytest.mark.parametrize("input_shape", [(3, 28, 28, 1), (2, 32, 32, 3)])
def test_output_shape_and_dtype(input_shape):
    model = LeNet5()
    images = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    params = init_shapes(model, input_shape)
    logits = jax.eval_shape(model.apply, params, images)
    assert logits.shape == (input_shape[0], 10)
    assert logits.dtype == jnp.float32


def test_num_classes():
    model = LeNet5(num_classes=7)
    params = init_shapes(model, (2, 28, 28, 1))
    logits = jax.eval_shape(model.apply, params, jnp.ones((2, 28, 28, 1)))
    assert logits.shape == (2, 7)


def test_jit_matches_eager():
    model = LeNet5()
    images = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    params = jax.jit(model.init)(jax.random.key(0), images)
    jitted = jax.jit(model.apply)(params, images)
    assert jitted.shape == (4, 10)
    assert jnp.all(jnp.isfinite(jitted))
    assert jnp.allclose(model.apply(params, images), jitted, atol=1e-5)


@pytest.mark.parametrize("conv_impl", CONV_IMPLS)
def test_bfloat16_computation_keeps_float32_params_and_logits(conv_impl):
    model = LeNet5(dtype=jnp.bfloat16, conv_impl=conv_impl)
    images = jnp.ones((2, 32, 32, 3))
    params = jax.jit(model.init)(jax.random.key(0), images)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    assert jax.jit(model.apply)(params, images).dtype == jnp.float32


def images_and_labels(n=4, shape=(28, 28, 1)):
    images = jax.random.normal(jax.random.key(1), (n, *shape))
    return images, jnp.arange(n) % 10


def loss_function(model, images, labels):
    def loss(params):
        logits = model.apply({"params": params}, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    return loss


def test_forward_mode_differentiation_through_the_default_model():
    model = LeNet5()
    images, _ = images_and_labels()
    params = jax.jit(model.init)(jax.random.key(0), images)
    tangent = jax.random.normal(jax.random.key(2), images.shape)
    logits, logits_tangent = jax.jit(
        lambda x, t: jax.jvp(lambda x: model.apply(params, x), (x,), (t,))
    )(images, tangent)
    assert logits.shape == logits_tangent.shape == (4, 10)
    # The directional derivative is the reverse-mode one along the tangent.
    _, vjp = jax.vjp(lambda x: model.apply(params, x), images)
    cotangent = jax.random.normal(jax.random.key(3), logits.shape)
    (images_cotangent,) = vjp(cotangent)
    np.testing.assert_allclose(
        jnp.vdot(cotangent, logits_tangent),
        jnp.vdot(images_cotangent, tangent),
        rtol=1e-4,
    )


def test_hessian_vector_product_forward_over_reverse_matches_reverse_over_reverse():
    model = LeNet5()
    images, labels = images_and_labels()
    params = jax.jit(model.init)(jax.random.key(0), images)["params"]
    loss = loss_function(model, images, labels)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(4), len(leaves))
    vector = jax.tree.unflatten(
        treedef,
        [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)],
    )
    vector = jax.tree.map(lambda x: x / optax.tree.norm(vector), vector)  # unit

    @jax.jit
    def forward_over_reverse(p, v):
        return jax.jvp(jax.grad(loss), (p,), (v,))[1]

    @jax.jit
    def reverse_over_reverse(p, v):
        return jax.grad(lambda q: optax.tree.vdot(jax.grad(loss)(q), v))(p)

    @jax.jit
    def central_difference(p, v, eps=3e-3):
        plus, minus = (
            jax.grad(loss)(jax.tree.map(lambda a, b, s=s: a + s * eps * b, p, v))
            for s in (1, -1)
        )
        return jax.tree.map(lambda a, b: (a - b) / (2 * eps), plus, minus)

    hvp = forward_over_reverse(params, vector)
    assert jax.tree.structure(hvp) == treedef
    want = reverse_over_reverse(params, vector)
    for got, expected in zip(jax.tree.leaves(hvp), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)
    # ReLU and max-pool are piecewise linear, so the difference quotient is
    # the Hessian-vector product only while no unit crosses its kink within
    # eps along the (unit) vector: here it agrees to 7e-4 at eps = 3e-3, up
    # to float32 rounding; at eps = 1e-2 kinks are crossed.
    flat_hvp = jnp.concatenate([x.ravel() for x in jax.tree.leaves(hvp)])
    flat_fd = jnp.concatenate(
        [x.ravel() for x in jax.tree.leaves(central_difference(params, vector))]
    )
    assert float(jnp.linalg.norm(flat_hvp - flat_fd) / jnp.linalg.norm(flat_hvp)) < (
        1e-2
    )


def test_captured_intermediates_of_the_default_model_are_feature_maps():
    model = LeNet5()
    images, _ = images_and_labels(n=3)
    params = jax.jit(model.init)(jax.random.key(0), images)
    _, state = model.apply(
        params, images, capture_intermediates=True, mutable=["intermediates"]
    )
    intermediates = state["intermediates"]
    assert intermediates["conv1"]["__call__"][0].shape == (3, 24, 24, 6)
    assert intermediates["conv2"]["__call__"][0].shape == (3, 8, 8, 16)
    assert intermediates["fc1"]["__call__"][0].shape == (3, 120)


def test_both_conv_impls_have_the_same_initial_params():
    images = jnp.zeros((1, 32, 32, 3))
    stock = jax.jit(LeNet5().init)(jax.random.key(7), images)
    fast = jax.jit(LeNet5(conv_impl="space_to_depth").init)(jax.random.key(7), images)
    jax.tree.map(np.testing.assert_array_equal, stock, fast)


def test_import_from_outside_repo_does_not_need_or_expose_models(tmp_path):
    """`phs_optax_models` imports from any cwd; no top-level `models` comes along."""
    script = (
        "import importlib.util, sys\n"
        "import phs_optax_models\n"
        "print(phs_optax_models.LeNet5.__name__)\n"
        "spec = importlib.util.find_spec('models')\n"
        "print(spec.origin if spec else None)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    name, models_origin = result.stdout.split()
    assert name == "LeNet5"
    if models_origin != "None":  # some unrelated `models` package may exist
        assert not Path(models_origin).resolve().is_relative_to(REPO_ROOT)


def test_package_is_not_named_models():
    assert phs_optax_models.__name__ == "phs_optax_models"
    assert "models" not in sys.modules or sys.modules["models"] is not phs_optax_models


def test_distribution_has_no_top_level_models():
    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{DISTRIBUTION} is not installed")
    top_level = (distribution.read_text("top_level.txt") or "").split()
    assert "models" not in top_level
    providers = importlib.metadata.packages_distributions()
    assert DISTRIBUTION in providers.get("phs_optax_models", [])
    assert DISTRIBUTION not in providers.get("models", [])
