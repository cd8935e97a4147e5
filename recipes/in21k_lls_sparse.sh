#!/usr/bin/env bash
# LLS at ImageNet-21k's size (K = 21,841 classes) with row-sparse Q updates, for users with the data and
# GPUs; then the learned Q as a top-32 sparse artifact for LLS-ST students (kdtool distill --substitute-q).
#
# Q has K² = 477M logits: 1.9 GB, and as much again for its momentum, on every GPU. With --q-update sparse
# (what auto picks from 1,000 classes on) a step updates only the rows of the batch's labels; the others
# are brought up to date exactly when they are read: the same training as the dense update, at
# O(batch × K) a step instead of O(K²), and under torchrun each rank sends the rows it touched instead of
# all-reducing a 1.9 GB gradient (figures: docs/methods.md, "LLS with many classes"; bench/lls_scaling.py).
#
# Schedule (kdtool's choice; the LLS paper has no ImageNet-21k run): ResNet-50 on 64×64 images (random
# crop, 8-pixel padding, horizontal flip), SGD momentum 0.9, weight decay 1e-4 (Q's too), batch 256 per
# GPU, lr 0.1 per 256 images (linear scaling rule) with a 5-epoch linear warm-up, cosine to 0 over 90
# epochs, bf16 autocast and channels-last; LLS α = 0.1.
# Time: not measured (no GPU run yet); expect days for 90 epochs on 8 GPUs. Re-running resumes an
# interrupted run from its last epoch (--seeds) and skips a finished one.
#
# Data: DIR/train/<wnid>/*.JPEG and DIR/val/<wnid>/*.JPEG. kdtool has no `wds:` datasets or `timm:`
# models yet. Until then `--dataset imagefolder:DIR` decodes the whole training split into memory once
# (12 KiB an image at 64 px: about 170 GB for ImageNet-21k's 14M images), so on a smaller machine point it
# at a per-class subset of the images (all 21,841 classes, fewer images each: Q's size is what this recipe
# is about). `--dataset wds:SHARDS` (WebDataset shards streamed by DataLoader workers) will replace
# `imagefolder:DIR`, and `--model timm:resnet50` (ImageNet stem, 224 px) will replace `--model resnet50`
# with `--image-size 64` (kdtool's ResNets keep a CIFAR stem up to 64 px).
#
# Usage: bash recipes/in21k_lls_sparse.sh DATA_ROOT                 (DATA_ROOT: the folder above)
#        KDTOOL_GPUS=8 bash recipes/in21k_lls_sparse.sh DATA_ROOT   (torchrun, one process per GPU)
set -euo pipefail
case "${1:?usage: bash recipes/in21k_lls_sparse.sh DATA_ROOT}" in
    /*) DATA="$1" ;;
    *) DATA="$PWD/$1" ;;
esac
cd "$(dirname "$0")/.."
source recipes/common.sh

OUT="${KDTOOL_OUT:-runs/in21k-resnet50-lls}"
SEED="${KDTOOL_SEEDS:-0}"
SEED="${SEED%%,*}"  # one run: this recipe's unit is days of GPU time
GPUS="${KDTOOL_GPUS:-1}"
TRAIN=("$KDTOOL")
if [ "$GPUS" -gt 1 ]; then
    TRAIN=("$(dirname "$KDTOOL")/torchrun" --standalone --nproc-per-node "$GPUS" -m kdtool)
fi

"${TRAIN[@]}" train-teacher --dataset "imagefolder:$DATA" --image-size 64 --model resnet50 \
    --smoothing lls --alpha 0.1 --q-update sparse --epochs "${KDTOOL_EPOCHS:-90}" --batch-size 256 \
    --lr "$(awk "BEGIN { print 0.1 * $GPUS }")" --weight-decay 1e-4 --schedule cosine --warmup-epochs 5 \
    --amp bf16 --channels-last --seeds "$SEED" --out "$OUT/teacher" "${EXTRA[@]}"
"$KDTOOL" transfer-q "$OUT/teacher/seed$SEED/q.safetensors" --top-n 32 --out "$OUT/q-top32.safetensors" --force
"$KDTOOL" inspect-q "$OUT/q-top32.safetensors" --top 5 --max-classes 20
