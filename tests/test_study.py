"""The study's statistics (stats) and tables (study): intervals and tests
against SciPy and hand computation, Holm's correction, the validation-selected
accuracy, and tables read from run folders."""

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from phs_optax_training import data as data_lib
from phs_optax_training import presets, study, vmap_sweep
from phs_optax_training.config import TrainConfig, run_name
from phs_optax_training.experiments.common import row_config
from phs_optax_training.stats import Estimate, PairedTest, holm, holm_family


def test_estimate_is_mean_sample_std_and_t_interval():
    e = Estimate.of([1.0, 2.0, 6.0])
    assert e.mean == 3.0 and e.n == 3
    assert e.std == pytest.approx(np.sqrt(7.0))  # ddof=1: (4 + 1 + 9) / 2
    half = 4.302652729911275 * np.sqrt(7.0) / np.sqrt(3)  # t(0.975, 2)
    assert (e.low, e.high) == pytest.approx((3.0 - half, 3.0 + half))


def test_estimate_of_one_value_has_no_spread_and_none_is_refused():
    e = Estimate.of([0.5])
    assert e.mean == 0.5 and math.isnan(e.std) and math.isnan(e.low)
    with pytest.raises(ValueError, match="at least one value"):
        Estimate.of([])


def test_paired_test_is_scipys_paired_t_test():
    rng = np.random.default_rng(0)
    first, second = rng.normal(90, 1, 10), rng.normal(89.5, 1, 10)
    test = PairedTest.of(first, second)
    expected = scipy_stats.ttest_rel(first, second)
    assert test.t == pytest.approx(expected.statistic)
    assert test.p == pytest.approx(expected.pvalue)
    assert test.wins == int((first > second).sum()) and test.ties == 0
    assert test.difference.mean == pytest.approx((first - second).mean())


def test_paired_test_without_spread_is_exact_and_unequal_lengths_are_refused():
    assert PairedTest.of([1.0, 2.0], [1.0, 2.0]).p == 1.0
    shifted = PairedTest.of([2.0, 3.0], [1.0, 2.0])
    assert shifted.p == 0.0 and shifted.t == math.inf and shifted.wins == 2
    with pytest.raises(ValueError, match="differ in number: 2 and 1"):
        PairedTest.of([1.0, 2.0], [1.0])


def test_holm_multiplies_by_the_remaining_count_and_stays_monotone():
    # sorted 0.01, 0.03, 0.04 -> 0.03, 0.06, max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    adjusted = holm([0.02, math.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.02)
    assert math.isnan(adjusted[1])


def test_holm_family_sets_the_adjusted_p_and_significance():
    tests = [
        PairedTest.of([1, 2, 3, 4.5], [0, 0.5, 1, 2]),
        PairedTest.of([1, 2], [2, 0]),
    ]
    family = holm_family(tests)
    assert [t.p_holm for t in family] == pytest.approx(holm([t.p for t in tests]))
    assert family[0].significant and not family[1].significant


def test_validation_selected_takes_the_earliest_best_validation_epoch():
    rows = [
        {"epoch": 1, "validation_accuracy": 0.80, "test_accuracy": 0.79},
        {"epoch": 2, "validation_accuracy": 0.85, "test_accuracy": 0.83},
        {"epoch": 3, "validation_accuracy": 0.85, "test_accuracy": 0.90},
        {"epoch": 4, "validation_accuracy": float("nan"), "test_accuracy": 0.1},
    ]
    assert study.validation_selected(rows) == (2, 0.83)
    with pytest.raises(study.StudyError, match="--validation_fraction"):
        study.validation_selected([{"epoch": 1, "validation_loss": None}])


def test_identical_dynamics_share_their_key_only_under_their_drag():
    def config(alpha, friction, mass, drag="momentum"):
        return {
            "learning_rate": alpha,
            "friction": friction,
            "mass": mass,
            "drag": drag,
        }

    assert study.dynamics_key(config(0.1, 0.1, 10)) == study.dynamics_key(
        config(0.01, 1, 0.1)
    )
    assert study.dynamics_key(config(0.1, 0.1, 10, "velocity")) != study.dynamics_key(
        config(0.01, 1, 0.1, "velocity")
    )


# ------------------------------------------------------- tables from folders

PAIR = presets.pairs("table2")[0]  # alpha 0.1, friction 0.1, mass 10
TWIN = presets.pairs("table2")[2]  # alpha 0.01, friction 1, mass 0.1: same dynamics


def write_run(
    folder, preset, seed, test, validation, *, diverged=False, batch_size=64,
    reading="remaining",
):  # fmt: skip
    """A finished run folder of ``preset``: per epoch test and validation
    accuracy (fractions)."""
    config = row_config(
        preset,
        reading,
        seed,
        TrainConfig(num_epochs=len(test), batch_size=batch_size),
    )
    config = dataclasses.replace(config, validation_fraction=0.1)
    write_config_run(folder, config, test, validation, diverged=diverged)


def write_config_run(folder, config, test, validation, *, diverged=False):
    """A finished run folder of ``config`` (per epoch accuracies, fractions)."""
    run_dir = folder / run_name(config)
    run_dir.mkdir(parents=True)
    rows = [
        {"epoch": e + 1, "test_accuracy": t, "validation_accuracy": v}
        for e, (t, v) in enumerate(zip(test, validation, strict=True))
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {
        "config": dataclasses.asdict(config),
        "epochs_done": len(test),
        "final_test_accuracy": test[-1],
        "best_test_accuracy": max(test),
        "best_epoch": int(np.argmax(test)) + 1,
        "brake_epoch": 0.5 if config.optimizer == "goal_phs" else None,
        "diverged": diverged,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def folder(tmp_path):
    for seed in range(4):
        shift = 0.001 * seed
        for pair in (PAIR, TWIN):
            write_run(tmp_path, pair.phs, seed, [0.86, 0.88 + shift], [0.87, 0.86])
            write_run(
                tmp_path, pair.goal, seed, [0.87, 0.90 + shift], [0.85, 0.90 - shift]
            )
            write_run(tmp_path, pair.sgd, seed, [0.80, 0.85], [0.80, 0.85])
    return tmp_path


def test_study_table_rows_use_final_and_validation_selected_accuracy(folder):
    table = study.study_table(folder, "table2")
    rows = {row.name: row for row in table.rows}
    phs = rows[PAIR.phs.name]
    assert phs.seeds == (0, 1, 2, 3)
    assert phs.final.mean == pytest.approx(88.15)
    assert phs.selected.values == pytest.approx([86.0] * 4)  # epoch 1 on validation
    assert phs.selected_epochs == (1, 1, 1, 1)
    assert rows[PAIR.goal.name].selected.mean == pytest.approx(90.15)
    assert (table.batch_size, table.num_epochs, table.validation_fraction) == (
        64,
        2,
        0.1,
    )


def test_study_table_pairs_by_seed_with_holm_over_the_whole_table(folder):
    table = study.study_table(folder, "table2")
    assert len(table.comparisons) == 4  # two pairs x (PHS, SGD)
    goal_minus_phs = next(
        c for c in table.comparisons if c.baseline == "phs" and c.alpha == 0.1
    )
    assert goal_minus_phs.final.difference.values == pytest.approx([2.0] * 4)
    assert goal_minus_phs.selected.difference.values == pytest.approx(
        [4.0, 4.1, 4.2, 4.3]
    )
    raw = [c.final.p for c in table.comparisons] + [
        c.selected.p for c in table.comparisons
    ]
    adjusted = [c.final.p_holm for c in table.comparisons] + [
        c.selected.p_holm for c in table.comparisons
    ]
    assert adjusted == pytest.approx(holm(raw))
    assert table.ahead("phs", "selected") == (2, 2, 2, 0)


def test_noise_floor_compares_rows_of_identical_dynamics(folder):
    noise = study.study_table(folder, "table2").noise
    (pair,) = noise.pairs
    assert {pair.first, pair.second} == {PAIR.phs.name, TWIN.phs.name}
    assert (pair.decay, pair.step) == (0.01, 0.001)
    assert noise.final.values == pytest.approx([0.0] * 4)
    assert noise.max_abs("final") == 0.0


def test_table1_reads_goals_as_reductions_and_finds_its_identical_rows(tmp_path):
    for seed in range(3):
        for pair in presets.pairs("table1"):
            for preset in (pair.goal, pair.phs, pair.sgd):
                if (tmp_path / run_name(row_config(preset, "reduction", seed,
                        TrainConfig(num_epochs=2)))).exists():  # fmt: skip
                    continue  # an SGD row shared by two pairs
                write_run(
                    tmp_path, preset, seed, [0.5, 0.6 + 0.01 * seed], [0.5, 0.6],
                    reading="reduction",
                )  # fmt: skip
    table = study.study_table(tmp_path, "table1")
    assert table.reading == "reduction"
    assert len(table.comparisons) == 2 * len(presets.pairs("table1"))
    goals = {c.goal for c in table.comparisons}
    assert goals == {p.goal.paper_goal for p in presets.pairs("table1")}
    # (0.01, 0.1, 25) and (0.001, 1, 0.25); (0.01, 0.01, 25) and (0.001, 0.1, 0.25)
    assert sorted((p.decay, p.step) for p in table.noise.pairs) == [
        (0.0001, 4e-06), (0.001, 4e-06),
    ]  # fmt: skip


def test_study_markdown_and_command_line(folder, capsys):
    assert study.main(["table", str(folder), "--table=table2"]) == 0
    text = capsys.readouterr().out
    assert "validation-best epoch" in text and "Noise floor" in text
    assert "significantly ahead in 2" in text


def test_study_of_runs_without_validation_is_a_usage_error(tmp_path, capsys):
    write_run(tmp_path, PAIR.phs, 0, [0.8], [None])
    assert study.main(["table", str(tmp_path), "--table=table2"]) == 2
    assert "--validation_fraction" in capsys.readouterr().err
    assert study.main(["table", str(tmp_path / "none"), "--table=table2"]) == 2


def test_a_swept_pair_with_a_validation_split_reads_as_a_study(
    small_fashion_mnist_dir, tmp_path
):
    base = TrainConfig(
        num_epochs=2, batch_size=32, eval_batch_size=64, validation_fraction=0.2
    )
    configs = [
        row_config(preset, "remaining", seed, base)
        for preset in (PAIR.goal, PAIR.phs)
        for seed in (0, 1)
    ]
    dataset = data_lib.load_dataset("fashion_mnist", str(small_fashion_mnist_dir))
    vmap_sweep.run_sweep(configs, tmp_path, dataset=dataset, log=lambda m: None)
    table = study.study_table(tmp_path, "table2")
    assert [row.seeds for row in table.rows] == [(0, 1), (0, 1)]
    (comparison,) = table.comparisons
    assert comparison.selected.difference.n == 2
    assert all(1 <= e <= 2 for row in table.rows for e in row.selected_epochs)


def test_batch_size_study_lines_up_each_pair_over_the_batch_sizes(tmp_path):
    from phs_optax_training.experiments import batch_size

    first, second = batch_size.chosen_pairs()[:2]
    for size, gap in ((16, 0.02), (128, -0.01)):
        folder = tmp_path / f"batch{size}"
        for seed in range(3):
            for pair in (first, second):
                base = [0.85, 0.88 + 0.001 * seed]
                write_run(folder, pair.phs, seed, base, [0.8, 0.9], batch_size=size)
                write_run(
                    folder, pair.goal, seed, [0.85, base[1] + gap], [0.8, 0.9],
                    batch_size=size,
                )  # fmt: skip
    curves = study.batch_size_study([tmp_path / "batch128", tmp_path / "batch16"])
    assert [len(c.points) for c in curves] == [2, 2, 0, 0]
    points = curves[0].points
    assert [p.batch_size for p in points] == [16, 128]
    assert [p.selected.difference.mean for p in points] == pytest.approx([2.0, -1.0])
    assert curves[0].effective_step == pytest.approx(0.1)
    text = study.batch_size_markdown(curves)
    assert "| batch 16 | batch 128 |" in text and "+2.00" in text
    chart = study.batch_size_chart(curves)
    assert chart.panels[0].xticks == (16.0, 128.0)
    with pytest.raises(study.StudyError, match="two folders hold batch size 16"):
        study.batch_size_study([tmp_path / "batch16", tmp_path / "batch16"])
    figure = tmp_path / "batch_size.png"
    assert study.main(["batch-size", *map(str, sorted(tmp_path.glob("batch*/"))),
                       f"--figure={figure}"]) == 0  # fmt: skip
    assert figure.stat().st_size > 0


def test_decline_is_peak_minus_final_and_is_compared_by_seed(folder):
    table = study.study_table(folder, "table2")
    rows = {row.name: row for row in table.rows}
    assert rows[PAIR.phs.name].decline.values == pytest.approx([0.0] * 4)
    comparison = next(c for c in table.comparisons if c.baseline == "phs")
    assert comparison.decline.difference.values == pytest.approx([0.0] * 4)
    assert comparison.decline.p_holm == pytest.approx(1.0)


def test_figure3_over_seeds_draws_the_papers_pairs_with_bands(folder, tmp_path):
    chart = study.curves_chart(folder, "table2")
    assert len(chart.panels) == 2  # Figure 3a and 3b: both pairs are in ``folder``
    panel = chart.panels[0]
    assert [line.color for line in panel.lines] == ["tab:blue", "tab:orange"]
    assert panel.lines[1].y == pytest.approx((86.0, 88.15))
    assert len(panel.bands) == 2 and panel.marks[0].x == 0.5
    out = tmp_path / "figure3.png"
    assert study.main(["table", str(folder), "--table=table2", f"--figure={out}"]) == 0
    assert out.stat().st_size > 0


def test_rule_study_scores_each_held_out_cell_against_its_prediction(tmp_path):
    from phs_optax_training.experiments import named_sweep, rule

    base = TrainConfig(num_epochs=2, batch_size=10, validation_fraction=0.1)
    # batch 10: the triples predicted to win; goal ahead on the first only
    for config in named_sweep("rule-heldout", [0, 1, 2], base):
        first = (config.learning_rate, config.friction) == (0.02, 0.2)
        gap = 0.02 if first else -0.01
        gap = gap if config.optimizer == "goal_phs" else 0.0
        final = 0.85 + gap + 0.001 * config.seed
        write_config_run(tmp_path / "b10", config, [0.8, final], [0.7, 0.9])
    cells = study.rule_study([tmp_path / "b10"])
    assert len(cells) == len(rule.HELD_OUT[10])
    assert {c.prediction for c in cells} == {"win"}
    by_triple = {(c.alpha, c.friction, c.mass): c for c in cells}
    first = by_triple[(0.02, 0.2, 0.5)]
    assert first.outcome == "hit" and first.selected.difference.mean == pytest.approx(2)
    assert first.temperature == pytest.approx(0.02)
    assert (first.goal, first.brake_factor) == (rule.GOAL, rule.BRAKE_FACTOR)
    assert [c.outcome for c in cells].count("miss") == 2
    assert all(c.selected.p_holm is not None for c in cells)
    text = study.rule_markdown(cells)
    assert "1 hits, 2 misses and 0 ties (a difference of exactly zero) in 3 " in text
    assert study.main(["rule", str(tmp_path / "b10")]) == 0


def test_a_held_out_cell_without_a_difference_is_a_tie_not_a_hit(tmp_path):
    from phs_optax_training.experiments import named_sweep

    base = TrainConfig(num_epochs=2, batch_size=128, validation_fraction=0.1)
    for config in named_sweep("rule-heldout", [0, 1], base):  # predicted: lose
        final = 0.85 + 0.001 * config.seed  # goal and PHS select the same
        write_config_run(tmp_path / "b128", config, [0.8, final], [0.7, 0.9])
    cells = study.rule_study([tmp_path / "b128"])
    assert {c.prediction for c in cells} == {"lose"}
    assert {c.outcome for c in cells} == {"tie"}
    assert "0 hits, 0 misses and 2 ties" in study.rule_markdown(cells)


def test_rule_study_refuses_a_configuration_the_rule_was_formed_on(tmp_path, capsys):
    write_run(tmp_path, PAIR.phs, 0, [0.8, 0.85], [0.8, 0.85])
    assert study.main(["rule", str(tmp_path)]) == 2
    assert "not a held-out configuration of the rule" in capsys.readouterr().err
    with pytest.raises(study.StudyError, match="no held-out cell"):
        study.rule_study([tmp_path / "empty"])


def test_an_unwritable_figure_path_is_exit_2_with_one_line(folder, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    argv = ["table", str(folder), "--table=table2", f"--figure={blocker / 'f.png'}"]
    assert study.main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"study: error: cannot write {blocker / 'f.png'} (")
