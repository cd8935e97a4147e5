# Sourced by the recipes (after `cd` to the repository root): the install step, the environment
# overrides every recipe honours (so each can also run in a tiny mode for tests), and the shared
# 1-hot / LS / LLS comparison.
#
#   KDTOOL_SKIP_INSTALL=1   use an installed kdtool instead of creating .venv and installing into it
#   KDTOOL_BIN=PATH         the kdtool executable (default .venv/bin/kdtool)
#   KDTOOL_PYTHON=PATH      the Python that has kdtool, for the recipes' analysis scripts (default: the
#                           python beside KDTOOL_BIN, else python3)
#   KDTOOL_EPOCHS=N         epochs of every training run (each recipe states its default)
#   KDTOOL_OUT=DIR          folder receiving the recipe's runs and reports
#   KDTOOL_EXTRA="FLAGS"    extra flags for every training command, e.g. "--limit-train 256 --limit-test 128"
#   KDTOOL_SEEDS=LIST       seeds of the multi-seed recipes (default 0,1,2)
#   KDTOOL_JOBS=N           trainings run side by side where a recipe has independent ones (default 1: one
#                           after another in one kdtool process; small networks on one GPU with many CPU
#                           cores train several times faster side by side)
#   MODEL=NAME              the network of the paper recipes (and imagefolder_finetune_lls.sh's teacher):
#                           any --model name, e.g. MODEL=timm:resnet18 or MODEL=torchvision:mobilenet_v3_small

if [ -z "${KDTOOL_SKIP_INSTALL:-}" ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e .
fi
KDTOOL="${KDTOOL_BIN:-.venv/bin/kdtool}"
SEEDS="${KDTOOL_SEEDS:-0,1,2}"
JOBS="${KDTOOL_JOBS:-1}"
PYTHON="${KDTOOL_PYTHON:-$(dirname "$KDTOOL")/python}"
[ -x "$PYTHON" ] || PYTHON=python3
read -r -a EXTRA <<< "${KDTOOL_EXTRA:-}"

# run_all: run the shell commands on stdin (one a line), $JOBS at a time; fails if any of them failed
run_all() {
    local failed=0 line
    while IFS= read -r line; do
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || failed=1; done
        bash -c "$line" &
    done
    while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
    return "$failed"
}

# kdtool_line ARGS...: print `kdtool ARGS...` as one line for run_kdtool or kdtool batch, arguments with other
# characters than letters, digits and _./,:=+@%- in single quotes (read alike by bash and kdtool batch, whatever
# the locale: printf %q writes $'...' for non-ASCII characters in the C locale)
kdtool_line() {
    local arg line=kdtool
    for arg in "$@"; do
        if [[ "$arg" =~ ^[[:alnum:]_./,:=+@%-]+$ ]]; then line+=" $arg"; else line+=" '${arg//\'/\'\\\'\'}'"; fi
    done
    printf '%s\n' "$line"
}

# run_kdtool: run the kdtool command lines on stdin (kdtool_line's, independent of each other):
# with JOBS=1 all in one process (`kdtool batch`: Python and torch start once instead of once a run), else $JOBS
# processes at a time (run_all); fails if any of them failed, after running the others
run_kdtool() {
    if [ "$JOBS" -le 1 ]; then
        "$KDTOOL" batch - --keep-going
    else
        local line
        while IFS= read -r line; do printf '%q %s\n' "$KDTOOL" "${line#kdtool }"; done | run_all
    fi
}

# compare_methods OUT PLOT TRAIN-TEACHER-OPTIONS...
# Trains 1-hot, LS (ε = 0.1) and LLS (α = 0.1) teachers, each once per seed of $SEEDS, into
# OUT/{onehot,ls,lls}/seed<N> (finished seeds are skipped on a re-run), then writes the mean ± std
# table to OUT/compare.md (and prints it) and the curves and reliability diagram to PLOT.
compare_methods() {
    local out="$1" plot="$2" method
    local -a smoothing
    shift 2
    for method in onehot ls lls; do
        # each method gets only its own option: kdtool refuses --epsilon or --alpha where they do not apply
        case "$method" in
            ls) smoothing=(--smoothing ls --epsilon 0.1) ;;
            lls) smoothing=(--smoothing lls --alpha 0.1) ;;
            *) smoothing=(--smoothing "$method") ;;
        esac
        kdtool_line train-teacher "${smoothing[@]}" "$@" --seeds "$SEEDS" --out "$out/$method" "${EXTRA[@]}"
    done | run_kdtool
    "$KDTOOL" compare "$out/onehot" "$out/ls" "$out/lls" --format markdown | tee "$out/compare.md"
    "$KDTOOL" compare "$out/onehot" "$out/ls" "$out/lls" --plot "$plot" --force
}
