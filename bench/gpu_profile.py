"""Where a training epoch's time goes on a GPU, from a torch.profiler trace: per step, the kernels run, the
kernel launches, the time the GPU computes and the time it sits idle waiting for the host (the host gap), and
over the epoch the host-device synchronisations and copies. On a CPU (``--tiny``) the trace has no kernels:
the operators called per step are what compares there."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch")
# runtime calls after which the host waits for the device
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy", "cudaStreamWaitEvent")


def busy_time(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of ``(start, end)`` intervals."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def trace_figures(events: list[dict], steps: int) -> dict[str, float]:
    """The per-step figures of a Chrome trace's events (times in µs, as the trace has them)."""
    kernels = [(e["ts"], e["ts"] + e.get("dur", 0)) for e in events if e.get("cat") == "kernel"]
    runtime = [e.get("name", "") for e in events if e.get("cat") in ("cuda_runtime", "cuda_driver")]
    figures = {
        "operators per step": sum(e.get("cat") == "cpu_op" for e in events) / steps,
        "kernels per step": len(kernels) / steps,
        "launches per step": sum(name in LAUNCHES for name in runtime) / steps,
        "synchronisations in the epoch": float(sum(name in SYNCS for name in runtime)),
        "copies in the epoch": float(sum(e.get("cat") == "gpu_memcpy" for e in events)),
    }
    if kernels:
        busy = busy_time(kernels)
        span = max(end for _, end in kernels) - min(start for start, _ in kernels)
        figures["GPU busy per step (ms)"] = busy / steps / 1e3
        figures["GPU idle per step (ms)"] = (span - busy) / steps / 1e3
    return figures


def profile_epoch(fn: Callable[[], object], steps: int, cuda: bool) -> dict[str, float]:
    """Run ``fn`` (one epoch of ``steps`` steps, synchronised at its end) under torch.profiler; its figures."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        fn()
    wall = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text()).get("traceEvents", [])
    return {"wall per step under the profiler (ms)": wall / steps * 1e3, **trace_figures(events, steps)}


def figures_line(name: str, figures: dict[str, float]) -> str:
    return f"profile {name}: " + "; ".join(f"{key} {value:.3g}" for key, value in figures.items())
