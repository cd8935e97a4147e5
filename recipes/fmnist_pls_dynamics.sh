#!/usr/bin/env bash
# The training-dynamics study of the Preferential Label Smoothing paper (its Figures 3-5), CPU-sized
# on the embedded Fashion-MNIST: 1-hot vs LS (ε = 0.1) vs semantic label smoothing (SEMLS, a prior
# built from GloVe vectors of the class names, ε = 0.1) under constant learning rates 0.1, 0.01,
# 0.001 and 0.0001 without weight decay, 3 seeds each; per-epoch gradient norm and generalization
# error |test error − train error| are drawn per learning rate, a line per method.
#
# The paper trains on CIFAR-100 for up to 250 epochs with 5 seeds; here LeNet-5 sees a 10,000-image
# stratified-by-chance subset of the training set (all 10,000 test images) for 10 epochs, batch 128,
# no warm-up: 36 runs of about 20-40 s each on 2 CPU cores, 15-25 minutes in all.
# Re-running it skips finished runs. Writes $OUT/<run>/, $OUT/sweep.csv, $OUT/compare.md and the
# dynamics PNG (artifacts/fmnist-pls-dynamics.png, or $OUT/dynamics.png when KDTOOL_OUT is set).
#
# Tiny mode (tests): KDTOOL_SKIP_INSTALL=1 KDTOOL_EPOCHS=1 KDTOOL_SEEDS=0 KDTOOL_OUT=/tmp/pls \
#     KDTOOL_EXTRA="--limit-train 256 --limit-test 128" bash recipes/fmnist_pls_dynamics.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source recipes/common.sh

EPOCHS="${KDTOOL_EPOCHS:-10}"
OUT="${KDTOOL_OUT:-runs/fmnist-pls-dynamics}"
PLOT="${KDTOOL_OUT:+$OUT/dynamics.png}"
PLOT="${PLOT:-artifacts/fmnist-pls-dynamics.png}"
PRIOR="$OUT/fmnist-semantic.q.safetensors"
# the CPU study's training-set size, unless KDTOOL_EXTRA sets its own (a sweep would sweep over both)
LIMIT=(--limit-train 10000)
[[ " ${EXTRA[*]} " == *" --limit-train "* ]] && LIMIT=()

mkdir -p "$OUT"
[ -f "$PRIOR" ] || "$KDTOOL" make-prior semantic --dataset fashion-mnist --out "$PRIOR"

# ε = 0.1 for LS and the prior is kdtool's default --epsilon: not passed, since the 1-hot runs of
# the sweep would refuse it
"$KDTOOL" sweep --lr 0.1,0.01,0.001,0.0001 --smoothing "onehot,ls,prior:$PRIOR" --seeds "$SEEDS" \
    --schedule constant --weight-decay 0 --warmup-epochs 0 --dataset fashion-mnist \
    --model lenet5 --epochs "$EPOCHS" "${LIMIT[@]}" "${EXTRA[@]}" --out "$OUT"

"$KDTOOL" compare "$OUT" --group-by lr,smoothing --format markdown | tee "$OUT/compare.md"
"$KDTOOL" compare "$OUT" --group-by lr,smoothing --metric test_acc --plot-dynamics "$PLOT" --force
