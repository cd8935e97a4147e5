#!/usr/bin/env bash
# The LLS paper's Tiny-ImageNet / ResNet-18 comparison (its Table 2), read as an ImageFolder, for
# users with the data and a GPU: 1-hot vs LS (ε = 0.1) vs LLS (α = 0.1), seeds 0, 1, 2 each, then a
# mean ± std table and plots.
#
# Schedule (paper's appendix, Tiny-ImageNet): 64×64 images, random crop (4-pixel padding) and
# horizontal flip, SGD momentum 0.9, weight decay 1e-4, batch 64, 100 epochs, lr 0.1 with a linear
# 5-epoch warm-up, ×0.1 at epochs 40 and 60. ResNet-18 with kdtool's CIFAR stem (3×3 first
# convolution, no max-pool).
# Paper's numbers (Table 2, ResNet-18, test accuracy %): 1-Hot 63.20, LS 63.13, LLS 64.58.
# Time (estimate): 1-2 hours a run on one recent GPU, 10-15 hours for the 9 runs.
#
# Data: DIR/train/<class>/*.JPEG and DIR/val/<class>/*.JPEG. The official archive keeps val/ flat
# (val/images + val/val_annotations.txt); sort it into class folders once, e.g.
#   cd DIR/val && while read -r f c _; do mkdir -p "$c" && mv "images/$f" "$c/"; done < val_annotations.txt
#
# Usage: bash recipes/tinyimagenet_resnet18.sh DIR
set -euo pipefail
DATA="$(cd "${1:?usage: bash recipes/tinyimagenet_resnet18.sh TINY_IMAGENET_DIR}" && pwd)"
cd "$(dirname "$0")/.."
source recipes/common.sh

OUT="${KDTOOL_OUT:-runs/tinyimagenet-resnet18}"
compare_methods "$OUT" "$OUT/curves.png" --dataset "imagefolder:$DATA" --image-size 64 --model "${MODEL:-resnet18}" \
    --epochs "${KDTOOL_EPOCHS:-100}" --batch-size 64 --lr 0.1 --weight-decay 1e-4 --decay-bias-norm --warmup-epochs 5 --schedule multistep \
    --milestones 40,60 --gamma 0.1
