"""Flax models: LeNet-5 as in the paper."""

from .lenet import CONV_IMPLS, LeNet5

__all__ = ["CONV_IMPLS", "LeNet5"]
