"""Goal-oriented braking against schedules tuned with the same budget on the
validation split: the trials, the choice on validation, the tuned sweep on
new seeds, and its table (on run folders written here)."""

import dataclasses
import json

import pytest

from phs_optax_training import study
from phs_optax_training.config import TrainConfig, run_name
from phs_optax_training.experiments import named_sweep, tuning

BASE = TrainConfig(num_epochs=20, batch_size=64, validation_fraction=0.1)


def write(folder, config, validation, test=0.85):
    run_dir = folder / run_name(config)
    run_dir.mkdir(parents=True)
    rows = [
        {"epoch": 1, "validation_accuracy": validation - 0.01, "test_accuracy": test},
        {"epoch": 2, "validation_accuracy": validation, "test_accuracy": test + 0.01},
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {
        "config": dataclasses.asdict(config),
        "epochs_done": config.num_epochs,
        "final_test_accuracy": test + 0.01,
        "best_test_accuracy": test + 0.01,
        "brake_epoch": None,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_every_method_gets_the_same_budget_on_one_pair():
    trials = tuning.trials(BASE)
    assert set(trials) == set(tuning.METHODS)
    assert {len(t) for t in trials.values()} == {tuning.TRIALS}
    goal = trials["goal"]
    assert {(c.learning_rate, c.friction, c.mass) for c in goal} == {tuning.PAIR}
    lr, momentum = 0.1**2 / 10, pytest.approx(0.99005, abs=1e-5)
    drops = trials["step-drop"]
    assert {c.learning_rate for c in drops} == {lr}
    assert all(c.sgd_momentum == momentum for c in drops)
    steps = tuning.steps_per_epoch(BASE, "fashion_mnist")
    assert sorted({c.brake_at_step for c in drops}) == [
        e * steps for e in tuning.DROP_EPOCHS
    ]
    late = trials["step-drop-late"]
    assert {c.learning_rate for c in late} == {lr}
    assert all(c.sgd_momentum == momentum for c in late)
    edge = max(c.brake_at_step for c in drops)
    assert all(
        c.brake_at_step > edge or c.brake_factor > max(tuning.DROP_FACTORS)
        for c in late
    )
    assert min(c.goal for c in trials["goal-late"]) > max(tuning.GOALS)
    assert {c.sgd_schedule for c in trials["cosine"]} == {"cosine"}
    assert {c.sgd_momentum for c in trials["sgd"]} == {0.0}
    configs = named_sweep("tuning", [0, 1], BASE)
    assert len(configs) == len(tuning.METHODS) * tuning.TRIALS * 2
    assert len({run_name(c) for c in configs}) == len(configs)


def tuning_folder(tmp_path):
    """Validation scores: per method the trial of index 2 is best on average,
    and trial 3 is best on seed 0 alone."""
    folder = tmp_path / "tuning"
    for found in tuning.trials(BASE).values():
        for index, config in enumerate(found):
            for seed in (0, 1):
                score = 0.80 + (0.05 if index == 2 else 0.0)
                if index == 3:
                    score = 0.88 if seed == 0 else 0.70
                write(folder, dataclasses.replace(config, seed=seed), score)
    return folder


def test_the_tuned_sweep_runs_each_methods_validation_choice_on_new_seeds(tmp_path):
    folder = tuning_folder(tmp_path)
    chosen = tuning.selected_trials(folder, BASE, (0, 1))
    trials = tuning.trials(BASE)
    for method, (config, score) in chosen.items():
        assert config == trials[method][2]
        assert score == pytest.approx(0.85)
    configs = named_sweep("tuned", [10, 11], BASE, reference=folder)
    assert {c.seed for c in configs} == {10, 11}
    # a choice per method + the paper's goal and PHS rows (the paper's goal row
    # is a trial of the goal grid, not the chosen one here)
    assert len(configs) == (len(tuning.METHODS) + 2) * 2
    with pytest.raises(ValueError, match=r"seeds \[1\] were used for tuning"):
        named_sweep("tuned", [1, 2], BASE, reference=folder)
    with pytest.raises(ValueError, match="run --sweep=tuning"):
        named_sweep("tuned", [10], BASE, reference=tmp_path / "none")


def test_the_tuned_table_marks_the_choices_and_pairs_the_new_seeds(tmp_path, capsys):
    folder = tuning_folder(tmp_path)
    tuned = tmp_path / "tuned"
    for config in named_sweep("tuned", [10, 11, 12], BASE, reference=folder):
        bonus = 0.02 if config.optimizer == "goal_phs" and config.goal == 0.85 else 0
        write(tuned, config, 0.86, test=0.86 + bonus + 0.001 * config.seed)
    result = study.tuned_study(folder, tuned)
    assert result.tuning_seeds == (0, 1)
    assert sum(t.chosen for t in result.trials) == len(tuning.METHODS)
    labels = [r.label for r in result.rows]
    assert labels[-2:] == ["paper goal", "paper PHS"]
    assert {r.final.n for r in result.rows} == {3}
    versus = {(a, b): final for a, b, final, _ in result.versus}
    goal = "goal (tuned)"
    assert versus[goal, "paper goal"].difference.values == pytest.approx([-2.0] * 3)
    assert versus[goal, "sgd (tuned)"].difference.values == pytest.approx([0.0] * 3)
    # each tuned goal row against every other row, the two goal rows once
    assert len(result.versus) == (len(result.rows) - 1) + (len(result.rows) - 2)
    assert ("goal-late (tuned)", goal) not in versus
    rows = {r.label: r for r in result.rows}
    assert (
        rows[goal].brake_epochs == (None,) * 3 and rows["paper PHS"].brake_epochs == ()
    )
    assert result.rows[0].curve[-1].mean == pytest.approx(result.rows[0].final.mean)
    chart = study.tuned_chart(result)
    assert len(chart.panels[0].lines) == len(result.rows)
    figure = tmp_path / "tuned.png"
    assert study.main(["tuned", str(folder), str(tuned), f"--figure={figure}"]) == 0
    assert figure.stat().st_size > 0
    text = capsys.readouterr().out
    assert "**goal 0.8, brake factor 5**" in text and "paper PHS" in text
    assert study.main(["tuned", str(folder), str(tmp_path / "empty")]) == 2


def test_the_tuned_table_finds_every_row_whatever_run_its_settings_come_from(
    tmp_path,
):
    # the first trial of each method wins, so the tuned folder's first run
    # (sorted by name) is a goal run with a goal other than the default
    folder = tmp_path / "tuning"
    for found in tuning.trials(BASE).values():
        for index, config in enumerate(found):
            for seed in (0, 1):
                write(folder, dataclasses.replace(config, seed=seed), 0.9 - index / 100)
    tuned = tmp_path / "tuned"
    for config in named_sweep("tuned", [10, 11], BASE, reference=folder):
        write(tuned, config, 0.86)
    first = sorted(tuned.iterdir())[0].name
    assert first.startswith(f"goal_phs_lr0.1_f0.1_m10_g{tuning.GOALS[0]:g}_")
    result = study.tuned_study(folder, tuned)
    assert len(result.rows) == len(tuning.METHODS) + 2
    assert {r.final.n for r in result.rows} == {2}
