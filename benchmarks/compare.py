"""Side by side on this machine: the project (JAX) against a PyTorch LeNet-5 loop.

    pip install torch==2.13.0   # benchmark-only dependency (CPU build)
    python benchmarks/compare.py            # about 10 minutes on 2 CPU cores
    python benchmarks/compare.py --quick    # a smoke run (numbers meaningless)

Every measurement runs in a fresh process, one at a time, so that the two
frameworks see the same machine state; run it on an otherwise idle machine.
Prints Markdown tables: medians over ``--repeats`` repetitions and ratios.

1. Training step throughput (``torch_reference.py step`` against
   ``jax_project.py step``) in three cases.
2. One Fashion-MNIST epoch end to end, training + full test evaluation
   (``torch_reference.py epoch`` with a DataLoader against
   ``jax_project.py epoch``, i.e. ``train_lib.train_and_evaluate``).
3. The optimizer's own cost (``optimizer_cost.py``).
4. The sweep: 20 configurations in one vmapped program against one
   (``sweep_throughput.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = ("fmnist-64", "cifar-64", "fmnist-256")
PEAK_FLOPS = 200e9  # 2 AVX-512 cores, float32 FMA (the estimate)


def training_flops_per_image(case: str) -> float:
    """Forward multiply-adds of LeNet-5 x 2 FLOPs x 3 (forward + backward)."""
    side, channels = (32, 3) if case.startswith("cifar") else (28, 1)
    conv1 = (side - 4) ** 2 * 6 * 25 * channels
    pooled = (side - 4) // 2
    conv2 = (pooled - 4) ** 2 * 16 * 25 * 6
    flat = 16 * ((pooled - 4) // 2) ** 2
    dense = flat * 120 + 120 * 84 + 84 * 10
    return 6.0 * (conv1 + conv2 + dense)


def run(script: str, *args: str) -> list[dict]:
    """Runs ``benchmarks/<script>`` in a fresh process; its JSON output lines."""
    result = subprocess.run(
        [sys.executable, str(HERE / script), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"{script} {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return [json.loads(line) for line in result.stdout.splitlines() if line[:1] == "{"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}"


def step_table(steps: int, repeats: int, num_examples: int) -> list[str]:
    lines = [
        "| case | PyTorch img/s | project img/s | ratio | of the compute limit |",
        "|---|---|---|---|---|",
    ]
    for case in CASES:
        args = (
            "step",
            f"--case={case}",
            f"--steps={steps}",
            f"--repeats={repeats}",
            f"--num_examples={num_examples}",
        )
        torch_rate = statistics.median(
            run("torch_reference.py", *args)[0]["images_per_second"]
        )
        jax_rate = statistics.median(
            run("jax_project.py", *args)[0]["images_per_second"]
        )
        floor = PEAK_FLOPS / training_flops_per_image(case)
        lines.append(
            f"| {case} | {torch_rate:,.0f} | {jax_rate:,.0f} | {jax_rate / torch_rate:.2f} "
            f"| {jax_rate / floor:.0%} |"
        )
    return lines


def epoch_table(repeats: int) -> list[str]:
    torch_result = run("torch_reference.py", "epoch", f"--repeats={repeats}")[0]
    jax_result = run("jax_project.py", "epoch", f"--repeats={repeats}")[0]
    torch_seconds = statistics.median(torch_result["seconds"])
    jax_seconds = statistics.median(jax_result["seconds"])
    return [
        "| | PyTorch (DataLoader) | project (train_and_evaluate) | ratio (PyTorch / project) |",
        "|---|---|---|---|",
        f"| seconds per epoch, steady state | {torch_seconds:.2f} | {jax_seconds:.2f} "
        f"| {torch_seconds / jax_seconds:.2f} |",
        f"| first epoch (JAX: with compilation) | {torch_result['seconds'][0]:.2f} "
        f"| {jax_result['first_epoch_seconds']:.2f} | |",
    ]


def optimizer_table(repeats: int) -> list[str]:
    lines = [
        "| pytree | optax.sgd momentum µs | goal_phs µs | ratio | GB/s (sgd / goal_phs) |",
        "|---|---|---|---|---|",
    ]
    for row in run("optimizer_cost.py", f"--repeats={repeats}"):
        sgd, goal = row["optax.sgd(momentum=0.9)"], row["goal_phs"]
        lines.append(
            f"| {row['pytree']} | {sgd['microseconds']:,.1f} | {goal['microseconds']:,.1f} "
            f"| {row['ratio']:.3f} | {sgd['GB_per_s']:.1f} / {goal['GB_per_s']:.1f} |"
        )
    return lines


def sweep_table(steps: int, repeats: int) -> list[str]:
    rows = run(
        "sweep_throughput.py",
        "--configs=1,20",
        f"--steps={steps}",
        f"--repeats={repeats}",
        "--json",
    )
    rates = {row["configs"]: row["images_per_second"] for row in rows}
    return [
        "| configurations | img/s summed | speedup over 20 sequential runs |",
        "|---|---|---|",
        f"| 1 (x20 sequential) | {rates[1]:,.0f} | 1.00 |",
        f"| 20 in one vmapped program | {rates[20]:,.0f} | {rates[20] / rates[1]:.2f} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, for a smoke run"
    )
    parser.add_argument(
        "--only", default="step,epoch,optimizer,sweep", help="comma-separated sections"
    )
    args = parser.parse_args()
    steps, num_examples, sweep_steps = (200, 60_000, 50)
    if args.quick:
        steps, num_examples, sweep_steps, args.repeats = 3, 1024, 2, 2
    sections = {
        "step": (
            "Training step, images/s",
            lambda: step_table(steps, args.repeats, num_examples),
        ),
        "epoch": (
            "One Fashion-MNIST epoch end to end, batch 64",
            lambda: epoch_table(args.repeats),
        ),
        "optimizer": (
            "Optimizer update + apply, jitted",
            lambda: optimizer_table(args.repeats),
        ),
        "sweep": (
            "Sweep, Fashion-MNIST, batch 64",
            lambda: sweep_table(sweep_steps, args.repeats),
        ),
    }
    print(f"Machine: {machine()}\n")
    for name in args.only.split(","):
        title, table = sections[name]
        print(f"### {title}\n")
        print("\n".join(table()) + "\n", flush=True)


if __name__ == "__main__":
    main()
