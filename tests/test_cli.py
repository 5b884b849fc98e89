"""train.py as a user runs it: flags, exit codes, kill and restart, devices, processes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TRAIN = str(REPO / "train.py")
QUICK_FLAGS = [
    "--batch_size=32",
    "--eval_batch_size=64",
    "--learning_rate=0.1",
    "--mass=1",
    "--friction=1",
    "--goal=0.5",
    "--brake_factor=10",
    "--quiet",
    "--noplots",
]


def run_train(args, *, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, TRAIN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--dataset=imagenet", "dataset"),
        ("--optimizer=adam", "optimizer"),
        ("--mass=-1", "mass"),
        ("--goal=1.5", "goal"),
        ("--goal=0", "goal"),
        ("--friction=-0.1", "friction"),
        ("--brake_factor=0.5", "brake_factor"),
        ("--batch_size=0", "batch_size"),
        ("--no_such_flag=1", "no_such_flag"),
        ("--preset=table9-nothing", "preset"),
        ("--brake_trigger=validation", "validation_fraction"),
        ("--brake_trigger=step", "brake_at_step"),
        ("--brake_at_step=5", "brake_trigger=step"),
        ("--release_energy=-1", "release_energy"),
        ("--max_checkpoints=0", "max_checkpoints"),
    ],
)
def test_bad_flag_is_one_line_and_exit_code_2(flag, message, tmp_path, capsys):
    # In-process (each train.py process spends ~3 s importing JAX); the test
    # below checks the same path as a user meets it, in a process of its own.
    from phs_optax_training import cli

    cli.FLAGS.unparse_flags()
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.run(["train.py", flag, f"--workdir={tmp_path}"])
    finally:
        cli.FLAGS.unparse_flags()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("train.py: error: ") and message in lines[0]


def test_bad_flag_in_a_train_py_process_is_one_line_without_traceback(tmp_path):
    result = run_train(["--goal=1.5", f"--workdir={tmp_path}"], timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "train.py: error: --goal must be in (0, 1), got 1.5"
    ]


def test_missing_data_says_how_to_get_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_train(
        ["--dataset=cifar10", f"--data_dir={empty}", f"--workdir={tmp_path / 'w'}"],
        env={"TFDS_DATA_DIR": str(tmp_path / "tfds")},
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [x for x in result.stderr.splitlines() if x.startswith("train.py: error")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    assert "--data_dir" in errors[0]


def test_batch_size_not_divisible_by_devices_is_rejected(
    tmp_path, small_fashion_mnist_dir
):
    result = run_train(
        [
            f"--data_dir={small_fashion_mnist_dir}",
            "--batch_size=30",
            f"--workdir={tmp_path}",
        ],
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "divisible by the 4 devices" in result.stderr.strip().splitlines()[-1]


def final_params(workdir: Path, data_dir: Path):
    """The train state of the last checkpoint in ``workdir``."""
    from phs_optax_training import data as data_lib
    from phs_optax_training import train_lib
    from phs_optax_training.config import TrainConfig

    summary = json.loads((workdir / "summary.json").read_text())
    config = TrainConfig(
        **{k: v for k, v in summary["config"].items() if k != "steps_per_epoch"}
    )
    dataset = data_lib.load_dataset("fashion_mnist", str(data_dir))
    return train_lib.final_params(workdir, config, dataset)


def test_same_parameters_on_one_and_four_devices(tmp_path, small_fashion_mnist_dir):
    common = [f"--data_dir={small_fashion_mnist_dir}", "--num_epochs=1", *QUICK_FLAGS]
    one = run_train(common + [f"--workdir={tmp_path / 'one'}"])
    assert one.returncode == 0, one.stderr
    four = run_train(
        common + [f"--workdir={tmp_path / 'four'}"],
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
    )
    assert four.returncode == 0, four.stderr
    assert json.loads((tmp_path / "four" / "summary.json").read_text())["devices"] == 4
    state_one = final_params(tmp_path / "one", small_fashion_mnist_dir)
    state_four = final_params(tmp_path / "four", small_fashion_mnist_dir)
    for a, b in zip(_leaves(state_one.params), _leaves(state_four.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert int(state_one.opt_state.brake_step) == int(state_four.opt_state.brake_step)


def test_a_long_epoch_on_four_host_devices_runs_to_the_end(tmp_path):
    # 128 steps dispatched without waiting aborted the process (a rendezvous
    # timeout in XLA:CPU's all-reduce) before the training loop bounded its
    # queue (train_lib.MAX_QUEUED_EXECUTIONS).
    from conftest import write_fashion_mnist_files

    data_dir = write_fashion_mnist_files(tmp_path / "data", num_train=8192, num_test=64)
    result = run_train(
        [
            f"--data_dir={data_dir}",
            "--num_epochs=1",
            "--batch_size=64",
            "--eval_batch_size=64",
            "--quiet",
            "--noplots",
            f"--workdir={tmp_path / 'run'}",
        ],
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["devices"] == 4


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path, small_fashion_mnist_dir):
    common = [f"--data_dir={small_fashion_mnist_dir}", "--num_epochs=1", *QUICK_FLAGS]
    # One process, two devices, the data in two shards as two processes hold it.
    single = run_train(
        common + [f"--workdir={tmp_path / 'single'}", "--data_shards=2"],
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    assert single.returncode == 0, single.stderr
    port = _free_port()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                TRAIN,
                *common,
                f"--workdir={tmp_path / 'multi'}",
                f"--coordinator_address=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"},
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    summary = json.loads((tmp_path / "multi" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 2
    state_single = final_params(tmp_path / "single", small_fashion_mnist_dir)
    state_multi = final_params(tmp_path / "multi", small_fashion_mnist_dir)
    for a, b in zip(
        _leaves(state_single.params), _leaves(state_multi.params), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_sigkill_mid_run_then_restart_finishes(tmp_path, small_fashion_mnist_dir):
    workdir = tmp_path / "killed"
    args = [
        f"--data_dir={small_fashion_mnist_dir}",
        "--num_epochs=6",
        f"--workdir={workdir}",
        *QUICK_FLAGS,
    ]
    process = subprocess.Popen(
        [sys.executable, TRAIN, *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()

    restarted = run_train(args)
    assert restarted.returncode == 0, restarted.stderr
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4, 5, 6]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["epochs_done"] == 6
    state = final_params(workdir, small_fashion_mnist_dir)
    assert int(state.step) == 6 * (512 // 32)


def test_preset_sets_the_row_and_explicit_flags_win():
    from phs_optax_training import cli

    cli.FLAGS.unparse_flags()
    cli.FLAGS(["train.py", "--preset=table2-lr0.1-goal-f0.1-m10", "--brake_factor=7"])
    try:
        config = cli.config_from_flags()
    finally:
        cli.FLAGS.unparse_flags()
    assert (config.dataset, config.optimizer) == ("fashion_mnist", "goal_phs")
    assert (config.learning_rate, config.friction, config.mass) == (0.1, 0.1, 10.0)
    assert config.goal == pytest.approx(0.85)  # Table 2 default: remaining fraction
    assert config.brake_factor == 7


def test_help_lists_the_flags_and_exits_0():
    result = run_train(["--help"])
    assert result.returncode == 0, result.stderr
    assert "--learning_rate" in result.stdout and "--release_after" in result.stdout
    assert result.stdout.startswith("usage: python train.py")
    assert (
        "Exit codes:" in result.stdout and "table2-lr0.1-goal-f0.1-m10" in result.stdout
    )


def test_help_describes_the_program_and_shows_every_flag_once_in_a_group():
    from phs_optax_training import cli, cli_help, presets

    text = cli_help.help_text(cli.FLAGS, "first line")
    flag_lines = [line.split("=")[0].split()[0] for line in text.splitlines()
                  if line.startswith("  --")]  # fmt: skip
    assert sorted(flag_lines) == sorted(f"--{name}" for name in cli.FLAGS)
    assert "Other:" not in text  # every flag has its group
    for table in presets.TABLES:
        for preset in presets.table_presets(table):
            assert preset.name in text
    for code in (0, 2, 3, 4, 5):
        assert f"\n  {code}  " in text


def test_every_goal_phs_option_is_a_config_field_and_flag_with_its_declared_help():
    import dataclasses

    import phs_optax
    from phs_optax_training import cli, trace

    fields = {f.name: f for f in dataclasses.fields(cli.TrainConfig)}
    trace_flags = {a.dest: a for a in trace._parser()._actions}
    for option in phs_optax.OPTIONS:
        assert fields[option.name].default == option.default
        assert option.help in fields[option.name].metadata["help"]
        assert cli.FLAGS[option.name].help == fields[option.name].metadata["help"]
        assert trace_flags[option.name].help == option.help
