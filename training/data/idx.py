"""Fashion-MNIST from the four official IDX files (gzipped or not).

An IDX file is a magic number (two zero bytes, a type code, the number of
dimensions), the dimensions as big-endian uint32, then the values row-major.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path

import numpy as np

from phs_optax_training.data.dataset import (
    FASHION_MNIST_CLASSES,
    NUM_CLASSES,
    SPLITS,
    DataFileError,
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
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads an IDX file (gzipped if its name ends in ``.gz``) into a native-endian
    NumPy array.

    Raises:
        DataFileError: The file cannot be read, is not gzip-compressed although
            named ``.gz``, is truncated, or is not a well-formed IDX file; the
            message names the file and what was expected.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataFileError(f"cannot read {path}: {_reason(error)}") from error
    if path.suffix == ".gz":
        data = _gunzip(data, path)
    return parse_idx(data, source=str(path))


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Parses the bytes of an IDX file: magic, big-endian dims, then the values.

    Raises `DataFileError` (a `ValueError`) for a bad magic number, a header
    cut short, or a byte count that does not match the header.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        found = " ".join(f"{byte:02x}" for byte in data[:4]) or "nothing"
        raise DataFileError(
            f"{source} is not an IDX file (bad magic number {found}; expected "
            "00 00 <type 08-0e> <number of dimensions>)"
        )
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataFileError(
            f"{source} is truncated: its IDX header announces {ndim} dimensions "
            f"({header_size} header bytes) but the data ends after {len(data)} bytes"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    expected = _idx_size(data)
    if len(data) != expected:
        problem = "is truncated" if len(data) < expected else "has trailing bytes"
        raise DataFileError(
            f"{source} {problem}: its IDX header says shape {shape} of "
            f"{dtype.name} ({expected:,} bytes), the data has {len(data):,} bytes"
        )
    values = np.frombuffer(data, dtype, offset=header_size).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def _idx_size(data: bytes) -> int | None:
    """Total bytes (header and values) that an IDX header announces; None if the
    header is incomplete or invalid."""
    if len(data) < 4 or data[2] not in IDX_DTYPES:
        return None
    ndim = data[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        return None
    shape = [int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4)]
    return header_size + math.prod(shape) * IDX_DTYPES[data[2]].itemsize


def _gunzip(data: bytes, path: Path) -> bytes:
    """The decompressed bytes of a gzip file (all its members); `DataFileError`
    saying what is wrong if it is not gzip, corrupt or cut short."""
    if not data:
        raise DataFileError(f"{path} is empty (expected gzip-compressed IDX data)")
    if data[:2] != _GZIP_MAGIC:
        raise DataFileError(
            f"{path} is not gzip-compressed (it starts with {data[:2].hex(' ')}, "
            "gzip with 1f 8b); a plain IDX file must not be named .gz"
        )
    members = []
    rest = data
    while rest:
        decompressor = zlib.decompressobj(wbits=31)  # 31: gzip header and trailer
        try:
            members.append(decompressor.decompress(rest))
        except zlib.error as error:
            raise DataFileError(f"{path} is corrupt: gzip data: {error}") from error
        if not decompressor.eof:
            out = b"".join(members)
            expected = _idx_size(out)
            what = (
                "before the end of the IDX header"
                if expected is None
                else f"expected {expected:,} bytes of IDX data, got {len(out):,}"
            )
            raise DataFileError(
                f"{path} is truncated: gzip stream ended early ({what})"
            )
        rest = decompressor.unused_data.lstrip(b"\0")  # gzip allows zero padding
    return b"".join(members)


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


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


def missing_idx_files(folder: str | os.PathLike[str]) -> list[str]:
    """The official IDX file names (``<stem>[.gz]``) that ``folder`` lacks."""
    return [
        f"{stem}[.gz]"
        for stem in IDX_FILES.values()
        if not (Path(folder, stem).is_file() or Path(folder, stem + ".gz").is_file())
    ]


def read_fashion_mnist_idx(folder: str | os.PathLike[str]) -> RawSplits | None:
    """Reads the four IDX files in ``folder``; None if any is missing.

    Raises:
        DataFileError: A file is unreadable or corrupt (see `read_idx`), is not
            unsigned bytes, does not hold images (N, height, width) or labels
            (N,) as its name says, holds a label outside 0-9, or an images file
            and its labels file disagree on the number of examples.
    """
    files = find_idx_files(folder)
    if not files:
        return None
    arrays = {}
    for (split, kind), path in files.items():
        array = read_idx(path)
        expected_ndim, layout = (
            (3, "(N, height, width)") if kind == "images" else (1, "(N,)")
        )
        if array.dtype != np.uint8 or array.ndim != expected_ndim:
            raise DataFileError(
                f"{path} holds {array.dtype.name} values of shape {array.shape}; "
                f"expected {kind} as unsigned bytes (IDX type 08) of shape {layout}"
            )
        arrays[split, kind] = array
    for split in SPLITS:
        images, labels = arrays[split, "images"], arrays[split, "labels"]
        images_file, labels_file = files[split, "images"], files[split, "labels"]
        if len(images) != len(labels):
            raise DataFileError(
                f"{images_file} holds {len(images):,} images but its labels file "
                f"{labels_file.name} {len(labels):,}"
            )
        if not len(images):
            raise DataFileError(f"{images_file} holds no images")
        check_labels(labels, NUM_CLASSES["fashion_mnist"], str(labels_file))
    return RawSplits(
        train_images=arrays["train", "images"][..., None],
        train_labels=arrays["train", "labels"].astype(np.int32),
        test_images=arrays["test", "images"][..., None],
        test_labels=arrays["test", "labels"].astype(np.int32),
        class_names=FASHION_MNIST_CLASSES,
    )
