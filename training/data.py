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
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import importlib.util
import io
import logging
import os
import pickle
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

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

# Folders where system packages install the official raw files.
SYSTEM_DATA_DIRS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
    "cifar10": (),
}

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

CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")

CACHE_ENV_VAR = "PHS_OPTAX_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/phs_optax")
CACHE_FORMAT_VERSION = 1

# Download retries while tfds fetches raw files (its default of 10 with
# exponential backoff takes minutes to give up when offline).
TFDS_DOWNLOAD_RETRIES = 2


class DataUnavailableError(Exception):
    """No source has the requested dataset; the message says how to get it."""


class ImageFolderError(ValueError):
    """A class-folder tree is malformed (missing splits, mixed image sizes...)."""


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


# ---------------------------------------------------------------- public API


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


def load_image_folder(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> Dataset:
    """Loads a class-folder tree of images as a normalised `Dataset`.

    ``path`` is a folder or a ``.tar.gz``/``.tgz``/``.tar`` archive holding
    ``train/<class>/<image>`` and ``test/<class>/<image>``, possibly under one
    top-level folder. Labels index the sorted class names (the official order
    when the classes are exactly CIFAR-10's). All images must share one size.
    """
    raw = read_image_folder(path, cache_dir=cache_dir, use_cache=use_cache)
    name = name or _strip_archive_suffix(Path(path).name)
    return normalize(raw, name=name, source=f"image_folder:{path}")


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


def default_cache_dir() -> Path:
    """``$PHS_OPTAX_CACHE`` if set, else ``~/.cache/phs_optax``."""
    return Path(os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR).expanduser()


# ------------------------------------------------------------ IDX (Fashion-MNIST)


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
        _check_labels(labels, NUM_CLASSES["fashion_mnist"], f"{folder} ({split})")
    return RawSplits(
        train_images=arrays["train", "images"].astype(np.uint8)[..., None],
        train_labels=arrays["train", "labels"].astype(np.int32),
        test_images=arrays["test", "images"].astype(np.uint8)[..., None],
        test_labels=arrays["test", "labels"].astype(np.int32),
        class_names=FASHION_MNIST_CLASSES,
    )


# --------------------------------------------------- CIFAR-10 python pickles


def read_cifar10_batches(folder: str | os.PathLike[str]) -> RawSplits | None:
    """Reads the official ``cifar-10-batches-py`` folder; None if incomplete."""
    names = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)
    paths = {name: Path(folder, name) for name in names}
    if not all(path.is_file() for path in paths.values()):
        return None
    return _cifar10_from_batches({name: p.read_bytes() for name, p in paths.items()})


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


# --------------------------------------------------------- class-folder trees


def read_image_folder(
    path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> RawSplits:
    """Reads a class-folder tree (folder or archive) as uint8 arrays, cached.

    The decoded arrays are stored as ``.npz`` in ``cache_dir`` (default
    `default_cache_dir()`), keyed by the resolved path, size and modification
    time of the source, so a changed source is decoded again.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image folder or archive: {path}")
    cache_file = _cache_file(path, cache_dir) if use_cache else None
    if cache_file is not None and cache_file.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError):
            return _read_cache(cache_file)
        logger.warning("ignoring unreadable cache file %s", cache_file)
    files = _archive_files(path) if path.is_file() else _folder_files(path)
    raw = _decode_class_folders(files, source=str(path))
    if cache_file is not None:
        _write_cache(cache_file, raw)
    return raw


def _folder_files(root: Path) -> Iterator[tuple[str, bytes]]:
    """(relative path, bytes) of the image files under a folder, sorted."""
    paths = sorted(p for p in root.rglob("*") if _is_image_name(p.name))
    for path in paths:
        if path.is_file():
            yield path.relative_to(root).as_posix(), path.read_bytes()


def _archive_files(archive: Path) -> Iterator[tuple[str, bytes]]:
    """(member path, bytes) of the image files in a tar archive."""
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            if member.isfile() and _is_image_name(member.name):
                file = tar.extractfile(member)
                if file is not None:
                    yield member.name, file.read()


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and Path(base).suffix.lower() in IMAGE_EXTENSIONS


def _split_and_class(relative_path: str) -> tuple[str, str] | None:
    """('train'|'test', class) from ``[top/]split/class/file``, else None."""
    parts = [part for part in relative_path.split("/") if part not in ("", ".")]
    for offset in (0, 1):
        if len(parts) == offset + 3 and parts[offset] in SPLITS:
            return parts[offset], parts[offset + 1]
    return None


def _decode_class_folders(
    files: Iterable[tuple[str, bytes]], *, source: str
) -> RawSplits:
    """Decodes images grouped by split and class into uint8 NHWC arrays."""
    grouped: dict[str, dict[str, list[tuple[str, bytes]]]] = {s: {} for s in SPLITS}
    for relative_path, data in files:
        split_class = _split_and_class(relative_path)
        if split_class is not None:
            split, class_name = split_class
            grouped[split].setdefault(class_name, []).append((relative_path, data))
    class_names = _class_order(grouped, source)
    splits = {}
    for split in SPLITS:
        names, images, labels = [], [], []
        for label, class_name in enumerate(class_names):
            files = sorted(grouped[split].get(class_name, []), key=_first)
            for relative_path, data in files:
                names.append(relative_path)
                images.append(_decode_image(data, relative_path))
                labels.append(label)
        splits[split] = (names, images, np.array(labels, dtype=np.int32))
    train_images, test_images = _stack_same_size(
        [splits[s][1] for s in SPLITS], [splits[s][0] for s in SPLITS], source
    )
    return RawSplits(
        train_images=train_images,
        train_labels=splits["train"][2],
        test_images=test_images,
        test_labels=splits["test"][2],
        class_names=class_names,
    )


def _class_order(
    grouped: Mapping[str, Mapping[str, list]], source: str
) -> tuple[str, ...]:
    """Sorted train class names; CIFAR-10's official order for its classes."""
    for split in SPLITS:
        if not grouped[split]:
            raise ImageFolderError(
                f"{source}: no images in {split}/<class>/ "
                f"(expected [top/]train/<class>/*.png and [top/]test/<class>/*.png)"
            )
    train_classes = set(grouped["train"])
    unknown = sorted(set(grouped["test"]) - train_classes)
    if unknown:
        raise ImageFolderError(f"{source}: test classes {unknown} are not in train/")
    if train_classes == set(CIFAR10_CLASSES):
        return CIFAR10_CLASSES  # the official order (which is also alphabetical)
    return tuple(sorted(train_classes))


def _first(pair: tuple[str, bytes]) -> str:
    return pair[0]


def _decode_image(data: bytes, name: str) -> np.ndarray:
    """Decodes one image to uint8 HxWx1 (grayscale) or HxWx3 (anything else)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            grayscale = image.mode in ("1", "L", "LA", "I", "I;16", "F")
            if image.mode not in ("L", "RGB"):
                image = image.convert("L" if grayscale else "RGB")
            pixels = np.asarray(image, dtype=np.uint8)
    except OSError as error:
        raise ImageFolderError(f"cannot decode image {name}: {error}") from error
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _stack_same_size(
    image_lists: list[list[np.ndarray]], name_lists: list[list[str]], source: str
) -> list[np.ndarray]:
    """Stacks each list; all images must share (height, width).

    Grayscale images are repeated to three channels when any image is colour.
    """
    all_images = [image for images in image_lists for image in images]
    all_names = [name for names in name_lists for name in names]
    expected = all_images[0].shape[:2]
    for image, name in zip(all_images, all_names, strict=True):
        if image.shape[:2] != expected:
            raise ImageFolderError(
                f"{source}: all images must have the same size; {all_names[0]} is "
                f"{expected[1]}x{expected[0]} but {name} is "
                f"{image.shape[1]}x{image.shape[0]} (resize them first)"
            )
    channels = max(image.shape[2] for image in all_images)
    shape = (*expected, channels)
    return [
        np.stack([np.broadcast_to(image, shape) for image in images])
        for images in image_lists
    ]


# ---------------------------------------------------------------- npz cache


def _source_fingerprint(path: Path) -> str:
    """Resolved path, size and mtime (for a folder: of all files in it)."""
    if path.is_file():
        stat = path.stat()
        return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    count = total_size = latest = 0
    for file in path.rglob("*"):
        stat = file.stat()
        count, total_size = count + 1, total_size + stat.st_size
        latest = max(latest, stat.st_mtime_ns)
    return f"{path.resolve()}|{count}|{total_size}|{latest}"


def _cache_file(path: Path, cache_dir: str | os.PathLike[str] | None) -> Path:
    key = f"v{CACHE_FORMAT_VERSION}|{_source_fingerprint(path)}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    stem = _strip_archive_suffix(path.name) or "images"
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return folder / f"{stem}-{digest}.npz"


def _read_cache(cache_file: Path) -> RawSplits:
    with np.load(cache_file, allow_pickle=False) as arrays:
        return RawSplits(
            train_images=arrays["train_images"],
            train_labels=arrays["train_labels"],
            test_images=arrays["test_images"],
            test_labels=arrays["test_labels"],
            class_names=tuple(str(name) for name in arrays["class_names"]),
        )


def _write_cache(cache_file: Path, raw: RawSplits) -> None:
    """Writes atomically; a failure only costs decoding again next time."""
    tmp_name = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=cache_file.parent, suffix=".npz.tmp", delete=False
        ) as tmp:
            tmp_name = tmp.name
            np.savez(
                tmp,
                train_images=raw.train_images,
                train_labels=raw.train_labels,
                test_images=raw.test_images,
                test_labels=raw.test_labels,
                class_names=np.array(raw.class_names, dtype=str),
            )
        os.replace(tmp_name, cache_file)
    except OSError as error:
        logger.warning("could not write cache %s: %s", cache_file, error)
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def _strip_archive_suffix(name: str) -> str:
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# ------------------------------------------------------- local source dispatch


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
    if path.is_file():
        if not path.name.endswith(ARCHIVE_SUFFIXES):
            return None
        return _read_cifar10_archive(path, cache_dir)
    for folder in (path, path / "cifar-10-batches-py"):
        raw = read_cifar10_batches(folder)
        if raw is not None:
            return raw
    if _find_split_root(path) is not None:
        return _with_cifar10_check(read_image_folder(path, cache_dir=cache_dir), path)
    archives = sorted(
        p for p in path.iterdir() if "cifar" in p.name.lower() and p.is_file()
    )
    for archive in archives:
        if archive.name.endswith(ARCHIVE_SUFFIXES):
            return _read_cifar10_archive(archive, cache_dir)
    return None


def _read_cifar10_archive(
    archive: Path, cache_dir: str | os.PathLike[str] | None
) -> RawSplits:
    """Official python tarball (pickled batches) or a class-folder archive."""
    batch_names = {*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH}
    with tarfile.open(archive, "r:*") as tar:
        first = next((m for m in tar if m.isfile()), None)
        is_python_release = first is not None and "cifar-10-batches-py/" in first.name
        if is_python_release:
            batches = {}
            for member in tar:  # a new iteration starts from the first member
                base = member.name.rsplit("/", 1)[-1]
                file = tar.extractfile(member) if base in batch_names else None
                if file is not None:
                    batches[base] = file.read()
    if is_python_release:
        return _cifar10_from_batches(batches)
    return _with_cifar10_check(read_image_folder(archive, cache_dir=cache_dir), archive)


def _find_split_root(folder: Path) -> Path | None:
    """``folder`` or its only subfolder, whichever holds train/ and test/."""
    if all((folder / split).is_dir() for split in SPLITS):
        return folder
    subfolders = [p for p in folder.iterdir() if p.is_dir()]
    if len(subfolders) == 1 and all((subfolders[0] / s).is_dir() for s in SPLITS):
        return subfolders[0]
    return None


def _with_cifar10_check(raw: RawSplits, source: Path) -> RawSplits:
    if len(raw.class_names) != 10 or raw.train_images.shape[1:] != (32, 32, 3):
        raise ValueError(
            f"{source}: expected 10 classes of 32x32 RGB images for cifar10, got "
            f"{len(raw.class_names)} classes of {raw.train_images.shape[1:]}; "
            "use load_image_folder for other image sets"
        )
    return raw


# ------------------------------------------------------- tensorflow-datasets


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
        _check_labels(labels, NUM_CLASSES[name], f"tfds {name} ({split})")
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


# ----------------------------------------------------------------- helpers


def _check_labels(labels: np.ndarray, num_classes: int, source: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{source}: labels must lie in [0, {num_classes}), "
            f"found [{labels.min()}, {labels.max()}]"
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
