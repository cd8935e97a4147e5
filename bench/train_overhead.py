"""kdtool's training epoch / a bare hand-written PyTorch loop: what the engine costs on top.

Same LeNet-5, Fashion-MNIST, batch size, augmentation (random crop, padding 4, on the whole
batch), SGD (lr 0.1, momentum 0.9, weight decay 5e-4) and CPU. The bare loop is the least a user
would write: shuffle, slice, crop, normalise, forward, cross-entropy, backward, step. kdtool's epoch
is the engine as the CLI runs it (1-hot target, LR schedule, on-device metrics, live display).

    .venv/bin/python bench/train_overhead.py [--limit N] [--repeats R] [--threads T]
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from common import KdtoolEpochs, Timing, arguments, fashion_mnist, interleave, kdtool_config, lenet5, machine, report

from kdtool.data.loader import random_crop
from kdtool.losses import OneHot

TARGET = 1.05


def bare_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    """One epoch of the plainest loop that does the same work."""
    mean, std = 0.2860, 0.3530
    order = torch.randperm(len(labels), generator=generator)
    model.train()
    for start in range(0, len(labels), batch_size):
        idx = order[start : start + batch_size]
        x = random_crop(images[idx], 4, generator).float().div_(255.0).sub_(mean).div_(std)
        loss = F.cross_entropy(model(x), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> None:
    args = arguments(__doc__.splitlines()[0], repeats=5)
    dataset = fashion_mnist(args.limit)
    cfg = kdtool_config(args.batch_size, smoothing="onehot")
    model = lenet5()
    # both sides start from the same weights: the cost of a step depends a little on the values
    # (dead units, subnormal numbers), so different initial networks add noise to the ratio
    kdtool_epoch = KdtoolEpochs(dataset, copy.deepcopy(model), OneHot(), cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(0)
    images, labels = dataset.train.inputs, dataset.train.labels

    a, b = Timing("kdtool epoch"), Timing("bare loop epoch")
    with kdtool_epoch:
        interleave(
            a,
            kdtool_epoch,
            b,
            lambda: bare_epoch(model, optimizer, images, labels, args.batch_size, generator),
            args.repeats,
            args.warmup,
        )
    inputs = {
        "bench": "train_overhead",
        **machine(),
        "model": "lenet5",
        "data": f"fashion-mnist train, {len(labels)}",
        "batch size": args.batch_size,
        "augmentation": "random crop, padding 4",
        "repeats": args.repeats,
    }
    report(inputs, a, b, TARGET, clock="cpu")


if __name__ == "__main__":
    main()
