"""Fashion-MNIST and CIFAR-10 in memory as NumPy arrays (no augmentation).

`load_dataset` tries these sources in order and uses the first that has the data:

1. ``data_dir``, when given: for Fashion-MNIST the four official IDX files
   (gzipped or not); for CIFAR-10 a folder or ``.tar.gz``/``.tar`` of class
   folders ``train/<class>/*.png|jpg`` and ``test/<class>/...`` (optionally under
   one top-level folder), or the official ``cifar-10-batches-py`` pickles
   (folder or ``cifar-10-python.tar.gz``).
2. The raw files where a system package installs them (`SYSTEM_DATA_DIRS`):
   Debian's ``dataset-fashion-mnist`` puts the IDX files under
   ``/usr/share/datasets/fashion-mnist``.
3. tensorflow-datasets. With TensorFlow installed, ``tfds.load`` downloads and
   prepares the data when online. Without TensorFlow, tfds can only read data
   already prepared in ``array_record`` format (``tfds.data_source``), because
   preparing image datasets needs TensorFlow.

If none works, `DataUnavailableError` says in one line how to get the data.

Images come back float32 NHWC: pixels scaled to [0, 1], then normalised per
channel with the mean and standard deviation of the train split. Labels are
int32. Decoded class-folder images are cached as ``.npz`` (see `cache_dir`).

Modules, one per source:

- `dataset`: `Dataset`, `RawSplits`, normalisation, dataset names and classes.
- `idx`: Fashion-MNIST IDX files.
- `cifar10_batches`: the CIFAR-10 python release (pickled batches).
- `image_folders`: class-folder trees, as folders or tar archives.
- `cache`: the ``.npz`` cache of decoded class-folder images.
- `tfds`: tensorflow-datasets.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from phs_optax_training.data.cache import (
    CACHE_ENV_VAR,
    CACHE_FORMAT_VERSION,
    DEFAULT_CACHE_DIR,
    default_cache_dir,
)
from phs_optax_training.data.cifar10_batches import (
    CIFAR10_TEST_BATCH,
    CIFAR10_TRAIN_BATCHES,
    read_cifar10_batches,
    read_cifar10_batches_archive,
)
from phs_optax_training.data.dataset import (
    CIFAR10_CLASSES,
    CLASS_NAMES,
    DATASET_NAMES,
    FASHION_MNIST_CLASSES,
    NUM_CLASSES,
    SPLITS,
    Dataset,
    DataUnavailableError,
    RawSplits,
    channel_mean_std,
    normalize,
)
from phs_optax_training.data.idx import (
    IDX_DTYPES,
    IDX_FILES,
    find_idx_files,
    parse_idx,
    read_fashion_mnist_idx,
    read_idx,
)
from phs_optax_training.data.image_folders import (
    ARCHIVE_SUFFIXES,
    IMAGE_EXTENSIONS,
    ImageFolderError,
    find_split_root,
    is_archive_name,
    load_image_folder,
    read_image_folder,
)
from phs_optax_training.data.tfds import TFDS_DOWNLOAD_RETRIES, load_from_tfds

__all__ = [
    "ARCHIVE_SUFFIXES",
    "CACHE_ENV_VAR",
    "CACHE_FORMAT_VERSION",
    "CIFAR10_CLASSES",
    "CIFAR10_TEST_BATCH",
    "CIFAR10_TRAIN_BATCHES",
    "CLASS_NAMES",
    "DATASET_NAMES",
    "DEFAULT_CACHE_DIR",
    "FASHION_MNIST_CLASSES",
    "IDX_DTYPES",
    "IDX_FILES",
    "IMAGE_EXTENSIONS",
    "NUM_CLASSES",
    "SPLITS",
    "SYSTEM_DATA_DIRS",
    "TFDS_DOWNLOAD_RETRIES",
    "DataUnavailableError",
    "Dataset",
    "ImageFolderError",
    "RawSplits",
    "channel_mean_std",
    "default_cache_dir",
    "find_idx_files",
    "load_dataset",
    "load_from_tfds",
    "load_image_folder",
    "normalize",
    "parse_idx",
    "read_cifar10_batches",
    "read_fashion_mnist_idx",
    "read_idx",
    "read_image_folder",
]

logger = logging.getLogger(__name__)

# Folders where system packages install the official raw files.
SYSTEM_DATA_DIRS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
    "cifar10": (),
}


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Dataset:
    """Loads ``"fashion_mnist"`` or ``"cifar10"`` from the first source that has it.

    Args:
        name: ``"fashion_mnist"`` or ``"cifar10"``.
        data_dir: Optional local folder (or, for CIFAR-10, archive) with the raw
            files; tried first. See the module docstring for the layouts.
        cache_dir: Where decoded class-folder images are cached; defaults to
            `default_cache_dir()`.

    Raises:
        ValueError: ``name`` is not a supported dataset, or the files found are
            malformed.
        DataUnavailableError: No source has the data.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASET_NAMES}")
    failures: list[str] = []
    for label, folder in _local_candidates(name, data_dir):
        raw = _load_local(name, folder, cache_dir)
        if raw is not None:
            return normalize(raw, name=name, source=f"{label}:{folder}")
        failures.append(f"{label} {folder}: no {name} files")
        if label == "data_dir":
            logger.warning("data_dir %s has no %s files; trying others", folder, name)
    try:
        raw = load_from_tfds(name)
    except DataUnavailableError as error:
        failures.append(str(error))
    else:
        return normalize(raw, name=name, source=f"tfds:{name}")
    raise DataUnavailableError(_how_to_get(name, failures))


def _local_candidates(
    name: str, data_dir: str | os.PathLike[str] | None
) -> list[tuple[str, Path]]:
    """(label, path) of the local places to look, in order."""
    candidates = [("data_dir", Path(data_dir).expanduser())] if data_dir else []
    candidates += [("system", Path(folder)) for folder in SYSTEM_DATA_DIRS[name]]
    return candidates


def _load_local(
    name: str, path: Path, cache_dir: str | os.PathLike[str] | None
) -> RawSplits | None:
    """Raw splits from a local folder or archive; None if the data is not there."""
    if not path.exists():
        return None
    if name == "fashion_mnist":
        return read_fashion_mnist_idx(path) if path.is_dir() else None
    return _load_local_cifar10(path, cache_dir)


def _load_local_cifar10(
    path: Path, cache_dir: str | os.PathLike[str] | None
) -> RawSplits | None:
    """CIFAR-10 from a local file or folder; None if the data is not there.

    Tried in order: an archive itself, the pickled batches in ``path`` or
    ``path/cifar-10-batches-py``, a class-folder tree, an archive in ``path``
    whose name contains "cifar".
    """
    if path.is_file():
        if not is_archive_name(path.name):
            return None
        return _read_cifar10_archive(path, cache_dir)
    for folder in (path, path / "cifar-10-batches-py"):
        raw = read_cifar10_batches(folder)
        if raw is not None:
            return raw
    if find_split_root(path) is not None:
        return _with_cifar10_check(read_image_folder(path, cache_dir=cache_dir), path)
    archives = sorted(
        p for p in path.iterdir() if "cifar" in p.name.lower() and p.is_file()
    )
    for archive in archives:
        if is_archive_name(archive.name):
            return _read_cifar10_archive(archive, cache_dir)
    return None


def _read_cifar10_archive(
    archive: Path, cache_dir: str | os.PathLike[str] | None
) -> RawSplits:
    """Official python tarball (pickled batches) or a class-folder archive."""
    raw = read_cifar10_batches_archive(archive)
    if raw is not None:
        return raw
    return _with_cifar10_check(read_image_folder(archive, cache_dir=cache_dir), archive)


def _with_cifar10_check(raw: RawSplits, source: Path) -> RawSplits:
    if len(raw.class_names) != 10 or raw.train_images.shape[1:] != (32, 32, 3):
        raise ValueError(
            f"{source}: expected 10 classes of 32x32 RGB images for cifar10, got "
            f"{len(raw.class_names)} classes of {raw.train_images.shape[1:]}; "
            "use load_image_folder for other image sets"
        )
    return raw


def _how_to_get(name: str, failures: list[str]) -> str:
    """One line: what was tried and how to get the data."""
    if name == "fashion_mnist":
        local = (
            "install the Debian package dataset-fashion-mnist "
            "(sudo apt-get install dataset-fashion-mnist), or pass --data_dir DIR "
            "holding " + ", ".join(f"{stem}[.gz]" for stem in IDX_FILES.values())
        )
    else:
        local = (
            "pass --data_dir with the official cifar-10-batches-py folder (or "
            "cifar-10-python.tar.gz), or a folder/.tar.gz of "
            "train/<class>/*.png|jpg and test/<class>/*.png|jpg"
        )
    tried = "; ".join(failures) or "nothing"
    message = (
        f"{name} is not available: {local}; or run once with network access (and "
        f"tensorflow installed) so tensorflow-datasets can download it "
        f"[tried: {tried}]"
    )
    return " ".join(message.split())
