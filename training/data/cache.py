"""The on-disk cache of decoded images: one ``.npz`` of `RawSplits` per source.

A cache file is named ``<stem>-<digest>.npz``, where the digest hashes the
cache format version with the resolved path, size and modification time of the
source (for a folder: the number, total size and latest modification time of
the entries under it), so a changed source maps to a new file. `read_cache`
checks what it reads; a file it cannot use is not fatal to its caller, which
decodes the source again and rewrites the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from phs_optax_training.data.dataset import RawSplits

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "PHS_OPTAX_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/phs_optax")
CACHE_FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$PHS_OPTAX_CACHE`` if set, else ``~/.cache/phs_optax``."""
    return Path(os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR).expanduser()


def cache_file_for(
    source: Path, cache_dir: str | os.PathLike[str] | None, *, stem: str
) -> Path:
    """The cache file for ``source`` in ``cache_dir`` (default `default_cache_dir`)."""
    key = f"v{CACHE_FORMAT_VERSION}|{_source_fingerprint(source)}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return folder / f"{stem}-{digest}.npz"


def read_cache(cache_file: Path) -> RawSplits:
    """Reads a cache file.

    Raises:
        ValueError: The file cannot be read (truncated, not an ``.npz``, an
            array missing) or its arrays do not form `RawSplits` (wrong types,
            mismatched lengths, labels out of range); the message says which,
            in one line.
    """
    try:
        with np.load(cache_file, allow_pickle=False) as arrays:
            raw = RawSplits(
                train_images=arrays["train_images"],
                train_labels=arrays["train_labels"],
                test_images=arrays["test_images"],
                test_labels=arrays["test_labels"],
                class_names=tuple(str(name) for name in arrays["class_names"]),
            )
    except Exception as error:  # a damaged .npz (zip) raises many types
        text = (str(error).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{type(error).__name__}: {text}") from error
    _check_splits(raw)
    return raw


def _check_splits(raw: RawSplits) -> None:
    """Raises ValueError unless ``raw`` holds what `write_cache` writes."""
    num_classes = len(raw.class_names)
    if not num_classes:
        raise ValueError("no class names")
    for split in ("train", "test"):
        images = getattr(raw, f"{split}_images")
        labels = getattr(raw, f"{split}_labels")
        if images.dtype != np.uint8 or images.ndim != 4 or not len(images):
            raise ValueError(
                f"{split} images are {images.dtype.name} of shape {images.shape}, "
                "expected uint8 (N, height, width, channels)"
            )
        if images.shape[1:] != raw.train_images.shape[1:]:
            raise ValueError("train and test images differ in size")
        if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (
            len(images),
        ):
            raise ValueError(
                f"{len(images)} {split} images but labels of shape {labels.shape}"
            )
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"{split} labels outside [0, {num_classes})")


def write_cache(cache_file: Path, raw: RawSplits) -> None:
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


def _source_fingerprint(path: Path) -> str:
    """Resolved path, size and mtime (for a folder: of all files in it)."""
    if path.is_file():
        stat = path.stat()
        return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    count = total_size = latest = 0
    for file in path.rglob("*"):
        try:
            stat = file.stat()
        except OSError:  # e.g. a dangling link, which is not read either
            continue
        count, total_size = count + 1, total_size + stat.st_size
        latest = max(latest, stat.st_mtime_ns)
    return f"{path.resolve()}|{count}|{total_size}|{latest}"
