"""Training LeNet-5 with phs_optax: data, loop, checkpoints, metrics, plots.

Importing it, or any of its modules, leaves ``os.environ`` as it is; the
command lines set their XLA flag themselves (:mod:`.xla_flags`).
"""
