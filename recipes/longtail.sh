#!/usr/bin/env bash
# Long-tailed Fashion-MNIST (issue 30): does any LLS variant beat logit adjustment on balanced accuracy or
# macro-F1? LeNet-5 on Fashion-MNIST-LT (kdtool's --imbalance-ratio: class i of 10 keeps
# ⌊n_max·ρ^(−i/9)⌋ training samples; a balanced 10% validation split is held out first, the test split is
# the full balanced one), each method once per seed, the epoch kept by validation balanced accuracy:
#   teachers  onehot, ls (ε 0.1), logit-adjust (τ 1, Menon et al. 2021), class-balanced (1-hot with
#             --class-weights effective, β 0.9999, Cui et al. 2019), label-aware (MiSLAS), lls (α 0.1) and
#             its corrections lls-prior, lls-adjusted, lls-alpha (--lls-correction) and lls-balanced
#             (LLS with class-balanced weights);
#   students  from the first ratio's seed-0 1-hot teacher: kd, kd with --kd-balance logit-adjust, and LLS-ST
#             from the seed-0 Q of lls and of lls-prior;
#   text      naturally imbalanced GoEmotions-Ekman (7 emotions) and GoEmotions (28), a BiLSTM (embedding 64, 64
#             units, lr 0.5, as recipes/goemotions_lls.sh), the teachers of $KDTOOL_TEXT_METHODS, the epoch kept by
#             validation macro-F1 on the official validation split;
#   tables    $OUT/rho<ρ>/compare.md, $OUT/<text dataset>/compare.md and $OUT/students/compare.md (mean ± std over seeds: accuracy, balanced
#             accuracy, many/medium/few-shot accuracy, macro-F1, ECE at the selected epoch) and
#             $OUT/rho<ρ>/analysis.md (per-class F1, and the off-diagonal mass softmax(Q) gives each class
#             against its training share, with their Spearman correlation, for the LLS variants).
#
# Environment (besides recipes/common.sh's): KDTOOL_RATIOS (default "100 10"), KDTOOL_METHODS (default: all
# the teachers above), KDTOOL_STUDENTS (default "kd kd-balanced llsst-lls llsst-lls-prior"; empty: none),
# KDTOOL_TEXT (default "goemotions-ekman goemotions"; empty: none; KDTOOL_RATIOS="" runs the text part alone),
# KDTOOL_TEXT_METHODS (default "onehot logit-adjust class-balanced label-aware lls lls-prior lls-alpha").
# Time, one CPU thread a run (2 shared cores, 2026-12-04): a 10-epoch LeNet-5 run of ρ = 100 (13,400 training
# images) 25-45 s, of ρ = 10 about twice that; a 10-epoch BiLSTM run of GoEmotions-Ekman 4-6 minutes.
#
# Tiny mode (tests): KDTOOL_SKIP_INSTALL=1 KDTOOL_EPOCHS=1 KDTOOL_OUT=/tmp/lt KDTOOL_SEEDS=0 KDTOOL_RATIOS=5 \
#     KDTOOL_EXTRA="--limit-train 256 --limit-test 128" bash recipes/longtail.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source recipes/common.sh

EPOCHS="${KDTOOL_EPOCHS:-30}"
OUT="${KDTOOL_OUT:-runs/longtail}"
read -r -a RATIOS <<< "${KDTOOL_RATIOS-100 10}"
read -r -a METHODS <<< "${KDTOOL_METHODS:-onehot ls logit-adjust class-balanced label-aware lls lls-prior lls-adjusted lls-alpha lls-balanced}"
read -r -a STUDENTS <<< "${KDTOOL_STUDENTS-kd kd-balanced llsst-lls llsst-lls-prior}"
read -r -a TEXTS <<< "${KDTOOL_TEXT-goemotions-ekman goemotions}"
read -r -a TEXT_METHODS <<< "${KDTOOL_TEXT_METHODS:-onehot logit-adjust class-balanced label-aware lls lls-prior lls-alpha}"
COMMON=(--dataset fashion-mnist --epochs "$EPOCHS" --val-fraction 0.1 --select best-val-balanced-acc
        --seeds "$SEEDS")
TEXT_COMMON=(--model bilstm --embed-dim 64 --hidden-size 64 --lr 0.5 --decay-bias-norm --epochs "$EPOCHS"
             --select best-val-f1 --seeds "$SEEDS")
METRICS=test_acc,test_balanced_acc,test_many_acc,test_medium_acc,test_few_acc,test_macro_f1,test_ece

# the train-teacher options of each teacher (kdtool refuses an option a run does not use: each gets only its own)
teacher_options() {
    case "$1" in
        onehot) echo --smoothing onehot ;;
        ls) echo --smoothing ls --epsilon 0.1 ;;
        logit-adjust) echo --smoothing logit-adjust --tau 1 ;;
        class-balanced) echo --smoothing onehot --class-weights effective --cb-beta 0.9999 ;;
        label-aware) echo --smoothing label-aware ;;
        lls) echo --smoothing lls --alpha 0.1 ;;
        lls-prior | lls-adjusted) echo --smoothing lls --alpha 0.1 --lls-correction "${1#lls-}" --tau 1 ;;
        lls-alpha) echo --smoothing lls --alpha 0.1 --lls-correction alpha ;;
        lls-balanced) echo --smoothing lls --alpha 0.1 --class-weights effective --cb-beta 0.9999 ;;
        *) echo "unknown teacher $1" >&2; return 1 ;;
    esac
}

# the distill options of each student, from the first ratio's seed-0 teachers
student_options() {
    local teachers="$OUT/rho${RATIOS[0]}"
    case "$1" in
        kd) echo --teacher "$teachers/onehot/seed0" ;;
        kd-balanced) echo --teacher "$teachers/onehot/seed0" --kd-balance logit-adjust --tau 1 ;;
        llsst-lls | llsst-lls-prior) echo --substitute-q "$teachers/${1#llsst-}/seed0" ;;
        *) echo "unknown student $1" >&2; return 1 ;;
    esac
}

# compare_and_analyse FOLDER METHOD...: the mean ± std table of FOLDER/METHOD (FOLDER/compare.md) and the per-class
# F1 and Q analysis (FOLDER/analysis.md)
compare_and_analyse() {
    local folder="$1"
    shift
    local groups=("${@/#/$folder/}")
    mkdir -p "$folder"
    "$KDTOOL" compare "${groups[@]}" --group-by smoothing,lls_correction,class_weights --metric "$METRICS" \
        --format markdown | tee "$folder/compare.md"
    "$PYTHON" recipes/goemotions_analysis.py "$folder" "${groups[@]}" | tee "$folder/analysis.md"
}

if [ "${#RATIOS[@]}" -gt 0 ]; then
    for ratio in "${RATIOS[@]}"; do
        for method in "${METHODS[@]}"; do
            read -r -a options <<< "$(teacher_options "$method")"
            kdtool_line train-teacher --model lenet5 "${options[@]}" "${COMMON[@]}" --imbalance-ratio "$ratio" \
                --out "$OUT/rho$ratio/$method" "${EXTRA[@]}"
        done
    done | run_kdtool

    for ratio in "${RATIOS[@]}"; do compare_and_analyse "$OUT/rho$ratio" "${METHODS[@]}"; done
fi

if [ "${#STUDENTS[@]}" -gt 0 ] && [ "${#RATIOS[@]}" -gt 0 ]; then
    for student in "${STUDENTS[@]}"; do
        read -r -a options <<< "$(student_options "$student")"
        kdtool_line distill --student lenet5 "${options[@]}" "${COMMON[@]}" --imbalance-ratio "${RATIOS[0]}" \
            --out "$OUT/students/$student" "${EXTRA[@]}"
    done | run_kdtool
    mkdir -p "$OUT/students"
    "$KDTOOL" compare "${STUDENTS[@]/#/$OUT/students/}" --group-by smoothing,kd_balance,substitute_q \
        --metric "$METRICS" --format markdown | tee "$OUT/students/compare.md"
fi

# naturally imbalanced text: the same teachers, compared the same way (the shot groups by training count)
if [ "${#TEXTS[@]}" -gt 0 ]; then
    for dataset in "${TEXTS[@]}"; do
        for method in "${TEXT_METHODS[@]}"; do
            read -r -a options <<< "$(teacher_options "$method")"
            kdtool_line train-teacher --dataset "$dataset" "${options[@]}" "${TEXT_COMMON[@]}" \
                --out "$OUT/$dataset/$method" "${EXTRA[@]}"
        done
    done | run_kdtool

    for dataset in "${TEXTS[@]}"; do compare_and_analyse "$OUT/$dataset" "${TEXT_METHODS[@]}"; done
fi
