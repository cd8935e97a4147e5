"""Every bench/ script runs in its tiny mode (``--tiny``: a few samples, one run of each side), so that none can
rot unseen: a bench that crashes, or whose kdtool side no longer sets up, fails here. bench/gpu.py's tiny mode
is tests/test_bench_gpu.py's."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
# common.py is what the benches share, not a bench; gpu.py runs as `bash bench/gpu.sh OUT --tiny` in test_bench_gpu,
# gpu_stream.py is its part `stream` and gpu_profile.py the overhead part's profiles; function_sizes.py measures the
# code, not its speed (test_function_sizes runs it)
NOT_BENCHES = ("common.py", "gpu.py", "gpu_stream.py", "gpu_profile.py", "function_sizes.py")
BENCHES = sorted(p.name for p in BENCH.glob("*.py") if p.name not in NOT_BENCHES)
RATIO = re.compile(r"ratio .+ = \d+\.\d{3} \(target ≤ [\d.]+: (met|NOT met)\)")
# the benches that print a table, not a ratio against a target: the last line each prints
LAST_LINE = {
    "cache_exactness.py": re.compile(r"\| dist T=4 \| 3 of 10 \| .+ \|"),
    "shard_mixing.py": re.compile(r"uniform shuffle \(expected\) +\d+\.\d\d"),
    "cache_memory.py": re.compile(r"cache loaded whole: peak RSS .+ median [\d.]+ MiB of [\d., ]+ \(in memory: True\)"),
}
NEEDS = {"vs_torchdistill.py": "torchdistill"}  # the optional `bench` extra


@pytest.mark.slow  # each a fresh process: about 5-20 s on two shared CPU cores
@pytest.mark.parametrize("bench", BENCHES)
def test_every_bench_runs_in_its_tiny_mode(bench):
    if bench in NEEDS and importlib.util.find_spec(NEEDS[bench]) is None:
        pytest.skip(f"{NEEDS[bench]} is not installed (the bench extra)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(BENCH / bench), "--tiny"], capture_output=True, text=True, env=env,
                          cwd=BENCH.parent, timeout=600)  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout[-2000:] + done.stderr[-4000:]
    last = [line for line in done.stdout.splitlines() if line.strip()][-1]
    assert LAST_LINE.get(bench, RATIO).fullmatch(last.strip()), done.stdout[-2000:]


@pytest.mark.slow  # about 15 s on two shared CPU cores: 40 small JPEGs, ResNet-18 at 64 px, 1 worker each
def test_gpu_stream_part_runs_in_its_tiny_mode_and_ends_with_its_ratio(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(BENCH / "gpu.py"), str(tmp_path), "--tiny", "--parts", "stream"],
                          capture_output=True, text=True, env=env, cwd=BENCH.parent, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    part = done.stdout.split("== stream ==\n", 1)[1].split("== summary ==", 1)[0]
    lines = [line for line in part.splitlines() if line.strip()]
    what = "training images/s kdtool --loader stream / timm create_loader"
    assert re.fullmatch(rf"ratio {what} = \d+\.\d{{3}} \(target ≥ 1\.0: (met|NOT met)\)", lines[-1]), lines[-5:]
    figures = ["training images/s, kdtool: ", "training images/s, timm: ", "data-only images/s, kdtool: ",
               "data-only images/s, timm: ", "host memory per worker, kdtool: peak resident largest ",
               "batch decode_jpeg(device=cpu) + kdtool's crop, data-only images/s: "]  # fmt: skip
    if len(os.sched_getaffinity(0)) >= 2:  # the tiny scan's 2 workers, dropped on a single core
        figures.append("data-only images/s, kdtool --workers 2: ")
    for figure in figures:
        assert any(line.startswith(figure) for line in lines), (figure, lines)
