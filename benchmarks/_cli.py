"""The command line shared by ``torch_reference.py`` and ``jax_project.py``."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable

CASE_NAMES = ("fmnist-64", "cifar-64", "fmnist-256")


def parse_args(
    cases: Iterable[str] = CASE_NAMES,
    devices: Iterable[str] = ("default",),
    conv_impls: Iterable[str] = (),
    commands: Iterable[str] = ("step", "epoch"),
    add_flags: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The shared flags; with ``conv_impls``, also ``--conv_impl`` (the first
    is its default); ``add_flags`` adds a script's own flags to the parser."""
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=list(commands))
    parser.add_argument("--case", choices=sorted(cases), default="fmnist-64")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num_examples", type=int, default=60_000)
    parser.add_argument(
        "--dataset", choices=["fashion_mnist", "cifar10"], default="fashion_mnist"
    )
    parser.add_argument("--data_dir", default=None, help="local dataset files")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--device", choices=list(devices), default=list(devices)[0])
    conv_impls = list(conv_impls)
    if conv_impls:
        parser.add_argument(
            "--conv_impl",
            choices=conv_impls,
            default=conv_impls[0],
            help="LeNet-5's conv + pool layers, as train.py's --conv_impl",
        )
    if add_flags is not None:
        add_flags(parser)
    return parser.parse_args()
