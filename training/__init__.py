"""Training LeNet-5 with phs_optax: data, loop, checkpoints, metrics, plots."""
