"""Verified checkpoints: damaged or non-finite ones are passed over, never all lost."""

import hashlib
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from test_cli import QUICK_FLAGS, run_train

from phs_optax_training import checkpoints as checkpoints_lib
from phs_optax_training import data as data_lib
from phs_optax_training import engine, errors, train_lib
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
STEPS_PER_EPOCH = 512 // 32


@pytest.fixture(scope="module")
def dataset(small_fashion_mnist_dir):
    return data_lib.load_dataset("fashion_mnist", str(small_fashion_mnist_dir))


@pytest.fixture(scope="module")
def config(small_fashion_mnist_dir):
    return TrainConfig(**QUICK, data_dir=str(small_fashion_mnist_dir))


@pytest.fixture(scope="module")
def trained(config, dataset, tmp_path_factory) -> Path:
    """A finished 3-epoch run: checkpoints of epochs 2 and 3 (2 kept)."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    train_lib.train_and_evaluate(config, workdir, dataset=dataset, progress=False)
    return workdir


@pytest.fixture
def workdir(trained, tmp_path) -> Path:
    """A copy of the trained run to damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def rows(workdir: Path) -> list[dict]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def largest_file(step_dir: Path) -> Path:
    files = [p for p in step_dir.rglob("*") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_size)


def garble(path: Path, offset: int = 1000, size: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    offset = min(offset, max(0, len(data) - size))
    data[offset : offset + size] = bytes((7 * i + 3) % 256 for i in range(size))
    path.write_bytes(bytes(data))


def snapshot(folder: Path) -> dict[str, str]:
    """Every file's checksum but the lock's (each run writes its pid there)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "train.lock"
    }


def assert_trees_equal(a, b) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_each_checkpoint_is_saved_with_checksums_of_its_files(trained):
    directory = trained / "checkpoints"
    assert sorted(int(p.name) for p in directory.iterdir()) == [2, 3]
    for step_dir in directory.iterdir():
        listed = json.loads((step_dir / "checksums.json").read_text())["files"]
        on_disk = {
            p.relative_to(step_dir).as_posix()
            for p in step_dir.rglob("*")
            if p.is_file() and p.name != "checksums.json"
        }
        assert set(listed) == on_disk


def test_garbled_latest_checkpoint_falls_back_and_ends_as_uninterrupted(
    workdir, trained, config, dataset, capsys
):
    garble(largest_file(workdir / "checkpoints" / "3"))
    train_lib.train_and_evaluate(config, workdir, dataset=dataset, progress=False)
    err = capsys.readouterr().err
    assert (
        f"checkpoint of epoch 3 in {(workdir / 'checkpoints').absolute()} is "
        "unreadable (" in err
    )
    assert "does not match its checksum); falling back to epoch 2" in err
    assert "Resuming from the checkpoint of epoch 2" in err
    assert [row["epoch"] for row in rows(workdir)] == [1, 2, 3]
    assert (workdir / "rejected_checkpoints" / "3").is_dir()
    resumed = train_lib.final_params(workdir, config, dataset)
    uninterrupted = train_lib.final_params(trained, config, dataset)
    assert_trees_equal(resumed.params, uninterrupted.params)
    assert_trees_equal(resumed.opt_state, uninterrupted.opt_state)
    assert rows(workdir)[-1]["train_loss"] == rows(trained)[-1]["train_loss"]


def _delete_a_data_file(step_dir: Path) -> None:
    largest_file(step_dir / "default").unlink()


def _garble_the_manifest(step_dir: Path) -> None:
    (step_dir / "default" / "manifest.ocdbt").write_bytes(b"not a manifest" * 9)


def _empty_the_folder(step_dir: Path) -> None:
    shutil.rmtree(step_dir)
    step_dir.mkdir()


def _garble_the_checksums(step_dir: Path) -> None:
    (step_dir / "checksums.json").write_text("{")


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_delete_a_data_file, "is missing"),
        (_garble_the_manifest, "manifest.ocdbt does not match its checksum"),
        (_empty_the_folder, "not found"),
        (_garble_the_checksums, "checksums.json is garbled"),
    ],
    ids=["deleted data file", "garbled manifest", "emptied folder", "checksums"],
)
def test_damaged_latest_checkpoint_falls_back_to_the_previous(
    workdir, config, dataset, capsys, damage, reason
):
    damage(workdir / "checkpoints" / "3")
    state = train_lib.final_params(workdir, config, dataset)
    assert int(state.step) == 2 * STEPS_PER_EPOCH
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "checkpoint of epoch 3 in " in lines[0] and reason in lines[0]
    assert lines[0].endswith("; falling back to epoch 2")


def test_checkpoint_without_checksums_is_judged_by_reading_it(
    workdir, config, dataset, capsys
):
    # As written before checksums were, or by a process killed before them.
    for step_dir in (workdir / "checkpoints").iterdir():
        (step_dir / "checksums.json").unlink()
    state = train_lib.final_params(workdir, config, dataset)
    assert int(state.step) == 3 * STEPS_PER_EPOCH
    assert capsys.readouterr().err == ""


def _template(config, dataset):
    model = train_lib.create_model(config, dataset.num_classes)
    params = train_lib.initial_params(model, config.seed, dataset.train_images[:1])
    return train_lib.initial_state(model, params, train_lib.create_optimizer(config))


def test_non_finite_checkpoint_is_passed_over(workdir, config, dataset, capsys):
    checkpoints = checkpoints_lib.Checkpoints(workdir / "checkpoints", config)
    state = train_lib.final_params(workdir, config, dataset)
    params = jax.tree.map(np.array, state.params)
    params["fc1"]["kernel"][0, :3] = np.nan
    checkpoints.save(4, state.replace(params=params), {"last_loss": 1.0, "rises": 0})
    checkpoints.close()
    assert (workdir / "checkpoints" / "4").is_dir()
    state = train_lib.final_params(workdir, config, dataset)
    assert int(state.step) == 3 * STEPS_PER_EPOCH
    err = capsys.readouterr().err
    assert "checkpoint of epoch 4 in " in err
    assert "is not finite (state.params.fc1.kernel holds 3 non-finite values)" in err


def test_nan_fields_of_a_fresh_goal_phs_state_are_not_a_fault(
    config, dataset, tmp_path
):
    # goal_phs keeps NaN in initial_loss, monitored_loss, best_loss and
    # goal_in_force until they are set; the validation brake starts at inf.
    template = _template(config, dataset)
    assert np.isnan(np.asarray(template.opt_state.initial_loss))
    loop = engine.ValidationBrake(2).as_dict()
    checkpoints = checkpoints_lib.Checkpoints(tmp_path, config)
    checkpoints.save(1, template, loop)
    restored = checkpoints.restore_latest(template, loop)
    checkpoints.close()
    assert restored.epoch == 1 and restored.messages == []
    assert_trees_equal(restored.state.opt_state, template.opt_state)
    assert restored.loop["last_loss"] == np.inf


def test_a_checkpoint_that_does_not_read_back_deletes_nothing(
    config, dataset, tmp_path, monkeypatch
):
    template = _template(config, dataset)
    loop = engine.ValidationBrake(2).as_dict()
    one_kept = TrainConfig(**{**QUICK, "max_checkpoints": 1})
    checkpoints = checkpoints_lib.Checkpoints(tmp_path, one_kept)
    checkpoints.save(1, template, loop)
    checkpoints.save(2, template.replace(step=5), loop)
    assert checkpoints.epochs() == [2]  # the older one goes once the new is verified
    read = checkpoints_lib.Checkpoints._read

    def read_changed(self, epoch, target):
        got = read(self, epoch, target)
        return {**got, "state.step": got["state.step"] + 1}

    monkeypatch.setattr(checkpoints_lib.Checkpoints, "_read", read_changed)
    with pytest.raises(errors.UnreadableError, match="epoch 3 just written .* kept"):
        checkpoints.save(3, template.replace(step=9), loop)
    assert checkpoints.epochs() == [2, 3]
    checkpoints.close()


def test_all_checkpoints_bad_exits_4_in_one_line_and_changes_nothing(
    workdir, small_fashion_mnist_dir
):
    garble(largest_file(workdir / "checkpoints" / "3"))
    _empty_the_folder(workdir / "checkpoints" / "2")
    before = snapshot(workdir)
    result = run_train(
        [
            f"--data_dir={small_fashion_mnist_dir}",
            "--num_epochs=4",
            f"--workdir={workdir}",
            *QUICK_FLAGS,
        ],
        timeout=120,
    )
    assert result.returncode == errors.UNREADABLE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("train.py: error: no good checkpoint in ")
    assert "epoch 3 is unreadable (" in lines[0]
    assert "epoch 2 is unreadable (" in lines[0]
    assert snapshot(workdir) == before
    assert not (workdir / "rejected_checkpoints").exists()


def test_a_garbled_manifest_without_checksums_resumes_after_one_verdict_line(
    workdir, small_fashion_mnist_dir
):
    # tensorstore's callbacks after such a failed read can still, rarely, print
    # an "Event loop is closed" traceback from their own thread (see
    # checkpoints._drain_callbacks), so only the verdict and the resume are
    # asserted here.
    (workdir / "checkpoints" / "3" / "checksums.json").unlink()
    _garble_the_manifest(workdir / "checkpoints" / "3")
    result = run_train(
        [
            f"--data_dir={small_fashion_mnist_dir}",
            "--num_epochs=4",
            f"--workdir={workdir}",
            *QUICK_FLAGS,
        ],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    fallback = [line for line in result.stderr.splitlines() if "falling back" in line]
    assert len(fallback) == 1 and fallback[0].endswith("falling back to epoch 2")
