"""The training configuration and its validation (done before anything compiles)."""

from __future__ import annotations

import dataclasses

import phs_optax

DATASETS = ("fashion_mnist", "cifar10")
OPTIMIZERS = ("sgd", "phs", "goal_phs")
SGD_SCHEDULES = ("constant", "cosine")
BRAKE_TRIGGERS = ("goal", "validation", "both", "step")
# LeNet5's conv_impl (phs_optax_models), or "auto": see TrainConfig.conv_impl.
CONV_IMPLS = ("auto", "stock", "space_to_depth")


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line for the user."""


def _field(default, help: str):
    """A configuration field with its one-line help (the flag's help text)."""
    return dataclasses.field(default=default, metadata={"help": help})


def field_type(field: dataclasses.Field) -> type:
    """The value type of a ``TrainConfig`` field (its flag's): int, float or
    str, whether or not the field may also be None."""
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    for candidate in (str, int, float):
        if kind.startswith(candidate.__name__):
            return candidate
    raise TypeError(f"field {field.name!r} has no flag type: {kind}")


@dataclasses.dataclass(frozen=True)
class _RunFields:
    dataset: str = _field("fashion_mnist", "fashion_mnist or cifar10.")
    data_dir: str | None = _field(
        None, "Folder with the dataset's files (IDX files, class folders, .tar.gz)."
    )
    optimizer: str = _field("goal_phs", "sgd, phs or goal_phs.")
    learning_rate: float = _field(0.1, "Step length alpha.")
    mass: float = _field(10.0, "Mass m (phs, goal_phs).")
    friction: float = _field(0.1, "Exploration friction gamma (phs, goal_phs).")
    goal: float = _field(
        0.85, "Brake when the loss <= (1 - goal) * initial loss (goal_phs)."
    )
    brake_factor: float = _field(50.0, "Friction multiplier at the brake (goal_phs).")
    integrator: str = _field(
        "conformal", "conformal, symplectic or euler (eq. 2 literally)."
    )
    drag: str = _field(
        "momentum",
        "momentum (friction force -gamma p) or velocity (-gamma p / m, eq. 2).",
    )
    sgd_momentum: float = _field(
        0.0, "Momentum of sgd; 0 is plain SGD as in the paper."
    )
    sgd_schedule: str = _field(
        "constant",
        "sgd's learning rate over the run: constant, or cosine (from "
        "--learning_rate down to 0 at the last update).",
    )
    brake_trigger: str = _field(
        "goal",
        "goal, validation (rising validation loss), both, or step "
        "(at --brake_at_step; for sgd a learning-rate drop by --brake_factor).",
    )
    validation_fraction: float = _field(
        0.0, "Fraction of the training set held out for validation."
    )
    validation_patience: int = _field(
        2, "Brake after the validation loss rose this many epochs."
    )
    # With brake_trigger="step": brake at this update (0-based) whatever the
    # loss; goal_phs multiplies its friction by brake_factor, sgd divides its
    # learning rate by brake_factor (ablations of the goal trigger).
    brake_at_step: int | None = _field(
        None, "With --brake_trigger=step: the update (0-based) that brakes."
    )
    batch_size: int = _field(64, "Global batch size (split across all devices).")
    eval_batch_size: int = _field(1000, "Global batch size of evaluation.")
    num_epochs: int = _field(2, "Number of epochs.")
    seed: int = _field(0, "Seed of initialisation and shuffling.")
    checkpoint_every_epochs: int = _field(
        1, "Save a checkpoint every this many epochs (and at the end)."
    )
    max_checkpoints: int = _field(2, "Checkpoints kept.")
    max_train_examples: int | None = _field(
        None, "Use only a fixed random N training examples (quick runs)."
    )
    max_test_examples: int | None = _field(
        None, "Use only a fixed random N test examples (quick runs)."
    )
    data_shards: int | None = _field(
        None,
        "Training-data shards (default: one per process); each device holds one.",
    )
    # "auto": "space_to_depth", the layers written for XLA:CPU, when JAX's
    # default backend is the CPU, and Flax's stock layers on an accelerator.
    # The parameters and their initial values are the same either way.
    conv_impl: str = _field(
        "auto",
        "LeNet-5's conv + pool layers: stock (Flax's nn.Conv, nn.max_pool), "
        "space_to_depth (written for XLA:CPU), or auto (space_to_depth on a CPU "
        "backend, stock otherwise).",
    )


def _option_field(option: phs_optax.Option) -> tuple[str, str, dataclasses.Field]:
    kind = option.kind.__name__
    annotation = kind if option.default is not None else f"{kind} | None"
    return option.name, annotation, _field(option.default, f"goal_phs: {option.help}")


# The goal_phs options (phs_optax.OPTIONS) are fields of their own, declared
# there once; they act on goal_phs only (the PHS and SGD baselines of
# --compare_baselines and of a sweep run without the options beyond the paper).
TrainConfig = dataclasses.make_dataclass(
    "TrainConfig",
    [_option_field(option) for option in phs_optax.OPTIONS],
    bases=(_RunFields,),
    frozen=True,
)
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = """Everything a training run depends on. Defaults: Table 2's first goal row.

Each field's help is in its metadata (``dataclasses.fields(TrainConfig)``);
the goal_phs options are those of ``phs_optax.OPTIONS``.
"""

EXTENSION_DEFAULTS = {
    option.name: option.default
    for option in phs_optax.OPTIONS
    if option.group == "beyond"
}
OPTION_NAMES = tuple(option.name for option in phs_optax.OPTIONS)


def extension_options(config: TrainConfig) -> dict:
    """The goal_phs options beyond the paper that ``config`` sets."""
    return {
        name: getattr(config, name)
        for name, default in EXTENSION_DEFAULTS.items()
        if getattr(config, name) != default
    }


def goal_phs_options(config: TrainConfig) -> dict:
    """Every goal_phs option that ``config`` sets (smoothing and beyond the paper)."""
    return {
        option.name: getattr(config, option.name)
        for option in phs_optax.OPTIONS
        if getattr(config, option.name) != option.default
    }


def without_extensions(config: TrainConfig) -> TrainConfig:
    return dataclasses.replace(config, **EXTENSION_DEFAULTS)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(config: TrainConfig, num_devices: int) -> None:
    """Raises ConfigError (one line) for a configuration that cannot run."""
    choices = {
        "dataset": DATASETS,
        "optimizer": OPTIMIZERS,
        "integrator": phs_optax.INTEGRATORS,
        "drag": phs_optax.DRAGS,
        "brake_trigger": BRAKE_TRIGGERS,
        "conv_impl": CONV_IMPLS,
    }
    for name, allowed in choices.items():
        value = getattr(config, name)
        _require(
            value in allowed,
            f"unknown --{name}={value!r}; choose one of {', '.join(allowed)}",
        )
    _require(
        config.learning_rate > 0,
        f"--learning_rate must be > 0, got {config.learning_rate}",
    )
    _require(config.mass > 0, f"--mass must be > 0, got {config.mass}")
    _require(config.friction >= 0, f"--friction must be >= 0, got {config.friction}")
    _require(0 < config.goal < 1, f"--goal must be in (0, 1), got {config.goal}")
    _require(
        config.brake_factor >= 1,
        f"--brake_factor must be >= 1, got {config.brake_factor}",
    )
    _require(
        0 <= config.sgd_momentum < 1,
        f"--sgd_momentum must be in [0, 1), got {config.sgd_momentum}",
    )
    _require(
        config.sgd_schedule in SGD_SCHEDULES,
        f"--sgd_schedule must be one of {', '.join(SGD_SCHEDULES)}, "
        f"got {config.sgd_schedule!r}",
    )
    cosine = config.sgd_schedule == "cosine"
    _require(
        not cosine or config.optimizer == "sgd",
        "--sgd_schedule=cosine needs --optimizer=sgd",
    )
    _require(
        not cosine or config.brake_trigger != "step",
        "--sgd_schedule=cosine and --brake_trigger=step are two schedules; give one",
    )
    _require(
        0 <= config.validation_fraction < 1,
        f"--validation_fraction must be in [0, 1), got {config.validation_fraction}",
    )
    on_validation = config.brake_trigger in ("validation", "both")
    _require(
        not on_validation or config.validation_fraction > 0,
        f"--brake_trigger={config.brake_trigger} needs --validation_fraction > 0",
    )
    _require(
        config.brake_trigger == "goal"
        or config.optimizer == "goal_phs"
        or (config.brake_trigger == "step" and config.optimizer == "sgd"),
        f"--brake_trigger={config.brake_trigger} needs --optimizer=goal_phs",
    )
    on_step = config.brake_trigger == "step"
    _require(
        on_step == (config.brake_at_step is not None),
        "--brake_at_step goes with --brake_trigger=step (give both or neither)",
    )
    _require(
        not on_step or config.brake_at_step >= 0,
        f"--brake_at_step must be >= 0, got {config.brake_at_step}",
    )
    _require(
        config.validation_patience >= 1,
        f"--validation_patience must be >= 1, got {config.validation_patience}",
    )
    _require(
        config.num_epochs >= 1, f"--num_epochs must be >= 1, got {config.num_epochs}"
    )
    _require(
        config.checkpoint_every_epochs >= 1,
        f"--checkpoint_every_epochs must be >= 1, got {config.checkpoint_every_epochs}",
    )
    _require(
        config.max_checkpoints >= 1,
        f"--max_checkpoints must be >= 1, got {config.max_checkpoints}",
    )
    _validate_extensions(config)
    shards = config.data_shards
    _require(
        shards is None or (shards >= 1 and num_devices % shards == 0),
        f"--data_shards={shards} must divide the {num_devices} devices",
    )
    for name in ("batch_size", "eval_batch_size"):
        size = getattr(config, name)
        _require(size >= 1, f"--{name} must be >= 1, got {size}")
        _require(
            size % num_devices == 0,
            f"--{name}={size} is not divisible by the {num_devices} devices; "
            f"use a multiple of {num_devices}",
        )


def _validate_extensions(config: TrainConfig) -> None:
    """The goal_phs options, checked by goal_phs itself (its message names the
    option); options beyond the paper need --optimizer=goal_phs."""
    extensions = extension_options(config)
    _require(
        not extensions or config.optimizer == "goal_phs",
        f"--{next(iter(extensions), '')} needs --optimizer=goal_phs",
    )
    options = goal_phs_options(config)
    if not options:
        return
    try:
        phs_optax.goal_phs(
            config.learning_rate,
            config.mass,
            config.friction,
            None if config.brake_trigger in ("validation", "step") else config.goal,
            config.brake_factor,
            **options,
        )
    except ValueError as error:
        message = str(error).splitlines()[0].removeprefix("goal_phs: ")
        raise ConfigError(f"--{message}") from None


def run_name(config: TrainConfig) -> str:
    """The run's folder name: the optimizer, its hyperparameters, the trigger,
    the options set and the seed (train.py's default workdir and the sweep's
    run folders are named by it)."""
    name = f"{config.optimizer}_lr{config.learning_rate:g}"
    if config.optimizer != "sgd":
        name += f"_f{config.friction:g}_m{config.mass:g}"
    if config.optimizer == "sgd" and config.sgd_momentum:
        name += f"_mom{config.sgd_momentum:g}"
    if config.optimizer == "sgd" and config.sgd_schedule == "cosine":
        name += "_cos"
    if config.brake_trigger == "step":
        name += f"_at{config.brake_at_step}_b{config.brake_factor:g}"
    elif config.brake_trigger == "validation":
        name += f"_val{config.validation_patience}_b{config.brake_factor:g}"
    elif config.optimizer == "goal_phs":
        name += f"_g{config.goal:g}_b{config.brake_factor:g}"
        if config.brake_trigger == "both":
            name += f"_val{config.validation_patience}"
    if config.optimizer == "goal_phs" and config.loss_floor is not None:
        name += f"_floor{config.loss_floor:g}"
    for option, value in extension_options(config).items():
        name += f"_{option}{value:g}" if not isinstance(value, str) else f"_{value}"
    return f"{name}_s{config.seed}"
