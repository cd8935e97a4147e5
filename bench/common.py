"""What every bench shares: side-by-side timing, peak memory, Fashion-MNIST both ways, printing.

Each bench times two things, A and B, in the same process, interleaved (A, B, A, B, ...) after a
warm-up, and reports medians and the ratio A/B: on a shared, noisy machine a ratio of two things
measured side by side means more than either absolute time.
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import io
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets
from torchvision import transforms as T

from kdtool.config.runconfig import DistillConfig, TrainConfig
from kdtool.data import Dataset, DatasetInfo, Split, load_dataset
from kdtool.data.embedded import EMBEDDED_ROOT, FASHION_MNIST_INFO
from kdtool.distill.cache import TeacherCache
from kdtool.losses import Target
from kdtool.models.registry import LeNet5
from kdtool.reporting.display import EpochDisplay
from kdtool.training.engine import Trainer, seed_everything
from kdtool.workflows.pipeline import make_loaders

MIB = 2**20


# -- memory ---------------------------------------------------------------------------------------
def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def rss_mib() -> float:
    """Resident memory of this process now, after handing freed heap memory back to the system (glibc
    keeps freed blocks otherwise, and they would count as held)."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return _status_kib("VmRSS") * 1024 / MIB


def reset_peak_rss() -> None:
    """Restart the peak-RSS record from the current RSS (Linux: write 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def peak_rss_mib() -> float:
    """Peak resident memory of this process since the last :func:`reset_peak_rss`."""
    return _status_kib("VmHWM") * 1024 / MIB


# -- timing ---------------------------------------------------------------------------------------
@dataclass
class Timing:
    """The runs of one side of a comparison: wall and CPU seconds, and this process's peak RSS, per run.

    CPU seconds (``time.process_time``: this process, all its threads) hardly move when other
    processes compete for the cores, so benches whose work all runs in this process judge by them;
    benches with DataLoader worker processes must judge by wall time.
    """

    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peaks_mib: list[float] = field(default_factory=list)

    def median(self, clock: str = "wall") -> float:
        return statistics.median(self.wall if clock == "wall" else self.cpu)

    def run(self, fn: Callable[[], object]) -> None:
        reset_peak_rss()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        self.cpu.append(time.process_time() - cpu)
        self.wall.append(time.perf_counter() - wall)
        self.peaks_mib.append(peak_rss_mib())

    def line(self, scale: float = 1.0, unit: str = "s") -> str:
        def runs(values: list[float]) -> str:
            return ", ".join(f"{v * scale:.3f}" for v in values)

        return (
            f"{self.name}: wall median {self.median('wall') * scale:.4f} {unit} [{runs(self.wall)}]; "
            f"CPU median {self.median('cpu') * scale:.4f} {unit} [{runs(self.cpu)}]; "
            f"peak RSS {max(self.peaks_mib):.0f} MiB"
        )


def interleave(
    a: Timing, fn_a: Callable[[], object], b: Timing, fn_b: Callable[[], object], repeats: int, warmup: int = 1
) -> None:
    """Warm both up, then run A, B, A, B, ... ``repeats`` times each, recording into ``a`` and ``b``."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    for _ in range(repeats):
        a.run(fn_a)
        b.run(fn_b)


def report(inputs: dict[str, object], a: Timing, b: Timing, target: float, clock: str = "wall",
           scale: float = 1.0, unit: str = "s") -> None:  # fmt: skip
    """Print the inputs, both timings, the other clock's ratio and, as the last line, the ratio of the
    ``clock`` medians (``wall`` or ``cpu``) against its target."""
    for key, value in inputs.items():
        print(f"{key}: {value}")
    print(a.line(scale, unit))
    print(b.line(scale, unit))
    other = "cpu" if clock == "wall" else "wall"
    print(f"({other} time ratio {a.median(other) / b.median(other):.3f}, for information)")
    print_ratio(f"{clock} time {a.name} / {b.name}", a.median(clock) / b.median(clock), target)


def print_ratio(what: str, ratio: float, target: float) -> None:
    verdict = "met" if ratio <= target else "NOT met"
    print(f"ratio {what} = {ratio:.3f} (target ≤ {target}: {verdict})")


# -- command line ---------------------------------------------------------------------------------
# --tiny: what every bench's tiny mode shares (each adds its own sizes); tests/test_bench.py runs each bench so
TINY = {"repeats": 1, "warmup": 0, "limit": 64, "batch_size": 16, "threads": 1}


def parse(parser: argparse.ArgumentParser, tiny: dict[str, object]) -> argparse.Namespace:
    """Parse the command line; with ``--tiny``, ``tiny``'s values replace the defaults (an option given still
    wins): a few samples, one run of each side, seconds in all. It checks that the bench runs, it measures
    nothing."""
    what = "a few samples, one run of each side: checks that the bench runs, measures nothing"
    parser.add_argument("--tiny", action="store_true", help=what)
    args = parser.parse_args()
    if args.tiny:
        parser.set_defaults(**tiny)
        args = parser.parse_args()
    return args


def arguments(
    description: str,
    repeats: int = 3,
    limit: int | None = None,
    batch_size: int = 128,
    tiny: dict[str, object] | None = None,
    **extra: tuple[type, object, str],
) -> argparse.Namespace:
    """Parse the options every bench takes (plus ``extra``: name -> (type, default, help)) and apply
    ``--threads``; ``--tiny`` takes :data:`TINY` and the bench's own ``tiny`` sizes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs of each side (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each side first")
    parser.add_argument("--limit", type=int, default=limit, help="training samples used (seeded subset)")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    for name, (kind, default, help_text) in extra.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=help_text)
    args = parse(parser, {**TINY, **(tiny or {})})
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return args


def machine() -> dict[str, object]:
    """The facts that make a figure comparable: torch version, threads, device."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": "cpu"}


# -- Fashion-MNIST, kdtool's way and torchvision's way --------------------------------------------
def subset_index(n: int, limit: int | None, seed: int = 0) -> torch.Tensor | None:
    """The training samples a ``--limit`` keeps: the same seeded choice as ``--limit-train``."""
    if limit is None or limit >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def fashion_mnist(limit: int | None = None) -> Dataset:
    """kdtool's embedded Fashion-MNIST, training split limited like ``--limit-train``."""
    return load_dataset("fashion-mnist").limited(limit, None, seed=0)


@contextmanager
def torchvision_fashion_mnist(transform: Callable, limit: int | None = None) -> Iterator[torch.utils.data.Dataset]:
    """torchvision's ``FashionMNIST`` training set with ``transform``, read from the same embedded files
    (unpacked into a temporary folder, as a user's download would be)."""
    root = Path(tempfile.mkdtemp(prefix="kdtool-bench-"))
    try:
        raw = root / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ):
            with gzip.open(EMBEDDED_ROOT / "fashion-mnist" / f"{name}.gz") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        ds = datasets.FashionMNIST(str(root), train=True, transform=transform)
        index = subset_index(len(ds), limit)
        yield ds if index is None else Subset(ds, index.tolist())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def crop_transforms() -> T.Compose:
    """The usual per-sample PIL pipeline: RandomCrop(28, padding=4), ToTensor, Normalize."""
    return T.Compose(
        [T.RandomCrop(28, padding=4), T.ToTensor(), T.Normalize(FASHION_MNIST_INFO.mean, FASHION_MNIST_INFO.std)]
    )


def torchvision_loader(ds: torch.utils.data.Dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=workers > 0)


def best_num_workers(
    ds: torch.utils.data.Dataset, batch_size: int, candidates: tuple[int, ...] = (0, 1, 2, 3), batches: int = 60
) -> int:
    """The ``num_workers`` that delivers ``batches`` batches fastest here (worker start-up included once)."""
    best, best_time = candidates[0], float("inf")
    for workers in candidates:
        loader = torchvision_loader(ds, batch_size, workers)
        it = iter(loader)
        next(it)  # workers started
        start, seen = time.perf_counter(), 0
        for _, _ in zip(range(batches), it, strict=False):
            seen += 1
        per_batch = (time.perf_counter() - start) / max(1, seen)
        print(f"num_workers={workers}: {per_batch * 1e3:.2f} ms/batch")
        if per_batch < best_time:
            best, best_time = workers, per_batch
        del it, loader
    return best


# -- kdtool's side --------------------------------------------------------------------------------
def lenet5() -> LeNet5:
    return LeNet5(num_classes=10, in_channels=1, image_size=28)


class KdtoolEpochs:
    """kdtool training epochs as the CLI runs them: the engine under one live display for the whole
    run (rendered into a buffer as if to a terminal), one call per epoch; the training batches replay
    ``teacher_cache`` where given. Use it as a context manager: while it is open the display holds
    stdout, as it does in the CLI."""

    def __init__(
        self,
        dataset: Dataset,
        model: torch.nn.Module,
        target: Target,
        cfg: TrainConfig,
        teacher_cache: TeacherCache | None = None,
    ) -> None:
        cfg.resolve()
        train, test = make_loaders(dataset, cfg, torch.device(cfg.device), teacher_cache=teacher_cache)
        self.trainer = Trainer(model, target, train, test, cfg)
        console = Console(file=io.StringIO(), force_terminal=True, width=120)
        self.display = EpochDisplay(console, "bench", cfg.epochs, len(train))
        self.epoch = 0

    def __enter__(self) -> KdtoolEpochs:
        self.display.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.display.__exit__(*exc_info)

    def __call__(self) -> dict[str, float]:
        row = self.trainer.train_epoch(self.epoch, self.display.step)
        self.epoch += 1
        self.display.epoch_done({"epoch": self.epoch, **row})
        return row


def kdtool_config(batch_size: int, smoothing: str = "onehot", **options: object) -> TrainConfig:
    """A CPU training config with the paper's SGD (lr 0.1, momentum 0.9, wd 5e-4), standard augmentation
    (unless ``options`` say otherwise: a dataset's own default may be none, as Fashion-MNIST's is).

    ``kd`` and ``lls-st`` give a student's config; its teacher or Q is the in-process target the bench
    builds itself, so the config only names it."""
    seed_everything(0)
    common = {"batch_size": batch_size, "device": "cpu", "epochs": 10**6, "warmup_epochs": 0, "augment": "standard",
              **options}  # fmt: skip
    if smoothing == "kd":
        return DistillConfig(teacher="(in-process teacher)", **common)
    if smoothing == "lls-st":
        return DistillConfig(substitute_q="(in-process Q)", alpha=0.1, **common)
    return TrainConfig(smoothing=smoothing, **common)


def synthetic_images(n: int, num_classes: int, channels: int = 3, size: int = 32, seed: int = 0) -> Dataset:
    """Random uint8 images and labels shaped like CIFAR (for benches where only the shapes matter)."""
    g = torch.Generator().manual_seed(seed)
    split = Split(
        torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8),
        torch.randint(0, num_classes, (n,), generator=g),
    )
    info = DatasetInfo("synthetic", tuple(f"class{i}" for i in range(num_classes)), channels, size,
                       (0.5,) * channels, (0.25,) * channels, hflip=True)  # fmt: skip
    return Dataset(info, split, split)


def small_cnn(num_classes: int = 10, channels: int = 1) -> nn.Module:
    """A small CNN teacher for 28×28 images: three conv-BN-ReLU blocks (32, 64, 128), global pooling."""
    layers: list[nn.Module] = []
    width = channels
    for out in (32, 64, 128):
        layers += [nn.Conv2d(width, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2)]  # fmt: skip
        width = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
