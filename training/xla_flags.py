"""The XLA:CPU flag that the entry points set before JAX starts.

jaxlib 0.10 hands XLA:CPU's convolutions to YNNPACK, which runs LeNet-5's
convolutions (and their kernel gradients) 1.2-1.6x slower than XLA's Eigen
path on the development CPU (``benchmarks/RESULTS.md``).
``--xla_cpu_experimental_ynn_fusion_type=individual_dot`` keeps YNNPACK for
dots only. The flag acts on XLA's CPU backend only.

Importing this package changes nothing: the programs that train or measure
(``train.py``, the sweep, the trace, the benchmarks) call
:func:`set_cpu_flags` first thing. XLA reads ``XLA_FLAGS`` once, when JAX
initialises its backends, so a call after that cannot take effect.
"""

from __future__ import annotations

import os
import sys
import warnings

FLAG = "--xla_cpu_experimental_ynn_fusion_type"
VALUE = "individual_dot"
# The jaxlib versions the flag was measured on: XLA aborts the process on a
# flag it does not know, so other versions get nothing.
JAXLIB_PREFIX = "0.10."
HELP_LINE = (
    f"On jaxlib {JAXLIB_PREFIX}x, train.py adds {FLAG}={VALUE} to XLA_FLAGS "
    "before JAX starts (XLA:CPU's convolutions on Eigen rather than YNNPACK, "
    "faster for LeNet-5), unless you set that flag yourself."
)


def _jaxlib_version() -> str:
    from jaxlib import version

    return version.__version__


def _backends_initialised() -> bool:
    """Whether JAX has created its backends (and so read ``XLA_FLAGS``)."""
    xla_bridge = sys.modules.get("jax._src.xla_bridge")
    if xla_bridge is None:  # JAX not imported: nothing initialised
        return False
    initialised = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(initialised()) if initialised else bool(xla_bridge._backends)


def set_cpu_flags() -> bool:
    """Adds ``FLAG=VALUE`` to ``os.environ["XLA_FLAGS"]``; returns whether it did.

    Does nothing on a jaxlib other than 0.10.x, or where ``XLA_FLAGS``
    already names the flag (the user's own value is kept). Child processes
    started afterwards inherit the flag. Call it before JAX initialises its
    backends (before the first computation or ``jax.devices()``; importing
    JAX is fine): after that it warns (``RuntimeWarning``) and changes
    nothing, since XLA would not read the flag any more.
    """
    if not _jaxlib_version().startswith(JAXLIB_PREFIX):
        return False
    current = os.environ.get("XLA_FLAGS", "")
    if FLAG in current:
        return False
    if _backends_initialised():
        warnings.warn(
            f"JAX's backends are already initialised, so {FLAG}={VALUE} "
            "would not take effect; XLA_FLAGS left unchanged",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    os.environ["XLA_FLAGS"] = f"{current} {FLAG}={VALUE}".strip()
    return True
