"""kdtool on a GPU: every GPU figure of bench/README.md in one call, under 8 minutes on one H200.

Parts, each run in its own process (a part that fails, hangs or runs out of memory costs only its
own figure) and each ending, like every bench here, with its ratio as its last line:

  throughput  ResNet-18 training images/s through kdtool's engine on 3×32×32 Fashion-MNIST (resized
              and replicated to three channels on the device): fp32 eager vs --amp bf16
              --channels-last (target: best ≥ 2× fp32 eager), then --amp fp16 (GradScaler) and --compile
              in torch.compile's default and reduce-overhead modes (target: compiled ≥ 1.1× bf16 eager)
  overhead    kdtool epoch / a bare hand-written GPU loop, same ResNet-18, batch, bf16 + channels-last
              (target ≤ 1.03), and both epochs' profiles (kernels, launches, GPU busy and idle per step)
  lls-100     LLS step / LS step, ResNet-18, K = 100 (target ≤ 1.01); the fused LLS loss checked against
              the eager one and a float64 reference
  lls-1000    the same at K = 1000
  llsst-kd    LLS-ST epoch / KD epoch, ResNet-18 student, frozen ResNet-50 teacher (target ≤ 0.4)
  cache-kd    KD from a teacher cache / KD from the live teacher, through the CLI; skipped (saying so)
              while `kdtool cache-teacher` does not exist, and run as soon as it does
  sparse-q    a sparse top-N Q (K = 21841, N = 32) / the dense Q as an LLS-ST target on the device:
              memory held (host + device) and time per batch of 1024 (target: memory ≤ 0.01)
  torchrun    `torchrun --nproc-per-node <all GPUs>` (NCCL) of a short LLS run: it completes and the
              ranks agree (kdtool's "N processes; largest parameter difference from rank 0: X")
  stream      ResNet-50 training on 20,000 generated JPEGs fed by kdtool's --loader stream / by
              timm.data.create_loader, same workers and crop (bench/gpu_stream.py; target ≥ 1.0)

Every part prints its inputs and absolute figures (images/s, ms, MiB) before its ratio. The run
writes two files into OUT_DIR: summary.md (GPU name, torch version, every ratio and figure) and
gpu.log (everything printed); run folders and other scratch live in a temporary folder, removed at
the end. It exits non-zero if any part failed, ran out of time or was not reached within --budget.

    bash bench/gpu.sh OUT_DIR                 # on a GPU: the figures (about 5 minutes, at most --budget)
    bash bench/gpu.sh OUT_DIR --tiny          # CPU dry run: every part on a few batches (torchrun: gloo)
    .venv/bin/python bench/gpu.py OUT_DIR [--tiny] [--parts throughput,overhead,...] [--budget SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# the kdtool the parts measure: this checkout's, or another's (KDTOOL_SOURCE=folder holding its kdtool/), e.g. the
# commit before a change, measured by the same script in the same call
KDTOOL = Path(os.environ.get("KDTOOL_SOURCE", ROOT)).resolve()

# name -> the most seconds the part may take on a GPU (the whole run also stops at --budget)
PARTS: dict[str, int] = {
    "throughput": 240,
    "overhead": 90,
    "lls-100": 60,
    "lls-1000": 60,
    "llsst-kd": 90,
    "cache-kd": 150,
    "sparse-q": 120,
    "torchrun": 150,
    "stream": 150,
}
GPU_BUDGET_S = 420  # 7 minutes: the 8, less a margin for the device call's own start and copies
TINY_BUDGET_S = 900  # a CPU shared with others can be several times slower than a quiet one


@dataclass(frozen=True)
class Sizes:
    """What each part runs on: realistic for an H200 by default, a few batches on a CPU with --tiny."""

    model: str = "resnet18"
    teacher: str = "resnet50"
    batch: int = 512  # throughput, overhead, llsst-kd
    limit: int = 30720  # training images a timed epoch sees (60 batches of 512: no partial batch to recompile)
    repeats: int = 3
    overhead_repeats: int = 5
    warmup: int = 1
    lls_batch: int = 128
    lls_steps: int = 40  # steps per timed run
    lls_repeats: int = 5
    kd_limit: int = 16384
    sparse_classes: int = 21841
    sparse_topn: int = 32
    sparse_batch: int = 1024
    sparse_repeats: int = 20
    ddp_limit: int = 8192
    ddp_batch: int = 256
    cache_limit: int = 8192
    cache_epochs: int = 3
    cache_test: int = 256  # test images each cache-kd run evaluates after every epoch


GPU_SIZES = Sizes()
TINY_SIZES = Sizes(batch=8, limit=16, repeats=1, overhead_repeats=1, lls_batch=8, lls_steps=2, lls_repeats=1,
                   kd_limit=16, sparse_classes=2000, sparse_topn=32, sparse_batch=64, sparse_repeats=3,
                   ddp_limit=64, ddp_batch=16, cache_limit=32, cache_epochs=2, cache_test=16)  # fmt: skip


# =================================================================================================
# The run: one process per part, a summary at the end
# =================================================================================================
@dataclass
class PartResult:
    name: str
    status: str = "not run"  # ok, skipped, failed, timed out, not run (no time left)
    seconds: float = 0.0
    ratio_lines: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    error: str = ""


class Log:
    """Prints to stdout and to OUT_DIR/gpu.log alike."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "w")  # closed at the end of the run

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def run_part(name: str, scratch: Path, tiny: bool, timeout: float, log: Log) -> PartResult:
    """Run ``gpu.py --part NAME`` in its own process group, echoing and logging its output."""
    result = PartResult(name)
    figures_file = scratch / f"{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", name, "--json", str(figures_file),
           "--work", str(scratch / name)]  # fmt: skip
    if tiny:
        cmd.append("--tiny")
    path = os.pathsep.join([str(KDTOOL), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    if tiny:
        env["OMP_NUM_THREADS"] = "1"
    lines: list[str] = []
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=ROOT, start_new_session=True)  # fmt: skip

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log(line.rstrip("\n"))
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the part and whatever it started (torchrun's workers)
        code = proc.wait()
        result.status = "timed out"
        result.error = f"stopped after {timeout:.0f} s (its share of the time budget)"
    reader.join(timeout=10)
    result.seconds = time.perf_counter() - start
    result.ratio_lines = [line for line in lines if line.startswith("ratio ")]
    if figures_file.is_file():
        result.figures = json.loads(figures_file.read_text())
    last = next((line for line in reversed(lines) if line.strip()), "")
    if result.status == "timed out":
        pass
    elif code != 0:
        result.status = "failed"
        result.error = f"exit code {code}: {last}"
    elif not last.startswith("ratio "):
        result.status = "failed"
        result.error = f"its last line is not a ratio: {last!r}"
    else:
        result.status = "skipped" if "skipped" in last else "ok"
    if result.status in ("failed", "timed out"):
        log(f"part {name} {result.status}: {result.error}")
    return result


def environment() -> dict[str, str]:
    """Facts that make the figures comparable: GPU, torch, CUDA, cuDNN, Python, kdtool's commit."""
    import platform

    import torch

    facts = {"torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        names = sorted({torch.cuda.get_device_name(i) for i in range(count)})
        facts["GPU"] = f"{', '.join(names)} × {count}"
        facts["CUDA"] = str(torch.version.cuda)
        facts["cuDNN"] = str(torch.backends.cudnn.version())
        # what "fp32" means on this GPU with torch's defaults, which kdtool keeps
        facts["fp32 math"] = (f"cuDNN TF32 {'on' if torch.backends.cudnn.allow_tf32 else 'off'}, matmul precision "
                              f"{torch.get_float32_matmul_precision()}")  # fmt: skip
    else:
        facts["GPU"] = "none (CPU)"
    facts["CPU threads"] = str(torch.get_num_threads())
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()  # fmt: skip
        if commit and subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                     capture_output=True, text=True, timeout=10).stdout.strip():  # fmt: skip
            commit += " (with uncommitted changes)"
    # a copy of the tree without .git (a device machine's): the caller can name the commit
    facts["kdtool commit"] = os.environ.get("KDTOOL_COMMIT") or commit or "unknown (no git; set KDTOOL_COMMIT)"
    if KDTOOL != ROOT:
        facts["kdtool measured"] = f"{KDTOOL} (KDTOOL_SOURCE)"
    return facts


def write_summary(path: Path, facts: dict[str, str], results: list[PartResult], tiny: bool, total: float,
                  budget: float) -> None:  # fmt: skip
    mode = "`--tiny`: CPU dry run, a few batches a part (checks the script, measures nothing)" if tiny else "GPU"
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    lines = ["# kdtool GPU figures (bench/gpu.py)", "", f"- date: {date}", f"- mode: {mode}"]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    lines += [f"- total: {total:.0f} s (budget {budget:.0f} s)", "",
              "| part | status | seconds | last line (ratio) |", "|---|---|---|---|"]  # fmt: skip
    for r in results:
        last = r.ratio_lines[-1] if r.ratio_lines else (r.error or "—")
        lines.append(f"| {r.name} | {r.status} | {r.seconds:.0f} | {last.replace('|', '/')} |")
    lines.append("")
    for r in results:
        if not (r.figures or r.error or len(r.ratio_lines) > 1):
            continue
        lines += [f"## {r.name}", ""]
        lines += [f"- {key}: {value}" for key, value in r.figures.items()]
        lines += [f"- {line}" for line in r.ratio_lines[:-1]]
        if r.error:
            lines.append(f"- error: {r.error}")
        lines.append("")
    path.write_text("\n".join(lines))


def main_run(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    import torch

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.tiny and not torch.cuda.is_available():
        print("no CUDA device here: the figures need a GPU (bash bench/gpu.sh OUT_DIR --tiny runs the CPU dry run)",
              file=sys.stderr)  # fmt: skip
        return 2
    names = list(PARTS) if args.parts is None else [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        print(f"unknown part {unknown[0]!r}: choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    budget = args.budget if args.budget is not None else (TINY_BUDGET_S if args.tiny else GPU_BUDGET_S)
    log = Log(out / "gpu.log")
    start = time.perf_counter()
    deadline = start + budget
    facts = environment()
    log(" · ".join(f"{k} {v}" for k, v in facts.items()))
    scratch = Path(tempfile.mkdtemp(prefix="kdtool-gpu-bench-"))
    results = []
    try:
        for name in names:
            left = deadline - time.perf_counter()
            if left < 10:
                results.append(PartResult(name, error=f"no time left in the {budget:.0f} s budget"))
                log(f"== {name}: not run, no time left in the {budget:.0f} s budget ==")
                continue
            log(f"== {name} ==")
            cap = PARTS[name] * (3 if args.tiny else 1)
            results.append(run_part(name, scratch, args.tiny, min(cap, left), log))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    total = time.perf_counter() - start
    write_summary(out / "summary.md", facts, results, args.tiny, total, budget)
    log("== summary ==")
    for r in results:
        log(f"{r.name}: {r.status}, {r.seconds:.0f} s: {(r.ratio_lines or [r.error])[-1]}")
    bad = [r.name for r in results if r.status not in ("ok", "skipped")]
    if bad:
        log(f"parts not completed: {', '.join(bad)}")
    log(f"total {total:.0f} s; summary written to {out / 'summary.md'}")
    log.file.close()
    return 1 if bad else 0


# =================================================================================================
# Shared by the parts (each runs in its own process)
# =================================================================================================
class Part:
    """One part's process: its device, sizes, figures for the summary, and clock."""

    def __init__(self, tiny: bool, figures_path: Path | None, work: Path) -> None:
        import torch

        self.tiny = tiny
        self.sizes = TINY_SIZES if tiny else GPU_SIZES
        self.device = torch.device("cpu" if tiny else "cuda")
        if tiny:
            torch.set_num_threads(1)  # as every bench here under contention
        # one process measures on one clock: the GPU's work is asynchronous (wall time, synchronised);
        # a CPU part follows bench/README.md (CPU time)
        self.clock = "wall" if self.device.type == "cuda" else "cpu"
        self.figures: dict[str, str] = {}
        self.figures_path = figures_path
        self.work = work

    def note(self, key: str, value: object) -> None:
        self.figures[key] = str(value)

    def save(self) -> None:
        if self.figures_path is not None:
            self.figures_path.parent.mkdir(parents=True, exist_ok=True)
            self.figures_path.write_text(json.dumps(self.figures, indent=1))

    def machine(self) -> dict[str, object]:
        import torch
        from common import machine

        facts = machine()
        facts["device"] = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return facts

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timing(self, name: str):
        return device_timing(name, self)


def device_timing(name: str, part: Part):
    """A :class:`common.Timing` whose runs end synchronised with the device and record its peak memory."""
    import torch
    from common import MIB, Timing

    @dataclass
    class DeviceTiming(Timing):
        device_peaks_mib: list[float] = field(default_factory=list)

        def run(self, fn: Callable[[], object]) -> None:
            if part.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(part.device)

            def synced() -> None:
                fn()
                part.sync()

            super().run(synced)
            if part.device.type == "cuda":
                self.device_peaks_mib.append(torch.cuda.max_memory_allocated(part.device) / MIB)

        def line(self, scale: float = 1.0, unit: str = "s") -> str:
            text = super().line(scale, unit)
            return text + (f"; peak GPU memory {max(self.device_peaks_mib):.0f} MiB" if self.device_peaks_mib else "")

    return DeviceTiming(name)


def print_ratio_at_least(what: str, ratio: float, target: float) -> None:
    """:func:`common.print_ratio` for a figure that should be large (a speed-up)."""
    verdict = "met" if ratio >= target else "NOT met"
    print(f"ratio {what} = {ratio:.3f} (target ≥ {target}: {verdict})")


def fashion_mnist_32(part: Part, limit: int):
    """Fashion-MNIST's training images (seeded ``limit`` subset), resized on the device to 32×32 and
    replicated to three channels: CIFAR-shaped real images, in memory on the device as uint8."""
    import torch
    import torch.nn.functional as F
    from common import fashion_mnist

    from kdtool.data import Dataset, Split

    base = fashion_mnist(limit).limited(limit, 1024, seed=0)

    def resize(split: Split) -> Split:
        x = split.inputs.to(part.device).float()
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).round_().clamp_(0, 255)
        return Split(x.to(torch.uint8).expand(-1, 3, -1, -1).contiguous(), split.labels.to(part.device))

    info = replace(base.info, name="fashion-mnist-32", channels=3, image_size=32, mean=base.info.mean * 3,
                   std=base.info.std * 3)  # fmt: skip
    return Dataset(info, resize(base.train), resize(base.test))


@contextlib.contextmanager
def compile_options(**options: str | None) -> Iterator[None]:
    """Within the block, ``nn.Module.compile()`` (what kdtool's ``--compile`` calls) gets ``options`` (those not
    None), over what its caller gives: the bench chooses the mode it measures.

    --tiny runs TorchDynamo with its ``eager`` backend: the graph capture kdtool's --compile relies on
    is exercised, without inductor's minutes of C++ compiling on a CPU."""
    from torch import nn

    given = {key: value for key, value in options.items() if value is not None}
    original = nn.Module.compile

    def patched(self, *args, **kwargs):
        return original(self, *args, **{**kwargs, **given})

    nn.Module.compile = patched
    try:
        yield
    finally:
        nn.Module.compile = original


def engine_epochs(part: Part, dataset, model, target, smoothing: str, batch: int, amp: str, channels_last: bool,
                  compile: bool = False, compile_mode: str = "default"):  # fmt: skip
    """:class:`common.KdtoolEpochs` on the part's device with kdtool's speed options, prepared in the
    order ``kdtool train-teacher`` prepares them (pipeline._setup): accel resolved, model moved and put in
    its memory format, target moved, model compiled, loaders, engine."""
    from common import KdtoolEpochs, kdtool_config

    from kdtool.training.accel import maybe_compile, resolve_accel

    cfg = kdtool_config(batch, smoothing)
    cfg.device = str(part.device)
    cfg.amp, cfg.channels_last, cfg.compile = amp, channels_last, compile
    accel = resolve_accel(amp, channels_last, part.device, print)
    accel.prepare(model.to(part.device))
    target.to(part.device)
    if compile:
        with compile_options(backend="eager" if part.tiny else None, mode=compile_mode):
            maybe_compile(model, part.device, print)
    epochs = KdtoolEpochs(dataset, model, target, cfg)
    epochs.trainer.accel = accel  # common.KdtoolEpochs builds the engine for fp32; these are the run's options
    epochs.trainer.scaler = accel.grad_scaler()
    return epochs


def images_per_second(images: int, timing, clock: str = "wall") -> float:
    return images / timing.median(clock)


# =================================================================================================
# The parts
# =================================================================================================
def part_throughput(part: Part) -> None:
    import torch
    from common import interleave
    from torch._dynamo.utils import counters as dynamo_counters

    from kdtool.losses import OneHot
    from kdtool.models.registry import build_model

    s = part.sizes
    dataset = fashion_mnist_32(part, s.limit)
    n = len(dataset.train)
    torch.manual_seed(0)
    initial = build_model(s.model, 10, 3, 32)
    configs = {
        "fp32 eager": ("none", False),
        "bf16 + channels-last": ("bf16", True),
    }
    runs = {name: engine_epochs(part, dataset, copy.deepcopy(initial), OneHot(), "onehot", s.batch, amp, cl)
            for name, (amp, cl) in configs.items()}  # fmt: skip
    timings = {name: part.timing(name + " epoch") for name in runs}
    a, b = timings["bf16 + channels-last"], timings["fp32 eager"]
    with runs["fp32 eager"], runs["bf16 + channels-last"]:
        interleave(a, runs["bf16 + channels-last"], b, runs["fp32 eager"], s.repeats, s.warmup)
    inputs = {
        "bench": "throughput (GPU)",
        **part.machine(),
        "model": f"{s.model} (CIFAR stem), 1-hot",
        "data": f"fashion-mnist resized to 3×32×32 on the device, {n} images an epoch",
        "batch size": s.batch,
        "augmentation": "random crop, padding 4",
        "repeats": s.repeats,
    }
    for key, value in inputs.items():
        print(f"{key}: {value}")
    speed = {name: images_per_second(n, t) for name, t in timings.items()}
    for name, t in timings.items():
        print(t.line())
        print(f"{name}: {speed[name]:.0f} images/s")
        part.note(name, f"{speed[name]:.0f} images/s")
    # a first ratio now: if compiling runs out of time, this one is still there
    print_ratio_at_least("images/s bf16 + channels-last / fp32 eager", speed["bf16 + channels-last"] /
                         speed["fp32 eager"], 2.0)  # fmt: skip

    eager = speed["bf16 + channels-last"]
    for name, amp, compile_mode in LATER_VARIANTS:
        if amp == "fp16" and part.device.type != "cuda":
            print(f"{name}: skipped (fp16 autocast needs a CUDA device)")
            continue
        if compile_mode is not None:
            dynamo_counters.clear()  # each compiled variant's own graphs and breaks
        run = engine_epochs(part, dataset, copy.deepcopy(initial), OneHot(), "onehot", s.batch, amp, True,
                            compile=compile_mode is not None, compile_mode=compile_mode)  # fmt: skip
        timings[name], first = timed_after_warmup(part, run, name + " epoch")
        speed[name] = images_per_second(n, timings[name])
        print(timings[name].line())
        compiling = f"; first {s.warmup} epoch(s), compiling included: {first:.1f} s" if compile_mode else ""
        print(f"{name}: {speed[name]:.0f} images/s ({speed[name] / eager:.3f}× bf16 eager){compiling}")
        part.note(name, f"{speed[name]:.0f} images/s{compiling}")
        if compile_mode is not None:
            print(f"{name}: {dynamo_counts()}")
    best = max(speed, key=speed.get)
    part.note("best", best)
    print_ratio_at_least(f"images/s best ({best}) / fp32 eager", speed[best] / speed["fp32 eager"], 2.0)
    compiled = [name for name, _, mode in LATER_VARIANTS if mode is not None and name in speed]
    fastest = max(compiled, key=speed.get)
    part.note("compiled / eager", f"{fastest}: {speed[fastest] / eager:.3f}")
    print_ratio_at_least(f"images/s best compiled ({fastest}) / bf16 + channels-last eager", speed[fastest] / eager,
                         1.1)  # fmt: skip


# (name, --amp, compile mode or None for eager): timed one after the other, after the interleaved pair
LATER_VARIANTS = (
    ("fp16 + channels-last (GradScaler)", "fp16", None),
    ("bf16 + channels-last + compile", "bf16", "default"),
    ("bf16 + channels-last + compile reduce-overhead", "bf16", "reduce-overhead"),
)


def timed_after_warmup(part: Part, run, name: str):
    """``run``'s epochs timed after its warm-up epochs; the timing and the warm-up's seconds (compiling, for a
    compiled run)."""
    timing = part.timing(name)
    with run:
        start = time.perf_counter()
        for _ in range(part.sizes.warmup):
            run()
        part.sync()
        first = time.perf_counter() - start
        for _ in range(part.sizes.repeats):
            timing.run(run)
    return timing, first


def dynamo_counts() -> str:
    """What TorchDynamo did in this process so far: graphs, graph breaks, recompilations."""
    from torch._dynamo.utils import counters

    breaks = sum(counters["graph_break"].values())
    stats = counters["stats"]
    breaks_named = ", ".join(list(counters["graph_break"])[:3]) or "none"
    recompiles = sum(counters["recompiles"].values()) if counters["recompiles"] else 0
    return (f"dynamo: {stats.get('unique_graphs', 0)} graphs, {breaks} graph breaks ({breaks_named}), "
            f"{stats.get('calls_captured', 0)} calls captured, recompilations {recompiles}")  # fmt: skip


def bare_epoch(model, optimizer, images, labels, batch_size: int, generator, mean, std, amp_dtype,
               channels_last: bool, part: Part) -> None:  # fmt: skip
    """One epoch of the plainest GPU loop that does the same work as kdtool's: shuffle on the device,
    slice, random crop (padding 4), normalise, channels-last, autocast, forward, cross-entropy, backward,
    step; one synchronisation at the end."""
    import torch
    import torch.nn.functional as F

    from kdtool.data.loader import random_crop

    order = torch.randperm(len(labels), generator=generator, device=images.device)
    model.train()
    for start in range(0, len(labels), batch_size):
        idx = order[start : start + batch_size]
        x = random_crop(images[idx], 4, generator).float().div_(255.0).sub_(mean).div_(std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = F.cross_entropy(model(x), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    part.sync()


def part_overhead(part: Part) -> None:
    import torch
    from common import interleave, report
    from gpu_profile import figures_line, profile_epoch

    from kdtool.losses import OneHot
    from kdtool.models.registry import build_model

    s = part.sizes
    dataset = fashion_mnist_32(part, s.limit)
    n = len(dataset.train)
    torch.manual_seed(0)
    model = build_model(s.model, 10, 3, 32)
    kdtool_epoch = engine_epochs(part, dataset, copy.deepcopy(model), OneHot(), "onehot", s.batch, "bf16", True)
    model.to(part.device).to(memory_format=torch.channels_last)  # both sides start from the same weights
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator(device=part.device).manual_seed(0)
    mean, std = (torch.tensor(v, device=part.device).view(1, -1, 1, 1) for v in (dataset.info.mean, dataset.info.std))
    images, labels = dataset.train.inputs, dataset.train.labels
    if part.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as kdtool sets it on a GPU

    def bare() -> None:
        bare_epoch(model, optimizer, images, labels, s.batch, generator, mean, std, torch.bfloat16, True, part)

    a, b = part.timing("kdtool epoch"), part.timing("bare loop epoch")
    with kdtool_epoch:
        interleave(a, kdtool_epoch, b, bare, s.overhead_repeats, s.warmup)
        steps = -(-n // s.batch)
        profiles = {name: profile_epoch(lambda fn=fn: (fn(), part.sync()), steps, part.device.type == "cuda")
                    for name, fn in (("kdtool epoch", kdtool_epoch), ("bare loop epoch", bare))}  # fmt: skip
    for name, figures in profiles.items():  # printed once the run's live display has let go of stdout
        print(figures_line(name, figures))
        part.note(f"profile {name}", "; ".join(f"{k} {v:.3g}" for k, v in figures.items()))
    speed = {t.name: images_per_second(n, t) for t in (a, b)}
    for name, value in speed.items():
        part.note(name, f"{value:.0f} images/s")
    inputs = {
        "bench": "overhead (GPU)",
        **part.machine(),
        "model": f"{s.model} (CIFAR stem)",
        "data": f"fashion-mnist resized to 3×32×32 on the device, {n} images",
        "batch size": s.batch,
        "speed options": "--amp bf16 --channels-last (both sides)",
        "augmentation": "random crop, padding 4",
        "repeats": s.overhead_repeats,
        **{f"{name} images/s": f"{value:.0f}" for name, value in speed.items()},
    }
    report(inputs, a, b, 1.03, clock=part.clock)


def loss_ms(part: Part, target, logits, labels, calls: int) -> float:
    """Mean time of the target's forward and backward alone, synchronised (the part LLS adds to)."""
    logits = logits.detach().requires_grad_()
    for _ in range(3):
        target(logits, labels).backward()
    part.sync()
    start = time.perf_counter()
    for _ in range(calls):
        target(logits, labels).backward()
    part.sync()
    return (time.perf_counter() - start) / calls * 1e3


def part_lls(part: Part, k: int) -> None:
    import torch
    from common import interleave, report, synthetic_images

    from kdtool.losses import LabelSmoothing, LearnableLabelSmoothing
    from kdtool.models.registry import build_model

    s = part.sizes
    dataset = synthetic_images(s.lls_batch * s.lls_steps, k)
    runs = {}
    torch.manual_seed(0)
    initial = build_model(s.model, k, 3, 32)
    for name, target in (("lls", LearnableLabelSmoothing(k, 0.1)), ("ls", LabelSmoothing(0.1))):
        runs[name] = engine_epochs(part, dataset, copy.deepcopy(initial), target, name, s.lls_batch, "bf16", True)
    a, b = part.timing(f"LLS {s.lls_steps} steps"), part.timing(f"LS {s.lls_steps} steps")
    with runs["lls"], runs["ls"]:
        interleave(a, runs["lls"], b, runs["ls"], s.lls_repeats, s.warmup)
    logits = torch.randn(s.lls_batch, k, device=part.device)
    labels = torch.randint(0, k, (s.lls_batch,), device=part.device)
    calls = 5 if part.tiny else 200
    lls_ms = loss_ms(part, LearnableLabelSmoothing(k, 0.1).to(part.device), logits, labels, calls)
    ls_ms = loss_ms(part, LabelSmoothing(0.1), logits, labels, calls)
    step_ms = {t.name: t.median(part.clock) / s.lls_steps * 1e3 for t in (a, b)}
    for name, value in step_ms.items():
        per_step = name.replace(f"{s.lls_steps} steps", "step")
        part.note(per_step, f"{value:.2f} ms ({s.lls_batch / value * 1e3:.0f} images/s)")
    part.note("loss forward+backward alone", f"LLS {lls_ms:.3f} ms, LS {ls_ms:.3f} ms")
    inputs = {
        "bench": f"lls overhead, K={k} (GPU)",
        **part.machine(),
        "model": f"{s.model} (CIFAR stem)",
        "data": f"random 3×32×32 images, K={k}",
        "batch size": s.lls_batch,
        "speed options": "--amp bf16 --channels-last (both sides)",
        "steps per run": s.lls_steps,
        "repeats": s.lls_repeats,
        **{f"{name}: images/s": f"{s.lls_batch / value * 1e3:.0f}" for name, value in step_ms.items()},
        "loss forward+backward alone": f"LLS {lls_ms:.3f} ms, LS {ls_ms:.3f} ms",
        "bound on the ratio from the loss alone": f"{1 + (lls_ms - ls_ms) / step_ms[b.name]:.4f}",
    }
    fused_lls_check(part, k)
    report(inputs, a, b, 1.01, clock=part.clock)


def fused_lls_check(part: Part, k: int) -> None:
    """The LLS loss as the device runs it (compiled into fused kernels on a GPU) against the eager function,
    and both against a float64 autograd reference of ½ Σ (t − p)(log t − log p); raises past 1e-6 on the loss."""
    import torch
    import torch.nn.functional as F

    try:
        from kdtool.losses import symkl
        from kdtool.losses.symkl import fused_for, loss_and_gradients
    except ImportError:  # a kdtool from before the fused loss (KDTOOL_SOURCE)
        print("fused LLS loss: not in this kdtool")
        return
    g = torch.Generator(device=part.device).manual_seed(0)
    b, alpha = part.sizes.lls_batch, 0.1
    logits = torch.randn(b, k, device=part.device, generator=g) * 3
    rows = torch.randn(b, k, device=part.device, generator=g) * 2
    labels = torch.randint(0, k, (b,), device=part.device, generator=g)
    fn = fused_for(part.device)
    got, eager = fn(logits, rows, labels, alpha), loss_and_gradients(logits, rows, labels, alpha)
    how = "eager" if fn is loss_and_gradients or "failed" in symkl._COMPILED else "compiled"
    z, r = logits.double().requires_grad_(), rows.double().requires_grad_()
    log_p = F.log_softmax(z, 1)
    t = (1 - alpha) * F.one_hot(labels, k).double() + alpha * F.softmax(r, 1)
    loss = 0.5 * ((t - log_p.exp()) * (t.log() - log_p)).sum(1).mean()
    reference = (loss, *torch.autograd.grad(loss, [z, r]))

    def relative(x, y) -> float:
        return ((x.double() - y.double()).abs().max() / y.double().abs().max()).item()

    names = ("loss", "∂/∂logits", "∂/∂Q rows")
    to_eager = [relative(x, y) for x, y in zip(got, eager, strict=True)]
    print(f"fused LLS loss, {how} on {part.device.type}, K={k}, B={b}: relative difference to the eager function "
          + ", ".join(f"{n} {e:.1e}" for n, e in zip(names, to_eager, strict=True))
          + "; error against float64 (this / eager): "
          + ", ".join(f"{n} {relative(x, ref):.1e} / {relative(y, ref):.1e}"
                      for n, x, y, ref in zip(names, got, eager, reference, strict=True)))  # fmt: skip
    part.note("fused LLS loss", f"{how}; loss relative difference to eager {to_eager[0]:.1e}")
    if to_eager[0] > 1e-6:
        raise RuntimeError(f"the {how} LLS loss differs from the eager one by {to_eager[0]:.2e} relative (> 1e-6)")


def part_llsst_kd(part: Part) -> None:
    import torch
    from common import interleave, report

    from kdtool.losses.kd import KnowledgeDistillation, SubstituteTeacher
    from kdtool.models.registry import build_model
    from kdtool.q.matrix import QMatrix
    from kdtool.training.accel import frozen_for_inference

    s = part.sizes
    dataset = fashion_mnist_32(part, s.kd_limit)
    n = len(dataset.train)
    names = list(dataset.info.class_names)
    torch.manual_seed(0)
    student = build_model(s.model, 10, 3, 32)
    teacher = build_model(s.teacher, 10, 3, 32)
    q = QMatrix(torch.randn(10, 10), names, 0.1, "fashion-mnist", "lls")
    llsst = engine_epochs(part, dataset, copy.deepcopy(student), SubstituteTeacher(q), "lls-st", s.batch, "bf16",
                          True)  # fmt: skip
    # as `kdtool distill --teacher RUN --channels-last` prepares its teacher: frozen, BatchNorm folded
    teacher = frozen_for_inference(teacher, channels_last=True)
    kd = engine_epochs(part, dataset, copy.deepcopy(student), KnowledgeDistillation(teacher), "kd", s.batch, "bf16",
                       True)  # fmt: skip
    a, b = part.timing("LLS-ST epoch"), part.timing(f"KD epoch ({s.teacher} teacher)")
    with llsst, kd:
        interleave(a, llsst, b, kd, s.repeats, s.warmup)
    speed = {t.name: images_per_second(n, t) for t in (a, b)}
    for name, value in speed.items():
        part.note(name, f"{value:.0f} images/s")
    inputs = {
        "bench": "llsst_vs_kd (GPU)",
        **part.machine(),
        "student": f"{s.model} (CIFAR stem)",
        "teacher": f"{s.teacher} (CIFAR stem, frozen, BatchNorm folded), KD only",
        "data": f"fashion-mnist resized to 3×32×32 on the device, {n} images",
        "batch size": s.batch,
        "speed options": "--amp bf16 --channels-last (both sides)",
        "repeats": s.repeats,
        **{f"{name} images/s": f"{value:.0f}" for name, value in speed.items()},
    }
    report(inputs, a, b, 0.4, clock=part.clock)


# -- cache / KD, through the command line ---------------------------------------------------------
def cli_command(name: str):
    """The click command of ``kdtool NAME``, or None where kdtool has no such command."""
    import typer

    from kdtool.cli import app

    return typer.main.get_command(app).commands.get(name)


def option_flag(command, *names: str) -> str | None:
    """The first long flag of the first of ``names`` (parameter names) that ``command`` takes."""
    params = {p.name: p for p in command.params}
    for name in names:
        if name in params:
            flags = [o for o in params[name].opts if o.startswith("--")]
            return flags[0] if flags else ""  # "" : a positional argument
    return None


def kdtool_cli(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "kdtool", *args]
    print("$ kdtool " + " ".join(args), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=os.environ.copy())
    if done.returncode != 0:
        raise RuntimeError(f"kdtool {args[0]} failed (exit {done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
    return done


def train_seconds(run: Path) -> list[float]:
    """The training seconds of each epoch of a run (metrics.csv's ``train_seconds``, else ``seconds``)."""
    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    key = "train_seconds" if rows and "train_seconds" in rows[0] else "seconds"
    return [float(r[key]) for r in rows]


def part_cache_kd(part: Part) -> None:
    import statistics

    from common import print_ratio

    if cli_command("train-teacher") is None:  # the check below would say nothing
        raise RuntimeError("cannot list kdtool's commands (no train-teacher among them): update cli_command")
    cache_cmd = cli_command("cache-teacher")
    if cache_cmd is None:
        print("cache / KD: skipped: `kdtool cache-teacher` is not available in this kdtool (it is not among the "
              "CLI's commands); this part runs by itself once it is")  # fmt: skip
        part.note("cache / KD", "skipped: no `kdtool cache-teacher` yet")
        print("ratio cache epoch / KD epoch: skipped (kdtool cache-teacher is not available)")
        return
    distill_cmd = cli_command("distill")
    teacher_flag = option_flag(cache_cmd, "teacher", "run", "teacher_run")
    out_flag = option_flag(cache_cmd, "out", "output")
    use_flag = option_flag(distill_cmd, *[p.name for p in distill_cmd.params if "cache" in (p.name or "")])
    if teacher_flag is None or out_flag is None or not use_flag:
        raise RuntimeError(
            f"kdtool cache-teacher exists but this bench does not know how to call it (teacher option "
            f"{teacher_flag!r}, output option {out_flag!r}, distill's cache option {use_flag!r}): update part_cache_kd"
        )
    s = part.sizes
    device = ["--device", str(part.device)]
    speed = [] if part.tiny else ["--amp", "bf16", "--channels-last"]
    data = ["--limit-train", str(s.cache_limit), "--batch-size", str(s.batch)]
    work = part.work
    timeout = 600
    teacher, cache, kd, cached = work / "teacher", work / "teacher.cache", work / "kd", work / "from-cache"
    # the teacher's weights do not change the speed: one epoch on a few images is enough
    kdtool_cli(["train-teacher", "--model", s.teacher, "--smoothing", "onehot", "--epochs", "1", "--limit-train",
                str(min(s.cache_limit, 2048)), "--limit-test", str(s.cache_test), "--batch-size", str(s.batch), *device,
                *speed, "--out", str(teacher), "--force"], timeout)  # fmt: skip
    supported = {p.name for p in cache_cmd.params}
    extra = []
    # float32: a ResNet-50 trained one epoch on a few images can have logits beyond float16's range (refused)
    wide = ["--cache-dtype", "float32"]
    for name, flags in (("limit_train", data[:2]), ("batch_size", data[2:]), ("device", device), ("cache_dtype", wide)):
        if name in supported:
            extra += flags
    args = ["cache-teacher", *([teacher_flag] if teacher_flag else []), str(teacher), out_flag, str(cache), *extra]
    if "force" in supported:
        args.append("--force")
    kdtool_cli(args, timeout)
    common_args = ["--student", s.model, "--epochs", str(s.cache_epochs), *data, "--limit-test", str(s.cache_test),
                   *device, *speed, "--force"]  # fmt: skip
    kdtool_cli(["distill", "--teacher", str(teacher), *common_args, "--out", str(kd)], timeout)
    kdtool_cli(["distill", use_flag, str(cache), *common_args, "--out", str(cached)], timeout)
    # the first epoch carries cuDNN's autotuning and warm-up: the later epochs are the figure
    kd_s, cache_s = (statistics.median(train_seconds(r)[1:] or train_seconds(r)) for r in (kd, cached))
    for name, value in (("KD epoch (live teacher)", kd_s), ("KD epoch from the cache", cache_s)):
        print(f"{name}: {value:.3f} s train time, {s.cache_limit / value:.0f} images/s")
        part.note(name, f"{value:.3f} s, {s.cache_limit / value:.0f} images/s")
    print(
        f"student {s.model}, teacher {s.teacher}, fashion-mnist {s.cache_limit} images, batch {s.batch}, "
        f"{' '.join(speed) or 'fp32'}, median of epochs 2..{s.cache_epochs} (train_seconds in metrics.csv)"
    )
    print_ratio("train time cache epoch / KD epoch", cache_s / kd_s, 0.4)


# -- sparse Q --------------------------------------------------------------------------------------
def part_sparse_q(part: Part) -> None:
    import gc

    import torch
    from common import MIB, interleave, print_ratio
    from sparse_q import held_mib, random_sparse

    from kdtool.losses.kd import SubstituteTeacher
    from kdtool.q.matrix import QMatrix

    s = part.sizes
    k, n, batch = s.sparse_classes, s.sparse_topn, s.sparse_batch
    names = [f"c{i}" for i in range(k)]

    def device_mib() -> float:
        return torch.cuda.memory_allocated(part.device) / MIB if part.device.type == "cuda" else 0.0

    def held(build) -> tuple[object, float, float]:
        """Build an LLS-ST target on the device; what holding it adds on the host and on the device."""
        gc.collect()
        before = device_mib()
        target, host = held_mib(build)
        part.sync()
        return target, host, device_mib() - before

    # touch the code paths once first: the library code a build loads would count as held
    SubstituteTeacher(QMatrix(None, names[:100], 0.1, "bench", "sparse", sparse=random_sparse(100, 8))).to(part.device)
    start = time.perf_counter()
    sparse, sparse_host, sparse_dev = held(lambda: SubstituteTeacher(
        QMatrix(None, names, 0.1, "bench", "sparse", sparse=random_sparse(k, n))).to(part.device))  # fmt: skip
    dense, dense_host, dense_dev = held(lambda: SubstituteTeacher(sparse.q.to_dense()).to(part.device))
    build_s = time.perf_counter() - start
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, k, (batch,), generator=g).to(part.device)
    logits = torch.randn(batch, k, generator=g).to(part.device)
    torch.testing.assert_close(sparse(logits, labels), dense(logits, labels), rtol=1e-4, atol=1e-5)

    def batch_peak(target) -> float:
        if part.device.type != "cuda":
            return float("nan")
        part.sync()
        base = torch.cuda.memory_allocated(part.device)
        torch.cuda.reset_peak_memory_stats(part.device)
        target(logits, labels)
        part.sync()
        return (torch.cuda.max_memory_allocated(part.device) - base) / MIB

    peaks = {name: batch_peak(t) for name, t in (("sparse", sparse), ("dense", dense))}
    a, b = part.timing("sparse LLS-ST loss"), part.timing("dense LLS-ST loss")

    def synced(target) -> Callable[[], None]:
        return lambda: (target(logits, labels), part.sync())

    interleave(a, synced(sparse), b, synced(dense), s.sparse_repeats, s.warmup)
    sparse_total, dense_total = sparse_host + sparse_dev, dense_host + dense_dev
    inputs = {
        "bench": "sparse_q (GPU)",
        **part.machine(),
        "K": k,
        "N": n,
        "batch size": batch,
        "repeats": s.sparse_repeats,
        "what is timed": "the LLS-ST loss forward of one batch (random logits B×K on the device): the dense Q's "
        "K×K log-target table lives on the device, the sparse Q builds the batch's B rows from its K×N pieces",
        "memory held, host": f"sparse {sparse_host:.1f} MiB, dense {dense_host:.1f} MiB",
        "memory held, device": f"sparse {sparse_dev:.1f} MiB, dense {dense_dev:.1f} MiB",
        "peak extra device memory of one batch": f"sparse {peaks['sparse']:.1f}, dense {peaks['dense']:.1f} MiB",
        "seconds to build both targets": f"{build_s:.1f}",
    }
    for key, value in inputs.items():
        print(f"{key}: {value}")
    print(a.line(1e3, "ms"))
    print(b.line(1e3, "ms"))
    time_ratio = a.median(part.clock) / b.median(part.clock)
    part.note("memory held (host + device)", f"sparse {sparse_total:.1f} MiB, dense {dense_total:.1f} MiB")
    part.note("time per batch", f"sparse {a.median(part.clock) * 1e3:.2f} ms, dense {b.median(part.clock) * 1e3:.2f}"
              f" ms ({part.clock}; sparse / dense {time_ratio:.3f})")  # fmt: skip
    part.note("peak extra device memory of one batch", f"sparse {peaks['sparse']:.1f}, dense {peaks['dense']:.1f} MiB")
    print(f"(time per batch sparse / dense, {part.clock}: {time_ratio:.3f})")
    print_ratio("memory sparse Q / dense Q (host + device)", sparse_total / dense_total, 0.01)


# -- torchrun ---------------------------------------------------------------------------------------
DIVERGENCE = re.compile(r"(\d+) processes; largest parameter difference from rank 0: (\S+)")


def part_torchrun(part: Part) -> None:
    import torch

    s = part.sizes
    nproc = 2 if part.tiny else max(1, torch.cuda.device_count())
    run = part.work / "ddp-run"
    device = ["--device", "cpu"] if part.tiny else ["--device", "cuda", "--amp", "bf16", "--channels-last"]
    model = "lenet5" if part.tiny else s.model
    args = ["train-teacher", "--model", model, "--smoothing", "lls", "--epochs", "2", "--limit-train",
            str(s.ddp_limit), "--limit-test", str(min(s.ddp_limit, 1024)), "--batch-size", str(s.ddp_batch), *device,
            "--out", str(run), "--force"]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "kdtool", *args]  # fmt: skip
    backend = "gloo" if part.tiny else "nccl"
    print(f"$ torchrun --standalone --nproc-per-node {nproc} -m kdtool {' '.join(args)}   ({backend})", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=PARTS["torchrun"] * 2)
    wall = time.perf_counter() - start
    tail = (done.stdout + done.stderr)[-3000:]
    if done.returncode != 0:
        raise RuntimeError(f"torchrun exited with {done.returncode}:\n{tail}")
    epochs = train_seconds(run)
    speed = s.ddp_limit / min(epochs)
    print(f"{nproc} process(es), {backend}, {model}, LLS, {s.ddp_limit} images, batch {s.ddp_batch} per process: "
          f"completed in {wall:.1f} s wall (start-up included); training epochs {', '.join(f'{e:.2f}' for e in epochs)}"
          f" s; {speed:.0f} images/s (fastest epoch, all processes together)")  # fmt: skip
    part.note("processes", f"{nproc} ({backend})")
    part.note("images/s", f"{speed:.0f} (all processes together)")
    found = DIVERGENCE.findall(done.stdout)
    if nproc == 1:
        if found:
            raise RuntimeError(f"one process, yet kdtool printed {found[-1]}")
        print("1 GPU here: torchrun starts one process, which kdtool runs as a plain run (no process group, so "
              "no NCCL and no ranks to compare); the run completed")  # fmt: skip
        part.note("ranks", "1 process: nothing to compare (NCCL needs 2 GPUs)")
        print("ratio largest parameter difference from rank 0 = 0 (1 process: nothing to compare; target ≤ 0: met)")
        return
    if not found:
        raise RuntimeError(f"kdtool printed no 'N processes; largest parameter difference' line:\n{tail}")
    count, value = found[-1]
    if int(count) != nproc:
        raise RuntimeError(f"kdtool reports {count} processes, torchrun started {nproc}")
    difference = float(value)
    part.note("largest parameter difference from rank 0", value)
    verdict = "met" if difference <= 0 else "NOT met"
    print(
        f"ratio largest parameter difference from rank 0 = {difference:.3g} ({count} processes; target ≤ 0: {verdict})"
    )


PART_FUNCTIONS: dict[str, Callable[[Part], None]] = {
    "throughput": part_throughput,
    "overhead": part_overhead,
    "lls-100": lambda part: part_lls(part, 100),
    "lls-1000": lambda part: part_lls(part, 1000),
    "llsst-kd": part_llsst_kd,
    "cache-kd": part_cache_kd,
    "sparse-q": part_sparse_q,
    "torchrun": part_torchrun,
    "stream": lambda part: __import__("gpu_stream").part_stream(part),
}


def main_part(args: argparse.Namespace) -> int:
    sys.path[:0] = [str(BENCH), str(KDTOOL)]  # common.py and sparse_q.py, as when a bench runs as a script; kdtool
    # the kdtool and torchrun processes a part starts import the same kdtool
    os.environ["PYTHONPATH"] = os.pathsep.join([str(KDTOOL), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    work = Path(args.work) if args.work else Path.cwd() / "gpu-bench-work" / args.part
    work.mkdir(parents=True, exist_ok=True)
    part = Part(args.tiny, Path(args.json) if args.json else None, work)
    try:
        PART_FUNCTIONS[args.part](part)
    finally:
        part.save()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="folder for summary.md and the parts' logs")
    parser.add_argument("--tiny", action="store_true", help="CPU dry run: every part on a few batches")
    parser.add_argument("--parts", default=None, help=f"comma list of parts (default all: {', '.join(PARTS)})")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help=f"seconds for all parts together (default {GPU_BUDGET_S}; --tiny {TINY_BUDGET_S})",
    )
    parser.add_argument("--part", choices=list(PARTS), help=argparse.SUPPRESS)  # one part, in this process
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part is not None:
        return main_part(args)
    if args.out is None:
        parser.error("give OUT_DIR, the folder for summary.md and the logs")
    return main_run(args)


if __name__ == "__main__":
    sys.exit(main())
