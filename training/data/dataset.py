"""The in-memory dataset types, dataset constants and per-channel normalisation.

`RawSplits` is what every source reads (uint8 NHWC images, integer labels);
`normalize` turns it into a `Dataset` of float32 images standardised with the
train split's per-channel mean and standard deviation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from phs_optax_training import errors

DATASET_NAMES = ("fashion_mnist", "cifar10")
NUM_CLASSES = {"fashion_mnist": 10, "cifar10": 10}
SPLITS = ("train", "test")

FASHION_MNIST_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CLASS_NAMES = {"fashion_mnist": FASHION_MNIST_CLASSES, "cifar10": CIFAR10_CLASSES}


class DataUnavailableError(Exception):
    """No source has the requested dataset; the message says how to get it."""


class DataDirError(DataUnavailableError, errors.UsageError):
    """A given ``data_dir`` does not exist or holds no usable copy of the dataset.

    Exit code 2 (`errors.USAGE`): the data named on the command line is not
    there, so nothing else is tried.
    """


class DataFileError(errors.UnreadableError, ValueError):
    """A data file is unreadable, truncated or corrupt; the message names it.

    Exit code 4 (`errors.UNREADABLE`). Also a `ValueError`, so that callers
    catching ValueError for malformed data catch it too.
    """


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset in memory: normalised float32 NHWC images and int32 labels.

    ``mean`` and ``std`` (one value per channel, on the [0, 1] pixel scale) are
    the train-split statistics used to normalise both splits:
    ``images = (pixels / 255 - mean) / std``.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    name: str
    source: str
    mean: np.ndarray
    std: np.ndarray
    class_names: tuple[str, ...] = ()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one image."""
        return tuple(self.train_images.shape[1:])

    def denormalize(self, images: np.ndarray) -> np.ndarray:
        """Maps normalised images back to [0, 255] pixel values (float32)."""
        return ((images * self.std + self.mean) * 255.0).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class RawSplits:
    """Both splits before normalisation: uint8 NHWC images, int labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]


def normalize(raw: RawSplits, *, name: str, source: str) -> Dataset:
    """Scales uint8 pixels to [0, 1] and normalises with train-split statistics."""
    mean, std = channel_mean_std(raw.train_images)
    return Dataset(
        train_images=_normalize_pixels(raw.train_images, mean, std),
        train_labels=np.asarray(raw.train_labels, dtype=np.int32),
        test_images=_normalize_pixels(raw.test_images, mean, std),
        test_labels=np.asarray(raw.test_labels, dtype=np.int32),
        num_classes=len(raw.class_names),
        name=name,
        source=source,
        mean=mean,
        std=std,
        class_names=tuple(raw.class_names),
    )


def channel_mean_std(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and std of uint8 NHWC images on the [0, 1] scale.

    Uses a 256-bin histogram per channel, so no float copy of the images is made.
    A constant channel gets std 1 so that normalising never divides by zero.
    """
    levels = np.arange(256, dtype=np.float64) / 255.0
    channels = images.shape[-1]
    all_counts = np.zeros((channels, 256), np.int64)
    for rows in _chunks_of(images):  # as in _normalize_pixels: no 8-byte copy
        for channel in range(channels):
            all_counts[channel] += np.bincount(
                images[rows, ..., channel].ravel(), minlength=256
            )
    means, stds = [], []
    for counts in all_counts:
        weights = counts / counts.sum()
        mean = float(weights @ levels)
        std = float(np.sqrt(weights @ (levels - mean) ** 2))
        means.append(mean)
        stds.append(std if std > 0 else 1.0)
    return np.array(means, dtype=np.float32), np.array(stds, dtype=np.float32)


def check_labels(labels: np.ndarray, num_classes: int, source: str) -> None:
    """Raises `DataFileError` unless every label lies in ``[0, num_classes)``."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(np.flatnonzero((labels < 0) | (labels >= num_classes))[0])
        raise DataFileError(
            f"{source} holds label {labels[bad]} at position {bad:,}; "
            f"expected labels 0 to {num_classes - 1} ({num_classes} classes)"
        )


def _normalize_pixels(
    images: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """(pixels / 255 - mean) / std per channel, via a 256-entry lookup table.

    The lookup goes a few hundred images at a time: ``np.take`` works on
    8-byte integer indices, and one such copy of all of Fashion-MNIST's
    training images (376 MB) made the lookup 5x slower than in chunks.
    """
    levels = np.arange(256, dtype=np.float64)[:, None] / 255.0
    table = ((levels - mean) / std).astype(np.float32)  # (256, channels)
    out = np.empty(images.shape, dtype=np.float32)
    for rows in _chunks_of(images):
        for channel in range(images.shape[-1]):
            np.take(
                table[:, channel],
                images[rows, ..., channel],
                out=out[rows, ..., channel],
            )
    return out


def _chunks_of(images: np.ndarray, elements: int = 1 << 18) -> Iterator[slice]:
    """Slices of whole images of about ``elements`` values each (at least one image)."""
    step = max(1, elements // max(1, images[:1].size))
    for first in range(0, len(images), step):
        yield slice(first, first + step)
