"""Command line of train.py: flags, presets, multi-process start-up, exit codes."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from absl import flags

from phs_optax_training import comparison, xla_flags
from phs_optax_training.config import TrainConfig, field_type, run_name

USAGE_ERROR = 2
_DEFAULTS = TrainConfig()

FLAGS = flags.FlagValues()


def _define_config_flags() -> None:
    for field in dataclasses.fields(TrainConfig):
        default = getattr(_DEFAULTS, field.name)
        help_text = field.metadata["help"]
        define = {
            str: flags.DEFINE_string,
            int: flags.DEFINE_integer,
            float: flags.DEFINE_float,
        }[field_type(field)]
        define(field.name, default, help_text, flag_values=FLAGS)


_define_config_flags()
flags.DEFINE_string(
    "workdir",
    None,
    "Output folder (default: runs/<dataset>_<run name>).",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "preset",
    None,
    "A row of the paper's tables, e.g. table2-lr0.1-goal-f0.1-m10.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "goal_reading",
    None,
    "How a preset's goal is read: reduction or remaining (default: per table).",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "compare_baselines",
    False,
    "Also train phs and sgd with the same hyperparameters and print a comparison.",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "demo",
    False,
    "The main job: goal_phs, phs and sgd with the hyperparameters of Table 2's "
    f"row {comparison.DEMO_PRESET}, each at batch "
    f"{' and at batch '.join(map(str, comparison.DEMO_BATCH_SIZES))}, "
    f"{comparison.DEMO_EPOCHS} epochs, ending with a table and one sentence per "
    "batch size. Other flags override its values, except "
    f"{', '.join('--' + name for name in comparison.DEMO_OWN_FLAGS)}, --preset "
    "and --compare_baselines, which it refuses.",
    flag_values=FLAGS,
)
flags.DEFINE_bool("quiet", False, "No progress bar.", flag_values=FLAGS)
flags.DEFINE_bool(
    "stop_on_divergence",
    True,
    "Stop a run whose training loss became non-finite (exit code 3); "
    "--nostop_on_divergence trains on.",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "plots", True, "Write PNG plots to the workdir at the end.", flag_values=FLAGS
)
flags.DEFINE_string(
    "compilation_cache_dir",
    None,
    "Where JAX keeps compiled programs for later runs (default: "
    "$PHS_OPTAX_CACHE/jax or ~/.cache/phs_optax/jax; empty: off).",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "coordinator_address",
    os.environ.get("JAX_COORDINATOR_ADDRESS"),
    "host:port of process 0, for multi-process training.",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "num_processes",
    int(os.environ.get("JAX_NUM_PROCESSES", "1")),
    "Number of processes.",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "process_id",
    int(os.environ.get("JAX_PROCESS_ID", "0")),
    "This process's index.",
    flag_values=FLAGS,
)


class UsageError(Exception):
    """A misuse of the command line; the message is one line."""


def config_from_flags() -> TrainConfig:
    values = {
        field.name: FLAGS[field.name].value for field in dataclasses.fields(TrainConfig)
    }
    if FLAGS.demo:
        values.update(_demo_values())
    elif FLAGS.preset:
        values.update(_preset_values(FLAGS.preset, FLAGS.goal_reading))
    elif FLAGS.goal_reading:
        raise UsageError("--goal_reading only applies together with --preset or --demo")
    return TrainConfig(**values)


def _demo_values() -> dict:
    """The main job's goal_phs run: its preset's row and epochs; flags given
    explicitly on the command line win."""
    given = [
        name
        for name in ("preset", "compare_baselines", *comparison.DEMO_OWN_FLAGS)
        if FLAGS[name].present
    ]
    if given:
        raise UsageError(
            f"--demo sets the optimizers, batch sizes and preset of its runs "
            f"itself; drop --{given[0]}"
        )
    values = _preset_values(comparison.DEMO_PRESET, FLAGS.goal_reading)
    if not FLAGS["num_epochs"].present:
        values["num_epochs"] = comparison.DEMO_EPOCHS
    return values


def _preset_values(name: str, goal_reading: str | None) -> dict:
    """The preset's hyperparameters; flags given explicitly on the command line win."""
    from phs_optax_training import presets

    try:
        preset = presets.get_preset(name)
    except KeyError as error:
        raise UsageError(str(error.args[0]) if error.args else str(error)) from None
    reading = goal_reading or presets.DEFAULT_GOAL_READING[preset.table]
    if reading not in ("reduction", "remaining"):
        raise UsageError(
            f"unknown --goal_reading={reading!r}; choose reduction or remaining"
        )
    values = presets.config_values(preset, reading)
    return {key: value for key, value in values.items() if not FLAGS[key].present}


def default_workdir(config: TrainConfig) -> Path:
    """``runs/<dataset>_<run name>`` (:func:`config.run_name`)."""
    return Path("runs") / f"{config.dataset}_{run_name(config)}"


def _start_distributed() -> None:
    if not FLAGS.coordinator_address:
        return
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes,
        process_id=FLAGS.process_id,
    )


def _plot(workdir: Path) -> None:
    """The run's plots; a failure to write them is one line (exit 4): the run
    itself is finished and kept."""
    from phs_optax_training import errors, plotting

    try:
        plotting.plot_run(workdir)
    except plotting.PlotError as error:
        raise errors.UnreadableError(
            f"the run finished and is kept in {workdir}, but its plots could not "
            f"be written: {error}"
        ) from None


def _fail(message: str, exit_code: int = USAGE_ERROR) -> None:
    print(f"train.py: error: {message}", file=sys.stderr)
    sys.exit(exit_code)


def _first_missing(path: Path) -> Path | None:
    """The outermost of ``path`` and its parents that does not exist (yet)."""
    missing = None
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                break
        except OSError:
            break
        missing = candidate
    return missing


def _remove_if_unused(folder: Path | None) -> None:
    """Removes ``folder``, which this run created, if the run wrote nothing in it
    but what every run writes before it trains (the workdir's lock and
    configuration files, empty folders): a run that fails before its first
    metrics or checkpoint leaves nothing behind. Any other file in it, or a
    lock that another process holds, keeps all of it."""
    from phs_optax_training import errors, workdirs

    if folder is None or not folder.is_dir() or folder.is_symlink():
        return
    folders, written = [], []
    for parent, subfolders, files in os.walk(folder):
        if any(Path(parent, name).is_symlink() for name in subfolders):
            return
        if set(files) - {workdirs.LOCK_FILE, workdirs.CONFIG_FILE}:
            return
        folders.append(Path(parent))
        written += [Path(parent, name) for name in files]
    locks = []
    try:
        for lock_file in written:
            if lock_file.name == workdirs.LOCK_FILE:
                locks.append(workdirs.WorkdirLock(lock_file.parent).acquire())
        for file in written:
            file.unlink()
        for empty in reversed(folders):
            os.rmdir(empty)
    except (OSError, errors.TrainingError):
        pass  # in use or changed meanwhile: left as it is
    finally:
        for lock in locks:
            lock.release()


def run(argv: list[str]) -> None:
    if any(arg in ("-h", "--help", "-help", "--helpfull") for arg in argv[1:]):
        from phs_optax_training import cli_help

        print(cli_help.help_text(FLAGS, xla_flags.HELP_LINE))
        sys.exit(0)
    try:
        rest = FLAGS(argv)
        if len(rest) > 1:
            raise UsageError(
                f"unexpected arguments {' '.join(rest[1:])!r}; flags look like --name=value"
            )
        config = config_from_flags()
    except (flags.Error, UsageError) as error:
        _fail(str(error).splitlines()[0])
        return

    from phs_optax_training import compilation_cache, errors, train_lib
    from phs_optax_training.config import ConfigError
    from phs_optax_training.data import DataUnavailableError

    new_folder, finished, in_use = None, False, False
    try:
        compilation_cache.enable(FLAGS.compilation_cache_dir)
        _start_distributed()
        import jax

        if FLAGS.workdir:
            workdir = Path(FLAGS.workdir)
        elif FLAGS.demo:
            workdir = comparison.demo_workdir(config)
        else:
            workdir = default_workdir(config)
        runs = {config.optimizer: (config, workdir)}
        if FLAGS.demo:
            runs = comparison.demo_runs(config, workdir)
        elif FLAGS.compare_baselines:
            runs = comparison.baselines(config, workdir)
        for run_config, _ in runs.values():
            train_lib.validate(run_config, jax.device_count())
        new_folder = _first_missing(workdir)
        dataset = None
        if len(runs) > 1:  # loaded once for all runs
            from phs_optax_training import data as data_lib

            dataset = data_lib.load_dataset(config.dataset, config.data_dir)
        if FLAGS.demo and jax.process_index() == 0:
            print("\n".join(comparison.demo_intro(config)), flush=True)
        summaries = {}
        for name, (run_config, run_workdir) in runs.items():
            summaries[name] = train_lib.train_and_evaluate(
                run_config,
                run_workdir,
                dataset=dataset,
                progress=not FLAGS.quiet,
                stop_on_divergence=FLAGS.stop_on_divergence,
                label=name if len(runs) > 1 else None,
            )
            if FLAGS.plots and jax.process_index() == 0:
                _plot(run_workdir)
        finished = True
    except (ConfigError, DataUnavailableError) as error:
        _fail(str(error).splitlines()[0])
        return
    except errors.TrainingError as error:
        in_use = isinstance(error, errors.WorkdirInUseError)
        _fail(str(error).splitlines()[0], error.exit_code)
        return
    finally:
        if not finished and not in_use:
            _remove_if_unused(new_folder)
    if jax.process_index() == 0 and FLAGS.demo:
        print("\n".join(comparison.demo_report(summaries, runs, config)))
        if FLAGS.plots:
            plots = comparison.demo_plots(runs)
            print(f"comparison plots: {', '.join(map(str, plots))}")
    elif jax.process_index() == 0:
        _print_summaries(summaries, runs, FLAGS.plots and FLAGS.compare_baselines)
    if any(summary["diverged"] for summary in summaries.values()):
        sys.exit(errors.DIVERGED)


def _print_summaries(summaries: dict, runs: dict, overlay: bool) -> None:
    print(
        f"{'optimizer':<10} {'final test acc':>14} {'at best val':>11} "
        f"{'best test acc':>13} {'brake epoch':>11}  workdir"
    )
    for name, summary in summaries.items():
        brake = summary["brake_epoch"]
        selected = summary["selected_test_accuracy"]
        diverged = summary["diverged_at"]
        note = "" if diverged is None else f"  diverged at epoch {diverged['epoch']}"
        print(
            f"{name:<10} {summary['final_test_accuracy']:>14.4f} "
            f"{'-' if selected is None else f'{selected:.4f}':>11} "
            f"{summary['best_test_accuracy']:>13.4f} "
            f"{'-' if brake is None else f'{brake:.2f}':>11}  {runs[name][1]}{note}"
        )
    if overlay:
        from phs_optax_training import plotting

        out = Path(next(iter(runs.values()))[1]).parent / "comparison.png"
        plotting.plot_compare(
            [workdir for _, workdir in runs.values()], out, labels=list(runs)
        )
        print(f"comparison plot: {out}")


def main() -> None:
    xla_flags.set_cpu_flags()  # before JAX initialises its backends
    run(sys.argv)
