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


# ------------------------------------------------- the tables as numbers


def test_rows_data_holds_mean_std_and_epochs_per_seed(folder):
    rows = report.rows_data(report.load_runs(folder, "table2"), "table2")
    assert [(r.name, r.reading) for r in rows] == [
        (PAIR.sgd.name, ""),
        (PAIR.phs.name, ""),
        (PAIR.goal.name, "remaining"),
    ]
    phs = rows[1]
    assert phs.seeds == (0, 1)
    assert phs.final.values == pytest.approx((85.0, 86.0))
    assert (phs.final.mean, phs.final.std, phs.final.n) == pytest.approx(
        (85.5, np.sqrt(0.5), 2)
    )
    assert phs.best.mean == pytest.approx(86.5)
    assert phs.paper == pytest.approx(PAIR.phs.paper_accuracy * 100)
    assert rows[2].brake_epochs == (0.5, 0.5) and rows[2].best_epochs == (1, 1)
    assert report.Spread.of([3.0]).std == 0.0


def test_pairs_data_holds_the_paired_differences_and_wins(folder):
    pairs = report.pairs_data(report.load_runs(folder, "table2"), "table2", "remaining")
    (row,) = pairs.rows
    assert (row.alpha, row.friction, row.mass, row.seeds) == (0.1, 0.1, 10.0, 2)
    assert row.minus_phs_final.values == pytest.approx((1.0, -2.0))
    assert (row.minus_phs_final.wins, row.minus_phs_final.ties) == (1, 0)
    assert row.minus_sgd_final.values == pytest.approx((6.0, 2.0))
    assert row.minus_sgd_final.mean == pytest.approx(4.0)
    assert row.minus_sgd_final.std == pytest.approx(np.sqrt(8.0))
    # best: goal best = final, baselines best = final + 1 point
    assert row.minus_phs_best.values == pytest.approx((0.0, -3.0))
    assert row.minus_phs_best.ties == 1
    assert pairs.counted == 1
    assert pairs.ahead == {"phs": 0, "sgd": 1}
    assert pairs.ahead_every_seed == {"phs": 0, "sgd": 1}
    assert row.paper_minus_phs == pytest.approx(
        (PAIR.goal.paper_accuracy - PAIR.phs.paper_accuracy) * 100
    )


def test_a_pair_without_its_sgd_baseline_has_no_difference_to_it(folder):
    runs = report.load_runs(folder, "table2")
    del runs[(PAIR.sgd.name, "")]
    (row,) = report.pairs_data(runs, "table2", "remaining").rows
    assert row.minus_sgd_final is None and row.minus_sgd_best is None
    table = report.pairs_table(runs, "table2", "remaining")
    assert "| 2 | -0.50 ± 2.12 | -1.50 ± 2.12 |  |  |" in table
    assert "0 of 1 pairs vs PHS (0 on every seed), 0 of 1 vs SGD" in table


def test_table_data_renders_as_the_table_report(folder):
    data = report.table_data(folder, "table2")
    assert [p.reading for p in data.pairs] == ["remaining"]
    assert report.table_markdown(data) == report.table_report(folder, "table2")
    assert report.table_markdown(data).startswith(f"## Rows ({folder})\n")


def test_compare_data_gives_one_row_per_sweep_or_none(folder, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    write_run(other, config_of(PAIR.phs, 0), 0.70, 0.75)
    comparison = report.compare_data([folder, other], "table2")
    assert comparison.sweeps == (folder.name, other.name)
    rows = {(r.name, r.reading): r for r in comparison.rows}
    mine, theirs = rows[(PAIR.phs.name, "")].cells
    assert mine.final.mean == pytest.approx(85.5)
    assert (theirs.final.mean, theirs.best.mean, theirs.final.n) == pytest.approx(
        (70.0, 75.0, 1)
    )
    assert rows[(PAIR.goal.name, "remaining")].cells[1] is None
    table = report.compare_markdown(comparison)
    assert "| 70.00 ± 0.00 / 75.00 |" in table
    assert "85.00 ± 1.41 / 85.00 brake@0.5, 0.5 |  |" in table


def test_beyond_data_pairs_the_option_with_goal_and_phs(tmp_path):
    folder = beyond_folder(tmp_path)
    sections = report.beyond_data(
        [folder / n for n in ("PHS", "goal", "val", "phs-held")]
    )
    assert [s.variant for s in sections] == ["brake on validation"]
    (row,) = sections[0].rows
    assert (row.alpha, row.friction, row.mass, row.validation_fraction) == (
        0.1,
        0.1,
        10.0,
        0.1,
    )
    assert row.seeds == (0, 1)
    assert row.final.values == pytest.approx((88.0, 86.0))
    assert row.minus_goal_final.difference.values == pytest.approx((4.0, 3.0))
    assert row.minus_goal_final.full_set_reference  # goal ran on the full set
    assert row.minus_phs_final.difference.values == pytest.approx((3.0, -1.0))
    assert row.minus_phs_final.difference.wins == 1
    assert not row.minus_phs_final.full_set_reference
    assert row.brake_epochs == (None, None) and row.releases == (None, None)


def test_ablation_data_holds_accuracies_and_brake_epochs(tmp_path):
    base = TrainConfig(num_epochs=20, batch_size=64)
    reference, ablation = tmp_path / "table2", tmp_path / "ablation"
    for pair in presets.pairs("table2"):
        config = dataclasses.replace(
            base, **presets.config_values(pair.goal, "remaining")
        )
        write_run(reference, config, 0.85, 0.86, brake_epoch=0.5)
        summary = reference / run_name(config) / "summary.json"
        summary.write_text(
            json.dumps({**json.loads(summary.read_text()), "brake_step": 468})
        )
    for config in ablation_configs([0], base, reference, "remaining"):
        if config.optimizer == "goal_phs":
            write_run(ablation, config, 0.75, 0.76)
    data = report.ablation_data(ablation, reference)
    assert data.fixed_epochs == (1, 10)
    row = data.rows[0]
    assert (row.alpha, row.seed, row.phs, row.heavy_ball) == (0.1, 0, None, None)
    assert (row.goal.final, row.goal.best) == pytest.approx((85.0, 86.0))
    assert row.goal_brake_epoch == 0.5
    assert [(a.final, a.best) for a in row.fixed] == pytest.approx(
        [(75.0, 76.0), (75.0, 76.0)]
    )


def test_figure3_panels_mark_each_brake_at_its_step(folder):
    for seed in (0, 1):
        run = folder / run_name(config_of(PAIR.goal, seed)) / "summary.json"
        summary = json.loads(run.read_text())
        summary["brake_step"] = 28 + seed
        summary["config"]["steps_per_epoch"] = 100
        run.write_text(json.dumps(summary))
    phs = folder / run_name(config_of(PAIR.phs, 1)) / "metrics.jsonl"
    phs.write_text('{"test_accuracy": 0.6}\n{"test_accuracy": 0.7}\n')
    (panel,) = figures.figure3_panels(
        {"table2": folder}, "remaining", [("table2", 0.1, 0.1, 10.0)]
    )
    assert [m.x for m in panel.marks] == pytest.approx([0.28, 0.29])
    assert {m.color for m in panel.marks} == {figures.GOAL_COLOR}
    means = [line for line in panel.lines if line.label]
    assert [line.label for line in means] == [
        "PHS (mean of 2)",
        "goal-oriented (remaining 0.15, x50) (mean of 2)",
    ]
    assert means[0].x == (1.0, 2.0) and means[0].y == pytest.approx((55.0, 65.0))
    assert not panel.notes


def test_figure3_notes_a_diverged_run(folder):
    run = folder / run_name(config_of(PAIR.phs, 1))
    (run / "metrics.jsonl").write_text(
        '{"epoch": 1, "train_loss": 1.0, "test_accuracy": 0.5}\n'
        '{"epoch": 2, "train_loss": null, "test_accuracy": 0.1}\n'
    )
    (panel,) = figures.figure3_panels(
        {"table2": folder}, "remaining", [("table2", 0.1, 0.1, 10.0)]
    )
    assert panel.notes == ("PHS seed 1 diverged at epoch 2",)


def test_figure1_grid_is_the_mean_over_seeds(tmp_path):
    for seed, accuracy in ((0, 0.80), (1, 0.90)):
        for config in figure1_configs([seed], TrainConfig())[:2]:
            write_run(tmp_path, config, accuracy, accuracy)
    grid = figures.figure1_grid(tmp_path)
    assert grid.seeds == 2
    assert len(grid.masses) * len(grid.frictions) >= 2
    finite = [v for row in grid.values for v in row if not np.isnan(v)]
    assert finite == pytest.approx([85.0, 85.0])


def test_a_diverged_run_stays_in_its_row_and_the_row_says_so(folder):
    summary_path = folder / run_name(config_of(PAIR.phs, 1)) / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps({**summary, "diverged": True}))

    runs = report.load_runs(folder, "table2")
    rows = {row.name: row for row in report.rows_data(runs, "table2")}
    assert rows[PAIR.phs.name].diverged_seeds == (1,)
    assert rows[PAIR.phs.name].final.n == 2  # kept in the mean
    assert rows[PAIR.goal.name].diverged_seeds == ()
    table = report.rows_markdown(list(rows.values()))
    assert f"| {PAIR.phs.name} (diverged: seed 1) |" in table
    assert f"| {PAIR.goal.name} |" in table
