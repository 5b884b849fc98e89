"""The training loop on small synthetic data: metrics, evaluation, resume, validation."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from phs_optax_training import data as data_lib
from phs_optax_training import engine, train_lib
from phs_optax_training.config import ConfigError, TrainConfig, validate
from phs_optax_training.model import create_model

QUICK = dict(
    dataset="fashion_mnist",
    batch_size=32,
    eval_batch_size=64,
    num_epochs=2,
    learning_rate=0.1,
    mass=1.0,
    friction=1.0,
    goal=0.5,
    brake_factor=10.0,
)


@pytest.fixture(scope="module")
def dataset(small_fashion_mnist_dir):
    return data_lib.load_dataset("fashion_mnist", str(small_fashion_mnist_dir))


def read_rows(workdir: Path) -> list[dict]:
    return [
        json.loads(line)
        for line in (workdir / "metrics.jsonl").read_text().splitlines()
    ]


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_goal_phs_training_learns_and_brakes(dataset, tmp_path):
    config = TrainConfig(**{**QUICK, "num_epochs": 3})
    summary = train_lib.train_and_evaluate(
        config, tmp_path, dataset=dataset, progress=False
    )
    rows = read_rows(tmp_path)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert summary["final_test_accuracy"] > 0.5  # chance is 0.1
    assert rows[-1]["braked"] is True
    assert 0 <= summary["brake_step"] < 3 * (512 // 32)
    assert rows[-1]["friction"] == pytest.approx(10.0)


def test_metrics_line_per_epoch_has_every_field(dataset, tmp_path):
    train_lib.train_and_evaluate(
        TrainConfig(**QUICK), tmp_path, dataset=dataset, progress=False
    )
    rows = read_rows(tmp_path)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert [row["step"] for row in rows] == [16, 32]
    expected = {
        "epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
        "validation_loss", "validation_accuracy", "friction", "braked", "brake_step", "kinetic_energy",
        "hamiltonian", "images_per_second", "wall_time", "diverged_at_step",
    }  # fmt: skip
    assert set(rows[0]) == expected
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs_done"] == 2
    assert summary["num_params"] == 44_426
    assert summary["config"]["conv_impl"] == "auto"
    on_cpu = jax.default_backend() == "cpu"
    assert summary["conv_impl"] == ("space_to_depth" if on_cpu else "stock")
    assert rows[1]["hamiltonian"] == pytest.approx(
        rows[1]["kinetic_energy"] + rows[1]["train_loss"]
    )


@pytest.mark.parametrize("optimizer", ["sgd", "phs"])
def test_baseline_optimizers_train(dataset, tmp_path, optimizer):
    config = TrainConfig(**{**QUICK, "optimizer": optimizer, "num_epochs": 1})
    train_lib.train_and_evaluate(config, tmp_path, dataset=dataset, progress=False)
    row = read_rows(tmp_path)[0]
    assert row["braked"] is None
    assert np.isfinite(row["train_loss"])


@pytest.mark.parametrize(
    ("conv_impl", "expected"),
    [
        ("auto", None),  # by the backend
        ("stock", "stock"),
        ("space_to_depth", "space_to_depth"),
    ],
)
def test_the_model_has_the_configured_layers(conv_impl, expected):
    if expected is None:
        expected = "space_to_depth" if jax.default_backend() == "cpu" else "stock"
    model = create_model(TrainConfig(conv_impl=conv_impl), num_classes=7)
    assert (model.conv_impl, model.num_classes) == (expected, 7)


def test_unknown_conv_impl_is_a_one_line_config_error():
    with pytest.raises(
        ConfigError,
        match=r"^unknown --conv_impl='fast'; choose one of auto, stock, space_to_depth$",
    ):
        validate(TrainConfig(conv_impl="fast"), num_devices=1)


def test_both_conv_impls_train_the_same_up_to_float_rounding(dataset, tmp_path):
    rows = {}
    for conv_impl in ("stock", "space_to_depth"):
        config = TrainConfig(**{**QUICK, "num_epochs": 1, "conv_impl": conv_impl})
        summary = train_lib.train_and_evaluate(
            config, tmp_path / conv_impl, dataset=dataset, progress=False
        )
        assert summary["conv_impl"] == conv_impl
        rows[conv_impl] = read_rows(tmp_path / conv_impl)[0]
    stock, fast = rows["stock"], rows["space_to_depth"]
    assert fast["brake_step"] == stock["brake_step"]
    for key in ("train_loss", "test_loss", "test_accuracy", "kinetic_energy"):
        assert fast[key] == pytest.approx(stock[key], rel=1e-3)


def test_evaluation_counts_every_test_example_once(dataset):
    params = train_lib.initial_params(train_lib.LeNet5(), 0, dataset.test_images[:1])
    num_examples = len(dataset.test_labels)  # 203: no batch size divides it
    eval_step = train_lib.make_eval_step(train_lib.LeNet5().apply, 64, num_examples)
    replicate = train_lib.replicate
    loss, accuracy = train_lib.evaluate(
        eval_step,
        replicate(params),
        replicate(dataset.test_images),
        replicate(dataset.test_labels),
        num_examples,
        64,
    )
    logits = np.asarray(
        train_lib.LeNet5().apply({"params": params}, dataset.test_images)
    )
    expected_accuracy = np.mean(np.argmax(logits, -1) == dataset.test_labels)
    log_probs = np.asarray(jax.nn.log_softmax(logits))
    expected_loss = -np.mean(log_probs[np.arange(num_examples), dataset.test_labels])
    assert accuracy == pytest.approx(expected_accuracy)
    assert loss == pytest.approx(expected_loss, rel=1e-5)


@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3)])
def test_initial_params_are_those_of_init_compiled_with_default_options(image_shape):
    model = train_lib.LeNet5()
    example = np.zeros((1, *image_shape), np.float32)
    default_init = jax.jit(model.init)
    for seed in (0, 1, 12345):
        expected = default_init(jax.random.PRNGKey(seed), example)["params"]
        got = train_lib.initial_params(model, seed, example)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"optimizer": "sgd"},
        {"release_after": 8, "kick_energy": 0.01, "deadline": 6},
        {"ema_decay": 0.9},
    ],
)
def test_initial_state_is_flax_train_state_create_with_a_jitted_init(options):
    config = TrainConfig(**{**QUICK, **options})
    model = train_lib.LeNet5()
    params = train_lib.initial_params(model, 0, np.zeros((1, 28, 28, 1), np.float32))
    tx = train_lib.create_optimizer(config)
    state = train_lib.initial_state(model, params, tx)
    expected = train_lib.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
    assert state.step == 0 and state.tx is tx and state.apply_fn == model.apply
    assert jax.tree.structure(state.opt_state) == jax.tree.structure(expected.opt_state)
    for a, b in zip(
        jax.tree.leaves(state.opt_state),
        jax.tree.leaves(expected.opt_state),
        strict=True,
    ):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_train_step_compiles_once_for_its_own_outputs_and_a_new_epochs_totals(
    dataset,
):
    config = TrainConfig(**QUICK)
    model = train_lib.LeNet5()
    params = train_lib.initial_params(model, 0, dataset.train_images[:1])
    state = train_lib.replicate(
        train_lib.initial_state(model, params, train_lib.create_optimizer(config))
    )
    copies = jax.local_device_count()
    images, labels, permutation = (
        train_lib.put_per_device([array] * copies)
        for array in (
            dataset.train_images,
            dataset.train_labels,
            np.arange(len(dataset.train_labels), dtype=np.int32),
        )
    )
    step = train_lib.make_train_step(32, 4, 1)

    new_totals = train_lib.new_totals
    state, totals = step(state, new_totals(), images, labels, permutation)

    compilations = []

    def count(event: str, duration: float, **kwargs) -> None:
        # A program loaded from the session's persistent cache is a compilation
        # the step needed as much as one that ran the compiler.
        if event in (
            "/jax/core/compile/backend_compile_duration",
            "/jax/compilation_cache/cache_retrieval_time_sec",
        ):
            compilations.append(event)

    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        state, totals = step(state, totals, images, labels, permutation)
        state, totals = step(state, new_totals(), images, labels, permutation)
        jax.block_until_ready(totals)
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
    assert compilations == []


def test_resume_gives_the_same_state_as_one_go(dataset, tmp_path):
    config = TrainConfig(**QUICK)
    train_lib.train_and_evaluate(
        config, tmp_path / "one_go", dataset=dataset, progress=False
    )
    one_epoch = TrainConfig(**{**QUICK, "num_epochs": 1})
    train_lib.train_and_evaluate(
        one_epoch, tmp_path / "resumed", dataset=dataset, progress=False
    )
    train_lib.train_and_evaluate(
        config, tmp_path / "resumed", dataset=dataset, progress=False
    )

    one_go = train_lib.final_params(tmp_path / "one_go", config, dataset)
    resumed = train_lib.final_params(tmp_path / "resumed", config, dataset)
    assert_trees_equal(one_go.params, resumed.params)
    assert_trees_equal(one_go.opt_state, resumed.opt_state)
    assert bool(one_go.opt_state.braked) == bool(resumed.opt_state.braked)
    assert [r["epoch"] for r in read_rows(tmp_path / "resumed")] == [1, 2]


def test_rerun_of_finished_workdir_trains_nothing_more(dataset, tmp_path):
    config = TrainConfig(**{**QUICK, "num_epochs": 1})
    train_lib.train_and_evaluate(config, tmp_path, dataset=dataset, progress=False)
    summary = train_lib.train_and_evaluate(
        config, tmp_path, dataset=dataset, progress=False
    )
    assert summary["epochs_done"] == 1
    assert len(read_rows(tmp_path)) == 1


def test_validation_brake_fires_after_patience_rises():
    brake = engine.ValidationBrake(patience=2)
    assert [brake.should_brake(v) for v in [1.0, 0.9, 0.95, 0.9, 0.95, 0.97]] == [
        False, False, False, False, False, True,
    ]  # fmt: skip


def test_validation_triggered_braking_runs_and_reports_validation_loss(
    dataset, tmp_path
):
    config = TrainConfig(
        **{**QUICK, "num_epochs": 3, "validation_fraction": 0.25},
        brake_trigger="validation",
        validation_patience=1,
    )
    summary = train_lib.train_and_evaluate(
        config, tmp_path, dataset=dataset, progress=False
    )
    rows = read_rows(tmp_path)
    losses = [row["validation_loss"] for row in rows]
    assert all(np.isfinite(losses))
    rose = any(
        later > earlier for earlier, later in zip(losses, losses[1:], strict=False)
    )
    # With goal=None the only way to brake is a rising validation loss.
    assert rows[-1]["braked"] is rose
    assert summary["config"]["steps_per_epoch"] == 384 // 32
    # model selection on the validation split, never on the test set
    best = max(rows, key=lambda row: (row["validation_accuracy"], -row["epoch"]))
    assert summary["selected_epoch"] == best["epoch"]
    assert summary["selected_test_accuracy"] == best["test_accuracy"]


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="the Debian package dataset-fashion-mnist is not installed",
)
def test_loss_falls_on_real_fashion_mnist(tmp_path):
    config = TrainConfig(
        num_epochs=2, max_train_examples=6400, max_test_examples=2000, batch_size=64
    )
    summary = train_lib.train_and_evaluate(config, tmp_path, progress=False)
    rows = read_rows(tmp_path)
    assert summary["dataset_source"].startswith("system:")
    assert rows[0]["train_loss"] < np.log(10)  # below the loss of a uniform guess
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["test_accuracy"] > 0.6


def test_capped_splits_are_random_subsets_not_the_first_rows():
    labels = np.repeat(np.arange(10), 100)  # sorted by class, like class folders
    images = np.zeros((1000, 28, 28, 1), np.float32)
    dataset = data_lib.Dataset(
        images, labels, images, labels, 10, "sorted", "test", np.zeros(1), np.ones(1)
    )
    config = TrainConfig(max_train_examples=200, max_test_examples=100)
    splits = train_lib.split_data(dataset, config)
    assert len(splits["train"].labels) == 200 and len(splits["test"].labels) == 100
    assert len(np.unique(splits["train"].labels)) == 10
    assert len(np.unique(splits["test"].labels)) == 10


def test_shards_are_disjoint_equal_and_cover_the_split():
    split = train_lib.Split(np.arange(10)[:, None], np.arange(10))
    shards = [train_lib.shard_of(split, k, 3) for k in range(3)]
    assert [len(s.labels) for s in shards] == [3, 3, 3]
    together = np.concatenate([s.labels for s in shards])
    assert len(set(together)) == 9


def test_each_shard_has_its_own_epoch_order():
    orders = [train_lib.epoch_permutation(0, 1, 100, shard) for shard in (0, 1)]
    assert sorted(orders[0]) == list(range(100))
    assert not np.array_equal(orders[0], orders[1])


def test_summary_records_what_produced_the_run(dataset, tmp_path):
    import subprocess

    summary = train_lib.train_and_evaluate(
        TrainConfig(**{**QUICK, "num_epochs": 1}), tmp_path, dataset=dataset,
        progress=False,
    )  # fmt: skip
    recorded = summary["provenance"]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.strip()  # fmt: skip
    if head:
        assert recorded["commit"].removesuffix("+dirty") == head
    assert recorded["versions"]["jax"] == jax.__version__
    assert recorded["versions"]["optax"] and recorded["versions"]["flax"]
    assert recorded["cpu"] and recorded["cpu_threads"] >= 1
    assert recorded["device_count"] == jax.device_count()
    assert recorded["device_kind"] == jax.devices()[0].device_kind
    # no validation split: nothing to select on but the test set
    assert summary["selected_test_accuracy"] is None
