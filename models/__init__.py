"""Flax models: LeNet-5 as in the paper."""
