"""Shared set-up: one compilation cache for the session, small learnable datasets."""

import gzip
import importlib.util
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest

from phs_optax_training import xla_flags

# The tests run with the XLA flag that train.py and the sweep set, in this
# process (before JAX starts) and in the processes it starts, which inherit
# it; under pytest-xdist the controller sets it before it starts its workers.
xla_flags.set_cpu_flags()

# Many tests compile the same programs: the same train step in-process and in
# the train.py processes that the CLI tests start. JAX's persistent cache lets
# each program compile once per session; the cache directory is passed to child
# processes through the environment and removed when the session ends. Reads
# and writes take a file lock (it is on whenever the size is capped), because
# two train.py processes can write and read the same entry at once; without
# filelock (a dependency) the tests run without the cache. Under pytest-xdist
# the controller process sets the variable before it starts its workers, so
# they inherit it and share the cache; only the controller removes it.
_SESSION_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ and importlib.util.find_spec(
    "filelock"
):
    _SESSION_CACHE = tempfile.mkdtemp(prefix="phs-optax-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _SESSION_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 << 30))


def pytest_unconfigure(config):
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


def synthetic_images(num_examples: int, seed: int, shape=(28, 28)):
    """Images whose class is a bright 7x7 block at one of 10 places, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, num_examples).astype(np.uint8)
    images = rng.integers(0, 80, (num_examples, *shape)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[i, 2 + 12 * row : 9 + 12 * row, 1 + 5 * col : 8 + 5 * col] = 220
    return images, labels


def write_idx(path: Path, array: np.ndarray) -> None:
    """Writes ``array`` (uint8) in the IDX format of the official files, gzipped."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def write_fashion_mnist_files(directory: Path, num_train: int, num_test: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = synthetic_images(num_train, seed=0)
    test_images, test_labels = synthetic_images(num_test, seed=1)
    write_idx(directory / "train-images-idx3-ubyte.gz", train_images)
    write_idx(directory / "train-labels-idx1-ubyte.gz", train_labels)
    write_idx(directory / "t10k-images-idx3-ubyte.gz", test_images)
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", test_labels)
    return directory


@pytest.fixture(scope="session")
def small_fashion_mnist_dir(tmp_path_factory) -> Path:
    """512 training and 203 test images (203 divides by no batch size used)."""
    return write_fashion_mnist_files(
        tmp_path_factory.mktemp("fashion_mnist"), num_train=512, num_test=203
    )
