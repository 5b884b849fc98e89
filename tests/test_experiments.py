"""The named sweeps (phs_optax_training.experiments): which configurations
each experiment trains, built without training."""

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import phs_optax
from phs_optax_training import presets
from phs_optax_training.config import (
    TrainConfig,
    extension_options,
    run_name,
    without_extensions,
)
from phs_optax_training.experiments import NAMED_SWEEPS, named_sweep
from phs_optax_training.experiments.ablation import heavy_ball_equivalent
from phs_optax_training.experiments.beyond import (
    BEYOND_RELEASE_ENERGY,
    BEYOND_VARIANTS,
)
from phs_optax_training.experiments.common import steps_per_epoch, table_configs
from phs_optax_training.experiments.validation_trigger import (
    VALIDATION_FRACTION,
    VALIDATION_KINDS,
)
from phs_optax_training.vmap_sweep import checked_configs, group_of

BASE = TrainConfig(batch_size=32, eval_batch_size=64)


def test_named_sweeps_cover_every_table_row():
    table2 = named_sweep("table2-remaining", [0, 1, 2], BASE)
    assert len(table2) == 60
    goal_rows = [c for c in table2 if c.optimizer == "goal_phs"]
    assert {c.goal for c in goal_rows} >= {0.85}  # 0.15 read as remaining fraction
    reduction = named_sweep("table2-reduction", [0], BASE)
    assert {c.goal for c in reduction if c.optimizer == "goal_phs"} >= {0.15}
    assert {c.dataset for c in named_sweep("table1", [0], BASE)} == {"cifar10"}
    assert len(named_sweep("figure1", [0], BASE)) == 16
    protocol = named_sweep("protocol", [0, 1], BASE)
    # lr 0.1 and 0.001: 2 SGD, 4 PHS, 4 goal rows x 2 readings; 2 seeds
    assert len(protocol) == 2 * (2 + 4 + 8)
    assert {c.learning_rate for c in protocol} == {0.1, 0.001}


def test_heavy_ball_equivalent_runs_the_phs_iteration_and_its_braked_drop():
    config = dataclasses.replace(
        BASE, learning_rate=0.1, mass=10.0, friction=0.1, brake_factor=50.0
    )
    lr, momentum, drop = heavy_ball_equivalent(config)
    phs = phs_optax.phs(learning_rate=0.1, mass=10.0, friction=0.1)
    sgd = optax.sgd(lr, momentum=momentum)
    grad = jax.grad(lambda x: 0.5 * jax.numpy.sum(x * x * np.arange(1.0, 4.0)))
    x_phs = x_sgd = jax.numpy.ones(3)
    phs_state, sgd_state = phs.init(x_phs), sgd.init(x_sgd)
    for _ in range(50):
        u, phs_state = phs.update(grad(x_phs), phs_state, x_phs)
        x_phs = x_phs + u
        u, sgd_state = sgd.update(grad(x_sgd), sgd_state, x_sgd)
        x_sgd = x_sgd + u
    np.testing.assert_allclose(x_phs, x_sgd, rtol=1e-5)
    # effective step lr / (1 - beta) before and after friction x 50
    braked = np.exp(-0.1 * 0.1 * 50)
    assert drop == pytest.approx((lr / (1 - momentum)) / (lr / (1 - braked)))
    assert 39 < drop < 40  # about F = 50 only when alpha * gamma * F is small


def test_ablation_takes_the_brake_step_of_each_goal_run(tmp_path):
    base = dataclasses.replace(BASE, num_epochs=20, batch_size=64)
    goal_runs = [
        c
        for c in table_configs("table2", "remaining", [0], base)
        if c.optimizer == "goal_phs" and c.learning_rate in (0.1, 0.001)
    ]
    for i, run in enumerate(goal_runs):
        folder = tmp_path / run_name(run)
        folder.mkdir()
        brake_step = None if i == 0 else 100 + i
        (folder / "summary.json").write_text(json.dumps({"brake_step": brake_step}))
    configs = named_sweep("ablation", [0], base, reference=tmp_path)
    sgd = [c for c in configs if c.optimizer == "sgd"]
    assert [c.brake_at_step for c in sgd] == [101, 102, 103]  # run 0 never braked
    assert all(c.brake_trigger == "step" for c in configs)
    fixed = sorted({c.brake_at_step for c in configs if c.optimizer == "goal_phs"})
    assert fixed == [937, 9370]  # epochs 1 and 10 at 937 steps per epoch
    with pytest.raises(ValueError, match="missing"):
        named_sweep("ablation", [1], base, reference=tmp_path)


def test_beyond_sweeps_pair_each_goal_row_with_its_option_variants():
    base = TrainConfig(num_epochs=20, batch_size=64)
    configs = named_sweep("beyond-table2", [0, 1], base)
    goal_rows = [c for c in configs if not extension_options(c)]
    assert len(goal_rows) == 2 * len(presets.pairs("table2"))
    assert len(configs) == len(goal_rows) * (1 + len(BEYOND_VARIANTS["table2"]))
    assert len({run_name(c) for c in configs}) == len(configs)
    remaining_goals = {
        presets.goal_for(pair.goal, "remaining") for pair in presets.pairs("table2")
    }
    for config in configs:
        options = extension_options(config)
        assert config.goal in remaining_goals
        assert without_extensions(config) in goal_rows
        if "release_after" in options:  # one epoch, in updates
            assert options["release_after"] == 60_000 // 64
        if "release_energy" in options:
            assert options == {"release_energy": BEYOND_RELEASE_ENERGY}
    assert sum("release_energy" in extension_options(c) for c in configs) == len(
        goal_rows
    )


def test_beyond_sweep_runs_only_the_variants_asked_for():
    base = TrainConfig(num_epochs=20, batch_size=64)
    configs = named_sweep("beyond-table1", [0], base, variants=["deadline"])
    options = [extension_options(c) for c in configs]
    assert sum(not o for o in options) == len(presets.pairs("table1"))
    assert all("deadline" in o for o in options if o)
    assert len(configs) == 2 * len(presets.pairs("table1"))


def test_beyond_sweep_rejects_an_unknown_variant_by_name():
    base = TrainConfig(num_epochs=20, batch_size=64)
    with pytest.raises(ValueError, match="unknown variant.*nope.*deadline, adapt"):
        named_sweep("beyond-table1", [0], base, variants=["nope"])
    with pytest.raises(ValueError, match="beyond"):
        named_sweep("table1", [0], base, variants=["deadline"])


@pytest.mark.parametrize("num_epochs", [20, 60])
def test_beyond_table1_counts_patience_in_cifar_epochs_and_the_deadline_at_half_the_run(
    num_epochs,
):
    base = TrainConfig(num_epochs=num_epochs, batch_size=64)
    configs = named_sweep("beyond-table1", [0], base)
    options = [extension_options(c) for c in configs]
    deadline = num_epochs // 2 * 781
    assert {"deadline": deadline, "on_deadline": "restore_best"} in options
    assert {"goal_patience": 781, "goal_decay": 0.9} in options
    assert all(c.dataset == "cifar10" and c.optimizer == "goal_phs" for c in configs)


def test_every_named_sweep_is_a_valid_sweep_of_distinct_runs(tmp_path):
    base = dataclasses.replace(BASE, num_epochs=20)
    for config in table_configs("table2", "remaining", [0, 1], base):
        (tmp_path / run_name(config)).mkdir()
        (tmp_path / run_name(config) / "summary.json").write_text('{"brake_step": 9}')
    for name in NAMED_SWEEPS:
        if name == "tuned":  # needs a tuning folder: tests/test_tuning.py
            continue
        # the held-out configurations of the rule have their own batch sizes
        at = (
            dataclasses.replace(base, batch_size=64) if name == "rule-heldout" else base
        )
        configs = named_sweep(name, [0, 1], at, reference=tmp_path)
        assert checked_configs(configs), name  # raises for a run twice


def test_steps_per_epoch_counts_the_training_examples_left_after_the_split():
    assert steps_per_epoch(BASE, "fashion_mnist") == 60_000 // 32
    capped = dataclasses.replace(BASE, max_train_examples=640, batch_size=64)
    assert steps_per_epoch(capped, "cifar10") == 10
    held_out = dataclasses.replace(capped, validation_fraction=0.1)
    assert steps_per_epoch(held_out, "cifar10") == 576 // 64


# The goal rows of the validation runs in results/beyond/validation-*, by preset name.
RECORDED_GOAL_ROWS = {
    "table2": ["lr0.1-goal-f0.1-m10", "lr0.1-goal-f0.01-m10", "lr0.01-goal-f1-m0.1", "lr0.01-goal-f0.1-m0.1", "lr0.001-goal-f10-m0.01", "lr0.001-goal-f1-m0.01", "lr0.0001-goal-f10-m0.001", "lr0.0001-goal-f1-m0.001"],
    "table1": ["lr0.1-goal-f0.1-m100", "lr0.1-goal-f0.01-m100", "lr0.01-goal-f0.1-m25", "lr0.01-goal-f0.01-m25", "lr0.001-goal-f1-m0.25", "lr0.001-goal-f0.1-m0.25", "lr0.0001-goal-f10-m0.001", "lr0.0001-goal-f1-m0.001"],
}  # fmt: skip


def _pair_of(config: TrainConfig) -> tuple[float, float, float]:
    return config.learning_rate, config.friction, config.mass


@pytest.mark.parametrize("table", ["table2", "table1"])
def test_validation_sweep_runs_the_validation_trigger_and_phs_on_a_held_out_split(
    table,
):
    configs = named_sweep(f"validation-{table}", [0, 1], BASE)
    goals = [presets.get_preset(f"{table}-{row}") for row in RECORDED_GOAL_ROWS[table]]
    reading = presets.DEFAULT_GOAL_READING[table]
    assert len(configs) == 2 * len(goals) * 2  # kinds x rows x seeds
    assert all(c.dataset == presets.DATASETS[table] for c in configs)
    assert {c.validation_fraction for c in configs} == {VALIDATION_FRACTION}
    assert {c.validation_patience for c in configs} == {2}
    validation = [c for c in configs if c.brake_trigger == "validation"]
    phs = [c for c in configs if c.optimizer == "phs"]
    assert len(validation) == len(phs) == len(configs) // 2
    expected = [
        dataclasses.replace(
            BASE,
            **presets.config_values(goal, reading),
            seed=seed,
            validation_fraction=VALIDATION_FRACTION,
            brake_trigger="validation",
        )
        for goal in goals
        for seed in (0, 1)
    ]
    assert validation == expected
    assert [_pair_of(c) for c in phs] == [_pair_of(c) for c in expected]
    assert all(c.brake_trigger == "goal" for c in phs)
    assert {group_of(c) for c in checked_configs(configs)} == {"phs", "phs-validation"}


def test_validation_sweep_kinds_are_triggers_of_the_goal_row_and_its_references():
    configs = named_sweep("validation-table2", [0], BASE, variants=VALIDATION_KINDS)
    goal_rows = [
        dataclasses.replace(c, validation_fraction=VALIDATION_FRACTION)
        for c in table_configs("table2", "remaining", [0], BASE)
        if c.optimizer == "goal_phs"
    ]
    phs_rows = [
        dataclasses.replace(c, validation_fraction=VALIDATION_FRACTION)
        for c in table_configs("table2", "remaining", [0], BASE)
        if c.optimizer == "phs"
    ]
    by_kind = [configs[i : i + 8] for i in range(0, len(configs), 8)]
    validation, both, phs, goal = by_kind
    assert validation == [
        dataclasses.replace(c, brake_trigger="validation") for c in goal_rows
    ]
    assert both == [dataclasses.replace(c, brake_trigger="both") for c in goal_rows]
    assert goal == goal_rows
    assert sorted(phs, key=_pair_of) == sorted(phs_rows, key=_pair_of)
    assert all(run_name(c).endswith("_val2_s0") for c in both)
    assert len({run_name(c) for c in configs}) == len(configs)


def test_validation_sweep_keeps_a_split_and_patience_given_on_the_base():
    base = dataclasses.replace(BASE, validation_fraction=0.2, validation_patience=3)
    configs = named_sweep("validation-table1", [0], base, variants=["validation"])
    assert len(configs) == len(presets.pairs("table1"))
    assert {(c.validation_fraction, c.validation_patience) for c in configs} == {
        (0.2, 3)
    }
    assert all("_val3_" in run_name(c) for c in configs)


def test_validation_sweep_rejects_an_unknown_kind_by_name():
    with pytest.raises(ValueError, match="unknown kind.*goals.*validation, both"):
        named_sweep("validation-table2", [0], BASE, variants=["validation", "goals"])
    with pytest.raises(ValueError, match="beyond-\\* and validation-\\*"):
        named_sweep("figure1", [0], BASE, variants=["phs"])


RESULTS = Path(__file__).resolve().parents[1] / "results" / "beyond"
# Settings of the recorded train.py runs that do not change training.
NOT_TRAINING = ("data_dir", "checkpoint_every_epochs", "max_checkpoints", "conv_impl")


def _training_settings(config: dict) -> dict:
    unused = ("goal", "brake_factor") if config["optimizer"] == "phs" else ()
    return {
        name: config.get(name, getattr(TrainConfig, name))
        for name in TrainConfig.__dataclass_fields__
        if name not in NOT_TRAINING + unused
    }


def _as_text(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True)


@pytest.mark.parametrize(
    "folder, name, kinds, num_epochs",
    [
        ("validation-batch64-20epochs", "validation-table2", None, 20),
        (
            "validation-table1-batch64-60epochs",
            "validation-table1",
            VALIDATION_KINDS,
            60,
        ),
    ],
)
def test_validation_sweeps_train_the_configurations_of_the_recorded_runs(
    folder, name, kinds, num_epochs
):
    summaries = sorted((RESULTS / folder).glob("*/summary.json"))
    if not summaries:
        pytest.skip(f"no runs in results/beyond/{folder}")
    recorded = [json.loads(p.read_text())["config"] for p in summaries]
    base = TrainConfig(num_epochs=num_epochs, batch_size=64)
    configs = named_sweep(name, [0, 1, 2], base, variants=kinds)
    swept = [_training_settings(dataclasses.asdict(c)) for c in configs]
    assert sorted(map(_as_text, swept)) == sorted(
        _as_text(_training_settings(c)) for c in recorded
    )


def test_batch_size_sweep_runs_goal_and_phs_of_four_pairs_that_train():
    from phs_optax_training.experiments import batch_size

    base = TrainConfig(batch_size=16, validation_fraction=0.1)
    configs = named_sweep("batch-size", [0, 1, 2, 3, 4], base)
    assert len(configs) == 4 * 2 * 5
    assert {c.optimizer for c in configs} == {"goal_phs", "phs"}
    assert {(c.learning_rate, c.friction, c.mass) for c in configs} == set(
        batch_size.PAIRS
    )
    assert {(c.batch_size, c.validation_fraction) for c in configs} == {(16, 0.1)}
    # the same runs as the Table 2 rows of those pairs
    table2 = {
        run_name(c) for c in named_sweep("table2-remaining", [0, 1, 2, 3, 4], base)
    }
    assert {run_name(c) for c in configs} <= table2
    # neither pair of low friction, whose PHS run collapses at batch 64
    assert not {(c.friction, c.mass) for c in configs} & {(0.01, 10.0), (0.1, 0.1)}


def test_the_rule_predicts_from_the_temperature_and_its_test_set_is_new():
    from phs_optax_training.experiments import rule

    # formed on: batch 10 wins and batch 32 losses of the step-0.1 pairs
    assert rule.prediction(0.1, 0.1, 10.0, 10) == "win"
    assert rule.prediction(0.1, 0.1, 10.0, 32) == "lose"
    assert rule.prediction(0.1, 0.1, 10.0, 16) == "none"
    table2 = {
        (p.learning_rate, p.friction, p.mass) for p in presets.table_presets("table2")
    }
    predicted = set()
    for batch, triples in rule.HELD_OUT.items():
        assert not set(triples) & table2  # none was used to form the rule
        base = TrainConfig(batch_size=batch, validation_fraction=0.1)
        configs = named_sweep("rule-heldout", [0, 1], base)
        assert len(configs) == len(triples) * 2 * 2
        predicted |= {rule.prediction(*t, batch) for t in triples}
        assert all(rule.is_held_out("fashion_mnist", *t, batch) for t in triples)
    assert predicted == {"win", "lose"}  # both outcomes are at stake, no abstention
    assert not rule.is_held_out("fashion_mnist", 0.1, 0.1, 10.0, 10)
    assert rule.is_held_out("cifar10", 0.1, 0.1, 100.0, 64)  # a Table 1 pair
    assert not rule.is_held_out("cifar10", 0.1, 0.1, 100.0, 10)
    with pytest.raises(ValueError, match="not 32"):
        named_sweep("rule-heldout", [0], TrainConfig(batch_size=32))
