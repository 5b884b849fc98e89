"""A run whose training loss becomes non-finite: stated, recorded, strict JSON."""

import dataclasses
import json
import math

import pytest
from test_cli import QUICK_FLAGS, run_train

from phs_optax_training import data as data_lib
from phs_optax_training import strict_json, vmap_sweep
from phs_optax_training.config import TrainConfig, run_name

DIVERGING = ["--optimizer=goal_phs", "--learning_rate=100", "--num_epochs=3"]


def strict_lines(path):
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}")

    return [
        json.loads(line, parse_constant=refuse)
        for line in path.read_text().splitlines()
    ]


def test_strict_json_writes_null_for_non_finite_numbers(tmp_path):
    value = {"a": math.nan, "b": [1.0, math.inf, -math.inf], "c": "nan", "d": 2}
    assert json.loads(strict_json.dumps(value)) == {
        "a": None, "b": [1.0, None, None], "c": "nan", "d": 2,
    }  # fmt: skip
    strict_json.write(tmp_path / "x.json", value)
    assert json.loads((tmp_path / "x.json").read_text())["b"] == [1.0, None, None]


@pytest.mark.parametrize("stop", [True, False], ids=["stops", "trains-on"])
def test_a_diverging_run_says_where_exits_3_and_records_it(
    small_fashion_mnist_dir, tmp_path, stop
):
    workdir = tmp_path / "run"
    flags = [*QUICK_FLAGS, *DIVERGING, f"--data_dir={small_fashion_mnist_dir}"]
    result = run_train(
        [*flags, f"--workdir={workdir}"] + ([] if stop else ["--nostop_on_divergence"])
    )
    assert result.returncode == 3, result.stderr
    said = [line for line in result.stderr.splitlines() if "diverged" in line]
    assert len(said) == 1 and "non-finite at update" in said[0], result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["diverged"] is True
    at = summary["diverged_at"]
    assert at["epoch"] == 1 and 0 <= at["step"] < 16
    assert f"update {at['step']} (epoch 1)" in said[0]
    assert summary["epochs_done"] == (1 if stop else 3)
    rows = strict_lines(workdir / "metrics.jsonl")
    assert rows[0]["train_loss"] is None
    assert rows[0]["diverged_at_step"] == at["step"]
    assert "diverged at epoch 1" in result.stdout


def test_a_sweep_records_a_diverged_configuration_and_trains_the_others(
    small_fashion_mnist_dir, tmp_path
):
    dataset = data_lib.load_dataset("fashion_mnist", str(small_fashion_mnist_dir))
    base = TrainConfig(
        batch_size=32, eval_batch_size=64, num_epochs=2, mass=1.0, friction=1.0,
        goal=0.5, brake_factor=10.0,
    )  # fmt: skip
    configs = [
        dataclasses.replace(base, learning_rate=100.0),
        dataclasses.replace(base, learning_rate=0.1),
    ]
    messages = []
    summaries = vmap_sweep.run_sweep(
        configs, tmp_path, dataset=dataset, log=messages.append
    )
    diverged, stable = (summaries[run_name(c)] for c in configs)
    assert diverged["diverged"] and diverged["diverged_at"]["epoch"] == 1
    assert not stable["diverged"] and stable["diverged_at"] is None
    assert stable["epochs_done"] == 2
    assert any("diverged at update" in m for m in messages)
    table = (tmp_path / "results.md").read_text()
    assert table.count("(diverged)") == 1
    for config in configs:
        strict_lines(tmp_path / run_name(config) / "metrics.jsonl")
        summary_text = (tmp_path / run_name(config) / "summary.json").read_text()
        assert "NaN" not in summary_text and "Infinity" not in summary_text
