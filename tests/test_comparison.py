"""The main job (train.py --demo) and the goal_phs/PHS/SGD comparisons it prints."""

import dataclasses
import re
from pathlib import Path

import pytest
from test_cli import QUICK_FLAGS, run_train

from phs_optax_training import comparison
from phs_optax_training.config import TrainConfig


def summary(final, *, brake_step=None, steps_per_epoch=100, diverged_at=None):
    """The fields of a train_lib summary that the comparison reads."""
    return {
        "final_test_accuracy": final,
        "best_test_accuracy": final,
        "brake_step": brake_step,
        "brake_epoch": None if brake_step is None else brake_step / steps_per_epoch,
        "epochs_done": 3,
        "diverged": diverged_at is not None,
        "diverged_at": diverged_at,
    }


def test_verdict_says_when_goal_phs_braked_and_its_differences_to_phs_and_sgd():
    summaries = {
        "goal_phs": summary(0.8637, brake_step=184, steps_per_epoch=6000),
        "phs": summary(0.8517),
        "sgd": summary(0.8710),
    }
    assert comparison.verdict(10, summaries) == (
        "batch 10: goal_phs braked at epoch 0.03 (update 184) and ended "
        "1.2 points above PHS and 0.7 points below SGD."
    )


def test_verdict_without_a_brake_and_with_a_divergence():
    summaries = {
        "goal_phs": summary(0.8401),
        "phs": summary(0.10, diverged_at={"epoch": 2, "step": 150}),
        "sgd": summary(0.84012),
    }
    assert comparison.verdict(64, summaries) == (
        "batch 64: goal_phs did not reach its goal in 3 epochs (so it trained as "
        "PHS) and ended 74.0 points above PHS and within 0.05 points of SGD; PHS "
        "diverged at epoch 2 (update 150)."
    )


def demo_config(**changes):
    return dataclasses.replace(
        TrainConfig(
            learning_rate=0.01, friction=1.0, mass=0.1, goal=0.8, brake_factor=10.0
        ),
        **changes,
    )


def test_demo_runs_are_each_optimizer_at_each_batch_size():
    runs = comparison.demo_runs(demo_config(deadline=500), Path("w"))
    assert list(runs) == [
        f"{optimizer} b{size}"
        for size in comparison.DEMO_BATCH_SIZES
        for optimizer in ("goal_phs", "phs", "sgd")
    ]
    for label, (config, workdir) in runs.items():
        optimizer, size = label.split(" b")
        assert (config.optimizer, config.batch_size) == (optimizer, int(size))
        assert workdir == Path("w") / f"b{size}" / optimizer
        # The options beyond the paper are goal_phs's alone.
        assert config.deadline == (500 if optimizer == "goal_phs" else None)


def test_demo_report_has_a_row_per_run_a_sentence_per_batch_size_and_the_caveat():
    config = demo_config(num_epochs=3)
    runs = comparison.demo_runs(config, Path("w"))
    summaries = {
        label: summary(0.85 + 0.01 * i, brake_step=30 if "goal" in label else None)
        for i, label in enumerate(runs)
    }
    lines = comparison.demo_report(summaries, runs, config)
    for label in runs:
        assert sum(line.startswith(label + " ") for line in lines) == 1, label
    verdicts = [line for line in lines if re.match(r"batch \d+: ", line)]
    assert verdicts == [
        "batch 10: goal_phs braked at epoch 0.30 (update 30) and ended "
        "1.0 points below PHS and 2.0 points below SGD.",
        "batch 64: goal_phs braked at epoch 0.30 (update 30) and ended "
        "1.0 points below PHS and 2.0 points below SGD.",
    ]
    text = " ".join(lines)
    assert "alpha / (mass * friction) = 0.1;" in text and "about 0.01" in text
    assert "one seed and 3 epochs" in text and "not a significance test" in text
    assert all(len(line) <= comparison.WIDTH for line in lines if line not in verdicts)


def parsed(args):
    from phs_optax_training import cli

    cli.FLAGS.unparse_flags()
    try:
        cli.FLAGS(["train.py", *args])
        return cli.config_from_flags()
    finally:
        cli.FLAGS.unparse_flags()


def test_demo_flag_sets_its_pair_and_epochs_and_explicit_flags_win():
    config = parsed(["--demo"])
    assert (config.dataset, config.optimizer) == ("fashion_mnist", "goal_phs")
    assert (config.learning_rate, config.friction, config.mass) == (0.01, 1.0, 0.1)
    assert config.goal == pytest.approx(0.8)  # 0.2 read as the remaining fraction
    assert (config.brake_factor, config.num_epochs) == (10.0, comparison.DEMO_EPOCHS)
    config = parsed(
        ["--demo", "--num_epochs=1", "--seed=3", "--goal_reading=reduction"]
    )
    assert (config.num_epochs, config.seed) == (1, 3)
    assert config.goal == pytest.approx(0.2)


@pytest.mark.parametrize(
    "flag", ["--batch_size=32", "--optimizer=sgd", "--preset=table2-lr0.1-sgd"]
)
def test_demo_refuses_the_flags_it_sets_itself(flag):
    from phs_optax_training import cli

    with pytest.raises(cli.UsageError, match=f"drop {flag.split('=')[0]}"):
        parsed(["--demo", flag])


def test_demo_runs_end_to_end_with_labelled_lines_table_sentences_and_plots(
    tmp_path, small_fashion_mnist_dir
):
    workdir = tmp_path / "demo"
    result = run_train(
        [
            "--demo",
            f"--data_dir={small_fashion_mnist_dir}",
            "--num_epochs=1",
            "--eval_batch_size=64",
            "--quiet",
            f"--workdir={workdir}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    epoch_lines = [x for x in result.stderr.splitlines() if "epoch   1" in x]
    labels = [f"{o} b{b}" for b in (10, 64) for o in ("goal_phs", "phs", "sgd")]
    assert [line.split("]")[0] for line in epoch_lines] == [f"[{x}" for x in labels]
    out = result.stdout.splitlines()
    assert out[0].startswith("Main job: goal_phs, PHS and SGD")
    verdicts = [line for line in out if re.match(r"batch \d+: ", line)]
    assert [line.split(":")[0] for line in verdicts] == ["batch 10", "batch 64"]
    assert all(
        "points" in line and "PHS" in line and "SGD" in line for line in verdicts
    )
    assert "not a significance test" in " ".join(out)
    for size in (10, 64):
        assert (workdir / f"b{size}" / "comparison.png").stat().st_size > 0
        for optimizer in ("goal_phs", "phs", "sgd"):
            assert (workdir / f"b{size}" / optimizer / "summary.json").exists()


def test_compare_baselines_labels_each_run_s_lines_and_prints_its_table(
    tmp_path, small_fashion_mnist_dir, capsys
):
    from phs_optax_training import cli

    cli.FLAGS.unparse_flags()
    try:
        cli.run(
            [
                "train.py",
                "--compare_baselines",
                f"--data_dir={small_fashion_mnist_dir}",
                "--num_epochs=1",
                *QUICK_FLAGS,
                f"--workdir={tmp_path}",
            ]
        )
    finally:
        cli.FLAGS.unparse_flags()
    captured = capsys.readouterr()
    epoch_lines = [x for x in captured.err.splitlines() if "epoch   1" in x]
    assert [line.split(" ")[0] for line in epoch_lines] == [
        "[goal_phs]",
        "[phs]",
        "[sgd]",
    ]
    table = captured.out.splitlines()
    assert table[0].split()[:2] == ["optimizer", "final"]
    assert [row.split()[0] for row in table[1:4]] == ["goal_phs", "phs", "sgd"]
    assert [row.split()[-1] for row in table[1:4]] == [
        str(tmp_path / optimizer) for optimizer in ("goal_phs", "phs", "sgd")
    ]
