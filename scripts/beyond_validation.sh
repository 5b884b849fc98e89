#!/usr/bin/env bash
# Validation-triggered braking (issue 6, option 3) on a table's goal rows, the
# "both" trigger (goal or validation, whichever comes first), and PHS and the
# goal-oriented method with the same held-out split as paired references.
# Two runs at a time, each pinned to one core. Skips runs with a summary.json.
# Usage: bash scripts/beyond_validation.sh OUT_DIR "SEEDS" [EPOCHS] [TABLE] [KINDS]
#   TABLE: table2 (default, Fashion-MNIST) or table1 (CIFAR-10, the JPEG copy
#          in ../shared/data, or $CIFAR10_DATA_DIR)
#   KINDS: any of "validation phs both goal" (default "validation phs")
set -euo pipefail
out=${1:?out dir}; seeds=${2:-"0 1 2"}; epochs=${3:-20}; table=${4:-table2}
kinds=${5:-"validation phs"}
case $table in
  table2)
    rows=(lr0.1-goal-f0.1-m10 lr0.1-goal-f0.01-m10 lr0.01-goal-f1-m0.1
          lr0.01-goal-f0.1-m0.1 lr0.001-goal-f10-m0.01 lr0.001-goal-f1-m0.01
          lr0.0001-goal-f10-m0.001 lr0.0001-goal-f1-m0.001)
    data=() ;;
  table1)
    rows=(lr0.1-goal-f0.1-m100 lr0.1-goal-f0.01-m100 lr0.01-goal-f0.1-m25
          lr0.01-goal-f0.01-m25 lr0.001-goal-f1-m0.25 lr0.001-goal-f0.1-m0.25
          lr0.0001-goal-f10-m0.001 lr0.0001-goal-f1-m0.001)
    data=(--data_dir="${CIFAR10_DATA_DIR:-../shared/data/cifar10-jpeg.tar.gz}") ;;
  *) echo "beyond_validation.sh: TABLE must be table1 or table2, got $table" >&2
     exit 2 ;;
esac
for kind in $kinds; do
  case $kind in validation | phs | both | goal) ;; *)
    echo "beyond_validation.sh: KINDS are validation, phs, both, goal; got $kind" >&2
    exit 2 ;;
  esac
done
jobs=()
for seed in $seeds; do
  for row in "${rows[@]}"; do
    for kind in $kinds; do
      jobs+=("$seed $row $kind")
    done
  done
done
run() {  # core seed row kind
  local core=$1 seed=$2 row=$3 kind=$4 dir extra
  case $kind in
    phs) dir=$out/phs-holdout_${row/goal/phs}_s$seed; extra=(--optimizer=phs) ;;
    goal) dir=$out/goal-holdout_${row}_s$seed; extra=(--brake_trigger=goal) ;;
    *) dir=$out/${kind}_${row}_s$seed; extra=(--brake_trigger="$kind") ;;
  esac
  [[ -f $dir/summary.json ]] && return 0
  rm -rf "$dir"
  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c "$core" \
    python train.py --preset="$table-$row" --seed="$seed" \
      --num_epochs="$epochs" --batch_size=64 --validation_fraction=0.1 \
      --validation_patience=2 --checkpoint_every_epochs=1000 --max_checkpoints=1 \
      --plots=false --quiet --workdir="$dir" "${data[@]}" "${extra[@]}" >/dev/null
}
failed=0
for ((i = 0; i < ${#jobs[@]}; i += 2)); do
  pids=()
  run 0 ${jobs[i]} & pids+=($!)
  if ((i + 1 < ${#jobs[@]})); then run 1 ${jobs[i + 1]} & pids+=($!); fi
  for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
done
if ((failed)); then
  echo "beyond_validation.sh: $failed of ${#jobs[@]} runs failed" >&2
  exit 1
fi
