"""bench/gpu.py's part ``stream``: kdtool's ``--loader stream`` against ``timm.data.create_loader`` on JPEGs.

A generated ImageFolder (20,000 JPEGs of 400-500 px, 100 classes, ImageNet-like files of about 100 KB: smooth
random gradients, finer texture and noise; written by a process pool over the cores) on local disk feeds a
ResNet-50 trained with bf16 autocast, channels-last and SGD (batch 256, random-resized crop 224 + flip),
by either loader with the same workers and the same crop:

- kdtool: the training loader ``kdtool train-teacher --data imagefolder:ROOT --loader stream`` builds
  (:func:`kdtool.workflows.pipeline.make_loaders`): per-sample decoding and crop in DataLoader workers, uint8
  batches pinned and normalised on the device;
- timm: ``create_loader(ImageDataset(ROOT/train), is_training=True)`` with timm's defaults (PIL decoding, the
  prefetcher normalising on the device), the crop's scale and ratio set to kdtool's, and no colour jitter
  (timm's default 0.4 is work kdtool does not do).

Figures: training images/s with each loader (rounds interleaved, the best of each), data-only images/s of
each (iterate, to the device, normalise, no model), kdtool's data-only images/s with other worker counts (8:
``default_workers()``'s cap before it was 16), batch JPEG decoding on the device
(``torchvision.io.decode_jpeg(device=...)``, data only, not a kdtool path) and the host memory of each
loader's workers (peak resident, VmHWM, and private). Every timed run starts by taking, without timing, the
batches the loader's queue may hold (workers × prefetch factor: filled while the model warmed up or the other
loader ran), then a few steps. The last line: training images/s kdtool / timm (target ≥ 1.0).
"""

from __future__ import annotations

import gc
import io
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count
from multiprocessing import Pool
from pathlib import Path

import numpy as np

TARGET = 1.0


@dataclass(frozen=True)
class StreamSizes:
    """What the part runs on: ImageNet-like on a GPU, a few small JPEGs and a small model on a CPU (--tiny)."""

    images: int = 20_000  # training JPEGs
    classes: int = 100
    pixels: tuple[int, int] = (400, 500)  # each side drawn in this range
    image_size: int = 224
    model: str = "resnet50"
    batch: int = 256
    steps: int = 40  # timed steps of a run
    extra_warmup: int = 5  # warm-up steps after the batches the loader's queue may hold are taken
    rounds: int = 2  # training runs of each loader, interleaved
    workers: int | None = None  # None: kdtool's default_workers()
    scan: tuple[int, ...] = (8,)  # kdtool data-only also at these worker counts (those above the cores dropped)
    decode_batches: int = 10  # batches decoded on the device


GPU_STREAM = StreamSizes()
TINY_STREAM = StreamSizes(images=40, classes=4, pixels=(72, 96), image_size=64, model="resnet18", batch=4, steps=2,
                          extra_warmup=1, rounds=1, workers=1, scan=(2,), decode_batches=2)  # fmt: skip


# -- the JPEG folder ----------------------------------------------------------------------------------------
def write_jpeg(job: tuple[str, int, int, int]) -> int:
    """One synthetic JPEG of random size in ``[low, high]`` px, seeded: a smooth colour field, a finer texture
    and per-pixel noise, so that it compresses like a photograph (about 100 KB at 450 px). Returns its bytes."""
    from PIL import Image

    path, seed, low, high = job
    rng = np.random.default_rng(seed)
    w, h = (int(v) for v in rng.integers(low, high + 1, size=2))
    field = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    texture = Image.fromarray(rng.integers(0, 256, (max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8))
    pixels = 0.7 * np.asarray(field, np.float32) + 0.3 * np.asarray(texture.resize((w, h), Image.BILINEAR), np.float32)
    pixels += rng.normal(0, 12, (h, w, 1)).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    Path(path).write_bytes(buffer.getvalue())
    return buffer.tell()


def make_folder(root: Path, s: StreamSizes) -> str:
    """``s.images`` JPEGs in ``root/train`` (``s.classes`` sub-folders) and one per class in ``root/val``,
    written by a process pool over the cores; a line saying what was written, in how long."""
    jobs = []
    for split, n in (("train", s.images), ("val", s.classes)):
        for c in range(s.classes):
            (root / split / f"class{c:03d}").mkdir(parents=True, exist_ok=True)
        jobs += [(str(root / split / f"class{i % s.classes:03d}" / f"{i:06d}.jpg"), len(jobs) + i, *s.pixels)
                 for i in range(n)]  # fmt: skip
    start = time.perf_counter()
    with Pool(cpu_cores()) as pool:
        sizes = pool.map(write_jpeg, jobs, chunksize=64)
    seconds = time.perf_counter() - start
    return (f"{s.images} training JPEGs ({s.classes} classes, {s.pixels[0]}-{s.pixels[1]} px a side, mean "
            f"{np.mean(sizes[: s.images]) / 1e3:.0f} KB) + {s.classes} in val/, written in {seconds:.1f} s by "
            f"{cpu_cores()} processes")  # fmt: skip


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# -- the two loaders ----------------------------------------------------------------------------------------
@dataclass
class Loader:
    """A loader under test: endless normalised batches on the device, and its torch DataLoader (workers)."""

    name: str
    batches: Iterator[tuple]
    dataloader: Callable[[], object]  # the DataLoader, once iterated
    workers: int
    prefetch: int  # batches queued per worker


def kdtool_loader(root: Path, s: StreamSizes, workers: int, device) -> Loader:
    """The training loader of ``kdtool train-teacher --data imagefolder:ROOT --loader stream --workers W``."""
    from kdtool.config.runconfig import TrainConfig
    from kdtool.data.stream import PREFETCH_FACTOR
    from kdtool.training.rundata import load_data
    from kdtool.workflows.pipeline import make_loaders

    cfg = TrainConfig(dataset=f"imagefolder:{root}", image_size=s.image_size, loader="stream", workers=workers,
                      batch_size=s.batch, device=str(device), epochs=10**6).resolve()  # fmt: skip
    train, _ = make_loaders(load_data(cfg, stream=True), cfg, device)

    def endless() -> Iterator[tuple]:
        for epoch in count():
            yield from train.epoch(epoch)

    name = f"kdtool --loader stream --workers {workers}"
    return Loader(name, endless(), lambda: train._loader, workers, PREFETCH_FACTOR)


def timm_loader(root: Path, s: StreamSizes, workers: int, device) -> Loader:
    """``timm.data.create_loader`` with its defaults, kdtool's crop (scale, ratio, size, flip), no colour jitter."""
    from timm.data import ImageDataset, create_loader

    from kdtool.data.stream import RRC_RATIO, RRC_SCALE

    loader = create_loader(ImageDataset(str(root / "train")), input_size=(3, s.image_size, s.image_size),
                           batch_size=s.batch, is_training=True, scale=RRC_SCALE, ratio=RRC_RATIO, color_jitter=None,
                           num_workers=workers, device=device)  # fmt: skip

    def endless() -> Iterator[tuple]:
        while True:
            yield from loader

    inner = getattr(loader, "loader", loader)  # the prefetcher wraps the DataLoader
    return Loader(f"timm create_loader num_workers={workers}", endless(), lambda: inner, workers,
                  inner.prefetch_factor or 0)  # fmt: skip


def proc_kib(pid: int, name: str, fields: tuple[str, ...]) -> int | None:
    """The sum of ``fields`` (kB lines) of ``/proc/PID/NAME``; None where it cannot be read (not Linux, exited)."""
    try:
        lines = Path(f"/proc/{pid}/{name}").read_text().splitlines()
    except OSError:
        return None
    found = [int(line.split()[1]) for line in lines if line.split(":")[0] in fields]
    return sum(found) if found else None


def worker_memory(dataloader) -> str:
    """The host memory of a started DataLoader's workers: peak resident (VmHWM, which counts the pages shared
    with the main process they were forked from) and private now (what each adds)."""
    pids = [worker.pid for worker in getattr(getattr(dataloader, "_iterator", None), "_workers", [])]
    peaks = [kib for pid in pids if (kib := proc_kib(pid, "status", ("VmHWM",))) is not None]
    private = [kib for pid in pids if (kib := proc_kib(pid, "smaps_rollup", ("Private_Clean", "Private_Dirty")))
               is not None]  # fmt: skip
    if not peaks:
        return "not readable here (no /proc)"
    line = f"peak resident largest {max(peaks) / 1024:.0f} MiB, mean {np.mean(peaks) / 1024:.0f} MiB"
    if private:
        line += f"; private now largest {max(private) / 1024:.0f} MiB, mean {np.mean(private) / 1024:.0f} MiB"
    return line + f" ({len(peaks)} workers)"


# -- timing -------------------------------------------------------------------------------------------------
def images_per_second(loader: Loader, s: StreamSizes, step: Callable[[object, object], None], sync) -> float:
    """Images/s of ``s.steps`` batches through ``step``, after a warm-up: as many batches as the loader's queue
    may hold (its workers × prefetch factor, filled while it waited: taken, not stepped), then
    ``s.extra_warmup`` steps."""
    for _ in range(loader.workers * loader.prefetch):
        next(loader.batches)
    for _ in range(s.extra_warmup):
        step(*next(loader.batches)[:2])
    sync()
    start = time.perf_counter()
    images = 0
    for _ in range(s.steps):
        x, y = next(loader.batches)[:2]
        step(x, y)
        images += y.shape[0]
    sync()
    return images / (time.perf_counter() - start)


class Training:
    """One model, bf16 autocast + channels-last + SGD, stepped on whichever loader's batches."""

    def __init__(self, s: StreamSizes, device) -> None:
        import torch

        from kdtool.models.registry import build_model

        torch.manual_seed(0)
        self.device = device
        self.model = build_model(s.model, s.classes, 3, s.image_size).to(device, memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

    def __call__(self, x, y) -> None:
        import torch
        import torch.nn.functional as F

        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def data_only(x, y) -> None:
    """A data-only step: the batch is already on the device, normalised, as the model would take it."""


def device_decode(root: Path, s: StreamSizes, device, sync) -> float:
    """Images/s of batch JPEG decoding with ``torchvision.io.decode_jpeg(device=...)`` plus kdtool's seeded
    random-resized crop and flip on the device (files read by this process): a data-only figure."""
    import torch
    from torchvision.io import decode_jpeg

    from kdtool.data.stream import SampleTransform, imagefolder_files

    files = imagefolder_files(root / "train", None)[0].files
    transform = SampleTransform(s.image_size, train=True, hflip=True, seed=0)

    def batch(b: int) -> torch.Tensor:
        paths = [files[(b * s.batch + i) % len(files)] for i in range(s.batch)]
        data = [torch.frombuffer(bytearray(Path(p).read_bytes()), dtype=torch.uint8) for p in paths]
        images = decode_jpeg(data, device=device)
        return torch.stack([transform(image, 0, b * s.batch + i)[0] for i, image in enumerate(images)])

    batch(0)  # the decoder's start-up
    sync()
    start = time.perf_counter()
    for b in range(1, s.decode_batches + 1):
        batch(b)
    sync()
    return s.decode_batches * s.batch / (time.perf_counter() - start)


# -- the part -----------------------------------------------------------------------------------------------
def part_stream(part) -> None:
    """bench/gpu.py's part: prints its inputs, then each figure as it is measured (a part stopped by its time
    limit keeps those), and last the ratio of training images/s."""
    import shutil

    import torch
    from gpu import print_ratio_at_least

    from kdtool.data.stream import default_workers

    s = TINY_STREAM if part.tiny else GPU_STREAM
    workers = default_workers() if s.workers is None else s.workers
    inputs = {
        "bench": "stream (GPU)" if part.device.type == "cuda" else "stream (--tiny, CPU)",
        **part.machine(),
        "CPU cores": cpu_cores(),
        "model": f"{s.model}, {s.classes} classes, bf16 autocast + channels-last, SGD",
        "batch size": s.batch,
        "crop": f"random-resized {s.image_size} (kdtool's scale and ratio), flip, normalise on the device",
        "workers": f"{workers} each (kdtool's default_workers() here: {default_workers()})",
        "timed steps": f"{s.steps} per run, after taking the batches the loader's queue may hold (its workers × "
        f"prefetch factor) and {s.extra_warmup} steps; training: {s.rounds} round(s), kdtool and timm interleaved, "
        "the best of each",
    }
    for key, value in inputs.items():
        print(f"{key}: {value}")
    if part.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as kdtool sets it on a GPU
    root = part.work / "jpegs"
    try:
        report(part, "data", make_folder(root, s))
        train = compare(root, s, workers, part)
        for w in (w for w in s.scan if w <= cpu_cores() and w != workers):
            report(part, f"data-only images/s, kdtool --workers {w}", f"{scan_workers(root, s, w, part):.0f}")
        decoded = device_decode(root, s, part.device, part.sync)
        report(
            part, f"batch decode_jpeg(device={part.device.type}) + kdtool's crop, data-only images/s", f"{decoded:.0f}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_ratio_at_least("training images/s kdtool --loader stream / timm create_loader", train["kdtool"] /
                         train["timm"], TARGET)  # fmt: skip


def report(part, key: str, value: str) -> None:
    """Print a figure now and keep it for the summary."""
    print(f"{key}: {value}")
    part.note(key, value)


def compare(root: Path, s: StreamSizes, workers: int, part) -> dict[str, float]:
    """Training and data-only images/s of kdtool's and timm's loaders (same workers) and their workers' host
    memory, each reported as measured; returns the best training images/s of each."""
    import torch

    start = time.perf_counter()
    training = Training(s, part.device)
    x = torch.randn(s.batch, 3, s.image_size, s.image_size, device=part.device)
    y = torch.randint(0, s.classes, (s.batch,), device=part.device)
    for _ in range(3):  # cuDNN's algorithm search and the first allocations, before any loader is timed
        training(x, y)
    part.sync()
    print(f"model ready in {time.perf_counter() - start:.1f} s")
    loaders = {"kdtool": kdtool_loader(root, s, workers, part.device), "timm": timm_loader(root, s, workers,
                                                                                           part.device)}  # fmt: skip
    train: dict[str, list[float]] = {who: [] for who in loaders}
    for r in range(s.rounds):
        for who, loader in loaders.items():
            train[who].append(images_per_second(loader, s, training, part.sync))
            print(f"round {r + 1}: training images/s, {loader.name}: {train[who][-1]:.0f}")
    for who, loader in loaders.items():
        report(part, f"training images/s, {who}", f"{max(train[who]):.0f} (best of {s.rounds}; {loader.name})")
    for who, loader in loaders.items():
        report(part, f"data-only images/s, {who}", f"{images_per_second(loader, s, data_only, part.sync):.0f}")
    for who, loader in loaders.items():
        report(part, f"host memory per worker, {who}", worker_memory(loader.dataloader()))
    loaders.clear()
    gc.collect()  # the persistent workers exit with their DataLoaders
    return {who: max(speeds) for who, speeds in train.items()}


def scan_workers(root: Path, s: StreamSizes, workers: int, part) -> float:
    """kdtool's data-only images/s with ``workers`` workers (a fresh loader, closed after)."""
    loader = kdtool_loader(root, s, workers, part.device)
    speed = images_per_second(loader, s, data_only, part.sync)
    del loader
    gc.collect()
    return speed
