#!/usr/bin/env bash
# Why LLS trails 1-hot in macro-F1 on GoEmotions-Ekman (recipes/goemotions_lls.sh), measured: BiLSTM
# teachers as in that recipe (embedding 64, 64 units, lr 0.5, 10 epochs, kdtool's text defaults
# otherwise), seeds $KDTOOL_SEEDS (0,1,2), for 1-hot, LLS at α = 0.05, 0.1, 0.2, and LLS at α = 0.1
# with no weight decay on Q (--q-weight-decay 0). The official validation split picks each run's
# epoch. $OUT/analysis.md (recipes/goemotions_analysis.py): validation macro-F1 (what a choice among
# these would rest on), test accuracy, macro-F1 and per-class F1, the training share of each emotion,
# and where the learned Q puts its off-diagonal mass, against class frequency.
#
# Time: 15 runs of 4-7 minutes on one CPU thread (measured: two side by side on 2 shared cores);
# KDTOOL_JOBS=5 trains the five groups side by side.
#
# Tiny mode (tests): KDTOOL_SKIP_INSTALL=1 KDTOOL_EPOCHS=1 KDTOOL_OUT=/tmp/gea KDTOOL_SEEDS=0 \
#     KDTOOL_EXTRA="--limit-train 256 --limit-test 128" bash recipes/goemotions_lls_analysis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source recipes/common.sh

EPOCHS="${KDTOOL_EPOCHS:-10}"
OUT="${KDTOOL_OUT:-runs/goemotions-lls-analysis}"
COMMON=(--dataset goemotions-ekman --model bilstm --embed-dim 64 --hidden-size 64 --lr 0.5 --epochs "$EPOCHS"
    --seeds "$SEEDS" --force "${EXTRA[@]}")
RUNS=(onehot lls-a0.05 lls-a0.1 lls-a0.2 lls-a0.1-qwd0)
for group in "${RUNS[@]}"; do
    case "$group" in
        onehot) method=(--smoothing onehot) ;;
        lls-a0.1-qwd0) method=(--smoothing lls --alpha 0.1 --q-weight-decay 0) ;;
        *) method=(--smoothing lls --alpha "${group#lls-a}") ;;
    esac
    kdtool_line train-teacher "${method[@]}" "${COMMON[@]}" --out "$OUT/$group"
done | run_kdtool
"$PYTHON" recipes/goemotions_analysis.py "$OUT" "${RUNS[@]/#/$OUT/}" | tee "$OUT/analysis.md"
