"""The XLA flag that phs_optax_training sets on import (convolutions on Eigen)."""

import os
import subprocess
import sys

import pytest
from jaxlib import version as jaxlib_version

FLAG = "--xla_cpu_experimental_ynn_fusion_type"


def xla_flags_after_import(xla_flags: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    script = "import os, phs_optax_training; print(os.environ.get('XLA_FLAGS', ''))"
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(
    not jaxlib_version.__version__.startswith("0.10."),
    reason="the flag is set on the jaxlib versions it was measured on only",
)
def test_import_adds_the_eigen_convolution_flag_to_the_users_flags():
    flags = xla_flags_after_import("--xla_force_host_platform_device_count=2")
    assert flags == f"--xla_force_host_platform_device_count=2 {FLAG}=individual_dot"


def test_import_keeps_a_users_own_value_of_the_flag():
    assert xla_flags_after_import(f"{FLAG}=default") == f"{FLAG}=default"
