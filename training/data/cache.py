"""The on-disk cache of decoded images: one ``.npz`` of `RawSplits` per source.

A cache file is named ``<stem>-<digest>.npz``, where the digest hashes the
cache format version with the resolved path, size and modification time of the
source (for a folder: the number, total size and latest modification time of
the entries under it), so a changed source maps to a new file.
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
    """Reads a cache file; raises OSError, ValueError or KeyError if unreadable."""
    with np.load(cache_file, allow_pickle=False) as arrays:
        return RawSplits(
            train_images=arrays["train_images"],
            train_labels=arrays["train_labels"],
            test_images=arrays["test_images"],
            test_labels=arrays["test_labels"],
            class_names=tuple(str(name) for name in arrays["class_names"]),
        )


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
        stat = file.stat()
        count, total_size = count + 1, total_size + stat.st_size
        latest = max(latest, stat.st_mtime_ns)
    return f"{path.resolve()}|{count}|{total_size}|{latest}"
