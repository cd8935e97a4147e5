#!/usr/bin/env bash
# The evidence behind two training-practice defaults (#28.9), judged on a validation split only
# (--val-fraction 0.1; the test set is never looked at):
#
#   1. weight decay on biases and normalisation parameters (--decay-bias-norm) or not (--no-decay-bias-norm,
#      timm's default): a LeNet-5 (biases, no normalisation layer), 10 epochs on the embedded Fashion-MNIST,
#      and a MobileNetV2 (BatchNorm) on 3,000 of its images for 3 epochs (a CPU-sized run);
#   2. mixup's λ ~ Beta(α, α): --mixup-alpha 0.2 (the mixup paper's ImageNet setting) or 1 (uniform, kdtool's
#      behaviour before the option), LeNet-5 with --augment mixup, 10 epochs;
#   3. $OUT/search.md: per point the validation accuracy and NLL at the last and at the selected epoch (mean
#      over seeds), by recipes/search_table.py.
#
# Seeds $KDTOOL_SEEDS (default 0,1). KDTOOL_JOBS=N runs N trainings at once (recipes/common.sh).
# Time: 12 runs on 2 CPU cores with KDTOOL_JOBS=2: see the closing note of #28 for the measured time.
#
# Tiny mode (tests): KDTOOL_SKIP_INSTALL=1 KDTOOL_EPOCHS=1 KDTOOL_OUT=/tmp/ps \
#     KDTOOL_EXTRA="--limit-train 256 --limit-test 128" KDTOOL_SEEDS=0 bash recipes/fmnist_practice_search.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KDTOOL_SEEDS="${KDTOOL_SEEDS:-0,1}"
source recipes/common.sh

EPOCHS="${KDTOOL_EPOCHS:-10}"
SMALL_EPOCHS="${KDTOOL_EPOCHS:-3}"
SMALL_LIMIT="--limit-train 3000 --limit-test 2000"  # the test split is not looked at: a small one saves time
if [ -n "${KDTOOL_EXTRA:-}" ]; then SMALL_LIMIT=""; fi  # tiny mode: its own limits
OUT="${KDTOOL_OUT:-runs/fmnist-practice-search}"
COMMON=(--dataset fashion-mnist --smoothing onehot --batch-size 128 --lr 0.05 --schedule cosine --warmup-epochs 1
        --val-fraction 0.1 --seeds "$SEEDS" --force)

mkdir -p "$OUT/grid"
{
    for decay in decay-bias-norm no-decay-bias-norm; do
        echo "'$KDTOOL' train-teacher ${COMMON[*]} --model lenet5 --augment none --$decay --epochs $EPOCHS" \
            "${EXTRA[*]} --out '$OUT/grid/lenet5-$decay' > '$OUT/lenet5-$decay.log' 2>&1"
        echo "'$KDTOOL' train-teacher ${COMMON[*]} --model mobilenet_v2 --augment none --$decay" \
            "--epochs $SMALL_EPOCHS $SMALL_LIMIT ${EXTRA[*]}" \
            "--out '$OUT/grid/mobilenet_v2-$decay' > '$OUT/mobilenet_v2-$decay.log' 2>&1"
    done
    for alpha in 0.2 1; do
        echo "'$KDTOOL' train-teacher ${COMMON[*]} --model lenet5 --augment mixup --mixup-alpha $alpha" \
            "--epochs $EPOCHS ${EXTRA[*]} --out '$OUT/grid/lenet5-mixup-alpha$alpha'" \
            "> '$OUT/lenet5-mixup-alpha$alpha.log' 2>&1"
    done
} | run_all

"$PYTHON" recipes/search_table.py "$OUT" | tee "$OUT/search.md"
