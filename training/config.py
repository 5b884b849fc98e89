"""The training configuration and its validation (done before anything compiles)."""

from __future__ import annotations

import dataclasses

import phs_optax

DATASETS = ("fashion_mnist", "cifar10")
OPTIMIZERS = ("sgd", "phs", "goal_phs")
BRAKE_TRIGGERS = ("goal", "validation", "both", "step")
# LeNet5's conv_impl (phs_optax_models), or "auto": see TrainConfig.conv_impl.
CONV_IMPLS = ("auto", "stock", "space_to_depth")


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line for the user."""


EXTENSION_DEFAULTS = {
    "deadline": None,
    "on_deadline": "brake",
    "goal_patience": None,
    "goal_decay": None,
    "release_after": None,
    "release_energy": None,
    "max_releases": None,
    "kick_energy": None,
    "kick_direction": "momentum",
    "kick_seed": None,
}


def extension_options(config: TrainConfig) -> dict:
    """The goal_phs options beyond the paper that ``config`` sets."""
    return {
        name: getattr(config, name)
        for name, default in EXTENSION_DEFAULTS.items()
        if getattr(config, name) != default
    }


def without_extensions(config: TrainConfig) -> TrainConfig:
    return dataclasses.replace(config, **EXTENSION_DEFAULTS)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Defaults: Table 2's first goal row."""

    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    optimizer: str = "goal_phs"
    learning_rate: float = 0.1
    mass: float = 10.0
    friction: float = 0.1
    goal: float = 0.85
    brake_factor: float = 50.0
    integrator: str = "conformal"
    drag: str = "momentum"
    sgd_momentum: float = 0.0
    ema_decay: float | None = None
    accumulation_size: int | None = None
    brake_trigger: str = "goal"
    validation_fraction: float = 0.0
    validation_patience: int = 2
    # With brake_trigger="step": brake at this update (0-based) whatever the
    # loss; goal_phs multiplies its friction by brake_factor, sgd divides its
    # learning rate by brake_factor (ablations of the goal trigger).
    brake_at_step: int | None = None
    # Options of goal_phs beyond the paper (see phs_optax.goal_phs), off when
    # None; they act on goal_phs only (the PHS and SGD baselines of
    # --compare_baselines and of a sweep run without them).
    deadline: int | None = None
    on_deadline: str = "brake"
    goal_patience: int | None = None
    goal_decay: float | None = None
    release_after: int | None = None
    release_energy: float | None = None
    max_releases: int | None = None
    kick_energy: float | None = None
    kick_direction: str = "momentum"
    kick_seed: int | None = None
    batch_size: int = 64
    eval_batch_size: int = 1000
    num_epochs: int = 2
    seed: int = 0
    checkpoint_every_epochs: int = 1
    max_checkpoints: int = 2
    max_train_examples: int | None = None
    max_test_examples: int | None = None
    data_shards: int | None = None
    # How LeNet-5's convolution + max-pool layers are computed
    # (phs_optax_models.LeNet5's conv_impl). "auto": "space_to_depth", the
    # layers written for XLA:CPU, when JAX's default backend is the CPU, and
    # Flax's stock layers ("stock") on an accelerator. The parameters and
    # their initial values are the same either way.
    conv_impl: str = "auto"


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
        config.ema_decay is None or 0 <= config.ema_decay < 1,
        f"--ema_decay must be in [0, 1), got {config.ema_decay}",
    )
    _require(
        config.accumulation_size is None or config.accumulation_size >= 1,
        f"--accumulation_size must be >= 1, got {config.accumulation_size}",
    )
    _require(
        config.ema_decay is None or config.accumulation_size is None,
        "give at most one of --ema_decay and --accumulation_size",
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
    options = extension_options(config)
    if not options:
        return
    _require(
        config.optimizer == "goal_phs",
        f"--{next(iter(options))} needs --optimizer=goal_phs",
    )
    try:  # goal_phs checks its own options; its message names the bad one
        phs_optax.goal_phs(
            config.learning_rate,
            config.mass,
            config.friction,
            None if config.brake_trigger in ("validation", "step") else config.goal,
            config.brake_factor,
            **options,
        )
    except ValueError as error:
        raise ConfigError(str(error).splitlines()[0]) from None


def run_name(config: TrainConfig) -> str:
    """The run's folder name: the optimizer, its hyperparameters, the trigger,
    the options set and the seed (train.py's default workdir and the sweep's
    run folders are named by it)."""
    name = f"{config.optimizer}_lr{config.learning_rate:g}"
    if config.optimizer != "sgd":
        name += f"_f{config.friction:g}_m{config.mass:g}"
    if config.optimizer == "sgd" and config.sgd_momentum:
        name += f"_mom{config.sgd_momentum:g}"
    if config.brake_trigger == "step":
        name += f"_at{config.brake_at_step}_b{config.brake_factor:g}"
    elif config.brake_trigger == "validation":
        name += f"_val{config.validation_patience}_b{config.brake_factor:g}"
    elif config.optimizer == "goal_phs":
        name += f"_g{config.goal:g}_b{config.brake_factor:g}"
        if config.brake_trigger == "both":
            name += f"_val{config.validation_patience}"
    for option, value in extension_options(config).items():
        name += f"_{option}{value:g}" if not isinstance(value, str) else f"_{value}"
    return f"{name}_s{config.seed}"
