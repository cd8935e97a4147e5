#!/usr/bin/env bash
# The evidence behind two training-practice defaults (#28.9), judged on a validation split only
# (--val-fraction 0.1; the test set is never looked at):
#
#   1. weight decay on biases and normalisation parameters (--decay-bias-norm) or not (--no-decay-bias-norm,
#      timm's default): a LeNet-5 (biases, no normalisation layer) on 20,000 images of the embedded
#      Fashion-MNIST, and timm's tiny BatchNorm ResNet (timm:test_resnet) on 10,000; 5 epochs (CPU-sized runs);
#   2. mixup/cutmix's λ ~ Beta(α, α): --mixup-alpha 0.2 (the mixup paper's ImageNet setting) or 1 (uniform,
#      kdtool's behaviour before the option), with --augment mixup (LeNet-5 and test_resnet) and cutmix (LeNet-5);
#   3. $OUT/search.md: per point the validation accuracy and NLL at the last and at the selected epoch (mean
#      over seeds), by recipes/search_table.py.
#
# Seeds $KDTOOL_SEEDS (default 0,1). KDTOOL_JOBS=N runs N trainings at once (recipes/common.sh).
# Time: 10 points × 2 seeds of 5 epochs on 2 CPU cores with KDTOOL_JOBS=2: not timed as a whole (a similar
# set of 20 runs took 25 minutes on shared cores, closing note of #28).
#
# Tiny mode (tests): KDTOOL_SKIP_INSTALL=1 KDTOOL_EPOCHS=1 KDTOOL_OUT=/tmp/ps \
#     KDTOOL_EXTRA="--limit-train 256 --limit-test 128 --warmup-epochs 0" KDTOOL_SEEDS=0 bash recipes/fmnist_practice_search.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KDTOOL_SEEDS="${KDTOOL_SEEDS:-0,1}"
source recipes/common.sh

EPOCHS="${KDTOOL_EPOCHS:-5}"
LENET="--model lenet5 --limit-train 20000"
RESNET="--model timm:test_resnet --limit-train 10000"
if [ -n "${KDTOOL_EXTRA:-}" ]; then LENET="--model lenet5"; RESNET="--model timm:test_resnet"; fi  # tiny mode
OUT="${KDTOOL_OUT:-runs/fmnist-practice-search}"
COMMON=(--dataset fashion-mnist --smoothing lls --batch-size 128 --lr 0.05 --schedule cosine --warmup-epochs 1
        --limit-test 2000 --val-fraction 0.1 --epochs "$EPOCHS" --seeds "$SEEDS" --force)  # the test split is not read

mkdir -p "$OUT/grid"
{
    for net in LENET RESNET; do
        name=$(echo "$net" | tr 'A-Z' 'a-z')
        for decay in decay-bias-norm no-decay-bias-norm; do
            echo "'$KDTOOL' train-teacher ${COMMON[*]} ${!net} --augment none --$decay ${EXTRA[*]}" \
                "--out '$OUT/grid/$name-$decay' > '$OUT/$name-$decay.log' 2>&1"
        done
        for mix in mixup cutmix; do
            [ "$net" = RESNET ] && [ "$mix" = cutmix ] && continue
            for alpha in 0.2 1; do
                echo "'$KDTOOL' train-teacher ${COMMON[*]} ${!net} --augment $mix --mixup-alpha $alpha ${EXTRA[*]}" \
                    "--out '$OUT/grid/$name-$mix-alpha$alpha' > '$OUT/$name-$mix-alpha$alpha.log' 2>&1"
            done
        done
    done
} | run_all

"$PYTHON" recipes/search_table.py "$OUT" | tee "$OUT/search.md"
