#!/usr/bin/env bash
# kdtool on a GPU: every GPU figure in one call, under 8 minutes on one H200 (bench/gpu.py says what
# each part measures). Writes OUT_DIR/summary.md and OUT_DIR/gpu.log; exits non-zero if a part failed.
#
#   bash bench/gpu.sh OUT_DIR                      # GPU figures (default budget 420 s for all parts)
#   bash bench/gpu.sh OUT_DIR --tiny               # CPU dry run of every part (torchrun: gloo, 2 processes)
#   bash bench/gpu.sh OUT_DIR --parts sparse-q,torchrun --budget 200      # re-run some parts
#
# Python: $PYTHON if set, else this checkout's .venv, else python3 (a GPU machine's own PyTorch); this
# checkout's kdtool is put first on PYTHONPATH, so it needs no install there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PYTHON" "$root/bench/gpu.py" "$@"
