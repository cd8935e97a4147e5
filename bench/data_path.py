"""kdtool's in-memory data path / torchvision's DataLoader with per-sample transforms, no model.

One epoch of augmented, normalised Fashion-MNIST training batches each way: kdtool's
``BatchLoader`` (uint8 tensor in memory, batched random crop, padding 4) against torchvision's
``FashionMNIST`` + ``DataLoader`` (shuffled) + RandomCrop(28, padding=4), ToTensor, Normalize with the
``num_workers`` that is fastest here (probed first, or ``--workers``).

    .venv/bin/python bench/data_path.py [--limit N] [--repeats R] [--workers W] [--threads T]
"""

from __future__ import annotations

import torch
from common import (
    Timing,
    arguments,
    best_num_workers,
    crop_transforms,
    fashion_mnist,
    interleave,
    kdtool_config,
    machine,
    report,
    torchvision_fashion_mnist,
    torchvision_loader,
)

from kdtool.workflows.pipeline import make_loaders

TARGET = 0.1


def drain(batches) -> None:
    for _ in batches:
        pass


def main() -> None:
    args = arguments(__doc__.splitlines()[0], workers=(int, None, "DataLoader num_workers (default: probe 0-3)"))
    dataset = fashion_mnist(args.limit)
    loader, _ = make_loaders(dataset, kdtool_config(args.batch_size).resolve(), torch.device("cpu"))
    epochs = iter(range(10**9))
    with torchvision_fashion_mnist(crop_transforms(), args.limit) as ds:
        workers = args.workers if args.workers is not None else best_num_workers(ds, args.batch_size)
        tv_loader = torchvision_loader(ds, args.batch_size, workers)
        a, b = Timing("kdtool BatchLoader epoch"), Timing(f"torchvision DataLoader epoch (num_workers={workers})")
        interleave(a, lambda: drain(loader.epoch(next(epochs))), b, lambda: drain(tv_loader), args.repeats, args.warmup)
    inputs = {
        "bench": "data_path",
        **machine(),
        "data": f"fashion-mnist train, {len(dataset.train)}",
        "batch size": args.batch_size,
        "augmentation": "random crop 28, padding 4; normalise",
        "num_workers": workers,
        "repeats": args.repeats,
    }
    report(inputs, a, b, TARGET)


if __name__ == "__main__":
    main()
