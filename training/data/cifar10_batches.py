"""CIFAR-10 from the official python release (``cifar-10-batches-py``).

The release holds five pickled training batches and one test batch, each a
dict with ``b"data"`` (N x 3072 uint8, channel-major 32x32 images) and
``b"labels"``. They are read from the folder or straight from the
``cifar-10-python.tar.gz`` tarball.
"""

from __future__ import annotations

import os
import pickle
import tarfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from phs_optax_training.data.dataset import CIFAR10_CLASSES, RawSplits

CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"


def read_cifar10_batches(folder: str | os.PathLike[str]) -> RawSplits | None:
    """Reads the official ``cifar-10-batches-py`` folder; None if incomplete."""
    names = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)
    paths = {name: Path(folder, name) for name in names}
    if not all(path.is_file() for path in paths.values()):
        return None
    return _cifar10_from_batches({name: p.read_bytes() for name, p in paths.items()})


def read_cifar10_batches_archive(archive: str | os.PathLike[str]) -> RawSplits | None:
    """Reads the official python tarball; None if ``archive`` is another tar.

    The tarball is recognised by its first file lying under
    ``cifar-10-batches-py/``.
    """
    batch_names = {*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH}
    with tarfile.open(archive, "r:*") as tar:
        first = next((m for m in tar if m.isfile()), None)
        if first is None or "cifar-10-batches-py/" not in first.name:
            return None
        batches = {}
        for member in tar:  # a new iteration starts from the first member
            base = member.name.rsplit("/", 1)[-1]
            file = tar.extractfile(member) if base in batch_names else None
            if file is not None:
                batches[base] = file.read()
    return _cifar10_from_batches(batches)


def _cifar10_from_batches(batches: Mapping[str, bytes]) -> RawSplits:
    """Builds CIFAR-10 splits from the bytes of the pickled batches."""

    def unpickle(name: str) -> tuple[np.ndarray, np.ndarray]:
        batch = pickle.loads(batches[name], encoding="bytes")
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return images.transpose(0, 2, 3, 1), np.asarray(batch[b"labels"], np.int32)

    train = [unpickle(name) for name in CIFAR10_TRAIN_BATCHES]
    test_images, test_labels = unpickle(CIFAR10_TEST_BATCH)
    return RawSplits(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=CIFAR10_CLASSES,
    )
