"""Fashion-MNIST from the four official IDX files (gzipped or not).

An IDX file is a magic number (two zero bytes, a type code, the number of
dimensions), the dimensions as big-endian uint32, then the values row-major.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from phs_optax_training.data.dataset import (
    FASHION_MNIST_CLASSES,
    NUM_CLASSES,
    SPLITS,
    RawSplits,
    check_labels,
)

# Official IDX file names (without ``.gz``), keyed by (split, kind).
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) into a native-endian NumPy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    return parse_idx(data, source=str(path))


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Parses the bytes of an IDX file: magic, big-endian dims, then the values."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise ValueError(f"{source}: not an IDX file (bad magic number)")
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header_size = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    expected = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{source}: IDX header says shape {shape} ({expected} bytes), "
            f"file has {len(data)} bytes"
        )
    values = np.frombuffer(data, dtype, offset=header_size).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def find_idx_files(folder: str | os.PathLike[str]) -> dict[tuple[str, str], Path]:
    """The four official IDX files in ``folder`` (plain preferred over ``.gz``).

    Returns an empty dict unless all four are present.
    """
    found = {}
    for key, stem in IDX_FILES.items():
        candidates = [Path(folder, stem), Path(folder, stem + ".gz")]
        existing = [path for path in candidates if path.is_file()]
        if not existing:
            return {}
        found[key] = existing[0]
    return found


def read_fashion_mnist_idx(folder: str | os.PathLike[str]) -> RawSplits | None:
    """Reads the four IDX files in ``folder``; None if any is missing."""
    files = find_idx_files(folder)
    if not files:
        return None
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in SPLITS:
        images, labels = arrays[split, "images"], arrays[split, "labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{folder}: {split} images {images.shape} and labels "
                f"{labels.shape} do not match"
            )
        check_labels(labels, NUM_CLASSES["fashion_mnist"], f"{folder} ({split})")
    return RawSplits(
        train_images=arrays["train", "images"].astype(np.uint8)[..., None],
        train_labels=arrays["train", "labels"].astype(np.int32),
        test_images=arrays["test", "images"].astype(np.uint8)[..., None],
        test_labels=arrays["test", "labels"].astype(np.int32),
        class_names=FASHION_MNIST_CLASSES,
    )
