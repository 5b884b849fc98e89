"""Fashion-MNIST and CIFAR-10 from tensorflow-datasets (default tfds data dir).

With TensorFlow installed, ``tfds.load`` downloads and prepares the data when
online. Without TensorFlow, tfds can only read data already prepared in
``array_record`` format (``tfds.data_source``), because preparing image
datasets needs TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

import numpy as np

from phs_optax_training.data.dataset import (
    CLASS_NAMES,
    NUM_CLASSES,
    SPLITS,
    DataUnavailableError,
    RawSplits,
    check_labels,
)

# Download retries while tfds fetches raw files (its default of 10 with
# exponential backoff takes minutes to give up when offline).
TFDS_DOWNLOAD_RETRIES = 2


def load_from_tfds(name: str) -> RawSplits:
    """Both splits from tensorflow-datasets (default tfds data dir).

    With TensorFlow installed this is ``tfds.load(..., batch_size=-1,
    as_supervised=True)``, which downloads and prepares the data if needed;
    downloads give up after `TFDS_DOWNLOAD_RETRIES` retries so that being
    offline fails in well under a second. Without TensorFlow it reads data
    already prepared in ``array_record`` format with ``tfds.data_source``.

    Raises:
        DataUnavailableError: tfds is missing, offline, or fails otherwise.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DataUnavailableError(f"tensorflow-datasets: {error}") from error
    with_tensorflow = _tensorflow_installed()
    try:
        if with_tensorflow:
            with _few_download_retries():
                splits = _tfds_load_with_tensorflow(tfds, name)
        else:
            splits = _tfds_read_prepared(tfds, name)
    except Exception as error:  # tfds raises many types; all mean "not here".
        mode = "" if with_tensorflow else " (no tensorflow: prepared data only)"
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        raise DataUnavailableError(
            f"tensorflow-datasets{mode}: {type(error).__name__}: {first_line}"
        ) from error
    (train_images, train_labels), (test_images, test_labels) = splits
    for labels, split in ((train_labels, "train"), (test_labels, "test")):
        check_labels(labels, NUM_CLASSES[name], f"tfds {name} ({split})")
    return RawSplits(
        train_images=np.asarray(train_images, dtype=np.uint8),
        train_labels=np.asarray(train_labels, dtype=np.int32),
        test_images=np.asarray(test_images, dtype=np.uint8),
        test_labels=np.asarray(test_labels, dtype=np.int32),
        class_names=CLASS_NAMES[name],
    )


def _tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _tfds_load_with_tensorflow(tfds, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    splits = tfds.load(name, split=list(SPLITS), batch_size=-1, as_supervised=True)
    return [tuple(arrays) for arrays in tfds.as_numpy(splits)]


def _tfds_read_prepared(tfds, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Reads prepared array_record data without TensorFlow (no download)."""
    sources = tfds.data_source(name, split=list(SPLITS), download=False)
    splits = []
    for source in sources:
        examples = [source[index] for index in range(len(source))]
        images = np.stack([example["image"] for example in examples])
        labels = np.array([example["label"] for example in examples])
        splits.append((images, labels))
    return splits


@contextlib.contextmanager
def _few_download_retries() -> Iterator[None]:
    """Temporarily lowers tfds's HTTP retry count (a module constant)."""
    try:
        from tensorflow_datasets.core.download import downloader
    except ImportError:
        yield
        return
    if not hasattr(downloader, "MAX_RETRIES"):
        yield
        return
    previous = downloader.MAX_RETRIES
    downloader.MAX_RETRIES = min(previous, TFDS_DOWNLOAD_RETRIES)
    try:
        yield
    finally:
        downloader.MAX_RETRIES = previous
