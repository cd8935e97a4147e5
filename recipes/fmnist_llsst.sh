#!/usr/bin/env bash
# Teacher -> Q -> students that never see a teacher network (LLS-ST), on the embedded Fashion-MNIST
# with LeNet-5, 15 epochs per run at kdtool's fashion-mnist defaults (batch 128, SGD momentum 0.9,
# weight decay 5e-4, lr 0.05 with a 1-epoch warm-up then cosine, no augmentation), seed 0:
#   1. an LLS teacher (α = 0.1) and a 1-hot teacher;
#   2. Q artifacts: the LLS teacher's learned Q (export-q), a Q estimated from the 1-hot teacher
#      (export-q --from-teacher), the learned Q sliced to the four "tops" classes (transfer-q
#      --classes) and its sparse top-3 form (transfer-q --top-n), and the superclass prior of
#      recipes/fmnist-groups.json (make-prior superclass);
#   3. LeNet-5 students: LLS-ST from the learned Q and from the 1-hot teacher's Q on all data,
#      LLS-ST on the tops classes only (class-subset transfer), LLS-ST and Hinton KD from the LLS
#      teacher on a seeded 50% of each class (sample-subset transfer);
#   4. a compare table of every run and an evaluate report (per class, confusion PNG) of a student.
# It mirrors the paper's Tables 5-7 (LLS-ST, class and sample subsets), CPU-sized; the paper uses
# ResNets (FMNIST subsets: ResNet-18, 1-hot 86.49 / LS 87.01 / LLS 87.13 / LLS-ST 87.56 on 50% of
# the samples, 1-hot 89.86 / LS 90.56 / LLS 91.12 / LLS-ST 90.96 on the first 50% of the classes).
# The shipped artifacts/fmnist-*.q.safetensors were made by these same commands (artifacts/README.md).
#
# Time: 7 runs of 1-4 minutes on 2 CPU cores, about 20 minutes in all. Writes everything under $OUT
# (Q artifacts in $OUT/q).
#
# Tiny mode (tests): KDTOOL_SKIP_INSTALL=1 KDTOOL_EPOCHS=1 KDTOOL_OUT=/tmp/llsst \
#     KDTOOL_EXTRA="--limit-train 256 --limit-test 128" bash recipes/fmnist_llsst.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source recipes/common.sh

EPOCHS="${KDTOOL_EPOCHS:-15}"
OUT="${KDTOOL_OUT:-runs/fmnist-llsst}"
Q="$OUT/q"
TOPS="T-shirt/top,Pullover,Coat,Shirt"
TRAIN=(--dataset fashion-mnist --model lenet5 --epochs "$EPOCHS" --seed 0 --force "${EXTRA[@]}")
STUDENT=(--dataset fashion-mnist --student lenet5 --epochs "$EPOCHS" --seed 0 --force "${EXTRA[@]}")

# 1-3, one command after another in one kdtool process (kdtool batch: Python and torch start once)
mkdir -p "$Q"
{
    # 1. teachers
    kdtool_line train-teacher --smoothing lls --alpha 0.1 "${TRAIN[@]}" --out "$OUT/teacher-lls"
    kdtool_line train-teacher --smoothing onehot "${TRAIN[@]}" --out "$OUT/teacher-onehot"

    # 2. Q artifacts (T = 1 from the 1-hot teacher: as the shipped artifact)
    kdtool_line export-q "$OUT/teacher-lls" --out "$Q/fmnist-lenet5-lls.q.safetensors" --force
    kdtool_line export-q "$OUT/teacher-onehot" --from-teacher --alpha 0.1 --temperature 1 \
        --out "$Q/fmnist-lenet5-onehot-from-teacher.q.safetensors" --force
    kdtool_line transfer-q "$Q/fmnist-lenet5-lls.q.safetensors" --classes "$TOPS" \
        --out "$Q/fmnist-lenet5-lls-tops.q.safetensors" --force
    kdtool_line transfer-q "$Q/fmnist-lenet5-lls.q.safetensors" --top-n 3 \
        --out "$Q/fmnist-lenet5-lls-top3.q.safetensors" --force
    kdtool_line make-prior superclass --dataset fashion-mnist --groups recipes/fmnist-groups.json --alpha 0.1 \
        --out "$Q/fmnist-superclass.q.safetensors" --force
    kdtool_line inspect-q "$Q/fmnist-lenet5-lls.q.safetensors" --top 2 --vs-confusion "$OUT/teacher-lls"

    # 3. students
    kdtool_line distill --substitute-q "$Q/fmnist-lenet5-lls.q.safetensors" "${STUDENT[@]}" \
        --out "$OUT/st-lls-q"
    kdtool_line distill --substitute-q "$Q/fmnist-lenet5-onehot-from-teacher.q.safetensors" "${STUDENT[@]}" \
        --out "$OUT/st-onehot-q"
    kdtool_line distill --substitute-q "$Q/fmnist-lenet5-lls-tops.q.safetensors" --classes "$TOPS" \
        "${STUDENT[@]}" --out "$OUT/st-tops"
    kdtool_line distill --substitute-q "$Q/fmnist-lenet5-lls.q.safetensors" --sample-fraction 0.5 \
        "${STUDENT[@]}" --out "$OUT/st-half-lls-q"
    kdtool_line distill --teacher "$OUT/teacher-lls" --sample-fraction 0.5 "${STUDENT[@]}" \
        --out "$OUT/st-half-kd"
} | "$KDTOOL" batch -

# 4. reports
"$KDTOOL" compare "$OUT" --group-by out --format markdown | tee "$OUT/compare.md"
"$KDTOOL" evaluate "$OUT/st-tops" --force
