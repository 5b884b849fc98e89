"""What this machine's float32 matrix product reaches: a practical compute ceiling.

    python benchmarks/matmul_peak.py

The compute limit for LeNet-5 (``compare.py``) assumes 200 GFLOP/s (2 AVX-512
cores).
Development VMs differ (one had AVX2 only), so this measures what a large
float32 matrix product reaches here with NumPy, JAX and, if installed,
PyTorch: 2 n^3 FLOPs over the median of ``--repeats`` products. Prints one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def gflops(product: Callable[[], object], n: int, repeats: int) -> float:
    product()  # warm up (and compile)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        product()
        seconds.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(seconds) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    n = args.size
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), np.float32) for _ in range(2))
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    jax_product = jax.jit(jnp.matmul)
    result = {
        "size": n,
        "numpy_gflops": gflops(lambda: a @ b, n, args.repeats),
        "jax_gflops": gflops(
            lambda: jax_product(ja, jb).block_until_ready(), n, args.repeats
        ),
    }
    try:
        import torch
    except ImportError:
        pass
    else:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        result["torch_gflops"] = gflops(lambda: ta @ tb, n, args.repeats)
        result["torch_threads"] = torch.get_num_threads()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
