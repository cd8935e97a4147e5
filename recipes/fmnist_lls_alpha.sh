#!/usr/bin/env bash
# How sensitive LLS is to its mixing weight α, chosen the honest way: LeNet-5 LLS teachers on the
# embedded Fashion-MNIST with α ∈ {0.05, 0.1, 0.2, 0.3}, seeds $KDTOOL_SEEDS (0,1,2), at kdtool's
# defaults for 10 epochs, each holding out 6,000 training images (--val-fraction 0.1). The validation
# split chooses each run's epoch (lowest validation loss) and then α (best mean validation accuracy);
# $OUT/alpha.md gives every α's validation figures and the test accuracy of the chosen α alone.
#
# Time: 12 runs of about 1.5 minutes on 2 CPU cores (estimated); KDTOOL_JOBS=4 trains the four α side by
# side: under 3.5 minutes on one H200 (measured, with other trainings sharing it).
#
# Tiny mode (tests): KDTOOL_SKIP_INSTALL=1 KDTOOL_EPOCHS=1 KDTOOL_OUT=/tmp/alpha KDTOOL_SEEDS=0 \
#     KDTOOL_EXTRA="--limit-train 256 --limit-test 128" bash recipes/fmnist_lls_alpha.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source recipes/common.sh

EPOCHS="${KDTOOL_EPOCHS:-10}"
OUT="${KDTOOL_OUT:-runs/fmnist-lls-alpha}"
for alpha in 0.05 0.1 0.2 0.3; do
    kdtool_line train-teacher --dataset fashion-mnist --model lenet5 --smoothing lls --alpha "$alpha" \
        --epochs "$EPOCHS" --val-fraction 0.1 --seeds "$SEEDS" --force "${EXTRA[@]}" --out "$OUT/grid/alpha$alpha"
done | run_kdtool
python3 recipes/search_table.py "$OUT" --test-of-choice | tee "$OUT/alpha.md"
