#!/usr/bin/env bash
# The KD methods users compare against, and LLS-ST, on the embedded Fashion-MNIST (CPU-sized):
#   1. one teacher network clearly stronger than the student, the small AlexNet (5.7M parameters, vs
#      LeNet-5's 0.06M) trained on 30,000 images (the students get 8,000), trained twice: 1-hot and
#      LLS (α = 0.1), seed 0;
#   2. Q artifacts: the LLS teacher's learned Q, and a Q estimated from the 1-hot teacher (export-q
#      --from-teacher at its default temperature, T = 4); one teacher cache of the 1-hot teacher per
#      seed (all 10 logits: exact; one view, since fashion-mnist trains without augmentation);
#   3. LeNet-5 students, seeds $KDTOOL_SEEDS (0,1,2), each method at kdtool's defaults except DKD and DIST,
#      which use their papers' ImageNet setting (T = 1): at the CIFAR-100 defaults (T = 4, β_dkd = 8,
#      β = γ = 2) their terms have 10-20× the gradient of the cross-entropy, and a LeNet-5 (no BatchNorm)
#      diverged in its first epoch (training loss 1e10 and 1e26 in a 3-epoch probe at lr 0.1);
#        onehot       no teacher, 1-hot cross-entropy
#        kd           Hinton KD from the 1-hot teacher (β = 0, T = 1)
#        dkd          decoupled KD, CE + DKD with α = β = 0.5, T = 1, warm-up 1 epoch
#        dist         DIST, CE + DIST with β = γ = 1, T = 1 (kdtool's defaults)
#        wttm         WTTM at kdtool's defaults (CE + WTTM, γ = 0.5)
#        nkd          NKD at kdtool's defaults (CE + NKD, γ = 0.5, T = 1)
#        kd-ls        KD with logit standardisation (T = 2)
#        dkd-ls       DKD as above with logit standardisation (base T = 2)
#        kd-cache     KD from the teacher cache: no teacher network runs
#        dkd-cache    DKD as above from the teacher cache
#        dist-cache   DIST as above from the teacher cache
#        llsst-lls    LLS-ST from the LLS teacher's Q (α = 0.1)
#        llsst-onehot LLS-ST from the 1-hot teacher's Q (T = 4, α = 0.1)
#   4. $OUT/benchmark.md: kdtool compare's table (test accuracy, NLL, ECE: mean ± std over the seeds,
#      at the selected and at the last epoch; seconds per epoch) and each method's seconds per epoch
#      relative to KD's.
# Every run: 10 epochs at kdtool's defaults for fashion-mnist (batch 128, SGD momentum 0.9, weight decay
# 5e-4, lr 0.05 with a 1-epoch warm-up then cosine, no augmentation), tested on all 10,000 test images.
# The students train on a seeded 8,000 of the 60,000 training images (--limit-train: a live AlexNet
# teacher costs about 0.3-0.6 s per batch on one CPU thread). The KD-family students run the teacher on
# every batch; the cached, LLS-ST and 1-hot students never do. KDTOOL_JOBS=N trains the two teachers,
# and then the students, N at a time (recipes/common.sh).
#
# Time, measured: 45 minutes with OMP_NUM_THREADS=1 KDTOOL_JOBS=2 on a 2-core CPU (a teacher epoch 141 s, a
# live-teacher student epoch 9.7-10.1 s, any other student epoch 1.0-1.1 s, two trainings side by side); the
# 8-row version of this recipe took under 4 minutes on one H200 with KDTOOL_JOBS=8. Results: docs/recipes.md.
#
# Tiny mode (tests): KDTOOL_SKIP_INSTALL=1 KDTOOL_EPOCHS=1 KDTOOL_OUT=/tmp/kdbench KDTOOL_SEEDS=0 \
#     KDTOOL_EXTRA="--limit-train 256 --limit-test 128" bash recipes/fmnist_kd_benchmark.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source recipes/common.sh

EPOCHS="${KDTOOL_EPOCHS:-10}"
OUT="${KDTOOL_OUT:-runs/fmnist-kd-benchmark}"
LIMIT=8000
for ((i = 0; i + 1 < ${#EXTRA[@]}; i++)); do  # a --limit-train in KDTOOL_EXTRA is the caches' limit too
    if [ "${EXTRA[$i]}" = "--limit-train" ]; then LIMIT="${EXTRA[$((i + 1))]}"; fi
done
DATA=(--dataset fashion-mnist --epochs "$EPOCHS")
TEACHER=(--model alexnet "${DATA[@]}" --limit-train 30000 --seed 0 --force "${EXTRA[@]}")
STUDENT=(--student lenet5 "${DATA[@]}" --limit-train "$LIMIT" --seeds "$SEEDS" --force "${EXTRA[@]}")

# 1. teachers
{
    kdtool_line train-teacher --smoothing onehot "${TEACHER[@]}" --out "$OUT/teacher-onehot"
    kdtool_line train-teacher --smoothing lls --alpha 0.1 "${TEACHER[@]}" --out "$OUT/teacher-lls"
} | run_kdtool

# 2. Q artifacts and teacher caches (a cache holds the --limit-train samples its --seed picked: one per seed),
# in one kdtool process
mkdir -p "$OUT/q" "$OUT/caches"
{
    kdtool_line export-q "$OUT/teacher-lls" --out "$OUT/q/lls.q.safetensors" --force
    kdtool_line export-q "$OUT/teacher-onehot" --from-teacher --alpha 0.1 --out "$OUT/q/onehot.q.safetensors" \
        --force
    for seed in ${SEEDS//,/ }; do
        kdtool_line cache-teacher "$OUT/teacher-onehot" --limit-train "$LIMIT" --seed "$seed" \
            --out "$OUT/caches/seed$seed.cache.safetensors" --force
    done
} | "$KDTOOL" batch -

# 3. students (independent of each other: $KDTOOL_JOBS at a time, or all in one process)
DKD_WEIGHTS=(--kd-loss dkd --dkd-alpha 0.5 --dkd-beta 0.5 --dkd-warmup-epochs 1)
DKD=("${DKD_WEIGHTS[@]}" --temperature 1)  # dkd-ls: the weights at the standardised base temperature (2)
DIST=(--kd-loss dist --dist-beta 1 --dist-gamma 1 --temperature 1)
cached() {  # NAME [LOSS OPTIONS]: a student from each seed's cache, one command a seed
    local name=$1 seed
    shift
    for seed in ${SEEDS//,/ }; do
        kdtool_line distill --teacher-cache "$OUT/caches/seed$seed.cache.safetensors" "$@" \
            --student lenet5 "${DATA[@]}" --limit-train "$LIMIT" --seeds "$seed" --force "${EXTRA[@]}" \
            --out "$OUT/$name"
    done
}
{
    kdtool_line train-teacher --model lenet5 --smoothing onehot "${DATA[@]}" --limit-train "$LIMIT" \
        --seeds "$SEEDS" --force "${EXTRA[@]}" --out "$OUT/onehot"
    kdtool_line distill --teacher "$OUT/teacher-onehot" "${STUDENT[@]}" --out "$OUT/kd"
    kdtool_line distill --teacher "$OUT/teacher-onehot" "${DKD[@]}" "${STUDENT[@]}" --out "$OUT/dkd"
    kdtool_line distill --teacher "$OUT/teacher-onehot" "${DIST[@]}" "${STUDENT[@]}" --out "$OUT/dist"
    for loss in wttm nkd; do
        kdtool_line distill --teacher "$OUT/teacher-onehot" --kd-loss "$loss" "${STUDENT[@]}" \
            --out "$OUT/$loss"
    done
    kdtool_line distill --teacher "$OUT/teacher-onehot" --logit-standardize "${STUDENT[@]}" \
        --out "$OUT/kd-ls"
    kdtool_line distill --teacher "$OUT/teacher-onehot" "${DKD_WEIGHTS[@]}" --logit-standardize \
        "${STUDENT[@]}" --out "$OUT/dkd-ls"
    cached kd-cache
    cached dkd-cache "${DKD[@]}"
    cached dist-cache "${DIST[@]}"
    kdtool_line distill --substitute-q "$OUT/q/lls.q.safetensors" "${STUDENT[@]}" --out "$OUT/llsst-lls"
    kdtool_line distill --substitute-q "$OUT/q/onehot.q.safetensors" "${STUDENT[@]}" \
        --out "$OUT/llsst-onehot"
} | run_kdtool

# 4. the table: groups told apart by method, logit standardisation, cache and Q artifact
METHODS=(onehot kd dkd dist wttm nkd kd-ls dkd-ls kd-cache dkd-cache dist-cache llsst-lls llsst-onehot)
GROUP_BY=smoothing,logit_standardize,teacher_cache_file.views,q_artifact.path
"$KDTOOL" compare "$OUT/teacher-onehot" "$OUT/teacher-lls" --format markdown | tee "$OUT/teachers.md"
{
    echo "LeNet-5 students of an AlexNet teacher on Fashion-MNIST: $LIMIT training images, epochs: $EPOCHS, seeds $SEEDS"
    echo
    "$KDTOOL" compare "${METHODS[@]/#/$OUT/}" --group-by "$GROUP_BY" --format markdown
    echo
    echo "| method | s/epoch | relative to KD |"
    echo "| :-- | --: | --: |"
    # the same groups as a CSV, one row a method in the order of METHODS; the column is counted from the end
    # of the row (a group-by value, a path, may hold a comma)
    "$KDTOOL" compare "${METHODS[@]/#/$OUT/}" --group-by "$GROUP_BY" --format csv | awk -F, -v names="${METHODS[*]}" '
        NR == 1 { split(names, name, " "); for (i = 1; i <= NF; i++) if ($i == "epoch_seconds_mean") back = NF - i; next }
        { s[NR - 1] = $(NF - back); if (name[NR - 1] == "kd") kd = s[NR - 1] }
        END { for (i = 1; i < NR; i++) printf "| %s | %.1f | %.2f |\n", name[i], s[i], (kd > 0 ? s[i] / kd : 0) }'
} | tee "$OUT/benchmark.md"
