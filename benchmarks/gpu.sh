#!/usr/bin/env bash
# The GPU path, in one go, for a GPU machine without network (jax with
# CUDA, flax, optax, chex and PyTorch installed; no tensorflow-datasets).
#
# Before, here: copy the data into an ignored folder of the repository
#   mkdir -p device-data/fashion-mnist
#   cp /usr/share/datasets/fashion-mnist/* device-data/fashion-mnist/
#   cp ../shared/data/cifar10-jpeg.tar.gz device-data/
#   echo /device-data/ >> .git/info/exclude
# and carry `device-data` to the machine. Then, on it:
#   bash benchmarks/gpu.sh bench                 # steps (both --conv_impl), optimizer, epochs, vmapped sweep
#   bash benchmarks/gpu.sh table2 EPOCHS BATCH   # Table 2, 3 seeds, both readings, timed
#   bash benchmarks/gpu.sh table1 EPOCHS BATCH   # Table 1 (CIFAR-10), 3 seeds, timed
# Output: one JSON line per measurement on stdout (and in $OUT/gpu-*.jsonl when
# $OUT is set); a sweep's folder as $OUT/table{1,2}-*.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
# The packages under their installed names, without pip (no network there).
mkdir -p build-gpu
ln -sfn "$PWD/phs_optax" build-gpu/phs_optax
ln -sfn "$PWD/models" build-gpu/phs_optax_models
ln -sfn "$PWD/training" build-gpu/phs_optax_training
export PYTHONPATH="$PWD/build-gpu:$PWD/benchmarks:${PYTHONPATH:-}"
export PHS_OPTAX_CACHE=/tmp/phs-cache PYTHONUNBUFFERED=1
FMNIST=device-data/fashion-mnist
CIFAR=device-data/cifar10-jpeg.tar.gz

# Runs one measurement with a time limit; its JSON line (or the failure) is kept.
measure() {
    local limit=$1 log=$2
    shift 2
    local start=$SECONDS
    if ! timeout "$limit" "$@" >>"$log"; then
        echo "{\"failed\": \"$*\"}" >>"$log"
    fi
    echo "# $((SECONDS - start)) s: $*" >&2
}

bench() {
    local log="$OUT/gpu-bench.jsonl"
    : >"$log"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >&2
    $PYTHON -c "import jax, flax, optax, torch; print(jax.__version__, flax.__version__, \
optax.__version__, torch.__version__, jax.devices())" >&2
    for case in fmnist-64 cifar-64 fmnist-256; do
        # Both layer choices: stock is what train.py uses on a GPU (auto).
        for conv_impl in stock space_to_depth; do
            measure 90 "$log" $PYTHON benchmarks/jax_project.py step --case="$case" \
                --steps=300 --repeats=5 --conv_impl="$conv_impl"
        done
        measure 90 "$log" $PYTHON benchmarks/torch_reference.py step --case="$case" \
            --steps=300 --repeats=5 --device="$TORCH_DEVICE"
    done
    measure 90 "$log" $PYTHON benchmarks/optimizer_cost.py
    measure 90 "$log" $PYTHON benchmarks/scalar_state_cost.py
    measure 120 "$log" $PYTHON benchmarks/jax_project.py epoch --repeats=3 \
        --data_dir="$FMNIST"
    measure 120 "$log" $PYTHON benchmarks/torch_reference.py epoch --repeats=3 \
        --data_dir="$FMNIST" --device="$TORCH_DEVICE"
    # CIFAR-10: the first reader decodes the JPEGs into the cache, timed apart.
    measure 150 "$log" $PYTHON -c "import time; from phs_optax_training import data; \
t = time.perf_counter(); data.load_dataset('cifar10', '$CIFAR'); \
print('{\"cifar10_decode_seconds\": %.1f}' % (time.perf_counter() - t))"
    measure 120 "$log" $PYTHON benchmarks/jax_project.py epoch --repeats=3 \
        --dataset=cifar10 --data_dir="$CIFAR"
    measure 120 "$log" $PYTHON benchmarks/torch_reference.py epoch --repeats=3 \
        --dataset=cifar10 --data_dir="$CIFAR" --device="$TORCH_DEVICE"
    # own and shared batches (one seed) for 20 and 48 configurations
    measure 180 "$log" $PYTHON benchmarks/sweep_throughput.py --json \
        --configs=1,20,48 --steps=200 --repeats=5 --data_dir="$FMNIST"
    cat "$log"
}

# Runs the named sweeps (3 seeds) into one folder, timed; tars it to $OUT.
sweeps() {  # name data_dir epochs batch sweep...
    local name=$1 data=$2 epochs=$3 batch=$4
    shift 4
    local workdir="/tmp/$name" log="$OUT/gpu-$name.jsonl"
    : >"$log"
    for sweep in "$@"; do
        local start=$SECONDS
        $PYTHON -m phs_optax_training.sweep --sweep="$sweep" --seeds=0,1,2 \
            --num_epochs="$epochs" --batch_size="$batch" --data_dir="$data" \
            --workdir="$workdir" >/dev/null
        echo "{\"sweep\": \"$sweep\", \"epochs\": $epochs, \"batch_size\": \
$batch, \"seeds\": 3, \"exit\": $?, \"seconds\": $((SECONDS - start))}" >>"$log"
    done
    tar -czf "$OUT/$name.tar.gz" -C /tmp "$name"
    cat "$log"
}

table2() {
    local epochs=${1:-20} batch=${2:-64}
    sweeps "table2-batch${batch}-${epochs}epochs" "$FMNIST" "$epochs" "$batch" \
        table2-remaining table2-reduction
}

table1() {
    local epochs=${1:-60} batch=${2:-64}
    sweeps "table1-batch${batch}-${epochs}epochs" "$CIFAR" "$epochs" "$batch" table1
}

"$@"
