#!/usr/bin/env bash
# The Preferential Label Smoothing paper's training-dynamics study at its own size, for users with
# CIFAR-100 and a GPU: ResNet-18 (CIFAR stem), 1-hot vs LS vs superclass (CLS) vs semantic (SEMLS)
# priors, ε = 0.1, constant learning rates 0.1, 0.01, 0.001, 0.0001, no weight decay, 5 seeds,
# 250 epochs (the paper trains "up to 250 epochs" and sees the generalization error saturate after
# about 100-120), batch 128. Figures 3-5 of the paper: with label smoothing, the gradient norm and
# the generalization error are lower at the higher learning rates.
#
# Usage: bash recipes/cifar100_pls_dynamics.sh ~/data        (downloads CIFAR-100 there if needed)
# Time: 80 runs of ResNet-18 × 250 epochs; about 1.5 GPU-hours each on one recent GPU. Each run is
# independent: `kdtool sweep ... --print-commands` lists them to spread over GPUs or machines.
set -euo pipefail
cd "$(dirname "$0")/.."
source recipes/common.sh

DATA="${1:?usage: $0 DATA_ROOT}"
OUT="${KDTOOL_OUT:-runs/c100-pls-dynamics}"
mkdir -p "$OUT"
[ -f "$OUT/c100-superclass.q.safetensors" ] ||
    "$KDTOOL" make-prior superclass --dataset cifar100 --out "$OUT/c100-superclass.q.safetensors"
[ -f "$OUT/c100-semantic.q.safetensors" ] ||
    "$KDTOOL" make-prior semantic --dataset cifar100 --out "$OUT/c100-semantic.q.safetensors"

# ε = 0.1 for LS and the prior is kdtool's default --epsilon: not passed, since the 1-hot runs of
# the sweep would refuse it
"$KDTOOL" sweep --lr 0.1,0.01,0.001,0.0001 \
    --smoothing "onehot,ls,prior:$OUT/c100-superclass.q.safetensors,prior:$OUT/c100-semantic.q.safetensors" \
    --seeds "${KDTOOL_SEEDS:-0,1,2,3,4}" --schedule constant --weight-decay 0 --warmup-epochs 0 \
    --dataset cifar100 --data-root "$DATA" --download --model resnet18 --batch-size 128 \
    --epochs "${KDTOOL_EPOCHS:-250}" "${EXTRA[@]}" --out "$OUT"

"$KDTOOL" compare "$OUT" --group-by lr,smoothing,prior --format markdown | tee "$OUT/compare.md"
"$KDTOOL" compare "$OUT" --group-by lr,smoothing,prior --metric test_acc --plot-dynamics "$OUT/dynamics.png" --force
