"""Fashion-MNIST and CIFAR-10 in memory as NumPy arrays (no augmentation).

Where the data comes from:

1. ``data_dir``, when given, is binding: the data is read from there or not at
   all. For Fashion-MNIST it is a folder with the four official IDX files
   (gzipped or not); for CIFAR-10 a folder or ``.tar.gz``/``.tar`` of class
   folders ``train/<class>/*.png|jpg`` and ``test/<class>/...`` (optionally under
   one top-level folder), or the official ``cifar-10-batches-py`` pickles
   (folder or ``cifar-10-python.tar.gz``). A ``data_dir`` that does not exist
   or holds no usable copy of the dataset raises `DataDirError`; no other
   source is tried.
2. Without ``data_dir``, the first of these that has the data:

   a. the raw files where a system package installs them
      (`SYSTEM_DATA_DIRS`): Debian's ``dataset-fashion-mnist`` puts the IDX
      files under ``/usr/share/datasets/fashion-mnist``;
   b. tensorflow-datasets. With TensorFlow installed, ``tfds.load`` downloads
      and prepares the data when online. Without TensorFlow, tfds can only read
      data already prepared in ``array_record`` format (``tfds.data_source``),
      because preparing image datasets needs TensorFlow.

   If none has it, `DataUnavailableError` says in one line how to get it.

Errors, each with a one-line message (the exit code is what train.py, the
sweep and the trace exit with; see `phs_optax_training.errors`):

- `DataDirError` (exit 2, a `DataUnavailableError` and a
  `phs_optax_training.errors.UsageError`): a given ``data_dir`` does not
  exist, or holds no (complete) copy of the dataset, e.g.
  ``--data_dir=/data holds no fashion_mnist files (expected ...)``.
- `ImageFolderError` (exit 2): a class-folder tree that is not a usable
  dataset (a split without images, mixed image sizes, not CIFAR-10's 10
  classes of 32x32 RGB images for ``cifar10``).
- `DataFileError` (exit 4, a `phs_optax_training.errors.UnreadableError` and a
  `ValueError`): a data file that cannot be read or is damaged, named with
  what was expected: a gzip stream cut short or corrupt, a bad IDX magic
  number, a byte count that does not match the IDX header, images and labels
  files of different lengths, a label outside the classes, a CIFAR-10 batch
  that cannot be unpickled or has the wrong shape, an image that cannot be
  decoded, a corrupt or truncated tar archive. A damaged file in a system
  folder is an error too, not a reason to try tfds.
- `DataUnavailableError` (exit 2): no source has the data (no ``data_dir``).

A damaged file in the cache of decoded images is not an error: the images are
decoded again from the source and the cache file rewritten, with a one-line
warning.

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
    missing_cifar10_batches,
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
    DataDirError,
    DataFileError,
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
    missing_idx_files,
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
    "DataDirError",
    "DataFileError",
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
    "missing_idx_files",
    "normalize",
    "parse_idx",
    "read_cifar10_batches",
    "read_fashion_mnist_idx",
    "read_idx",
    "read_image_folder",
]

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
    """Loads ``"fashion_mnist"`` or ``"cifar10"`` from ``data_dir``, or else from
    the first source that has it.

    Args:
        name: ``"fashion_mnist"`` or ``"cifar10"``.
        data_dir: Optional local folder (or, for CIFAR-10, archive) with the raw
            files. When given, the data must be there: no other source is
            tried. See the module docstring for the layouts.
        cache_dir: Where decoded class-folder images are cached; defaults to
            `default_cache_dir()`.

    Raises:
        ValueError: ``name`` is not a supported dataset.
        DataDirError: ``data_dir`` does not exist or holds no usable ``name``.
        ImageFolderError: A class-folder tree is not a usable dataset.
        DataFileError: A data file is unreadable, truncated or corrupt.
        DataUnavailableError: No ``data_dir`` and no source has the data.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASET_NAMES}")
    if data_dir:
        return _load_data_dir(name, data_dir, cache_dir)
    failures: list[str] = []
    for folder in SYSTEM_DATA_DIRS[name]:
        path = Path(folder)
        raw = _load_local(name, path, cache_dir)
        if raw is not None:
            return normalize(raw, name=name, source=f"system:{path}")
        failures.append(f"system {path}: no {name} files")
    try:
        raw = load_from_tfds(name)
    except DataUnavailableError as error:
        failures.append(str(error))
    else:
        return normalize(raw, name=name, source=f"tfds:{name}")
    raise DataUnavailableError(_how_to_get(name, failures))


def _load_data_dir(
    name: str,
    data_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None,
) -> Dataset:
    """``name`` from the given ``data_dir``, or `DataDirError` saying what is missing."""
    path = Path(data_dir).expanduser()
    flag = f"--data_dir={data_dir}"
    try:
        exists = path.exists()
    except OSError as error:
        raise DataFileError(f"cannot read {path}: {_reason(error)}") from error
    if not exists:
        raise DataDirError(f"{flag} does not exist")
    if name == "fashion_mnist" and not path.is_dir():
        raise DataDirError(
            f"{flag} is a file; fashion_mnist needs a folder holding {_IDX_NAMES}"
        )
    if name == "cifar10" and path.is_file() and not is_archive_name(path.name):
        raise DataDirError(
            f"{flag} is neither a folder nor a {'/'.join(ARCHIVE_SUFFIXES)} archive"
        )
    raw = _load_local(name, path, cache_dir)
    if raw is None:
        raise DataDirError(_not_there(name, path, flag))
    return normalize(raw, name=name, source=f"data_dir:{path}")


def _load_local(
    name: str, path: Path, cache_dir: str | os.PathLike[str] | None
) -> RawSplits | None:
    """Raw splits from a local folder or archive; None if the data is not there."""
    try:
        if not path.exists():
            return None
        if name == "fashion_mnist":
            return read_fashion_mnist_idx(path) if path.is_dir() else None
        return _load_local_cifar10(path, cache_dir)
    except OSError as error:  # the readers name the files they read; this is the rest
        where = error.filename or path
        raise DataFileError(f"cannot read {where}: {_reason(error)}") from error


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


_IDX_NAMES = ", ".join(f"{stem}[.gz]" for stem in IDX_FILES.values())
_CIFAR10_LAYOUTS = (
    "the cifar-10-batches-py folder or cifar-10-python.tar.gz, or class folders "
    "train/<class>/*.png|jpg and test/<class>/... as a folder or "
    f"{'/'.join(ARCHIVE_SUFFIXES)} archive"
)


def _not_there(name: str, path: Path, flag: str) -> str:
    """One line: ``path`` holds no (complete) ``name``, and what it must hold."""
    if name == "fashion_mnist":
        missing = missing_idx_files(path)
        if len(missing) < len(IDX_FILES):
            return (
                f"{flag} holds an incomplete fashion_mnist: it lacks "
                f"{', '.join(missing)} (expected {_IDX_NAMES})"
            )
        return f"{flag} holds no fashion_mnist files (expected {_IDX_NAMES})"
    if path.is_dir():
        for folder in (path, path / "cifar-10-batches-py"):
            missing = missing_cifar10_batches(folder)
            if 0 < len(missing) <= len(CIFAR10_TRAIN_BATCHES):
                return (
                    f"{flag} holds an incomplete cifar10: {folder} lacks "
                    f"{', '.join(missing)} (expected {_CIFAR10_LAYOUTS})"
                )
    return f"{flag} holds no cifar10 files (expected {_CIFAR10_LAYOUTS})"


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
        raise ImageFolderError(
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
