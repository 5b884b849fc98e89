"""JAX's persistent compilation cache for the command lines (train.py, the sweep).

A run compiles its init, train and evaluation programs anew in every process;
with the cache, a later run with the same shapes and flags loads them instead
(5-6 s off a one-epoch Fashion-MNIST run on the 2-core development CPU,
benchmarks/RESULTS.md).
The cache is size-capped, so JAX evicts old entries and takes a file lock
(``filelock``) around reads and writes: several processes (``--processes``,
multi-process training) can share it.
"""

from __future__ import annotations

import os
from pathlib import Path

from phs_optax_training.data import default_cache_dir

MAX_BYTES = 1 << 30
MIN_COMPILE_SECONDS = 0.2  # JAX's default (1 s) would skip the eval programs


def default_directory() -> Path:
    """``jax/`` in the data cache folder (``$PHS_OPTAX_CACHE`` or ~/.cache/phs_optax)."""
    return default_cache_dir() / "jax"


def enable(directory: str | os.PathLike[str] | None) -> Path | None:
    """Keeps compiled programs in ``directory`` (None: `default_directory`).

    An empty string turns the cache off. When ``JAX_COMPILATION_CACHE_DIR``
    is set, JAX already uses that folder and it is left as it is. Returns the
    folder in use by this call, or None.
    """
    if directory == "" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    import jax

    path = Path(directory or default_directory()).expanduser()
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return path
