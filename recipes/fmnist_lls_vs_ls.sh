#!/usr/bin/env bash
# 1-hot vs label smoothing (LS, ε = 0.1) vs Learnable Label Smoothing (LLS, α = 0.1) on the embedded
# Fashion-MNIST, 3 seeds each, then a mean ± std table (markdown) and a PNG of test-accuracy curves
# with a reliability diagram.
#
# What it reproduces: the FMNIST column of the LLS paper's Table 3, CPU-sized. The paper trains an
# AlexNet and reports test accuracy (%, mean ± std): 1-Hot 80.94±0.22, LS 81.15±0.24, LLS 81.56±0.23.
# This recipe trains LeNet-5 (60k train / 10k test, 28×28, random-crop augmentation) for 15 epochs:
# batch 128, SGD momentum 0.9, weight decay 5e-4, lr 0.1 with a 1-epoch warm-up, ×0.1 at epochs 7
# and 11.
#
# Time: 9 runs of 2-4 minutes each on 2 CPU cores, about 30 minutes in all (a GPU: about 5).
# Re-running it skips finished seeds. Writes $OUT/{onehot,ls,lls}/seed{0,1,2}, $OUT/compare.md and
# the curves PNG (artifacts/fmnist-lenet5-lls-vs-ls.png, or $OUT/curves.png when KDTOOL_OUT is set).
#
# Tiny mode (tests): KDTOOL_SKIP_INSTALL=1 KDTOOL_EPOCHS=1 KDTOOL_OUT=/tmp/lvl \
#     KDTOOL_EXTRA="--limit-train 256 --limit-test 128" bash recipes/fmnist_lls_vs_ls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source recipes/common.sh

EPOCHS="${KDTOOL_EPOCHS:-15}"
OUT="${KDTOOL_OUT:-runs/fmnist-lls-vs-ls}"
PLOT="${KDTOOL_OUT:+$OUT/curves.png}"
PLOT="${PLOT:-artifacts/fmnist-lenet5-lls-vs-ls.png}"

for method in onehot ls lls; do
    "$KDTOOL" train-teacher --dataset fashion-mnist --model lenet5 --smoothing "$method" --epsilon 0.1 \
        --alpha 0.1 --epochs "$EPOCHS" --seeds "$SEEDS" --out "$OUT/$method" "${EXTRA[@]}"
done

"$KDTOOL" compare "$OUT/onehot" "$OUT/ls" "$OUT/lls" --format markdown | tee "$OUT/compare.md"
"$KDTOOL" compare "$OUT/onehot" "$OUT/ls" "$OUT/lls" --plot "$PLOT" --force
