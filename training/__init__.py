"""Training LeNet-5 with phs_optax: data, loop, checkpoints, metrics, plots."""

import os

from jaxlib import version as _jaxlib_version

# jaxlib 0.10 hands XLA:CPU's convolutions to YNNPACK, which runs LeNet-5's
# convolutions (and their kernel gradients) 1.2-1.6x slower than XLA's Eigen
# path on the development CPU (benchmarks/RESULTS.md). Keep YNNPACK for dots
# only, unless the user set the flag. XLA reads XLA_FLAGS once, when JAX first
# compiles, so this applies to the programs that import this package first
# (train.py, the sweep, the benchmarks); it is limited to the jaxlib versions
# it was measured on because XLA aborts on a flag it does not know.
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
if _jaxlib_version.__version__.startswith("0.10.") and _YNN_FLAG not in (
    os.environ.get("XLA_FLAGS", "")
):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" {_YNN_FLAG}=individual_dot"
    ).strip()
