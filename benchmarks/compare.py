"""Side by side on this machine: the project (JAX) against a PyTorch LeNet-5 loop.

    pip install torch==2.13.0   # benchmark-only dependency (CPU build)
    python benchmarks/compare.py            # about 15 minutes on 2 CPU cores
    python benchmarks/compare.py --quick    # a smoke run (numbers meaningless)

Every measurement runs in ``--runs`` fresh processes, one at a time, the two
frameworks alternating; run it on an otherwise idle machine. On the 2-core
development VM one process can run at half the speed of the next for the
whole of its life (both frameworks; seen as 27,500 vs 15,000 images/s for
two identical PyTorch processes), so a single process is no measurement.
Tables: the median over processes of each process's median over
``--repeats`` repetitions, the range of the per-process medians, and ratios
of the medians.

1. Training step throughput (``torch_reference.py step`` against
   ``jax_project.py step``) in three cases.
2. One Fashion-MNIST epoch end to end, training + full test evaluation
   (``torch_reference.py epoch`` with a DataLoader against
   ``jax_project.py epoch``, i.e. ``train_lib.train_and_evaluate``).
3. The optimizer's own cost (``optimizer_cost.py``, whose two optimizers
   alternate within each process), on both cores and pinned to one.
4. The sweep: 20 configurations in one vmapped program against one
   (``sweep_throughput.py``), and one configuration per process in one
   process per core, pinned, at once (what the sweep's ``--processes`` does).
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
PEAK_FLOPS = 200e9  # assumed peak: 2 AVX-512 cores, float32 FMA


def training_flops_per_image(case: str) -> float:
    """Forward multiply-adds of LeNet-5 x 2 FLOPs x 3 (forward + backward)."""
    side, channels = (32, 3) if case.startswith("cifar") else (28, 1)
    conv1 = (side - 4) ** 2 * 6 * 25 * channels
    pooled = (side - 4) // 2
    conv2 = (pooled - 4) ** 2 * 16 * 25 * 6
    flat = 16 * ((pooled - 4) // 2) ** 2
    dense = flat * 120 + 120 * 84 + 84 * 10
    return 6.0 * (conv1 + conv2 + dense)


def median_and_range(values: list[float], fmt: str = ",.0f") -> tuple[float, str]:
    middle = statistics.median(values)
    return middle, f"{middle:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def per_process(
    runs: int, script: str, *args: str, pin_to_core: int | None = None
) -> list[list[dict]]:
    """The JSON lines of ``runs`` fresh processes running the same measurement."""
    return [run(script, *args, pin_to_core=pin_to_core) for _ in range(runs)]


def run(script: str, *args: str, pin_to_core: int | None = None) -> list[dict]:
    """Runs ``benchmarks/<script>`` in a fresh process (on one core if
    ``pin_to_core`` is set); its JSON output lines."""
    return json_lines(start(script, *args, pin_to_core=pin_to_core))


def run_pinned_at_once(script: str, *args: str) -> list[list[dict]]:
    """Runs one ``benchmarks/<script>`` process per CPU core, each pinned to its
    core, all at once (as the sweep's ``--processes``); their JSON lines."""
    workers = [
        start(script, *args, pin_to_core=core)
        for core in sorted(os.sched_getaffinity(0))
    ]
    return [json_lines(worker) for worker in workers]


def start(script: str, *args: str, pin_to_core: int | None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=(
            None
            if pin_to_core is None
            else lambda: os.sched_setaffinity(0, {pin_to_core})
        ),
    )


def json_lines(process: subprocess.Popen) -> list[dict]:
    """The JSON lines ``process`` prints; exits with its errors if it fails."""
    out, err = process.communicate()
    if process.returncode != 0:
        sys.exit(f"{' '.join(process.args[1:])} failed:\n{err[-2000:]}")
    return [json.loads(line) for line in out.splitlines() if line[:1] == "{"]


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


def step_table(runs: int, steps: int, repeats: int, num_examples: int) -> list[str]:
    lines = [
        "| case | PyTorch img/s | project img/s | ratio | project, of the compute limit |",
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
        rates = {"torch": [], "jax": []}
        for _ in range(runs):  # alternate, so both see the same drift
            for name, script in (
                ("torch", "torch_reference.py"),
                ("jax", "jax_project.py"),
            ):
                samples = run(script, *args)[0]["images_per_second"]
                rates[name].append(statistics.median(samples))
        torch_rate, torch_cell = median_and_range(rates["torch"])
        jax_rate, jax_cell = median_and_range(rates["jax"])
        limit = PEAK_FLOPS / training_flops_per_image(case)
        lines.append(
            f"| {case} | {torch_cell} | {jax_cell} | {jax_rate / torch_rate:.2f} "
            f"| {jax_rate / limit:.0%} |"
        )
    return lines


def epoch_table(runs: int, repeats: int) -> list[str]:
    seconds = {"torch": [], "jax": []}
    first = {"torch": [], "jax": []}
    for _ in range(runs):
        torch_result = run("torch_reference.py", "epoch", f"--repeats={repeats}")[0]
        jax_result = run("jax_project.py", "epoch", f"--repeats={repeats}")[0]
        seconds["torch"].append(statistics.median(torch_result["seconds"]))
        seconds["jax"].append(statistics.median(jax_result["seconds"]))
        first["torch"].append(torch_result["seconds"][0])
        first["jax"].append(jax_result["first_epoch_seconds"])
    torch_seconds, torch_cell = median_and_range(seconds["torch"], ".2f")
    jax_seconds, jax_cell = median_and_range(seconds["jax"], ".2f")
    return [
        "| | PyTorch (DataLoader) | project (train_and_evaluate) | ratio (PyTorch / project) |",
        "|---|---|---|---|",
        f"| seconds per epoch, steady state | {torch_cell} | {jax_cell} "
        f"| {torch_seconds / jax_seconds:.2f} |",
        f"| first epoch (project: with compilation) "
        f"| {median_and_range(first['torch'], '.2f')[1]} "
        f"| {median_and_range(first['jax'], '.2f')[1]} | |",
    ]


def optimizer_table(runs: int, rounds: int) -> list[str]:
    lines = [
        "| pytree | cores | optax.sgd momentum µs | goal_phs µs | ratio "
        "| GB/s (sgd / goal_phs) |",
        "|---|---|---|---|---|---|",
    ]
    for cores, pin in (("2", None), ("1 (pinned)", 0)):
        processes = per_process(
            runs, "optimizer_cost.py", f"--rounds={rounds}", pin_to_core=pin
        )
        for rows in zip(*processes, strict=True):
            sgd = [r["optax.sgd(momentum=0.9)"]["microseconds"] for r in rows]
            goal = [r["goal_phs"]["microseconds"] for r in rows]
            sgd_time, sgd_cell = median_and_range(sgd, ",.1f")
            goal_time, goal_cell = median_and_range(goal, ",.1f")
            _, ratio_cell = median_and_range([r["ratio"] for r in rows], ".3f")
            gigabytes = rows[0]["bytes_per_step"] / 1e9
            lines.append(
                f"| {rows[0]['pytree']} | {cores} | {sgd_cell} | {goal_cell} "
                f"| {ratio_cell} | {gigabytes / sgd_time * 1e6:.1f} / "
                f"{gigabytes / goal_time * 1e6:.1f} |"
            )
    return lines


def sweep_table(runs: int, steps: int, repeats: int) -> list[str]:
    args = ("--configs=1,20", f"--steps={steps}", f"--repeats={repeats}", "--json")
    rates: dict[tuple[int, str], list[float]] = {}
    for rows in per_process(runs, "sweep_throughput.py", *args):
        for row in rows:
            key = (row["configs"], "one" if row["configs"] == 1 else row["data_order"])
            rates.setdefault(key, []).append(row["images_per_second"])
    one, one_cell = median_and_range(rates[1, "one"])
    lines = [
        "| configurations | img/s summed | speedup over 20 sequential runs |",
        "|---|---|---|",
        f"| 1 (x20 sequential) | {one_cell} | 1.00 |",
    ]
    for order, batches in (
        ("own", "own batches (3 seeds)"),
        ("shared", "shared batches (1 seed)"),
    ):
        twenty, twenty_cell = median_and_range(rates[20, order])
        lines.append(
            f"| 20 in one vmapped program, {batches} | {twenty_cell} | {twenty / one:.2f} |"
        )
    one_args = ("--configs=1", *args[1:])
    summed = [
        sum(rows[0]["images_per_second"] for rows in processes)
        for processes in (
            run_pinned_at_once("sweep_throughput.py", *one_args) for _ in range(runs)
        )
    ]
    cores = len(os.sched_getaffinity(0))
    pinned, pinned_cell = median_and_range(summed)
    lines.append(
        f"| 1 per process, {cores} processes pinned to a core each, at once "
        f"(the sweep's `--processes={cores}`) | {pinned_cell} | {pinned / one:.2f} |"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--runs", type=int, default=3, help="fresh processes per measurement"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, for a smoke run"
    )
    parser.add_argument(
        "--only", default="step,epoch,optimizer,sweep", help="comma-separated sections"
    )
    args = parser.parse_args()
    steps, num_examples, sweep_steps = (200, 60_000, 50)
    if args.quick:
        steps, num_examples, sweep_steps, args.repeats, args.runs = 3, 1024, 2, 2, 1
    sections = {
        "step": (
            "Training step, images/s",
            lambda: step_table(args.runs, steps, args.repeats, num_examples),
        ),
        "epoch": (
            "One Fashion-MNIST epoch end to end, batch 64",
            lambda: epoch_table(args.runs, args.repeats),
        ),
        "optimizer": (
            "Optimizer update + apply, jitted",
            lambda: optimizer_table(args.runs, 4 if args.quick else 1000),
        ),
        "sweep": (
            "Sweep, Fashion-MNIST, batch 64",
            lambda: sweep_table(args.runs, sweep_steps, args.repeats),
        ),
    }
    print(f"Machine: {machine()}\n")
    for name in args.only.split(","):
        title, table = sections[name]
        print(f"### {title}\n")
        print("\n".join(table()) + "\n", flush=True)


if __name__ == "__main__":
    main()
