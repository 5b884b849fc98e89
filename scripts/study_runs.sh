#!/bin/bash
# Trains every run of the study (results/study/) with the commands its pages
# give, in the order the later sweeps need (tuned reads the tuning folder),
# then regenerates its tables and figures. Resumable: each sweep trains only
# what its folder lacks, so an interrupted call picks up where it stopped.
#
#   bash scripts/study_runs.sh [CIFAR10_ARCHIVE]
#
# CIFAR10_ARCHIVE: the CIFAR-10 copy for Table 1 (default
# ../shared/data/cifar10-jpeg.tar.gz); Table 1 is skipped when it is absent.
# On the 2-core VM of the pages this is about 6.6 hours (the sum of their
# measured times); with every run already there it only checks and reports.
set -euo pipefail
cd "$(dirname "$0")/.."
R=results/study
CIFAR10=${1:-../shared/data/cifar10-jpeg.tar.gz}
sweep() { python -m phs_optax_training.sweep "$@" --validation_fraction=0.1; }
TEN=0,1,2,3,4,5,6,7,8,9
FIVE=0,1,2,3,4
NEW=10,11,12,13,14,15,16,17,18,19

for b in 64 10; do
  sweep --sweep=table2-remaining --seeds=$TEN --num_epochs=20 --batch_size=$b \
    --workdir=$R/table2/batch$b
done
for b in 16 32 128; do
  sweep --sweep=batch-size --seeds=$FIVE --num_epochs=20 --batch_size=$b \
    --workdir=$R/batch-size/batch$b
done
for b in 64 10; do
  sweep --sweep=tuning --seeds=0,1 --num_epochs=20 --batch_size=$b \
    --workdir=$R/tuning/batch$b
  sweep --sweep=tuned --seeds=$NEW --reference=$R/tuning/batch$b \
    --num_epochs=20 --batch_size=$b --workdir=$R/tuned/batch$b
done
for b in 10 16 64 128; do
  sweep --sweep=rule-heldout --seeds=$FIVE --num_epochs=20 --batch_size=$b \
    --workdir=$R/rule/batch$b
done
if [ -e "$CIFAR10" ]; then
  sweep --sweep=table1 --seeds=$FIVE --num_epochs=60 --batch_size=64 \
    --data_dir="$CIFAR10" --workdir=$R/table1/batch64
else
  echo "study_runs.sh: no CIFAR-10 copy at $CIFAR10; Table 1 skipped" >&2
fi
bash scripts/study_report.sh
