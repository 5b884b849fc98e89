"""train.py keeps its compiled programs in JAX's persistent cache for later runs."""

import numpy as np
import pytest
from test_cli import QUICK_FLAGS, _leaves, final_params, run_train

from phs_optax_training import compilation_cache


def test_default_directory_is_jax_under_the_data_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PHS_OPTAX_CACHE", str(tmp_path))
    assert compilation_cache.default_directory() == tmp_path / "jax"


def test_empty_directory_turns_the_cache_off():
    assert compilation_cache.enable("") is None


def test_jax_compilation_cache_dir_from_the_environment_is_left_in_charge(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "theirs"))
    assert compilation_cache.enable(tmp_path / "ours") is None


@pytest.mark.slow
def test_second_run_loads_the_first_runs_programs_and_trains_the_same(
    tmp_path, small_fashion_mnist_dir
):
    cache = tmp_path / "cache"
    env = {"JAX_COMPILATION_CACHE_DIR": ""}  # not the test session's cache
    common = [
        f"--data_dir={small_fashion_mnist_dir}",
        "--num_epochs=1",
        f"--compilation_cache_dir={cache}",
        *QUICK_FLAGS,
    ]

    def entries():
        return {p.name: p.read_bytes() for p in cache.glob("*-atime")}

    first = run_train(common + [f"--workdir={tmp_path / 'first'}"], env=env)
    assert first.returncode == 0, first.stderr
    after_first = entries()
    assert after_first, "no compiled program was stored"
    second = run_train(common + [f"--workdir={tmp_path / 'second'}"], env=env)
    assert second.returncode == 0, second.stderr
    after_second = entries()
    # Every program of the first run was read again (its read time updated).
    # The second run may add one: a program that compiled in less than the
    # cache's minimum compile time (0.2 s) the first time and more the second.
    assert after_first.keys() <= after_second.keys()
    for name, read_time in after_first.items():
        assert after_second[name] != read_time, name
    params = [
        _leaves(final_params(tmp_path / run, small_fashion_mnist_dir).params)
        for run in ("first", "second")
    ]
    for a, b in zip(*params, strict=True):
        np.testing.assert_array_equal(a, b)
