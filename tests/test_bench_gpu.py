"""bench/gpu.py keeps working without a GPU: its --tiny CPU dry run runs every part on a few batches."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("throughput", "overhead", "lls-100", "lls-1000", "llsst-kd", "cache-kd", "sparse-q", "torchrun")


def sections(stdout: str) -> dict[str, list[str]]:
    """The lines each part printed, by part name (``== NAME ==`` starts a part's output)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        header = re.fullmatch(r"== (.+?) ==", line)
        if header:
            current = found.setdefault(header.group(1), [])
        elif current is not None:
            current.append(line)
    return found


@pytest.mark.slow  # about 75 s on two shared CPU cores: eight processes, ResNet-18/50 on a few batches, torchrun
def test_tiny_dry_run_runs_every_part_and_writes_the_summary(tmp_path):
    out = tmp_path / "gpu"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), str(out), "--tiny"],
        capture_output=True, text=True, env={**env, "PYTHON": sys.executable}, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    printed = sections(done.stdout)
    assert list(printed)[: len(PARTS)] == list(PARTS)
    for part in PARTS:
        lines = [line for line in printed[part] if line.strip()]
        assert lines and lines[-1].startswith("ratio "), (part, lines[-5:])
    assert re.search(r"\d+ images/s", "\n".join(printed["throughput"]))
    # issue #33: compile modes with their dynamo counts, the overhead part's profiles, the fused LLS loss checked
    assert [line for line in printed["throughput"] if "compile reduce-overhead: dynamo: " in line]
    assert printed["throughput"][-1].startswith("ratio images/s best compiled (")
    for side in ("kdtool epoch", "bare loop epoch"):
        assert [
            line
            for line in printed["overhead"]
            if line.startswith(f"profile {side}: ") and "operators per step" in line
        ]
    for part in ("lls-100", "lls-1000"):
        assert [line for line in printed[part] if line.startswith("fused LLS loss, eager on cpu") and "float64" in line]
    # the teacher cache does not exist yet: the part says so instead of failing
    if "skipped" in printed["cache-kd"][-1]:
        assert "kdtool cache-teacher" in printed["cache-kd"][-1]
    assert "2 processes; target ≤ 0: met" in printed["torchrun"][-1]

    assert sorted(p.name for p in out.iterdir()) == ["gpu.log", "summary.md"]
    summary = (out / "summary.md").read_text()
    assert "- GPU: " in summary and "- torch: " in summary and "--tiny" in summary
    for part in PARTS:
        row = next(line for line in summary.splitlines() if line.startswith(f"| {part} |"))
        assert "| ok |" in row or "| skipped |" in row, row
        assert "ratio " in row
    assert (out / "gpu.log").read_text().splitlines()[-1].startswith("total ")


def test_without_a_gpu_the_full_run_refuses_and_points_to_tiny(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the full run would measure")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), str(tmp_path / "gpu")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--tiny" in done.stderr and "Traceback" not in done.stderr


def test_the_profile_figures_count_kernels_launches_syncs_and_the_gpu_idle_time():
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_profile import busy_time, trace_figures

    assert busy_time([(0, 10), (5, 12), (20, 25), (21, 22)]) == 17
    events = [
        {"cat": "kernel", "ts": 0, "dur": 4}, {"cat": "kernel", "ts": 2, "dur": 4},
        {"cat": "kernel", "ts": 10, "dur": 2},
        {"cat": "cuda_runtime", "name": "cudaLaunchKernel"}, {"cat": "cuda_runtime", "name": "cudaLaunchKernel"},
        {"cat": "cuda_runtime", "name": "cudaStreamSynchronize"}, {"cat": "gpu_memcpy", "ts": 0, "dur": 1},
        {"cat": "cpu_op", "name": "aten::add"},
    ]  # fmt: skip
    figures = trace_figures(events, steps=2)
    assert figures["kernels per step"] == 1.5 and figures["launches per step"] == 1.0
    assert figures["synchronisations in the epoch"] == 1 and figures["copies in the epoch"] == 1
    # kernels cover 0..6 and 10..12 of a 12 µs span: 8 µs busy, 4 µs idle, over 2 steps
    assert figures["GPU busy per step (ms)"] == 4e-3 and figures["GPU idle per step (ms)"] == 2e-3
    assert figures["operators per step"] == 0.5
