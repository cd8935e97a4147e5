#!/usr/bin/env bash
# Fine-tune a pretrained timm network on your own ImageFolder dataset with LLS, then teach a small
# student from it twice: LLS-ST (from the teacher's learned Q alone, no teacher network run) and Hinton
# KD (from the teacher network, which reads each student batch resized to its own input size).
#
# Teacher: $MODEL (default timm:resnet50) from pretrained weights, at its own input size and
# normalisation (timm's pretrained config), LLS α = 0.1, SGD lr 0.01 (fine-tuning), cosine schedule
# after a 1-epoch warm-up, 10 epochs. Students: $STUDENT (default kdtool's mobilenet_v2) trained from
# scratch on the images as decoded (--image-size, default 128), 30 epochs, lr 0.1, cosine.
# Time (estimate, GPU): minutes for a few thousand images; CPU only for small sets.
#
# Data: DIR/train/<class>/* and DIR/val/<class>/* (or test/), e.g. CUB, Flowers, your own photos.
# WEIGHTS: the teacher's pretrained weights, a safetensors or PyTorch state-dict file (e.g. timm's
# model.safetensors from its Hugging Face page); without it, --pretrained hub downloads them.
#
# Usage: bash recipes/imagefolder_finetune_lls.sh DIR [WEIGHTS]
#   MODEL=timm:NAME  STUDENT=NAME  IMAGE_SIZE=N  override the defaults above
set -euo pipefail
DATA="$(cd "${1:?usage: bash recipes/imagefolder_finetune_lls.sh DIR [WEIGHTS]}" && pwd)"
WEIGHTS="hub"
if [ -n "${2:-}" ]; then WEIGHTS="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; fi
cd "$(dirname "$0")/.."
source recipes/common.sh

OUT="${KDTOOL_OUT:-runs/imagefolder-finetune}"
MODEL="${MODEL:-timm:resnet50}"
STUDENT="${STUDENT:-mobilenet_v2}"
DATASET=(--dataset "imagefolder:$DATA" --image-size "${IMAGE_SIZE:-128}")

{  # the teacher, then its two students, one after another in one kdtool process
    kdtool_line train-teacher "${DATASET[@]}" --model "$MODEL" --pretrained "$WEIGHTS" --smoothing lls \
        --alpha 0.1 --epochs "${KDTOOL_EPOCHS:-10}" --lr 0.01 --schedule cosine --warmup-epochs 1 \
        --out "$OUT/teacher-lls" "${EXTRA[@]}"
    # LLS-ST: the teacher's Q (its run folder stands for its q.safetensors) as class-wise soft targets
    kdtool_line distill --substitute-q "$OUT/teacher-lls" --student "$STUDENT" "${DATASET[@]}" \
        --epochs "${KDTOOL_EPOCHS:-30}" --lr 0.1 --schedule cosine --out "$OUT/student-llsst" "${EXTRA[@]}"
    kdtool_line distill --teacher "$OUT/teacher-lls" --student "$STUDENT" "${DATASET[@]}" \
        --epochs "${KDTOOL_EPOCHS:-30}" --lr 0.1 --schedule cosine --out "$OUT/student-kd" "${EXTRA[@]}"
} | "$KDTOOL" batch -
"$KDTOOL" compare "$OUT/teacher-lls" "$OUT/student-llsst" "$OUT/student-kd" --group-by smoothing,model \
    --format markdown | tee "$OUT/compare.md"
