"""Shared fixtures: small learnable image datasets written as the official files."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest


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
