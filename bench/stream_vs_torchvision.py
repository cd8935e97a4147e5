"""kdtool's streaming ImageFolder path / a torchvision ImageFolder + DataLoader + transforms.v2 script.

A generated ImageFolder of ``--images`` JPEGs (64-128 px, 10 classes) is read for one training epoch
each way with the same augmentation (random-resized crop to ``--image-size``, horizontal flip,
normalisation): kdtool's ``--loader stream`` (``StreamLoader``: torchvision.io decoding in
``--workers`` processes, normalisation on the device) against ``datasets.ImageFolder`` (PIL) +
``DataLoader`` (shuffled, persistent workers, the ``num_workers`` that is fastest here, probed first) +
``transforms.v2``. Two timings: data only, and with a small model (LeNet-5 on 3×S×S, SGD) training on
the batches. Last, the peak resident memory of a streaming epoch that ``--loader auto`` chose because
the decoded folder is several times ``--memory-budget``: the main process and its largest worker.
Wall time (the work runs in worker processes), median of ``--repeats``.

    .venv/bin/python bench/stream_vs_torchvision.py [--images N] [--image-size S] [--repeats R] [--workers W]
"""

from __future__ import annotations

import resource
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import MIB, Timing, arguments, interleave, machine, peak_rss_mib, print_ratio, reset_peak_rss, rss_mib
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

from kdtool.config.runconfig import TrainConfig
from kdtool.data.stream import default_workers, format_bytes
from kdtool.models.registry import LeNet5
from kdtool.training.rundata import choose_data_path, load_data
from kdtool.workflows.pipeline import make_loaders

TARGET = 1.0
CLASSES = 10
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_folder(root: Path, images: int, seed: int = 0) -> Path:
    """``images`` JPEGs of 64-128 px in ``train/`` (ten classes, a colour each plus noise), a few in ``val/``."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 225, size=(CLASSES, 3))
    for split, n in (("train", images), ("val", max(CLASSES, images // 20))):
        for i in range(n):
            c = i % CLASSES
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            h, w = rng.integers(64, 129, size=2)
            pixels = np.clip(colours[c] + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)
    return root


def torchvision_loader(root: Path, size: int, batch_size: int, workers: int) -> DataLoader:
    transform = v2.Compose([v2.PILToTensor(), v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])  # fmt: skip
    ds = datasets.ImageFolder(str(root / "train"), transform=transform)
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=workers > 0)


def best_num_workers(root: Path, size: int, batch_size: int, candidates: tuple[int, ...]) -> int:
    """The ``num_workers`` whose loader delivers a whole epoch fastest here (second epoch: workers started)."""
    import time

    best, best_time = candidates[0], float("inf")
    for workers in candidates:
        loader = torchvision_loader(root, size, batch_size, workers)
        for _ in loader:  # starts the workers
            pass
        start = time.perf_counter()
        for _ in loader:
            pass
        seconds = time.perf_counter() - start
        print(f"torchvision num_workers={workers}: {seconds:.3f} s/epoch")
        if seconds < best_time:
            best, best_time = workers, seconds
        del loader
    return best


class Training:
    """A small model trained on whatever batches ``batches()`` yields (one call: one epoch)."""

    def __init__(self, size: int) -> None:
        torch.manual_seed(0)
        self.model = LeNet5(num_classes=CLASSES, in_channels=3, image_size=size)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        loss = nn.functional.cross_entropy(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def memory_figure(root: Path, images: int, size: int, batch_size: int, workers: int, fraction: float) -> list[str]:
    """One streaming epoch that ``--loader auto`` chose because the decoded folder is ``1 / fraction`` times
    ``--memory-budget``: the peak resident memory of the main process and of its largest worker."""
    decoded = (images + max(CLASSES, images // 20)) * 3 * size**2
    budget = max(1, int(decoded * fraction))
    auto = TrainConfig(dataset=f"imagefolder:{root}", image_size=size, memory_budget=str(budget), workers=workers,
                       batch_size=batch_size, device="cpu", epochs=10**6).resolve()  # fmt: skip
    choice = choose_data_path(auto, resume=False)
    before = rss_mib()
    reset_peak_rss()
    loader, _ = make_loaders(load_data(auto, stream=choice.used == "stream"), auto, torch.device("cpu"))
    for _ in loader.epoch(0):
        pass
    main_peak = peak_rss_mib()
    del loader  # persistent workers exit here, so their peak is in RUSAGE_CHILDREN
    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / MIB
    return [
        f"memory: decoded folder {format_bytes(decoded)} = {decoded / budget:.1f}× --memory-budget "
        f"{format_bytes(budget)}; --loader auto chose {choice.used} ({choice.reason})",
        f"memory: streaming epoch peak RSS {main_peak:.0f} MiB in the main process ({main_peak - before:+.0f} MiB "
        f"over its {before:.0f} MiB before the epoch), largest worker {worker_peak:.0f} MiB (workers: {workers})",
    ]


def main() -> None:
    args = arguments(__doc__.splitlines()[0], repeats=3, batch_size=128, tiny={"images": 40, "image_size": 16},
                     images=(int, 3000, "JPEGs in the generated ImageFolder"),
                     image_size=(int, 64, "--image-size: the crops' side"),
                     workers=(int, None, "kdtool --workers (default: kdtool's own)"),
                     budget_fraction=(float, 0.25, "--memory-budget for the memory figure, as a fraction of the "
                                      "decoded folder"))  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="kdtool-bench-stream-"))
    try:
        make_folder(root, args.images)
        workers = default_workers() if args.workers is None else args.workers
        cfg = TrainConfig(dataset=f"imagefolder:{root}", image_size=args.image_size, loader="stream", workers=workers,
                          batch_size=args.batch_size, device="cpu", epochs=10**6).resolve()  # fmt: skip
        kdtool_train, _ = make_loaders(load_data(cfg, stream=True), cfg, torch.device("cpu"))
        tv_workers = best_num_workers(root, args.image_size, args.batch_size, (0, 1, 2, 3))
        tv_train = torchvision_loader(root, args.image_size, args.batch_size, tv_workers)
        epochs = iter(range(10**9))

        def kdtool_data() -> None:
            for _ in kdtool_train.epoch(next(epochs)):
                pass

        def tv_data() -> None:
            for _ in tv_train:
                pass

        a, b = (
            Timing(f"kdtool --loader stream epoch (--workers {workers})"),
            Timing(f"torchvision ImageFolder + DataLoader epoch (num_workers={tv_workers})"),
        )
        interleave(a, kdtool_data, b, tv_data, args.repeats, args.warmup)
        kdtool_model, tv_model = Training(args.image_size), Training(args.image_size)

        def kdtool_fit() -> None:
            for x, y in kdtool_train.epoch(next(epochs)):
                kdtool_model.step(x, y)

        def tv_fit() -> None:
            for x, y in tv_train:
                tv_model.step(x, y)

        c, d = Timing("kdtool stream + LeNet-5 epoch"), Timing("torchvision + LeNet-5 epoch")
        interleave(c, kdtool_fit, d, tv_fit, args.repeats, args.warmup)
        memory = memory_figure(root, args.images, args.image_size, args.batch_size, workers, args.budget_fraction)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print("bench: stream_vs_torchvision")
    for key, value in {**machine(), "images": f"{args.images} JPEGs, 64-128 px, {CLASSES} classes",
                       "crop": f"random-resized {args.image_size}, flip, normalise", "batch size": args.batch_size,
                       "repeats": args.repeats}.items():  # fmt: skip
        print(f"{key}: {value}")
    for timing in (a, b, c, d):
        print(timing.line())
    for line in memory:
        print(line)
    print(f"(with LeNet-5: ratio {c.median() / d.median():.3f}, for information)")
    print_ratio(f"wall time data-only epoch {a.name} / {b.name}", a.median() / b.median(), TARGET)


if __name__ == "__main__":
    main()
