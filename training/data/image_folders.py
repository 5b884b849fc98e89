"""Image class-folder trees, as a folder or a ``.tar.gz``/``.tgz``/``.tar`` archive.

The tree holds ``train/<class>/<image>`` and ``test/<class>/<image>``, possibly
under one top-level folder. Images are decoded with Pillow to uint8 HxWx1
(grayscale) or HxWx3 (anything else); the decoded arrays are cached (see
`phs_optax_training.data.cache`).
"""

from __future__ import annotations

import functools
import io
import logging
import os
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from phs_optax_training import errors
from phs_optax_training.data.cache import cache_file_for, read_cache, write_cache
from phs_optax_training.data.cifar10_batches import archive_problem, read_to_end
from phs_optax_training.data.dataset import (
    CIFAR10_CLASSES,
    SPLITS,
    DataFileError,
    Dataset,
    RawSplits,
    normalize,
)

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class ImageFolderError(ValueError, errors.UsageError):
    """A class-folder tree is not a usable dataset (missing splits, mixed image
    sizes...): exit code 2. A file that cannot be read or decoded is a
    `DataFileError` instead (exit code 4)."""


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
    name = name or strip_archive_suffix(Path(path).name)
    return normalize(raw, name=name, source=f"image_folder:{path}")


def read_image_folder(
    path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> RawSplits:
    """Reads a class-folder tree (folder or archive) as uint8 arrays, cached.

    The decoded arrays are stored as ``.npz`` in ``cache_dir`` (default
    `default_cache_dir()`), keyed by the resolved path, size and modification
    time of the source, so a changed source is decoded again. A cache file
    that cannot be read is not an error: the source is decoded again and the
    cache file rewritten, with a warning.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageFolderError: The tree is not a usable dataset (no images in a
            split, test classes missing from train, mixed image sizes).
        DataFileError: An image cannot be read or decoded, or the archive is
            corrupt or truncated.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image folder or archive: {path}")
    cache_file = _cache_file(path, cache_dir) if use_cache else None
    if cache_file is not None and cache_file.is_file():
        try:
            return read_cache(cache_file)
        except ValueError as error:
            logger.warning(
                "ignoring the unreadable cache file %s (%s); decoding %s again",
                cache_file,
                error,
                path,
            )
    if path.is_file():
        files = _archive_files(path)
        display = functools.partial(_member_name, archive=path)
    else:
        files = _folder_files(path)
        display = functools.partial(_file_name, root=path)
    raw = _decode_class_folders(files, source=str(path), display=display)
    if cache_file is not None:
        write_cache(cache_file, raw)
    return raw


def find_split_root(folder: Path) -> Path | None:
    """``folder`` or its only subfolder, whichever holds train/ and test/."""
    if all((folder / split).is_dir() for split in SPLITS):
        return folder
    subfolders = [p for p in folder.iterdir() if p.is_dir()]
    if len(subfolders) == 1 and all((subfolders[0] / s).is_dir() for s in SPLITS):
        return subfolders[0]
    return None


def is_archive_name(name: str) -> bool:
    """Whether ``name`` ends in one of `ARCHIVE_SUFFIXES`."""
    return name.endswith(ARCHIVE_SUFFIXES)


def strip_archive_suffix(name: str) -> str:
    """``name`` without its archive suffix (``.tar.gz``, ``.tgz``, ``.tar``)."""
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _cache_file(path: Path, cache_dir: str | os.PathLike[str] | None) -> Path:
    stem = strip_archive_suffix(path.name) or "images"
    return cache_file_for(path, cache_dir, stem=stem)


def _folder_files(root: Path) -> Iterator[tuple[str, bytes]]:
    """(relative path, bytes) of the image files under a folder, sorted."""
    paths = sorted(p for p in root.rglob("*") if _is_image_name(p.name))
    for path in paths:
        if path.is_file():
            try:
                data = path.read_bytes()
            except OSError as error:
                reason = error.strerror or str(error)
                raise DataFileError(f"cannot read {path}: {reason}") from error
            yield path.relative_to(root).as_posix(), data


def _archive_files(archive: Path) -> Iterator[tuple[str, bytes]]:
    """(member path, bytes) of the image files in a tar archive."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.isfile() and _is_image_name(member.name):
                    file = tar.extractfile(member)
                    if file is not None:
                        yield member.name, file.read()
            read_to_end(tar)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise DataFileError(archive_problem(archive, error)) from error


def _file_name(relative_path: str, *, root: Path) -> str:
    return str(root / relative_path)


def _member_name(member: str, *, archive: Path) -> str:
    return f"{member} in {archive}"


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
    files: Iterable[tuple[str, bytes]],
    *,
    source: str,
    display: Callable[[str], str] = str,
) -> RawSplits:
    """Decodes images grouped by split and class into uint8 NHWC arrays.

    ``display`` turns a relative path into the name an error shows.
    """
    grouped = _group_by_split_and_class(files)
    class_names = _class_order(grouped, source)
    splits = {}
    for split in SPLITS:
        names, images, labels = [], [], []
        for label, class_name in enumerate(class_names):
            files = sorted(grouped[split].get(class_name, []), key=_first)
            for relative_path, data in files:
                names.append(relative_path)
                images.append(_decode_image(data, display(relative_path)))
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


def _group_by_split_and_class(
    files: Iterable[tuple[str, bytes]],
) -> dict[str, dict[str, list[tuple[str, bytes]]]]:
    """``{split: {class: [(relative path, bytes), ...]}}``; other files dropped."""
    grouped: dict[str, dict[str, list[tuple[str, bytes]]]] = {s: {} for s in SPLITS}
    for relative_path, data in files:
        split_class = _split_and_class(relative_path)
        if split_class is not None:
            split, class_name = split_class
            grouped[split].setdefault(class_name, []).append((relative_path, data))
    return grouped


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
    except Image.UnidentifiedImageError as error:
        raise DataFileError(
            f"{name} cannot be decoded: not an image format that Pillow reads"
        ) from error
    except Exception as error:  # Pillow raises many types for broken files
        text = (str(error).strip().splitlines() or [""])[0][:200]
        raise DataFileError(
            f"{name} cannot be decoded as an image ({type(error).__name__}: {text})"
        ) from error
    if pixels.ndim not in (2, 3) or not pixels.size:
        raise DataFileError(f"{name} decodes to an empty image")
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
