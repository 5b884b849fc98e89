#!/usr/bin/env bash
# Validation-triggered braking (issue 6, option 3) on Table 2's goal rows,
# and PHS with the same held-out split as its paired reference.
# Two runs at a time, each pinned to one core. Skips runs with a summary.json.
# Usage: bash scripts/beyond_validation.sh OUT_DIR "SEEDS" [EPOCHS]
set -euo pipefail
out=${1:?out dir}; seeds=${2:-"0 1 2"}; epochs=${3:-20}
rows=(lr0.1-goal-f0.1-m10 lr0.1-goal-f0.01-m10 lr0.01-goal-f1-m0.1
      lr0.01-goal-f0.1-m0.1 lr0.001-goal-f10-m0.01 lr0.001-goal-f1-m0.01
      lr0.0001-goal-f10-m0.001 lr0.0001-goal-f1-m0.001)
jobs=()
for seed in $seeds; do
  for row in "${rows[@]}"; do
    for kind in validation phs; do
      jobs+=("$seed $row $kind")
    done
  done
done
run() {  # core seed row kind
  local core=$1 seed=$2 row=$3 kind=$4 dir extra
  if [[ $kind == validation ]]; then
    dir=$out/validation_${row}_s$seed; extra=(--brake_trigger=validation)
  else
    dir=$out/phs-holdout_${row/goal/phs}_s$seed
    extra=(--optimizer=phs)
  fi
  [[ -f $dir/summary.json ]] && return 0
  rm -rf "$dir"
  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c "$core" \
    python train.py --preset="table2-$row" --seed="$seed" \
      --num_epochs="$epochs" --batch_size=64 --validation_fraction=0.1 \
      --validation_patience=2 --checkpoint_every_epochs=1000 --max_checkpoints=1 \
      --plots=false --quiet --workdir="$dir" "${extra[@]}" >/dev/null
}
for ((i = 0; i < ${#jobs[@]}; i += 2)); do
  run 0 ${jobs[i]} &
  if ((i + 1 < ${#jobs[@]})); then run 1 ${jobs[i + 1]} & fi
  wait
done
