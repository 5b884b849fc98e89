"""The sweep's command line: trains a named sweep of configurations as one
vmapped program, shared by worker processes pinned to the CPU cores.

    python -m phs_optax_training.sweep --sweep=table2-remaining --seeds=0,1,2 \
        --num_epochs=20 --workdir=runs/table2

The named sweeps (the paper's experiments and those beyond it) are
:mod:`phs_optax_training.experiments`; the vmapped training is
:mod:`phs_optax_training.vmap_sweep`. This module adds the choice of how many
configurations one program trains at once and of how many worker processes
share the sweep folder (each pinned to its share of the cores), and prints the
sweep's ``results.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import jax

from phs_optax_training import compilation_cache, errors, presets, workdirs, xla_flags
from phs_optax_training import data as data_lib
from phs_optax_training.config import TrainConfig, field_type
from phs_optax_training.experiments import NAMED_SWEEPS, named_sweep
from phs_optax_training.experiments.beyond import BEYOND_VARIANTS
from phs_optax_training.experiments.validation_trigger import (
    DEFAULT_VALIDATION_KINDS,
    VALIDATION_FRACTION,
    VALIDATION_KINDS,
)
from phs_optax_training.vmap_sweep import checked_configs, run_sweep

_CORES_VARIABLE = "PHS_SWEEP_CORES"


def default_configs_per_program() -> int | None:
    """1 on a CPU, None (all at once) on an accelerator.

    On the CPU, vmapped configurations run slower than the same configurations
    one after another through the shared program, even when they share their
    batches (benchmarks/RESULTS.md, ``compare.py --only sweep``)."""
    return 1 if jax.default_backend() == "cpu" else None


def default_processes(num_configs: int) -> int:
    """On a CPU, one worker process per usable core, at most one per
    configuration; 1 on an accelerator.

    On a CPU, processes pinned to a core each train faster than one process
    using every core, whether it runs the configurations one by one or vmapped
    (images/s 1.56-1.75x with 2 processes on a 2-core VM in ``compare.py
    --only sweep``; a 3-epoch protocol sweep 1.42x faster; benchmarks/RESULTS.md)."""
    if jax.default_backend() != "cpu":
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), num_configs))


def _without_flag(argv: list[str], flag: str) -> list[str]:
    kept, skip_value = [], False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg == flag:
            skip_value = True
        elif not arg.startswith(flag + "="):
            kept.append(arg)
    return kept


def _run_workers(argv: list[str], processes: int) -> None:
    """Runs the sweep in ``processes`` child processes, each pinned to its share
    of this process's CPU cores; raises if one of them fails."""
    cores = sorted(os.sched_getaffinity(0))
    argv = _without_flag(argv, "--processes")
    children = []
    for worker in range(processes):
        share = cores[worker::processes] or cores
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "phs_optax_training.sweep", *argv]
                + [f"--worker={worker}", f"--num_workers={processes}"],
                env={**os.environ, _CORES_VARIABLE: ",".join(map(str, share))},
                stdout=subprocess.DEVNULL,
            )
        )
    failed = [w for w, child in enumerate(children) if child.wait() != 0]
    if failed:
        raise ValueError(f"sweep worker(s) {failed} failed; see their messages above")


def _variants_help() -> str:
    beyond = "; ".join(f"{t}: {', '.join(v)}" for t, v in BEYOND_VARIANTS.items())
    return (
        "beyond-* sweeps: comma-separated option sets to run (default all: "
        f"{beyond}); validation-* sweeps: kinds of run, of "
        f"{', '.join(VALIDATION_KINDS)} (default {', '.join(DEFAULT_VALIDATION_KINDS)})"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m phs_optax_training.sweep",
        description="Train a named sweep of configurations as one vmapped program.",
    )
    parser.add_argument("--sweep", required=True, choices=NAMED_SWEEPS)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--workdir", required=True)
    _add_shared_config_arguments(parser)
    parser.add_argument(
        "--configs_per_program",
        type=int,
        default=None,
        help="configurations trained at once (default: 1 on a CPU, where it is "
        "fastest, all of a group on an accelerator)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="worker processes sharing the sweep, each pinned to its own CPU cores "
        "(default: on a CPU one per usable core, at most one per configuration, "
        "the fastest way there: 2 on a 2-core VM trained 1.4-1.75x as fast as 1; "
        "1 on an accelerator)",
    )
    parser.add_argument(
        "--compilation_cache_dir",
        default=None,
        help="where JAX keeps compiled programs for later runs (default: "
        "$PHS_OPTAX_CACHE/jax or ~/.cache/phs_optax/jax; empty: off)",
    )
    parser.add_argument(
        "--reference",
        help="ablation: the finished table2 sweep folder whose goal runs set the steps",
    )
    parser.add_argument(
        "--reading",
        default="remaining",
        choices=presets.READINGS,
        help="ablation: the goal reading of the reference goal runs",
    )
    parser.add_argument("--variants", help=_variants_help())
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--num_workers", type=int, default=1, help=argparse.SUPPRESS)
    return parser


# TrainConfig fields every configuration of a sweep shares, one flag each,
# declared by TrainConfig as train.py's flags are (type, default, help)
SHARED_FIELDS = (
    "num_epochs", "batch_size", "integrator", "drag", "ema_decay",
    "accumulation_size", "validation_fraction", "validation_patience", "data_dir",
    "max_train_examples", "max_test_examples", "conv_impl",
)  # fmt: skip
_SWEEP_NOTES = {
    "validation_fraction": f"Default 0 (none), but the validation-* sweeps hold "
    f"out {VALIDATION_FRACTION:g} unless given another fraction.",
}


def _add_shared_config_arguments(parser: argparse.ArgumentParser) -> None:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    defaults = TrainConfig()
    for name in SHARED_FIELDS:
        help_text = " ".join(
            [fields[name].metadata["help"], _SWEEP_NOTES.get(name, "")]
        ).strip()
        parser.add_argument(
            f"--{name}",
            type=field_type(fields[name]),
            default=getattr(defaults, name),
            help=help_text.replace("%", "%%"),
        )


def _base_config(args: argparse.Namespace) -> TrainConfig:
    """What every configuration of the sweep shares, from the command line."""
    return TrainConfig(**{name: getattr(args, name) for name in SHARED_FIELDS})


def _process_count(args: argparse.Namespace, num_configs: int) -> int:
    if args.num_workers > 1:  # a worker started by _run_workers
        return 1
    if args.processes is not None:
        return args.processes
    return default_processes(num_configs)


def main(argv: Sequence[str] | None = None) -> int:
    # Before JAX initialises its backends; the workers inherit the flag.
    xla_flags.set_cpu_flags()
    parser = _parser()
    args = parser.parse_args(argv)
    if _CORES_VARIABLE in os.environ:  # a worker: pin before jax starts its threads
        os.sched_setaffinity(
            0, {int(c) for c in os.environ[_CORES_VARIABLE].split(",")}
        )
    if args.processes is not None and args.processes < 1:
        parser.error(f"--processes={args.processes} must be at least 1")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        variants = None if args.variants is None else args.variants.split(",")
        configs = named_sweep(
            args.sweep,
            seeds,
            _base_config(args),
            args.reference,
            args.reading,
            variants,
        )
        checked_configs(configs)  # before any worker starts, so one message
        processes = _process_count(args, len(configs))
        # The process the user started holds the folder's lock for its workers.
        starter = args.num_workers == 1
        dataset = None
        if starter and configs and (processes == 1 or configs[0].data_dir):
            # Before the lock creates the folder, and once rather than in every
            # worker: a missing or damaged dataset is one message and no folder.
            dataset = data_lib.load_dataset(configs[0].dataset, configs[0].data_dir)
        with workdirs.locked(args.workdir) if starter else contextlib.nullcontext():
            if processes > 1:
                _run_workers(list(sys.argv[1:] if argv is None else argv), processes)
            compilation_cache.enable(args.compilation_cache_dir)
            run_sweep(
                configs,
                args.workdir,
                dataset=dataset if processes == 1 else None,
                configs_per_program=(
                    args.configs_per_program
                    if args.configs_per_program is not None
                    else default_configs_per_program()
                ),
                worker=args.worker,
                num_workers=args.num_workers,
                log=lambda m: print(m, file=sys.stderr, flush=True),
                lock=False,
            )
    except errors.TrainingError as error:
        print(f"sweep: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return error.exit_code
    except (ValueError, data_lib.DataUnavailableError) as error:
        print(f"sweep: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    print((Path(args.workdir) / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
