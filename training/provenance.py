"""What produced a run: the code's commit, the package versions and the hardware."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import jax

PACKAGES = ("jax", "jaxlib", "optax", "flax", "chex", "orbax-checkpoint")
REPOSITORY = Path(__file__).resolve().parents[1]


@functools.cache
def git_commit() -> str | None:
    """The commit of the code that runs, with ``+dirty`` for uncommitted
    changes; None outside a git checkout."""
    try:

        def git(*args: str) -> str:
            return subprocess.run(
                ["git", *args], cwd=REPOSITORY, capture_output=True, text=True,
                check=True, timeout=10,
            ).stdout.strip()  # fmt: skip

        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict:
    """Commit, versions, CPU model, accelerator name, device and thread counts."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    device = jax.devices()[0]
    return {
        "commit": git_commit(),
        "versions": {"python": platform.python_version(), **versions},
        "cpu": cpu_model(),
        "cpu_threads": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
