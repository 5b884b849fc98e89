"""The vmapped sweep (vmap_sweep) and its command line (sweep): same result as
training alone, resumable, Markdown table, worker processes."""

import dataclasses
import json
from pathlib import Path

import flax
import jax
import numpy as np
import pytest

from phs_optax_training import data as data_lib
from phs_optax_training import sweep, train_lib, vmap_sweep
from phs_optax_training.config import TrainConfig, extension_options, run_name

BASE = TrainConfig(
    batch_size=32,
    eval_batch_size=64,
    num_epochs=2,
    learning_rate=0.1,
    mass=1.0,
    friction=1.0,
    goal=0.5,
    brake_factor=10.0,
)
CONFIGS = [
    BASE,  # goal_phs, brakes within the first epoch
    dataclasses.replace(BASE, optimizer="phs"),
    dataclasses.replace(BASE, optimizer="sgd", learning_rate=0.05),
    dataclasses.replace(
        BASE, mass=2.0, friction=0.5, goal=0.7, brake_factor=5.0, seed=1
    ),
    # ablations: braking at a fixed update instead of at the goal; SGD with
    # momentum whose learning rate drops by brake_factor at a fixed update
    # (the two SGD rows share seed 0, so their program shares the batches)
    dataclasses.replace(BASE, brake_trigger="step", brake_at_step=20),
    dataclasses.replace(
        BASE,
        optimizer="sgd",
        learning_rate=0.01,
        sgd_momentum=0.9,
        brake_trigger="step",
        brake_at_step=10,
    ),
    # heavy-ball SGD with a cosine decay of its learning rate over the run
    dataclasses.replace(
        BASE,
        optimizer="sgd",
        learning_rate=0.05,
        sgd_momentum=0.9,
        sgd_schedule="cosine",
        seed=1,
    ),  # fmt: skip
    # options beyond the paper: a goal out of reach, a deadline that restores
    # the best params, then releases of the brake with a kick
    dataclasses.replace(
        BASE,
        goal=0.99,
        deadline=6,
        on_deadline="restore_best",
        release_after=8,
        kick_energy=0.01,
        seed=2,
    ),
]


@pytest.fixture(scope="module")
def dataset(small_fashion_mnist_dir):
    return data_lib.load_dataset("fashion_mnist", str(small_fashion_mnist_dir))


@pytest.fixture(scope="module")
def swept(dataset, tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("sweep")
    summaries = vmap_sweep.run_sweep(
        CONFIGS, sweep_dir, dataset=dataset, log=lambda m: None
    )
    return sweep_dir, summaries


def sweep_params(sweep_dir, config, dataset):
    template = train_lib.LeNet5().init(jax.random.PRNGKey(0), dataset.train_images[:1])
    data = (sweep_dir / run_name(config) / "params.msgpack").read_bytes()
    return flax.serialization.from_bytes(template["params"], data)


@pytest.mark.parametrize(
    "index", range(len(CONFIGS)), ids=lambda i: CONFIGS[i].optimizer + str(i)
)
def test_each_swept_configuration_ends_as_if_trained_alone(
    swept, dataset, tmp_path, index
):
    sweep_dir, summaries = swept
    config = CONFIGS[index]
    alone = train_lib.train_and_evaluate(
        config, tmp_path, dataset=dataset, progress=False
    )
    alone_state = train_lib.final_params(tmp_path, config, dataset)
    swept_params = sweep_params(sweep_dir, config, dataset)
    # Jumps back to the best params, releases and kicks amplify float32
    # rounding differences between the vmapped and the pmapped step (seen: up
    # to 2e-4 in 4 of 30,720 weights of one hidden unit); the phases must agree.
    atol = 1e-3 if extension_options(config) else 2e-5
    for a, b in zip(
        jax.tree.leaves(alone_state.params), jax.tree.leaves(swept_params), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=atol)
    summary = summaries[run_name(config)]
    assert summary["brake_step"] == alone["brake_step"]
    if extension_options(config):
        assert alone["last_brake_step"] == summary["last_brake_step"] > 0
        assert alone["releases"] == summary["releases"] > 0
    assert summary["final_test_accuracy"] == pytest.approx(
        alone["final_test_accuracy"], abs=0.01
    )


def test_one_configuration_per_program_gives_the_same_result(swept, dataset, tmp_path):
    sweep_dir, summaries = swept
    one_by_one = vmap_sweep.run_sweep(
        CONFIGS, tmp_path, dataset=dataset, configs_per_program=1, log=lambda m: None
    )
    for config in CONFIGS:
        a = sweep_params(sweep_dir, config, dataset)
        b = sweep_params(tmp_path, config, dataset)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(
                np.asarray(x), np.asarray(y), rtol=2e-4, atol=2e-5
            )
        name = run_name(config)
        assert one_by_one[name]["brake_step"] == summaries[name]["brake_step"]


def test_configurations_of_one_seed_get_one_shared_data_order():
    one_seed = [BASE, dataclasses.replace(BASE, optimizer="phs")]
    shared = vmap_sweep.epoch_permutations(one_seed, epoch=2, num_train=512)
    np.testing.assert_array_equal(shared, train_lib.epoch_permutation(0, 2, 512))


def test_a_lone_configuration_keeps_its_own_row_of_data_order():
    (order,) = vmap_sweep.epoch_permutations([BASE], epoch=2, num_train=512)
    np.testing.assert_array_equal(order, train_lib.epoch_permutation(0, 2, 512))


def test_configurations_of_several_seeds_get_one_data_order_each():
    configs = [BASE, dataclasses.replace(BASE, seed=1), BASE]
    orders = vmap_sweep.epoch_permutations(configs, epoch=2, num_train=512)
    expected = [train_lib.epoch_permutation(c.seed, 2, 512) for c in configs]
    np.testing.assert_array_equal(orders, np.stack(expected))


def test_sweep_writes_train_py_files_per_configuration(swept):
    sweep_dir, _ = swept
    for config in CONFIGS:
        folder = sweep_dir / run_name(config)
        rows = [
            json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()
        ]
        assert [r["epoch"] for r in rows] == [1, 2]
        assert json.loads((folder / "summary.json").read_text())["epochs_done"] == 2
    assert (sweep_dir / "results.md").read_text().count(
        "\n| goal_phs |"
    ) == 8  # 4 runs + 4 means


def test_rerun_skips_finished_configurations(swept, dataset):
    sweep_dir, _ = swept
    extra = dataclasses.replace(BASE, optimizer="phs", seed=3)
    before = {
        c: (sweep_dir / run_name(c) / "summary.json").stat().st_mtime_ns
        for c in CONFIGS
    }
    messages = []
    vmap_sweep.run_sweep(
        [*CONFIGS, extra], sweep_dir, dataset=dataset, log=messages.append
    )
    after = {
        c: (sweep_dir / run_name(c) / "summary.json").stat().st_mtime_ns
        for c in CONFIGS
    }
    assert before == after
    assert (sweep_dir / run_name(extra) / "summary.json").exists()
    assert any("8 of 9 configurations done already" in m for m in messages)
    assert any("[phs] epoch 1/2: 1 configs" in m for m in messages)


def test_configurations_differing_in_shared_settings_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        vmap_sweep.run_sweep(
            [BASE, dataclasses.replace(BASE, batch_size=64, seed=1)], tmp_path
        )


def test_markdown_table_lists_runs_and_mean_and_std_over_seeds():
    configs = [dataclasses.replace(BASE, seed=s) for s in (0, 1, 2)]
    accuracies = [0.80, 0.82, 0.84]
    summaries = {
        run_name(c): {
            "final_test_accuracy": a,
            "best_test_accuracy": a + 0.01,
            "brake_epoch": 0.5,
        }
        for c, a in zip(configs, accuracies, strict=True)
    }
    table = vmap_sweep.markdown_table(configs, summaries)
    lines = table.splitlines()
    assert "| goal_phs | 0.1 | 1 | 1 | 0.5 | 10 | 1 | 0.8200 | 0.8300 | 0.50 |" in lines
    assert (
        "| goal_phs | 0.1 | 1 | 1 | 0.5 | 10 | 3 | 0.8200 ± 0.0200 | 0.8300 ± 0.0200 |"
        in lines
    )


def test_markdown_table_names_a_validation_trigger_and_omits_its_unused_goal():
    configs = [
        dataclasses.replace(BASE, brake_trigger=trigger, validation_fraction=0.1)
        for trigger in ("goal", "validation", "both")
    ]
    summary = {"final_test_accuracy": 0.8, "best_test_accuracy": 0.8}
    summaries = {run_name(c): {**summary, "brake_epoch": None} for c in configs}
    lines = vmap_sweep.markdown_table(configs, summaries).splitlines()
    assert "| goal_phs | 0.1 | 1 | 1 | 0.5 | 10 | 0 | 0.8000 | 0.8000 | - |" in lines
    assert (
        "| goal_phs, brake on validation | 0.1 | 1 | 1 | / | 10 | 0 | 0.8000 "
        "| 0.8000 | - |" in lines
    )
    assert (
        "| goal_phs, brake on goal or validation | 0.1 | 1 | 1 | 0.5 | 10 | 0 "
        "| 0.8000 | 0.8000 | - |" in lines
    )


def quick_protocol_args(data_dir, workdir, *extra):
    """The protocol sweep for one seed and one epoch on the small test data."""
    return [
        "--sweep=protocol",
        "--seeds=0",
        "--num_epochs=1",
        "--batch_size=64",
        *extra,
        f"--data_dir={data_dir}",
        f"--workdir={workdir}",
    ]


def test_command_line_runs_a_named_sweep_one_configuration_at_a_time_on_a_cpu(
    small_fashion_mnist_dir, tmp_path, capsys
):
    assert jax.default_backend() == "cpu"  # the default: 1 there, all on a GPU
    exit_code = sweep.main(
        quick_protocol_args(small_fashion_mnist_dir, tmp_path, "--processes=1")
    )
    assert exit_code == 0
    assert "| sgd | 0.1 |" in capsys.readouterr().out
    summaries = [json.loads(p.read_text()) for p in tmp_path.glob("*/summary.json")]
    assert len(summaries) == 14
    assert {s["sweep_configs_per_program"] for s in summaries} == {1}


def test_command_line_runs_a_validation_sweep_on_its_held_out_split(
    small_fashion_mnist_dir, tmp_path
):
    argv = [
        "--sweep=validation-table2",
        "--seeds=0",
        "--num_epochs=1",
        "--processes=1",
        f"--data_dir={small_fashion_mnist_dir}",
        f"--workdir={tmp_path}",
    ]
    assert sweep.main(argv) == 0
    runs = sorted(tmp_path.glob("*/summary.json"))
    assert len(runs) == 16  # validation and PHS for the 8 goal rows
    summaries = [json.loads(p.read_text()) for p in runs]
    assert {s["config"]["validation_fraction"] for s in summaries} == {0.1}
    assert {s["sweep_group"] for s in summaries} == {"phs", "phs-validation"}
    for path in runs:
        (row,) = map(
            json.loads, (path.parent / "metrics.jsonl").read_text().splitlines()
        )
        assert row["validation_loss"] > 0
        assert 0 <= row["validation_accuracy"] <= 1


def test_fewer_than_one_configuration_per_program_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="configs_per_program=0 must be at least 1"):
        vmap_sweep.run_sweep(CONFIGS, tmp_path, configs_per_program=0)


def test_command_line_error_is_one_line_and_exit_code_2(tmp_path, capsys):
    exit_code = sweep.main(
        ["--sweep=protocol", "--seeds=0", "--drag=air", f"--workdir={tmp_path}"]
    )
    assert exit_code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "drag" in err[0]


def test_workers_split_the_configurations_between_them(swept, dataset, tmp_path):
    for worker in (0, 1):
        vmap_sweep.run_sweep(
            CONFIGS,
            tmp_path,
            dataset=dataset,
            worker=worker,
            num_workers=2,
            log=lambda m: None,
        )
    _, alone = swept
    for config in CONFIGS:
        shared = json.loads((tmp_path / run_name(config) / "summary.json").read_text())
        assert (
            shared["final_test_accuracy"]
            == alone[run_name(config)]["final_test_accuracy"]
        )


def test_command_line_processes_share_one_sweep_folder(
    small_fashion_mnist_dir, tmp_path, capsys
):
    exit_code = sweep.main(
        quick_protocol_args(small_fashion_mnist_dir, tmp_path, "--processes", "2")
    )
    assert exit_code == 0
    assert len(list(tmp_path.glob("*/summary.json"))) == 14
    table = (tmp_path / "results.md").read_text()
    assert table.count("\n| goal_phs |") == 2 * 8  # runs + means of every goal row


def test_default_processes_is_one_per_usable_core_and_at_most_one_per_configuration(
    monkeypatch,
):
    monkeypatch.setattr(sweep.os, "sched_getaffinity", lambda pid: {0, 2, 5, 7})
    assert jax.default_backend() == "cpu"
    assert sweep.default_processes(num_configs=14) == 4
    assert sweep.default_processes(num_configs=3) == 3
    assert sweep.default_processes(num_configs=0) == 1


def test_default_processes_is_one_on_an_accelerator(monkeypatch):
    monkeypatch.setattr(sweep.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(sweep.jax, "default_backend", lambda: "gpu")
    assert sweep.default_processes(num_configs=14) == 1


class _RecordedLaunch:
    """Stands in for the sweep's work: records the worker launches and runs."""

    def __init__(self, monkeypatch):
        self.workers, self.runs, self.configs = [], [], []
        monkeypatch.setattr(
            sweep, "_run_workers", lambda argv, n: self.workers.append((argv, n))
        )
        monkeypatch.setattr(sweep, "run_sweep", self.run_sweep)

    def run_sweep(self, configs, workdir, **options):
        self.runs.append(options)
        self.configs.append(configs)
        (Path(workdir) / "results.md").write_text("table\n")
        return {}


def test_command_line_starts_the_default_number_of_worker_processes(
    monkeypatch, tmp_path
):
    launch = _RecordedLaunch(monkeypatch)
    monkeypatch.setattr(sweep, "default_processes", lambda num_configs: 3)
    assert sweep.main(["--sweep=protocol", "--seeds=0", f"--workdir={tmp_path}"]) == 0
    assert [n for _, n in launch.workers] == [3]
    assert "--processes" not in " ".join(launch.workers[0][0])
    assert len(launch.runs) == 1  # then the table of what the workers finished


def test_command_line_worker_does_not_start_workers_of_its_own(monkeypatch, tmp_path):
    launch = _RecordedLaunch(monkeypatch)
    monkeypatch.setattr(sweep, "default_processes", lambda num_configs: 3)
    argv = ["--sweep=protocol", "--seeds=0", f"--workdir={tmp_path}"]
    assert sweep.main([*argv, "--worker=1", "--num_workers=2"]) == 0
    assert launch.workers == []
    assert launch.runs[0]["worker"] == 1 and launch.runs[0]["num_workers"] == 2


def test_command_line_validation_sweep_holds_out_a_tenth_unless_told_otherwise(
    monkeypatch, tmp_path
):
    launch = _RecordedLaunch(monkeypatch)
    argv = ["--sweep=validation-table2", "--seeds=0", f"--workdir={tmp_path}"]
    assert sweep.main([*argv, "--processes=1"]) == 0
    (configs,) = launch.configs
    assert {c.brake_trigger for c in configs} == {"validation", "goal"}
    assert {(c.validation_fraction, c.validation_patience) for c in configs} == {
        (0.1, 2)
    }
    given = ["--validation_fraction=0.2", "--validation_patience=3", "--variants=both"]
    assert sweep.main([*argv, "--processes=1", *given]) == 0
    configs = launch.configs[1]
    assert {c.brake_trigger for c in configs} == {"both"}
    assert {(c.validation_fraction, c.validation_patience) for c in configs} == {
        (0.2, 3)
    }


def test_command_line_gives_any_sweep_a_validation_split(monkeypatch, tmp_path):
    launch = _RecordedLaunch(monkeypatch)
    argv = ["--sweep=protocol", "--seeds=0", f"--workdir={tmp_path}", "--processes=1"]
    assert sweep.main(argv) == 0
    assert sweep.main([*argv, "--validation_fraction=0.25"]) == 0
    without, held_out = launch.configs
    assert {c.validation_fraction for c in without} == {0.0}
    assert held_out == [
        dataclasses.replace(c, validation_fraction=0.25) for c in without
    ]


def test_command_line_rejects_an_unknown_validation_kind_in_one_line(tmp_path, capsys):
    argv = ["--sweep=validation-table1", "--variants=validation,goals"]
    assert sweep.main([*argv, f"--workdir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown kind(s) goals of validation-table1" in err[0]


VALIDATION_BASE = dataclasses.replace(
    BASE,
    num_epochs=4,
    friction=0.02,
    learning_rate=0.3,
    validation_fraction=0.25,
    validation_patience=1,
)
VALIDATION_CONFIGS = [
    dataclasses.replace(VALIDATION_BASE, brake_trigger="validation"),
    dataclasses.replace(VALIDATION_BASE, brake_trigger="validation", seed=1),
    dataclasses.replace(VALIDATION_BASE, brake_trigger="both", goal=0.9),
    dataclasses.replace(VALIDATION_BASE, optimizer="phs"),
]


def test_the_sweep_runs_the_validation_trigger_as_train_py_does(dataset, tmp_path):
    summaries = vmap_sweep.run_sweep(
        VALIDATION_CONFIGS, tmp_path / "sweep", dataset=dataset, log=lambda m: None
    )
    braked = 0
    for config in VALIDATION_CONFIGS:
        workdir = tmp_path / run_name(config)
        alone = train_lib.train_and_evaluate(
            config, workdir, dataset=dataset, progress=False
        )
        summary = summaries[run_name(config)]
        assert summary["brake_step"] == alone["brake_step"], run_name(config)
        braked += summary["brake_step"] is not None
        swept_rows = [
            json.loads(line)
            for line in (tmp_path / "sweep" / run_name(config) / "metrics.jsonl")
            .read_text()
            .splitlines()
        ]
        alone_rows = [
            json.loads(line)
            for line in (workdir / "metrics.jsonl").read_text().splitlines()
        ]
        for key in ("validation_loss", "validation_accuracy"):
            np.testing.assert_allclose(
                [r[key] for r in swept_rows], [r[key] for r in alone_rows], rtol=1e-4
            )
    assert braked >= 2  # the trigger fired in the sweep, not only its absence


def test_a_shared_goal_option_reaches_every_swept_goal_run(dataset, tmp_path):
    # A floor below 0 asks the loss to fall further for the same goal: the
    # brake comes later than without it, in both engines.
    configs = [
        dataclasses.replace(BASE, num_epochs=3, goal=0.3, loss_floor=floor)
        for floor in (None, -1.0)
    ]
    brake_steps = []
    for config in configs:
        summary = vmap_sweep.run_sweep(
            [config], tmp_path / str(config.loss_floor), dataset=dataset,
            log=lambda m: None,
        )[run_name(config)]  # fmt: skip
        alone = train_lib.train_and_evaluate(
            config, tmp_path / f"alone{config.loss_floor}", dataset=dataset,
            progress=False,
        )  # fmt: skip
        assert summary["brake_step"] == alone["brake_step"] is not None
        brake_steps.append(summary["brake_step"])
    assert brake_steps[0] < brake_steps[1]


def test_markdown_table_tells_sgd_schedules_apart():
    sgd = dataclasses.replace(BASE, optimizer="sgd", learning_rate=0.001)
    configs = [
        sgd,
        dataclasses.replace(sgd, sgd_momentum=0.99, sgd_schedule="cosine"),
        dataclasses.replace(
            sgd, sgd_momentum=0.99, brake_trigger="step", brake_at_step=843,
            brake_factor=40.0,
        ),
    ]  # fmt: skip
    summary = {"final_test_accuracy": 0.8, "best_test_accuracy": 0.8}
    summaries = {run_name(c): {**summary, "brake_epoch": None} for c in configs}
    lines = vmap_sweep.markdown_table(configs, summaries).splitlines()
    assert "| sgd | 0.001 | / | / | / | / | 0 | 0.8000 | 0.8000 | - |" in lines
    assert (
        "| sgd, momentum 0.99, cosine | 0.001 | / | / | / | / | 0 | 0.8000 "
        "| 0.8000 | - |" in lines
    )
    assert (
        "| sgd, momentum 0.99, drop at update 843 | 0.001 | / | / | / | 40 | 0 "
        "| 0.8000 | 0.8000 | - |" in lines
    )


def test_a_sweep_refuses_a_folder_another_process_trains_in(tmp_path, capsys):
    from phs_optax_training import errors, workdirs

    held = workdirs.WorkdirLock(tmp_path).acquire()
    try:
        code = sweep.main(
            ["--sweep=table2-remaining", "--seeds=0", f"--workdir={tmp_path}",
             "--processes=1"]
        )  # fmt: skip
    finally:
        held.release()
    assert code == errors.WorkdirInUseError.exit_code
    assert f"the workdir {tmp_path} is in use by process" in capsys.readouterr().err
    with pytest.raises(errors.WorkdirInUseError):
        with workdirs.locked(tmp_path):
            vmap_sweep.run_sweep([BASE], tmp_path)
