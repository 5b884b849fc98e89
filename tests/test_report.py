"""Reading sweep folders back as the paper's tables and figures."""

import dataclasses
import json

import numpy as np
import pytest

from phs_optax_training import figures, presets, report
from phs_optax_training.config import TrainConfig, run_name
from phs_optax_training.experiments.ablation import ablation_configs
from phs_optax_training.experiments.figure1 import figure1_configs

PAIR = presets.pairs("table2")[0]  # alpha 0.1, friction 0.1, mass 10


def write_run(folder, config, final, best, brake_epoch=None, curve=(0.5, 0.6)):
    run = folder / run_name(config)
    run.mkdir(parents=True)
    summary = {
        "config": dataclasses.asdict(config),
        "final_test_accuracy": final,
        "best_test_accuracy": best,
        "best_epoch": 1,
        "brake_epoch": brake_epoch,
        "epochs_done": len(curve),
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"test_accuracy": a}) for a in curve) + "\n"
    )


def config_of(preset, seed, reading="remaining"):
    return TrainConfig(**presets.config_values(preset, reading), seed=seed)


@pytest.fixture
def folder(tmp_path):
    for seed, (sgd, phs, goal) in enumerate([(0.80, 0.85, 0.86), (0.82, 0.86, 0.84)]):
        write_run(tmp_path, config_of(PAIR.sgd, seed), sgd, sgd + 0.01)
        write_run(tmp_path, config_of(PAIR.phs, seed), phs, phs + 0.01)
        write_run(tmp_path, config_of(PAIR.goal, seed), goal, goal, brake_epoch=0.5)
    return tmp_path


def test_runs_are_matched_to_their_table_row_and_goal_reading(folder):
    runs = report.load_runs(folder, "table2")
    assert set(runs) == {
        (PAIR.sgd.name, ""),
        (PAIR.phs.name, ""),
        (PAIR.goal.name, "remaining"),
    }
    assert sorted(runs[(PAIR.goal.name, "remaining")]) == [0, 1]


def test_ablation_runs_are_not_mistaken_for_table_rows(folder):
    ablation = dataclasses.replace(
        config_of(PAIR.goal, 0), brake_trigger="step", brake_at_step=5
    )
    write_run(folder, ablation, 0.99, 0.99)
    runs = report.load_runs(folder, "table2")
    assert runs[(PAIR.goal.name, "remaining")][0]["final_test_accuracy"] == 0.86


def test_rows_table_gives_mean_and_sample_std_next_to_the_paper(folder):
    table = report.rows_table(report.load_runs(folder, "table2"), "table2")
    assert f"| {PAIR.phs.name} |  | 90.36 | 2 | 85.50 ± 0.71 | 86.50 ± 0.71 |" in table
    assert "| 0.5, 0.5 |" in table  # brake epochs of both seeds


def test_pairs_are_differenced_seed_by_seed_and_wins_counted(folder):
    table = report.pairs_table(
        report.load_runs(folder, "table2"), "table2", "remaining"
    )
    # goal - PHS: +1 and -2 points; goal - SGD: +6 and +2 points
    expected_phs = np.array([1.0, -2.0])
    cell = f"{expected_phs.mean():+.2f} ± {expected_phs.std(ddof=1):.2f}"
    assert cell in table
    assert "+4.00 ± 2.83" in table
    assert (
        "0 of 1 pairs vs PHS (0 on every seed), 1 of 1 vs SGD (1 on every seed)"
        in table
    )


def test_figure3_and_figure1_are_written(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    assert (
        figures.figure3({"table2": folder}, "remaining", out / "f3.png").stat().st_size
    )
    grid = tmp_path_factory.mktemp("grid")
    for config in figure1_configs([0], TrainConfig())[:3]:
        write_run(grid, config, 0.8, 0.85)
    assert figures.figure1(grid, out / "f1.png").stat().st_size


def test_figure3_plots_a_chosen_pair_and_refuses_an_unknown_one(folder, tmp_path):
    argv = ["figure3", "--table2", str(folder), "--out", str(tmp_path / "f.png")]
    assert figures.main([*argv, "--pair", "table2:0.1,0.1,10"]) == 0
    assert (tmp_path / "f.png").stat().st_size
    assert figures.main([*argv, "--pair", "table2:0.1,0.1,11"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        figures.main([*argv, "--pair", "table2:0.1"])
    assert exit_info.value.code == 2


def test_report_of_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert report.main(["table", str(tmp_path / "nothing")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_goal_of_one_half_serves_both_readings(tmp_path):
    pair = next(p for p in presets.pairs("table2") if p.goal.paper_goal == 0.5)
    write_run(tmp_path, config_of(pair.goal, 0), 0.9, 0.9)
    runs = report.load_runs(tmp_path, "table2")
    assert set(runs) == {(pair.goal.name, "reduction"), (pair.goal.name, "remaining")}


def test_ablation_table_lines_up_each_goal_run_with_its_ablations(tmp_path):
    base = TrainConfig(num_epochs=20, batch_size=64)
    reference, ablation = tmp_path / "table2", tmp_path / "ablation"
    for pair in presets.pairs("table2"):
        for preset in (pair.phs, pair.goal):
            config = dataclasses.replace(
                base, **presets.config_values(preset, "remaining")
            )
            write_run(reference, config, 0.85, 0.86, brake_epoch=0.5)
            summary = reference / run_name(config) / "summary.json"
            data = json.loads(summary.read_text())
            summary.write_text(json.dumps({**data, "brake_step": 468}))
    for config in ablation_configs([0], base, reference, "remaining"):
        accuracy = 0.70 if config.optimizer == "sgd" else 0.75
        write_run(ablation, config, accuracy, accuracy)
    lines = report.ablation_table(ablation, reference).splitlines()
    rows = [line for line in lines if line.startswith("| 0.")]
    assert len(rows) == 4  # the alpha = 0.1 and 0.001 pairs, seed 0
    assert all(
        "| 85.00 / 86.00 | 85.00 / 86.00 (0.50) | 70.00 / 70.00 "
        "| 75.00 / 75.00 | 75.00 / 75.00 |" in row
        for row in rows
    )


def beyond_folder(tmp_path):
    """Per seed: PHS, goal, goal with a release, validation-braked goal_phs and
    PHS both on a held-out split."""
    goal = config_of(PAIR.goal, 0)
    accuracies = [
        {"PHS": 0.86, "goal": 0.84, "release": 0.87, "val": 0.88, "phs-held": 0.85},
        {"PHS": 0.87, "goal": 0.83, "release": 0.85, "val": 0.86, "phs-held": 0.87},
    ]
    for seed, acc in enumerate(accuracies):
        goal = config_of(PAIR.goal, seed)
        held_out = dict(validation_fraction=0.1)
        runs = {
            "PHS": config_of(PAIR.phs, seed),
            "goal": goal,
            "release": dataclasses.replace(goal, release_after=937),
            "val": dataclasses.replace(goal, brake_trigger="validation", **held_out),
            "phs-held": dataclasses.replace(config_of(PAIR.phs, seed), **held_out),
        }
        for name, config in runs.items():
            write_run(tmp_path / name, config, acc[name], acc[name] + 0.01)
    return tmp_path


def test_beyond_variants_are_named_after_their_options():
    goal = dataclasses.asdict(config_of(PAIR.goal, 0))
    assert report.variant_of(goal) == "goal"
    assert report.variant_of(dataclasses.asdict(config_of(PAIR.phs, 0))) == "PHS"
    assert (
        report.variant_of({**goal, "release_after": 937, "kick_energy": 0.05})
        == "release_after=937, kick_energy=0.05"
    )
    assert (
        report.variant_of({**goal, "brake_trigger": "validation"})
        == "brake on validation"
    )


def test_beyond_table_pairs_each_option_with_goal_and_phs_by_seed(tmp_path):
    folder = beyond_folder(tmp_path)
    table = report.beyond_table([folder / name for name in ("PHS", "goal", "release")])
    (line,) = [row for row in table.splitlines() if row.startswith("| 0.1, 0.1, 10")]
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[1] == "2"
    assert cells[4] == "+2.50 ± 0.71 (2/2)"  # release - goal, final: +3, +2
    assert cells[6] == "-0.50 ± 2.12 (1/2)"  # release - PHS, final: +1, -2


def test_beyond_table_prefers_a_reference_with_the_same_held_out_split(tmp_path):
    folder = beyond_folder(tmp_path)
    table = report.beyond_table(
        [folder / n for n in ("PHS", "goal", "val", "phs-held")]
    )
    section = table.split("### brake on validation")[1]
    (line,) = [row for row in section.splitlines() if row.startswith("| 0.1, 0.1, 10")]
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[4] == "+3.50 ± 0.71 (2/2) †"  # vs goal on the full set: +4, +3
    assert cells[6] == "+1.00 ± 2.83 (1/2)"  # vs PHS on the same split: +3, -1
