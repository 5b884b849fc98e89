"""A workdir belongs to one configuration and, while it trains, to one process.

**The lock.** :func:`locked` takes ``<workdir>/train.lock`` with ``fcntl.flock``
(exclusive, non-blocking) for as long as a run trains there, and writes the
holder's pid and host into it. A second process that finds it held stops with
:class:`WorkdirInUseError` (exit code 5), naming that pid. The operating
system releases a ``flock`` when its holder dies, so the file a killed process
leaves behind does not block: only a held lock counts, not the file, which is
therefore never deleted (deleting it would let two processes lock two
different files). ``flock`` may not work across the hosts of a network file
system. With several processes (``jax.process_count() > 1``), which share
the workdir, process 0 takes the lock for all of them and tells the others
whether it could (a broadcast), so that they all go on or all stop.
``train_and_evaluate`` takes it with :func:`hold_lock` as soon as it has
created the workdir, and :func:`releases_locks` lets it go when the call
returns or raises. Each run rewrites the file's contents (its pid); it
changes nothing else in the workdir (but for removing the temporary folders
of saves cut short) before it has checked the configuration and found a good
checkpoint or none.

**The configuration.** :func:`record_config` writes the run's configuration
to ``<workdir>/config.json`` (strict JSON, a non-finite number as the string
``"inf"`` or ``"nan"``; atomically, by process 0), as soon as the run has
restored its checkpoint or found none, with the number of data shards in
effect. :func:`check_config`
refuses to resume (:class:`UsageError`, exit code 2) with a configuration
that differs in any field but these, which do not change what is computed:

* ``num_epochs``: may be raised (or lowered) to any number of epochs not
  below those the workdir holds (:func:`check_num_epochs`);
* ``data_dir``: where the dataset is read from (its contents are not checked);
* ``checkpoint_every_epochs``, ``max_checkpoints``: how often and how many
  checkpoints are kept;
* ``conv_impl``, ``eval_batch_size``: how the same computation is carried out
  (the layers' implementation, the evaluation's batches), which changes only
  the float rounding, as the number of devices does (not recorded either);
* ``data_shards``: compared through the number of shards in effect (the
  field, or else the number of processes), which is what the computation
  depends on.

The refusal is one line that names each differing field with both values,
e.g. ``--learning_rate: 0.1 in the workdir, 0.01 now``, and says how to start
fresh. A field missing from an older ``config.json`` counts as its default.
A workdir with checkpoints but without ``config.json`` (made before it was
written) is taken as made with the current configuration, said in one line,
and the configuration is recorded; its checkpoints must still match the run's
state (:mod:`phs_optax_training.checkpoints`).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import fcntl
import functools
import json
import math
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from phs_optax_training.errors import (
    TrainingError,
    UnreadableError,
    UsageError,
    WorkdirInUseError,
)

CONFIG_FILE = "config.json"
LOCK_FILE = "train.lock"
# Fields that a resumed run may change (see the module's docstring).
FREE_FIELDS = (
    "num_epochs",
    "data_dir",
    "checkpoint_every_epochs",
    "max_checkpoints",
    "conv_impl",
    "eval_batch_size",
    "data_shards",
)
_SHARDS_KEY = "data_shards_in_effect"
_ERRORS_BY_CODE = {
    cls.exit_code: cls for cls in (UsageError, UnreadableError, WorkdirInUseError)
}


# --- the lock -------------------------------------------------------------------------


class WorkdirLock:
    """An exclusive ``flock`` on ``<workdir>/train.lock``; see the module's docstring."""

    def __init__(self, workdir: str | Path):
        self.workdir = Path(workdir)
        self.path = self.workdir / LOCK_FILE
        self._file = None

    def acquire(self) -> WorkdirLock:
        try:
            file = open(self.path, "a+")
        except OSError as error:
            raise UnreadableError(
                f"cannot write to the workdir {self.workdir} ({error.strerror or error})"
            ) from None
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.seek(0)
            holder = file.read().split()
            file.close()
            who = f"process {holder[0]}" if holder else "another process"
            if len(holder) > 1 and holder[1] != socket.gethostname():
                who += f" on {holder[1]}"
            raise WorkdirInUseError(
                f"the workdir {self.workdir} is in use by {who} (it holds "
                f"{self.path}); wait for it to finish, or use another --workdir"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()} {socket.gethostname()}\n")
        file.flush()
        self._file = file
        return self

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


_HELD: contextvars.ContextVar[contextlib.ExitStack] = contextvars.ContextVar("held")


def releases_locks(function: Callable) -> Callable:
    """Decorator: the locks that ``function`` takes with :func:`hold_lock` are
    released when it returns or raises."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            token = _HELD.set(stack)
            try:
                return function(*args, **kwargs)
            finally:
                _HELD.reset(token)

    return wrapper


def hold_lock(workdir: str | Path) -> None:
    """Takes ``workdir``'s lock (:func:`locked`) until the call of the function
    decorated with :func:`releases_locks` ends."""
    _HELD.get().enter_context(locked(workdir))


@contextlib.contextmanager
def locked(workdir: str | Path) -> Iterator[None]:
    """Creates ``workdir`` and holds its lock (process 0 for all processes)."""
    import jax

    workdir = Path(workdir)
    lock, failure = None, None
    if jax.process_index() == 0:
        try:
            try:
                workdir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise UnreadableError(
                    f"cannot create the workdir {workdir} ({error.strerror or error})"
                ) from None
            lock = WorkdirLock(workdir).acquire()
        except TrainingError as error:
            failure = error
    if jax.process_count() > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        code = np.int32(failure.exit_code if failure else 0)
        code = int(multihost_utils.broadcast_one_to_all(code))
        if failure is None and code:
            failure = _ERRORS_BY_CODE.get(code, TrainingError)(
                f"process 0 could not take the workdir {workdir} (see its message)"
            )
    if failure is not None:
        raise failure
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


# --- the configuration ------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # "inf", "-inf", "nan": strict JSON has no such numbers
    return value


def data_shards_in_effect(config: Any, process_count: int) -> int:
    return config.data_shards or process_count


def config_record(config: Any, process_count: int) -> dict:
    """What ``config.json`` holds for ``config``."""
    return {
        "config": {k: _jsonable(v) for k, v in dataclasses.asdict(config).items()},
        _SHARDS_KEY: data_shards_in_effect(config, process_count),
    }


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    return value if isinstance(value, str) else json.dumps(value)


def read_config(workdir: str | Path) -> dict | None:
    """The contents of ``<workdir>/config.json``; None without it."""
    path = Path(workdir) / CONFIG_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise UnreadableError(f"cannot read {path} ({error.strerror})") from None
    try:
        stored = json.loads(text)
        if not isinstance(stored.get("config"), dict):
            raise ValueError("no configuration in it")
    except (ValueError, AttributeError) as error:
        raise UnreadableError(
            f"{path} is garbled ({' '.join(str(error).split())}); delete it to take "
            "the workdir's checkpoints as made with this configuration"
        ) from None
    return stored


def differences(stored: dict, config: Any, process_count: int) -> list[str]:
    """``--name: old in the workdir, new now`` for each field that may not change."""
    now = config_record(config, process_count)
    found = []
    for field in dataclasses.fields(config):
        if field.name in FREE_FIELDS:
            continue
        default = field.default if field.default is not dataclasses.MISSING else None
        old = stored["config"].get(field.name, _jsonable(default))
        new = now["config"][field.name]
        if old != new:
            found.append(
                f"--{field.name}: {_show(old)} in the workdir, {_show(new)} now"
            )
    old_shards = stored.get(_SHARDS_KEY)
    if old_shards is not None and old_shards != now[_SHARDS_KEY]:
        found.append(
            f"--data_shards: {old_shards} in the workdir, {now[_SHARDS_KEY]} now "
            "(unset, it is the number of processes)"
        )
    return found


def check_config(workdir: str | Path, config: Any, process_count: int) -> dict | None:
    """The stored record (None without one); raises UsageError if it differs."""
    workdir = Path(workdir)
    stored = read_config(workdir)
    if stored is None:
        return None
    found = differences(stored, config, process_count)
    if found:
        raise UsageError(
            f"the workdir {workdir} holds a run with another configuration: "
            f"{'; '.join(found)}; rerun with its settings (see {workdir / CONFIG_FILE}) "
            f"or start fresh with another --workdir or after deleting {workdir}"
        )
    return stored


def check_num_epochs(workdir: str | Path, config: Any, epochs_done: int) -> None:
    if epochs_done > config.num_epochs:
        raise UsageError(
            f"--num_epochs: the workdir {workdir} holds {epochs_done} epochs already, "
            f"{config.num_epochs} now; give --num_epochs={epochs_done} or more, or "
            "start fresh with another --workdir"
        )


def record_config(
    workdir: str | Path,
    config: Any,
    process_count: int,
    stored: dict | None,
    *,
    resumed: bool,
    log: Callable[[str], None],
) -> None:
    """Writes ``config.json`` (when new or changed); call on process 0 only."""
    workdir = Path(workdir)
    path = workdir / CONFIG_FILE
    record = config_record(config, process_count)
    if stored is None and resumed:
        log(
            f"{workdir} has checkpoints but no {CONFIG_FILE} (made before the "
            f"configuration was recorded): taking them as made with this "
            f"configuration, now recorded in {path}"
        )
    if record == stored:
        return
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
    except OSError as error:
        raise UnreadableError(f"cannot write {path} ({error.strerror})") from None
