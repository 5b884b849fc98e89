"""Verified orbax checkpoints of a run: never all lost, never restored corrupt.

A run keeps its checkpoints in ``<workdir>/checkpoints/<epoch>/`` (orbax's
layout, one step folder per epoch). Each holds the unreplicated train state
(step, params, optimizer state) and the training loop's own state, as host
NumPy arrays, plus ``checksums.json``: the SHA-256 of every file orbax wrote.

Saving (:meth:`Checkpoints.save`):

1. orbax writes the step folder (synchronously; it appears under its final
   name only once complete, so a process killed in mid-save leaves at most a
   temporary folder that orbax ignores and cleans up);
2. process 0 writes ``checksums.json`` next to orbax's files (atomically);
3. every process reads the new checkpoint back and compares it with what was
   saved, bit for bit;
4. only then are the oldest checkpoints deleted, down to ``max_checkpoints``.

So retention is done here, not by orbax's ``max_to_keep`` (orbax deletes
without reading the new checkpoint back): at every moment the workdir holds
the newest checkpoint that was verified. A checkpoint that does not read back
as written raises :class:`UnreadableError` and deletes nothing.

Restoring (:meth:`Checkpoints.restore_latest`) tries the checkpoints newest
first and takes the first good one. A checkpoint is good when

* every file listed in its ``checksums.json`` is there with its checksum
  (this catches garbled bytes that orbax reads without complaint, e.g. a
  momentum of 1.8e20, as well as missing files and a garbled manifest);
* orbax reads it;
* it holds exactly the entries of this run's state, with the same shapes and
  dtypes (another optimizer or model does not match);
* it is finite where a freshly initialised state is finite: every param, the
  momentum and every other float value that starts finite. Values that start
  as NaN or infinite (goal_phs's ``initial_loss``, ``monitored_loss``,
  ``best_loss`` and ``goal_in_force`` before they are set; the validation
  brake's ``last_loss``) are not checked, since they may legitimately stay so.

A checkpoint without ``checksums.json`` (written before checksums were
written, or by a process killed between orbax's save and the checksums) is
judged by the last three points only.

Each checkpoint passed over is reported in one line, e.g. ``checkpoint of
epoch 3 in runs/x/checkpoints is unreadable (default/manifest.ocdbt does not
match its checksum); falling back to epoch 2``. When none is good, restoring
raises, in one line naming each checkpoint and why, and changes nothing:
:class:`UsageError` (exit code 2) when every checkpoint is readable but made
for another state (another configuration or version), :class:`UnreadableError`
(exit code 4) otherwise. :meth:`Checkpoints.set_aside` moves the rejected
newer checkpoints out of the way (to ``<workdir>/rejected_checkpoints/``), so
that the run can save those epochs again and they can be examined.

With several processes (``jax.process_count() > 1``) all of them share the
folder: each makes the same checks on the same files and so takes the same
decisions; only process 0 writes checksums and moves folders, and the others
wait for it at a barrier.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from phs_optax_training.errors import UnreadableError, UsageError

CHECKSUMS = "checksums.json"
_ITEM = "default"  # the folder of orbax's one item in a step folder
REJECTED = "rejected_checkpoints"
_REASON_LENGTH = 120


class CheckpointError(Exception):
    """A checkpoint that is not good; ``verdict`` completes "checkpoint of epoch N ..."."""

    UNREADABLE = "is unreadable"
    NOT_FINITE = "is not finite"
    MISMATCH = "does not match this run"

    def __init__(self, kind: str, reason: str):
        super().__init__(f"{kind} ({reason})")
        self.kind = kind
        self.reason = reason

    @property
    def verdict(self) -> str:
        return f"{self.kind} ({self.reason})"


@dataclasses.dataclass
class Restored:
    """The newest good checkpoint, the newer ones passed over and why (one line
    each, to report)."""

    epoch: int
    state: Any
    loop: dict
    rejected: list[int]
    messages: list[str]


_FAILED_CHECKPOINTERS: list = []
_DRAIN_SECONDS = 1.0


def _drain_callbacks() -> None:
    """Waits ``_DRAIN_SECONDS`` with sys.stderr sent to a dropped buffer."""
    saved = sys.stderr
    sys.stderr = io.StringIO()
    try:
        time.sleep(_DRAIN_SECONDS)
    finally:
        sys.stderr = saved


def _short(error: BaseException, within: Path | None = None) -> str:
    """The error in one short line; paths inside ``within`` relative to it."""
    text = " ".join(str(error).split()) or type(error).__name__
    if within is not None:
        text = text.replace(f"{within}/", "")
    if len(text) > _REASON_LENGTH:
        text = text[: _REASON_LENGTH - 3] + "..."
    return text


def _dotted(path) -> str:
    names = []
    for key in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(key, attribute):
                names.append(str(getattr(key, attribute)))
                break
        else:
            names.append(str(key))
    return ".".join(names)


def _flatten(tree: Any) -> dict[str, Any]:
    return {
        _dotted(path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _orbax_quiet():
    """Leaves out orbax's warnings (e.g. about a damaged step folder): the
    verdicts on the checkpoints say what is wrong, in one line each."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _sync(name: str) -> None:
    """Waits for every process (a no-op with one)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"phs_optax checkpoints: {name}")


class Checkpoints:
    """The verified checkpoints of one run (see the module's docstring).

    ``config`` gives ``max_checkpoints`` (at least 1 is kept); without it,
    every checkpoint is kept. ``for_training``: the caller holds the workdir's
    lock, and so the temporary folders of saves cut short can be removed
    (never while another process may be saving).
    """

    def __init__(self, directory: Path, config: Any = None, *, for_training=False):
        self.directory = Path(directory).absolute()
        self.max_to_keep = max(1, config.max_checkpoints) if config else None
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None,
            enable_async_checkpointing=False,
            create=True,
            cleanup_tmp_directories=for_training,
        )
        try:
            with _orbax_quiet():
                self.manager = ocp.CheckpointManager(self.directory, options=options)
        except Exception as error:  # orbax raises errors of many kinds
            raise UnreadableError(
                f"cannot open the checkpoints in {self.directory} ({_short(error)})"
            ) from None

    def epochs(self) -> list[int]:
        """The epochs of the checkpoints on disk, oldest first (good or not)."""
        return sorted(self.manager.all_steps())

    def latest_epoch(self) -> int | None:
        """The newest checkpoint's epoch (good or not); None without any."""
        epochs = self.epochs()
        return epochs[-1] if epochs else None

    def step_dir(self, epoch: int) -> Path:
        return self.directory / str(epoch)

    @staticmethod
    def _host_item(state: Any, loop_state: dict) -> dict:
        # Host NumPy copies: orbax cannot save process-local device arrays
        # (what pmap gives) when several processes take part.
        item = {"state": flax.serialization.to_state_dict(state), "loop": loop_state}
        return jax.tree.map(np.asarray, item)

    # --- saving -------------------------------------------------------------------

    def save(self, epoch: int, state: Any, loop_state: dict) -> None:
        """Saves, writes the checksums, reads back, then deletes the oldest."""
        item = self._host_item(state, loop_state)
        self.manager.save(epoch, args=ocp.args.StandardSave(item))
        self.manager.wait_until_finished()
        if jax.process_index() == 0:
            self._write_checksums(epoch)
        _sync(f"checksums of epoch {epoch}")
        try:
            restored = self._read(epoch, item)
            for path, leaf in _flatten(item).items():
                if not np.array_equal(restored[path], leaf, equal_nan=True):
                    raise CheckpointError(
                        CheckpointError.UNREADABLE, f"{path} reads back changed"
                    )
        except CheckpointError as error:
            raise UnreadableError(
                f"the checkpoint of epoch {epoch} just written to {self.directory} "
                f"{error.verdict}; the older checkpoints are kept"
            ) from None
        self._delete_oldest(epoch)

    def _write_checksums(self, epoch: int) -> None:
        step_dir = self.step_dir(epoch)
        files = {
            path.relative_to(step_dir).as_posix(): _sha256(path)
            for path in sorted(step_dir.rglob("*"))
            if path.is_file() and path.name not in (CHECKSUMS, CHECKSUMS + ".tmp")
        }
        text = json.dumps({"algorithm": "sha256", "files": files}, indent=1)
        _write_atomically(step_dir / CHECKSUMS, text + "\n")

    def _delete_oldest(self, newest: int) -> None:
        if self.max_to_keep is None:
            return
        keep = set(self.epochs()[-self.max_to_keep :]) | {newest}
        for epoch in self.epochs():
            if epoch not in keep:
                self.manager.delete(epoch)

    # --- restoring ----------------------------------------------------------------

    def _check_files(self, epoch: int) -> None:
        step_dir = self.step_dir(epoch)
        checksums = step_dir / CHECKSUMS
        if not checksums.exists():
            return
        try:
            files = json.loads(checksums.read_text())["files"]
            listed = [(str(name), str(digest)) for name, digest in files.items()]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise CheckpointError(
                CheckpointError.UNREADABLE, f"{CHECKSUMS} is garbled"
            ) from None
        for name, digest in sorted(listed):
            path = step_dir / name
            if not path.is_file():
                raise CheckpointError(CheckpointError.UNREADABLE, f"{name} is missing")
            try:
                actual = _sha256(path)
            except OSError as error:
                raise CheckpointError(
                    CheckpointError.UNREADABLE, f"{name}: {_short(error)}"
                ) from None
            if actual != digest:
                raise CheckpointError(
                    CheckpointError.UNREADABLE, f"{name} does not match its checksum"
                )

    def _read(self, epoch: int, target: dict) -> dict[str, np.ndarray]:
        """The checkpoint's leaves by dotted path, checked against ``target``."""
        self._check_files(epoch)
        # A checkpointer of its own for each read: orbax's manager, once a
        # restore failed, fails on the other steps too. Orbax's warnings
        # about a damaged checkpoint are left out: the verdict says it.
        checkpointer = ocp.StandardCheckpointer()
        try:
            with _orbax_quiet():
                raw = checkpointer.restore(self.step_dir(epoch) / _ITEM)
            got = {path: np.asarray(leaf) for path, leaf in _flatten(raw).items()}
        except Exception as error:  # orbax raises errors of many kinds
            # After a failed read, tensorstore's pending callbacks land on the
            # event loop orbax has closed, and each prints "Event loop is
            # closed" with a traceback to sys.stderr from its own thread: the
            # checkpointer is kept, and they are given time to finish into a
            # buffer that is dropped (the verdict line says what is wrong).
            _FAILED_CHECKPOINTERS.append(checkpointer)
            _drain_callbacks()
            raise CheckpointError(
                CheckpointError.UNREADABLE, _short(error, self.step_dir(epoch))
            ) from None
        checkpointer.close()
        want = _flatten(target)
        missing = [path for path in want if path not in got]
        unexpected = [path for path in got if path not in want]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"lacks {len(missing)} entries such as {missing[0]}")
            if unexpected:
                parts.append(f"holds {len(unexpected)} others such as {unexpected[0]}")
            raise CheckpointError(CheckpointError.MISMATCH, "it " + " and ".join(parts))
        for path, leaf in want.items():
            leaf = np.asarray(leaf)
            # A Python number in the template (the step) is int64 or float64
            # in NumPy but int32 or float32 in JAX (as saved) without x64.
            dtypes = [jax.dtypes.canonicalize_dtype(x.dtype) for x in (got[path], leaf)]
            if got[path].shape != leaf.shape or dtypes[0] != dtypes[1]:
                raise CheckpointError(
                    CheckpointError.MISMATCH,
                    f"{path} is {got[path].dtype}{list(got[path].shape)}, "
                    f"this run's is {leaf.dtype}{list(leaf.shape)}",
                )
        return got

    def restore(self, epoch: int, template: Any, loop_template: dict):
        """(train state, loop state) of ``epoch``, verified; raises CheckpointError.

        ``template`` is a freshly initialised train state of the run and
        ``loop_template`` the loop's initial state: they give the structure and
        where the values must be finite.
        """
        target = self._host_item(template, loop_template)
        got = self._read(epoch, target)
        for path, leaf in _flatten(target).items():
            if got[path].dtype.kind not in "fc":
                continue
            bad = np.isfinite(leaf) & ~np.isfinite(got[path])
            if bad.any():
                raise CheckpointError(
                    CheckpointError.NOT_FINITE,
                    f"{path} holds {int(bad.sum())} non-finite values",
                )
        paths = list(_flatten(target))
        restored = jax.tree.unflatten(
            jax.tree.structure(target), [got[path] for path in paths]
        )
        state = flax.serialization.from_state_dict(
            template, jax.tree.map(jnp.asarray, restored["state"])
        )
        return state, jax.tree.map(np.asarray, restored["loop"])

    def restore_latest(self, template: Any, loop_template: dict) -> Restored | None:
        """The newest good checkpoint; None when there is none at all.

        Its ``messages`` say in one line each which newer checkpoint was passed
        over and why; raises (one line, nothing changed) when none is good.
        """
        epochs = self.epochs()
        failures: list[tuple[int, CheckpointError]] = []
        for epoch in reversed(epochs):
            try:
                state, loop = self.restore(epoch, template, loop_template)
            except CheckpointError as error:
                failures.append((epoch, error))
                continue
            following = ([e for e, _ in failures] + [epoch])[1:]
            messages = [
                f"checkpoint of epoch {bad} in {self.directory} {error.verdict}; "
                f"falling back to epoch {fallback}"
                for (bad, error), fallback in zip(failures, following, strict=True)
            ]
            return Restored(epoch, state, loop, [e for e, _ in failures], messages)
        if not failures:
            return None
        reasons = "; ".join(f"epoch {e} {error.verdict}" for e, error in failures)
        fresh = (
            f"nothing was changed; start fresh with another --workdir or after "
            f"deleting {self.directory.parent}"
        )
        if all(error.kind == CheckpointError.MISMATCH for _, error in failures):
            raise UsageError(
                f"no checkpoint in {self.directory} matches this run (made with "
                f"another configuration or version?): {reasons}; {fresh}"
            )
        raise UnreadableError(
            f"no good checkpoint in {self.directory}: {reasons}; {fresh}"
        )

    def set_aside(self, epochs: list[int]) -> Path | None:
        """Moves the checkpoints of ``epochs`` to ``<workdir>/rejected_checkpoints/``."""
        if not epochs:
            return None
        destination = self.directory.parent / REJECTED
        if jax.process_index() == 0:
            destination.mkdir(exist_ok=True)
            for epoch in epochs:
                target = destination / str(epoch)
                copy = 1
                while target.exists():
                    target = destination / f"{epoch}.{copy}"
                    copy += 1
                self.step_dir(epoch).rename(target)
        _sync(f"set aside {epochs}")
        with _orbax_quiet():
            self.manager.reload()
        return destination

    def close(self) -> None:
        self.manager.close()
