"""Flax models: LeNet-5 as in the paper."""

from .lenet import LeNet5

__all__ = ["LeNet5"]
