"""A workdir belongs to one configuration (config.json) and one process (its lock)."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import QUICK_FLAGS, REPO, run_train

from phs_optax_training import data as data_lib
from phs_optax_training import errors, train_lib, workdirs
from phs_optax_training.config import TrainConfig

QUICK = dict(
    batch_size=32,
    eval_batch_size=64,
    num_epochs=3,
    learning_rate=0.1,
    mass=1.0,
    friction=1.0,
    goal=0.5,
    brake_factor=10.0,
)


@pytest.fixture(scope="module")
def dataset(small_fashion_mnist_dir):
    return data_lib.load_dataset("fashion_mnist", str(small_fashion_mnist_dir))


@pytest.fixture(scope="module")
def config(small_fashion_mnist_dir):
    return TrainConfig(**QUICK, data_dir=str(small_fashion_mnist_dir))


@pytest.fixture(scope="module")
def trained(config, dataset, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("trained") / "run"
    train_lib.train_and_evaluate(config, workdir, dataset=dataset, progress=False)
    return workdir


@pytest.fixture
def workdir(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def cli_args(workdir: Path, data_dir: Path, *flags: str) -> list[str]:
    return [
        f"--data_dir={data_dir}",
        "--num_epochs=3",
        f"--workdir={workdir}",
        *QUICK_FLAGS,
        *flags,
    ]


def epochs(workdir: Path) -> list[int]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def test_config_json_is_strict_json_of_the_whole_configuration(trained, config):
    stored = json.loads(
        (trained / "config.json").read_text(),
        parse_constant=lambda name: pytest.fail(f"{name} in config.json"),
    )
    assert TrainConfig(**stored["config"]) == config
    assert stored["data_shards_in_effect"] == 1


def test_resume_with_other_hyperparameters_exits_2_naming_them(
    workdir, small_fashion_mnist_dir
):
    before = (workdir / "config.json").read_text()
    result = run_train(
        cli_args(workdir, small_fashion_mnist_dir, "--learning_rate=0.01", "--mass=2"),
        timeout=120,
    )
    assert result.returncode == errors.USAGE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("train.py: error: the workdir ")
    assert "--learning_rate: 0.1 in the workdir, 0.01 now" in lines[0]
    assert "--mass: 1.0 in the workdir, 2.0 now" in lines[0]
    assert "another --workdir" in lines[0]
    assert (workdir / "config.json").read_text() == before
    assert epochs(workdir) == [1, 2, 3]


def test_resume_with_another_optimizer_is_refused(workdir, config, dataset):
    sgd = dataclasses.replace(config, optimizer="sgd")
    with pytest.raises(errors.UsageError, match="--optimizer: goal_phs in the workdir"):
        train_lib.train_and_evaluate(sgd, workdir, dataset=dataset, progress=False)
    # The lock went with the refused call.
    workdirs.WorkdirLock(workdir).acquire().release()


def test_more_epochs_and_settings_that_change_nothing_computed_resume(
    workdir, config, dataset, capsys
):
    more = dataclasses.replace(
        config,
        num_epochs=4,
        checkpoint_every_epochs=2,
        max_checkpoints=3,
        eval_batch_size=128,
        data_dir=None,
    )
    summary = train_lib.train_and_evaluate(
        more, workdir, dataset=dataset, progress=False
    )
    assert "Resuming from the checkpoint of epoch 3" in capsys.readouterr().err
    assert summary["epochs_done"] == 4 and epochs(workdir) == [1, 2, 3, 4]
    stored = json.loads((workdir / "config.json").read_text())["config"]
    assert stored["num_epochs"] == 4 and stored["max_checkpoints"] == 3


def test_fewer_epochs_than_the_workdir_holds_is_refused(workdir, config, dataset):
    fewer = dataclasses.replace(config, num_epochs=2)
    with pytest.raises(errors.UsageError, match="holds 3 epochs already, 2 now"):
        train_lib.train_and_evaluate(fewer, workdir, dataset=dataset, progress=False)


def test_workdir_without_config_json_is_taken_as_this_configuration(
    workdir, config, dataset, capsys
):
    (workdir / "config.json").unlink()
    train_lib.train_and_evaluate(config, workdir, dataset=dataset, progress=False)
    lines = capsys.readouterr().err.strip().splitlines()
    assert any("has checkpoints but no config.json" in line for line in lines)
    stored = json.loads((workdir / "config.json").read_text())
    assert TrainConfig(**stored["config"]) == config


def test_workdir_in_use_exits_5_naming_the_process(workdir, small_fashion_mnist_dir):
    lock = workdirs.WorkdirLock(workdir).acquire()
    try:
        result = run_train(cli_args(workdir, small_fashion_mnist_dir), timeout=120)
    finally:
        lock.release()
    assert result.returncode == errors.WORKDIR_IN_USE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("train.py: error: the workdir ")
    assert f"in use by process {os.getpid()}" in lines[0]


def test_lock_left_by_a_killed_process_does_not_block(workdir, config, dataset):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from phs_optax_training.workdirs import WorkdirLock\n"
            "lock = WorkdirLock(sys.argv[1]).acquire()\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n",
            str(workdir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(errors.WorkdirInUseError, match=f"process {holder.pid}"):
            workdirs.WorkdirLock(workdir).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (workdir / "train.lock").read_text().split()[0] == str(holder.pid)
    summary = train_lib.train_and_evaluate(
        config, workdir, dataset=dataset, progress=False
    )
    assert summary["epochs_done"] == 3
