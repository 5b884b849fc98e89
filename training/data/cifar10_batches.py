"""CIFAR-10 from the official python release (``cifar-10-batches-py``).

The release holds five pickled training batches and one test batch, each a
dict with ``b"data"`` (N x 3072 uint8, channel-major 32x32 images) and
``b"labels"``. They are read from the folder or straight from the
``cifar-10-python.tar.gz`` tarball.

Unpickling runs whatever callables a pickle names, so the batches are read
with an unpickler that resolves only the names a NumPy array needs: a file
that names anything else (a pickle made to run code) is refused unread.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from phs_optax_training.data.dataset import (
    CIFAR10_CLASSES,
    DataFileError,
    RawSplits,
    check_labels,
)

CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"


def read_cifar10_batches(folder: str | os.PathLike[str]) -> RawSplits | None:
    """Reads the official ``cifar-10-batches-py`` folder; None if incomplete.

    Raises:
        DataFileError: A batch file cannot be read, unpickled, or does not hold
            N x 3072 pixel bytes with N labels in 0-9.
    """
    names = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)
    paths = {name: Path(folder, name) for name in names}
    if not all(path.is_file() for path in paths.values()):
        return None
    batches = {}
    for name, path in paths.items():
        try:
            batches[name] = (str(path), path.read_bytes())
        except OSError as error:
            reason = error.strerror or str(error)
            raise DataFileError(f"cannot read {path}: {reason}") from error
    return _cifar10_from_batches(batches)


def missing_cifar10_batches(folder: str | os.PathLike[str]) -> list[str]:
    """The batch files of the python release that ``folder`` lacks."""
    names = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)
    return [name for name in names if not Path(folder, name).is_file()]


def read_cifar10_batches_archive(archive: str | os.PathLike[str]) -> RawSplits | None:
    """Reads the official python tarball; None if ``archive`` is another tar.

    The tarball is recognised by its first file lying under
    ``cifar-10-batches-py/``.

    Raises:
        DataFileError: ``archive`` is not a readable tar archive (corrupt or
            truncated), lacks a batch, or a batch is malformed.
    """
    archive = Path(archive)
    batch_names = {*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH}
    batches = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            first = next((m for m in tar if m.isfile()), None)
            if first is None or "cifar-10-batches-py/" not in first.name:
                return None
            for member in tar:  # a new iteration starts from the first member
                base = member.name.rsplit("/", 1)[-1]
                file = tar.extractfile(member) if base in batch_names else None
                if file is not None:
                    batches[base] = (f"{member.name} in {archive}", file.read())
            read_to_end(tar)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise DataFileError(archive_problem(archive, error)) from error
    missing = [name for name in sorted(batch_names) if name not in batches]
    if missing:
        raise DataFileError(
            f"{archive} lacks {', '.join(missing)} (the CIFAR-10 python release "
            f"holds {', '.join(CIFAR10_TRAIN_BATCHES)} and {CIFAR10_TEST_BATCH})"
        )
    return _cifar10_from_batches(batches)


def read_to_end(tar: tarfile.TarFile) -> None:
    """Reads what is left of a tar archive's stream, so that a compressed
    archive's checksum is verified (the member headers end before it)."""
    while tar.fileobj.read(1 << 20):
        pass


def archive_problem(archive: Path, error: BaseException) -> str:
    """One line on why a tar archive could not be read."""
    text = (str(error).strip().splitlines() or [""])[0]
    if isinstance(error, EOFError) or "unexpected end of data" in text:
        return f"{archive} is truncated: the archive ends early ({text})"
    if isinstance(error, tarfile.ReadError) and "could not be opened" in text:
        return (
            f"{archive} is not a readable tar archive (neither a tar file nor one "
            "compressed with gzip, bz2 or xz)"
        )
    if isinstance(error, (gzip.BadGzipFile, zlib.error)):
        return f"{archive} is corrupt ({text})"
    if isinstance(error, OSError):
        if error.strerror:
            return f"cannot read {archive}: {error.strerror}"
    return f"{archive} is not a readable tar archive ({type(error).__name__}: {text})"


def _cifar10_from_batches(batches: Mapping[str, tuple[str, bytes]]) -> RawSplits:
    """Builds CIFAR-10 splits from (source name, pickled bytes) of each batch."""
    train = [_unpickle_batch(*batches[name]) for name in CIFAR10_TRAIN_BATCHES]
    test_images, test_labels = _unpickle_batch(*batches[CIFAR10_TEST_BATCH])
    return RawSplits(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=CIFAR10_CLASSES,
    )


# What pickled NumPy arrays name, under NumPy 1 and 2 module paths, and the
# codec Python 3 uses for bytes in protocol-2 pickles. Nothing here runs code.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        *(
            (f"numpy.{core}.{module}", name)
            for core in ("core", "_core")
            for module, name in (
                ("multiarray", "_reconstruct"),
                ("multiarray", "scalar"),
                ("numeric", "_frombuffer"),
            )
        ),
    }
)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, numbers and NumPy arrays, nothing else."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"{module}.{name} is not allowed in a CIFAR-10 batch"
            )
        return super().find_class(module, name)


def _unpickle_batch(source: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(N x 32 x 32 x 3 uint8 images, N int32 labels) of one pickled batch."""
    try:
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # corrupt pickles raise many types
        text = (str(error).strip().splitlines() or [""])[0][:200]
        raise DataFileError(
            f"{source} cannot be unpickled ({type(error).__name__}: {text}); "
            "expected a CIFAR-10 python batch"
        ) from error
    if not isinstance(batch, dict) or not {b"data", b"labels"} <= batch.keys():
        raise DataFileError(
            f"{source} is not a CIFAR-10 python batch (expected a dict with "
            "b'data' and b'labels')"
        )
    try:
        pixels = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"])
    except (TypeError, ValueError) as error:
        raise DataFileError(
            f"{source}: data or labels are not arrays ({error})"
        ) from error
    if (
        pixels.ndim != 2
        or pixels.shape[1] != 3 * 32 * 32
        or not np.issubdtype(pixels.dtype, np.integer)
        or (pixels.size and (pixels.min() < 0 or pixels.max() > 255))
    ):
        raise DataFileError(
            f"{source} holds data of shape {pixels.shape} and type "
            f"{pixels.dtype.name}; expected N x 3072 pixel bytes (32x32 RGB images)"
        )
    if labels.shape != (len(pixels),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataFileError(
            f"{source} holds {len(pixels):,} images but labels of shape "
            f"{labels.shape} and type {labels.dtype.name}; expected "
            f"{len(pixels):,} integer labels"
        )
    check_labels(labels, len(CIFAR10_CLASSES), source)
    images = np.asarray(pixels, np.uint8).reshape(-1, 3, 32, 32)
    images = images.transpose(0, 2, 3, 1)
    return images, labels.astype(np.int32)
