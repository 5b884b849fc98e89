#!/bin/bash
# Regenerates the study's tables and figures under results/study/ from its run
# folders (each made by the sweep command on its page). Tables whose folders
# are not there yet are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
R=results/study
study() { python -m phs_optax_training.study "$@"; }
for b in 64 10; do
  if [ -d $R/table2/batch$b ]; then
    study table $R/table2/batch$b --table=table2 \
      --figure=$R/table2/figure3_batch$b.png > $R/table2/batch$b.md
  fi
done
sizes=()
for f in $R/table2/batch10 $R/batch-size/batch16 $R/batch-size/batch32 \
         $R/table2/batch64 $R/batch-size/batch128; do
  [ -d "$f" ] && sizes+=("$f")
done
if [ ${#sizes[@]} -gt 0 ]; then
  study batch-size "${sizes[@]}" --figure=$R/batch-size/batch_size.png \
    > $R/batch-size/tables.md
fi
for b in 64 10; do
  if [ -d $R/tuning/batch$b ] && [ -d $R/tuned/batch$b ]; then
    study tuned $R/tuning/batch$b $R/tuned/batch$b \
      --figure=$R/tuned/tuned_batch$b.png > $R/tuned/batch$b.md
  fi
done
if [ -d $R/table1/batch64 ]; then
  study table $R/table1/batch64 --table=table1 \
    --figure=$R/table1/figure3_batch64.png > $R/table1/batch64.md
fi
held_out=()
for f in $R/rule/batch10 $R/rule/batch16 $R/rule/batch64 $R/rule/batch128 \
         $R/table1/batch64; do
  [ -d "$f" ] && held_out+=("$f")
done
if [ ${#held_out[@]} -gt 0 ]; then
  mkdir -p $R/rule
  study rule "${held_out[@]}" > $R/rule/tables.md
fi
