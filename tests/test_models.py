"""Tests for phs_optax_models: LeNet-5 shape, size, jit, and package naming."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import phs_optax_models
from phs_optax_models import LeNet5

REPO_ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "phs-optax"


def count_params(params) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(params))


def init_shapes(model: LeNet5, input_shape: tuple[int, ...]):
    """Parameter shapes without allocating or computing anything."""
    return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(input_shape))


@pytest.mark.parametrize(
    ("input_shape", "expected"),
    [((1, 28, 28, 1), 44_426), ((1, 32, 32, 3), 62_006)],
    ids=["fashion_mnist", "cifar10"],
)
def test_parameter_count(input_shape, expected):
    assert count_params(init_shapes(LeNet5(), input_shape)) == expected


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


def test_bfloat16_computation_keeps_float32_params_and_logits():
    model = LeNet5(dtype=jnp.bfloat16)
    images = jnp.ones((2, 32, 32, 3))
    params = jax.jit(model.init)(jax.random.key(0), images)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    assert jax.jit(model.apply)(params, images).dtype == jnp.float32


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
