"""The XLA flag of the entry points: set by them before JAX starts, never by an import."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from jaxlib import version as jaxlib_version

from phs_optax_training import xla_flags

FLAG = "--xla_cpu_experimental_ynn_fusion_type"
REPO_ROOT = Path(__file__).resolve().parents[1]
on_measured_jaxlib = pytest.mark.skipif(
    not jaxlib_version.__version__.startswith("0.10."),
    reason="the flag is set on the jaxlib versions it was measured on only",
)


def run_python(script: str, xla_flags_value: str | None) -> str:
    """``script``'s output in a fresh interpreter whose XLA_FLAGS is the given one."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if xla_flags_value is not None:
        env["XLA_FLAGS"] = xla_flags_value
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(
    "xla_flags_value", [None, "--xla_force_host_platform_device_count=2"]
)
def test_importing_the_training_package_leaves_the_environment_unchanged(
    xla_flags_value,
):
    # JAX's own import sets variables of its own (TPU_SKIP_MDS_QUERY,
    # TF_CPP_MIN_LOG_LEVEL), so the modules that import JAX are compared
    # with the environment after it.
    script = (
        "import os\n"
        "before = dict(os.environ)\n"
        "import phs_optax_training, phs_optax_training.presets\n"
        "import phs_optax_training.xla_flags\n"
        "unchanged = dict(os.environ) == before\n"
        "import jax, flax, optax\n"
        "before = dict(os.environ)\n"
        "import phs_optax_training.train_lib, phs_optax_training.sweep\n"
        "import phs_optax_training.trace, phs_optax_training.cli\n"
        "import phs_optax_training.model\n"
        "unchanged = unchanged and dict(os.environ) == before\n"
        "print(unchanged, os.environ.get('XLA_FLAGS'))\n"
    )
    assert run_python(script, xla_flags_value) == f"True {xla_flags_value}"


SET_AND_PRINT = (
    "import os\n"
    "from phs_optax_training.xla_flags import set_cpu_flags\n"
    "print(set_cpu_flags(), os.environ.get('XLA_FLAGS'))\n"
)


@on_measured_jaxlib
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, f"{FLAG}=individual_dot"),
        (
            "--xla_force_host_platform_device_count=2",
            f"--xla_force_host_platform_device_count=2 {FLAG}=individual_dot",
        ),
    ],
)
def test_set_cpu_flags_adds_the_eigen_convolution_flag_to_the_users_flags(
    given, expected
):
    assert run_python(SET_AND_PRINT, given) == f"True {expected}"


def test_set_cpu_flags_keeps_a_users_own_value_of_the_flag():
    given = f"--xla_force_host_platform_device_count=2 {FLAG}=default"
    assert run_python(SET_AND_PRINT, given) == f"False {given}"


@on_measured_jaxlib
def test_set_cpu_flags_after_jax_started_warns_and_changes_nothing():
    script = (
        "import os, warnings\n"
        "import jax\n"
        "jax.devices()\n"
        "from phs_optax_training.xla_flags import set_cpu_flags\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    changed = set_cpu_flags()\n"
        "print(changed, os.environ.get('XLA_FLAGS'), caught[0].category.__name__)\n"
    )
    assert run_python(script, None) == "False None RuntimeWarning"


@on_measured_jaxlib
def test_the_entry_point_sets_the_flag_before_jax_starts():
    """train.py's main (and so its child processes) runs with the flag."""
    script = (
        "import os, sys\n"
        "from phs_optax_training import cli\n"
        "cli.run = lambda argv: print(os.environ.get('XLA_FLAGS'))\n"
        "sys.argv = ['train.py']\n"
        "cli.main()\n"
    )
    assert run_python(script, None) == f"{FLAG}=individual_dot"


def test_train_py_help_says_it_sets_the_flag():
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert xla_flags.HELP_LINE in result.stdout
    assert f"{FLAG}=individual_dot" in result.stdout
    assert "unless you set that flag yourself" in result.stdout
