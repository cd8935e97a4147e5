"""kdtool's training epoch / the torchvision script a user would write, LeNet-5 on Fashion-MNIST.

The script: torchvision ``FashionMNIST`` + ``DataLoader`` (shuffled, the fastest ``num_workers``
here, probed first or ``--workers``) + RandomCrop(28, padding=4), ToTensor, Normalize; LeNet-5,
cross-entropy, SGD (lr 0.1, momentum 0.9, weight decay 5e-4). kdtool's epoch is the engine as the
CLI runs it with the same model, optimiser, batch size and crop augmentation.

    .venv/bin/python bench/vs_torchvision_script.py [--limit N] [--repeats R] [--workers W] [--threads T]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from common import (
    KdtoolEpochs,
    Timing,
    arguments,
    best_num_workers,
    crop_transforms,
    fashion_mnist,
    interleave,
    kdtool_config,
    lenet5,
    machine,
    report,
    torchvision_fashion_mnist,
    torchvision_loader,
)
from torch.utils.data import DataLoader

from kdtool.losses import OneHot

TARGET = 0.6


def script_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader) -> None:
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main() -> None:
    args = arguments(__doc__.splitlines()[0], workers=(int, None, "DataLoader num_workers (default: probe 0-3)"))
    dataset = fashion_mnist(args.limit)
    kdtool_epoch = KdtoolEpochs(dataset, lenet5(), OneHot(), kdtool_config(args.batch_size, smoothing="onehot"))
    model = lenet5()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    with torchvision_fashion_mnist(crop_transforms(), args.limit) as ds:
        workers = args.workers if args.workers is not None else best_num_workers(ds, args.batch_size)
        loader = torchvision_loader(ds, args.batch_size, workers)
        a, b = Timing("kdtool epoch"), Timing(f"torchvision script epoch (num_workers={workers})")
        with kdtool_epoch:
            interleave(a, kdtool_epoch, b, lambda: script_epoch(model, optimizer, loader), args.repeats, args.warmup)
    inputs = {
        "bench": "vs_torchvision_script",
        **machine(),
        "model": "lenet5",
        "data": f"fashion-mnist train, {len(dataset.train)}",
        "batch size": args.batch_size,
        "augmentation": "random crop 28, padding 4",
        "num_workers": workers,
        "repeats": args.repeats,
    }
    report(inputs, a, b, TARGET)


if __name__ == "__main__":
    main()
