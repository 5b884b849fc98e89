"""The simple gradient noise scale: the estimators against closed-form
per-example gradients, and the command line."""

from __future__ import annotations

import dataclasses
import json
import math

import flax
import numpy as np
import pytest

from phs_optax_training import data as data_lib
from phs_optax_training import noise_scale, strict_json, train_lib
from phs_optax_training.config import TrainConfig
from phs_optax_training.model import create_model


def linear_apply(variables, images):
    """A linear softmax classifier: logits = x W + b."""
    params = variables["params"]
    return images @ params["w"] + params["b"]


def closed_form_gradients(params, images, labels):
    """Per-example gradients of the cross-entropy of a linear softmax
    classifier: dW = x (p - onehot)^T, db = p - onehot; float64, flat."""
    w, b = (np.asarray(params[k], np.float64) for k in ("w", "b"))
    x = np.asarray(images, np.float64)
    logits = x @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    residual = p - np.eye(w.shape[1])[labels]
    dw = x[:, :, None] * residual[:, None, :]
    return np.concatenate([dw.reshape(len(x), -1), residual], axis=1)


def numpy_noise_scale(gradients):
    n = len(gradients)
    mean = gradients.mean(0)
    trace = ((gradients - mean) ** 2).sum() / (n - 1)
    biased = mean @ mean
    unbiased = biased - trace / n
    return trace, unbiased, biased, trace / unbiased


def linear_problem(n=50, dims=5, classes=3, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    images = (offset + rng.normal(size=(n, dims))).astype(np.float32)
    labels = np.argmax(images @ rng.normal(size=(dims, classes)), 1).astype(np.int32)
    params = {
        "w": (0.1 * rng.normal(size=(dims, classes))).astype(np.float32),
        "b": np.zeros(classes, np.float32),
    }
    return params, images, labels


@pytest.mark.parametrize("chunk_size", [1, 7, 16, 50, 256])
def test_noise_scale_matches_closed_form_per_example_gradients(chunk_size):
    params, images, labels = linear_problem()
    trace, unbiased, biased, b_simple = numpy_noise_scale(
        closed_form_gradients(params, images, labels)
    )
    result = noise_scale.noise_scale(linear_apply, params, images, labels, chunk_size)
    assert result.examples == 50
    assert result.trace_covariance == pytest.approx(trace, rel=1e-5)
    assert result.mean_gradient_sq_norm == pytest.approx(unbiased, rel=1e-5)
    assert result.mean_gradient_sq_norm_biased == pytest.approx(biased, rel=1e-5)
    assert result.b_simple == pytest.approx(b_simple, rel=1e-5)
    assert result.b_simple_biased == pytest.approx(trace / biased, rel=1e-5)
    assert result.mean_gradient_sq_norm == pytest.approx(
        result.mean_gradient_sq_norm_biased - result.trace_covariance / 50, rel=1e-12
    )


def test_noise_scale_is_accurate_where_the_mean_gradient_dominates():
    # Examples close together: |g|^2 is about 10^4 times tr(Sigma) / n, where
    # sum |g_i|^2 - n |g|^2 in float32 would lose most of tr(Sigma)'s digits.
    params, images, labels = linear_problem(n=40, offset=30.0)
    labels[:] = 0
    images = (images - 30.0) * 0.01 + 30.0
    trace, unbiased, _, b_simple = numpy_noise_scale(
        closed_form_gradients(params, images, labels)
    )
    assert b_simple < 1e-2
    result = noise_scale.noise_scale(linear_apply, params, images, labels, 16)
    assert result.trace_covariance == pytest.approx(trace, rel=1e-3)
    assert result.mean_gradient_sq_norm == pytest.approx(unbiased, rel=1e-5)
    assert result.b_simple == pytest.approx(b_simple, rel=1e-3)


def test_noise_scale_is_inf_where_the_mean_gradient_is_not_resolved():
    # Two examples: the unbiased |G|^2 is g_0 . g_1, negative for one image
    # with two labels (residuals p - e_0 and p - e_1, p near uniform).
    params, images, labels = linear_problem(n=2)
    images[1], labels[:] = images[0], [0, 1]
    trace, unbiased, biased, _ = numpy_noise_scale(
        closed_form_gradients(params, images, labels)
    )
    assert unbiased < 0
    result = noise_scale.noise_scale(linear_apply, params, images, labels)
    assert result.mean_gradient_sq_norm == pytest.approx(unbiased, rel=1e-5)
    assert result.b_simple == math.inf
    assert result.b_simple_biased == pytest.approx(trace / biased, rel=1e-5)


def test_noise_scale_refuses_a_single_example():
    params, images, labels = linear_problem(n=1)
    with pytest.raises(ValueError, match="at least 2"):
        noise_scale.noise_scale(linear_apply, params, images, labels)


def write_run_folder(folder, data_dir, seed):
    """A run folder as the sweep writes it, holding the initial params of ``seed``."""
    config = TrainConfig(data_dir=str(data_dir), seed=seed, validation_fraction=0.1)
    dataset = data_lib.load_dataset("fashion_mnist", str(data_dir))
    model = create_model(config, dataset.num_classes)
    params = train_lib.initial_params(model, seed, dataset.train_images[:1])
    folder.mkdir()
    (folder / "params.msgpack").write_bytes(flax.serialization.to_bytes(params))
    summary = {"config": {**dataclasses.asdict(config), "steps_per_epoch": 7}}
    strict_json.write(folder / "summary.json", summary)


def test_command_line_measures_at_an_init_seed_and_a_run_folder(
    small_fashion_mnist_dir, tmp_path, capsys
):
    run = tmp_path / "phs_s0"
    write_run_folder(run, small_fashion_mnist_dir, seed=0)
    out = tmp_path / "noise.json"
    exit_code = noise_scale.main(
        [
            str(run),
            "--init_seed=0",
            "--examples=96",
            "--chunk_size=64",
            f"--data_dir={small_fashion_mnist_dir}",
            f"--json={out}",
        ]
    )
    assert exit_code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["init seed 0", "phs_s0"]
    b_simple = float(lines[0].split("B_simple ")[1].split()[0])
    assert 0 < b_simple < math.inf
    assert lines[0].endswith("examples 96")
    records = json.loads(out.read_text())["measurements"]
    # The run folder holds seed 0's initial params: the same measurement.
    assert records[1]["b_simple"] == pytest.approx(records[0]["b_simple"], rel=1e-6)
    assert records[0]["split_size"] == 512 - round(0.1 * 512)
    assert records[1]["params"] == "final"


def test_command_line_refuses_a_missing_run_folder(tmp_path, capsys):
    exit_code = noise_scale.main([str(tmp_path / "missing"), "--init_seed=0"])
    assert exit_code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("noise_scale: error: no run folder ")


def test_command_line_refuses_a_run_folder_without_params(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text("{}")
    assert noise_scale.main([str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip().endswith("holds no params.msgpack")
