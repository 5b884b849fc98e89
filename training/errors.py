"""The failures a user of train.py and the sweep can meet, each with its exit code.

Every error here carries a one-line message that says what is wrong and what
to do; the command lines print it as ``<program>: error: <message>`` (no
traceback) and exit with the error's code:

====  ===========================================================================
code  meaning
====  ===========================================================================
0     the run finished
1     an unexpected failure (a bug: the traceback is printed)
2     misuse: a bad flag or configuration, a ``--data_dir`` without the dataset,
      a workdir that holds another configuration
3     the training loss became non-finite: the run diverged (see summary.json)
4     unreadable input or state: a corrupt data file, no good checkpoint, a
      workdir that cannot be written
5     the workdir is in use by another running process
====  ===========================================================================
"""

from __future__ import annotations

USAGE = 2
DIVERGED = 3
UNREADABLE = 4
WORKDIR_IN_USE = 5


class TrainingError(Exception):
    """A failure with a one-line message for the user and an exit code."""

    exit_code = 1


class UsageError(TrainingError):
    """A misuse of the command line or the configuration."""

    exit_code = USAGE


class UnreadableError(TrainingError):
    """Input or saved state that cannot be read or written."""

    exit_code = UNREADABLE


class WorkdirInUseError(TrainingError):
    """Another live process holds the workdir's lock."""

    exit_code = WORKDIR_IN_USE
