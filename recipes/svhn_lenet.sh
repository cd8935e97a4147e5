#!/usr/bin/env bash
# The LLS paper's SVHN / LeNet comparison (its Table 3), for users with the data and a GPU:
# 1-hot vs LS (ε = 0.1) vs LLS (α = 0.1), seeds 0, 1, 2 each, then a mean ± std table and plots.
#
# Schedule (paper's appendix, SVHN): no augmentation, SGD momentum 0.9, weight decay 1e-4, batch 128,
# 200 epochs, lr 0.1 with a linear 5-epoch warm-up, ×0.1 at epochs 100 and 150. Train split only
# (not SVHN's "extra" images).
# Paper's numbers (Table 3, LeNet, test accuracy %, mean ± std): 1-Hot 89.40±0.03, LS 89.35±0.09,
# LLS 89.51±0.15.
# Time (estimate): 5-10 minutes a run on one recent GPU, about 1-1.5 hours for the 9 runs.
#
# Usage: bash recipes/svhn_lenet.sh DATA_ROOT            (SVHN is downloaded there if missing)
set -euo pipefail
mkdir -p "${1:?usage: bash recipes/svhn_lenet.sh DATA_ROOT}"
DATA="$(cd "$1" && pwd)"
cd "$(dirname "$0")/.."
source recipes/common.sh

OUT="${KDTOOL_OUT:-runs/svhn-lenet}"
compare_methods "$OUT" "$OUT/curves.png" --dataset svhn --data-root "$DATA" --download --model "${MODEL:-lenet5}" \
    --no-augment --epochs "${KDTOOL_EPOCHS:-200}" --batch-size 128 --lr 0.1 --weight-decay 1e-4 --decay-bias-norm \
    --warmup-epochs 5 --schedule multistep --milestones 100,150 --gamma 0.1
