"""The benchmark scripts still run against the project's code (tiny sizes)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def import_benchmark(name: str):
    """A module of benchmarks/ (not a package), imported by file name."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def run_json(script: str, *args: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line[:1] == "{"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "conv_impl"),
    [("fmnist-64", None), ("cifar-64", "stock"), ("fmnist-64", "space_to_depth")],
)
def test_project_step_benchmark_reports_a_rate_per_repeat(case, conv_impl):
    options = [] if conv_impl is None else [f"--conv_impl={conv_impl}"]
    (result,) = run_json(
        "jax_project.py", "step", f"--case={case}", "--steps=2", "--repeats=2",
        "--num_examples=256", *options,
    )  # fmt: skip
    assert result["case"] == case
    assert len(result["images_per_second"]) == 2
    assert all(rate > 0 for rate in result["images_per_second"])
    # By default the layers train.py uses (space_to_depth on a CPU).
    from phs_optax_training.model import resolve_conv_impl

    assert result["conv_impl"] == resolve_conv_impl(conv_impl or "auto")


@pytest.mark.slow
def test_torch_reference_step_benchmark_runs():
    pytest.importorskip("torch")
    (result,) = run_json(
        "torch_reference.py", "step", "--case=cifar-64", "--steps=2", "--repeats=2",
        "--num_examples=256",
    )  # fmt: skip
    assert len(result["images_per_second"]) == 2


def test_torch_reference_lenet_has_the_project_parameter_count():
    torch = pytest.importorskip("torch")
    LeNet5 = import_benchmark("torch_reference").LeNet5
    for channels, size, expected in ((1, 28, 44_426), (3, 32, 62_006)):
        model = LeNet5(channels, size)
        assert sum(p.numel() for p in model.parameters()) == expected
        assert model(torch.zeros(2, channels, size, size)).shape == (2, 10)


def test_compute_limit_uses_the_lenet5_flop_count():
    compare = import_benchmark("compare")
    # About 1.7 MFLOP per 28x28 image, forward and backward.
    assert compare.training_flops_per_image("fmnist-64") / 1e6 == pytest.approx(
        1.69, abs=0.01
    )


# compare.py's own process runs no JAX; this test's process does, hence the
# warning about forking (the children exec at once, after one affinity call).
@pytest.mark.filterwarnings("ignore:os.fork.. was called:RuntimeWarning")
def test_pinned_processes_run_one_per_core_each_on_its_own_core(tmp_path, monkeypatch):
    compare = import_benchmark("compare")
    (tmp_path / "affinity.py").write_text(
        "import json, os\n"
        "print(json.dumps({'cores': sorted(os.sched_getaffinity(0))}))\n"
    )
    monkeypatch.setattr(compare, "HERE", tmp_path)
    cores = [row["cores"] for (row,) in compare.run_pinned_at_once("affinity.py")]
    assert sorted(cores) == [[core] for core in sorted(os.sched_getaffinity(0))]


def test_scalar_state_benchmark_packs_the_same_values_as_separate_fields():
    jnp = pytest.importorskip("jax.numpy")
    with_scalar_fields = import_benchmark("scalar_state_cost").with_scalar_fields
    params = {"w": jnp.ones(3)}
    separate = with_scalar_fields(4, packed=False)
    packed = with_scalar_fields(4, packed=True)
    separate_state, packed_state = separate.init(params), packed.init(params)
    for loss in (2.5, 0.5, 3.0):
        value = jnp.float32(loss)
        _, separate_state = separate.update(params, separate_state, params, value=value)
        _, packed_state = packed.update(params, packed_state, params, value=value)
    assert jnp.array_equal(jnp.stack(separate_state[1]), packed_state[1])


def test_optimizer_cost_ratio_is_the_median_of_per_round_ratios():
    median_ratio = import_benchmark("optimizer_cost").median_ratio
    # Per-round ratios 2, 2, 3, 10: a slow round of the denominator alone
    # (the last) moves the median of the ratios less than a ratio of medians.
    result = median_ratio([2.0, 4.0, 9.0, 10.0], [1.0, 2.0, 3.0, 1.0])
    assert result["ratio"] == 2.5
    assert result["ratio_q1"] <= result["ratio"] <= result["ratio_q3"]


def test_optimizer_cost_alternates_the_order_of_the_optimizers_every_round(
    monkeypatch,
):
    optimizer_cost = import_benchmark("optimizer_cost")
    calls = []

    def fake_loop(tx, params, inner):
        return lambda: calls.append(tx) or 1.0

    monkeypatch.setattr(optimizer_cost, "timed_update_loop", fake_loop)
    times = optimizer_cost.paired_seconds_per_step(
        {"a": "A", "b": "B"}, params=None, inner=1, rounds=3
    )
    assert calls == ["A", "B", "B", "A", "A", "B"]
    assert times == {"a": [1.0] * 3, "b": [1.0] * 3}


@pytest.mark.slow
def test_optimizer_cost_benchmark_reports_a_ratio_per_pytree():
    rows = run_json("optimizer_cost.py", "--rounds=4")
    assert [row["pytree"] for row in rows] == ["lenet5 (44,426)", "10M parameters"]
    assert all(row["ratio_q1"] <= row["ratio"] <= row["ratio_q3"] for row in rows)


@pytest.mark.slow
def test_images_gradient_benchmark_times_both_gradients_in_the_train_step():
    (result,) = run_json(
        "images_gradient.py", "--rounds=4", "--steps=1", "--num_examples=256"
    )
    assert result["project_images_per_second"] > 0
    assert result["xla_images_per_second"] > 0
    assert result["ratio_q1"] <= result["ratio"] <= result["ratio_q3"]


@pytest.mark.slow
def test_sweep_throughput_reports_one_config_once_and_more_per_data_order(
    small_fashion_mnist_dir,
):
    rows = run_json(
        "sweep_throughput.py", "--configs=1,2", "--steps=1", "--repeats=1",
        "--batch_size=32", "--json", f"--data_dir={small_fashion_mnist_dir}",
    )  # fmt: skip
    assert [(row["configs"], row["data_order"]) for row in rows] == [
        (1, "own"),
        (2, "own"),
        (2, "shared"),
    ]
    assert all(row["images_per_second"] > 0 for row in rows)


@pytest.mark.slow
def test_sweep_throughput_interleaves_own_and_shared_batches(small_fashion_mnist_dir):
    (row,) = run_json(
        "sweep_throughput.py", "--configs=2", "--steps=1", "--interleaved_rounds=4",
        "--batch_size=32", f"--data_dir={small_fashion_mnist_dir}",
    )  # fmt: skip
    assert row["configs"] == 2
    assert row["ratio_q1"] <= row["time_ratio_shared_over_own"] <= row["ratio_q3"]


def test_matmul_peak_reports_gflops_per_library():
    (result,) = run_json("matmul_peak.py", "--size=64", "--repeats=2")
    assert result["numpy_gflops"] > 0 and result["jax_gflops"] > 0
