#!/usr/bin/env bash
# The GPU path, in one go (prepared for a lent GPU machine without network:
# jax with CUDA, flax, optax and chex installed; no tensorflow-datasets, no torch).
#
# Before: copy the Fashion-MNIST idx files into an ignored folder of the repo
#   mkdir -p device-data && cp /usr/share/datasets/fashion-mnist/* device-data/
#   echo /device-data/ >> .git/info/exclude
# and carry `device-data` to the machine. Then, on it:
#   bash benchmarks/gpu.sh > "$OUT/gpu.txt" 2>&1
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/build-gpu:${PYTHONPATH:-}"
# The packages under their installed names, without pip (no network there).
mkdir -p build-gpu
ln -sfn "$PWD/phs_optax" build-gpu/phs_optax
ln -sfn "$PWD/models" build-gpu/phs_optax_models
ln -sfn "$PWD/training" build-gpu/phs_optax_training
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -c "import jax; print(jax.__version__, jax.devices())"
for case in fmnist-64 cifar-64 fmnist-256; do
    timeout 120 python benchmarks/jax_project.py step --case="$case" --steps=200 --repeats=5
done
timeout 120 python benchmarks/optimizer_cost.py --repeats=5
timeout 200 python benchmarks/jax_project.py epoch --repeats=3 --data_dir=device-data
timeout 200 python benchmarks/sweep_throughput.py --configs=1,4,20 --steps=100 --repeats=5 \
    --data_dir=device-data
