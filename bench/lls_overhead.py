"""One LLS training step / one LS training step: ResNet-18, K = 100, batch 64 (the paper: +1.4%).

Both steps run through kdtool's engine on the same CIFAR-shaped random images (3×32×32, crop and
flip augmentation), SGD as in the paper; the only difference is the target: LLS learns its K×K
``Q`` with the network, LS is fixed. Each timed run is ``--steps`` steps.

    .venv/bin/python bench/lls_overhead.py [--steps S] [--repeats R] [--threads T]
"""

from __future__ import annotations

import time

import torch
from common import KdtoolEpochs, Timing, arguments, interleave, kdtool_config, machine, report, synthetic_images

from kdtool.losses import LabelSmoothing, LearnableLabelSmoothing
from kdtool.models.registry import build_model

TARGET = 1.02
K = 100


def loss_seconds(target: torch.nn.Module, logits: torch.Tensor, labels: torch.Tensor, calls: int = 50) -> float:
    """Median-free mean time of the target's forward and backward alone (the part LLS adds to)."""
    logits = logits.detach().requires_grad_()
    start = time.perf_counter()
    for _ in range(calls):
        target(logits, labels).backward()
    return (time.perf_counter() - start) / calls


def main() -> None:
    steps = (int, 4, "training steps per timed run (one step is too short to time on a shared machine)")
    args = arguments(__doc__.splitlines()[0], repeats=5, batch_size=64, tiny={"steps": 1}, steps=steps)
    dataset = synthetic_images(args.batch_size * args.steps, K)
    runs = {}
    for name, target in (("lls", LearnableLabelSmoothing(K, 0.1)), ("ls", LabelSmoothing(0.1))):
        torch.manual_seed(0)
        model = build_model("resnet18", K, 3, 32)
        runs[name] = KdtoolEpochs(dataset, model, target, kdtool_config(args.batch_size, smoothing=name))
    a, b = Timing(f"LLS {args.steps} step(s)"), Timing(f"LS {args.steps} step(s)")
    with runs["lls"], runs["ls"]:
        interleave(a, runs["lls"], b, runs["ls"], args.repeats, args.warmup)

    logits, labels = torch.randn(args.batch_size, K), torch.randint(0, K, (args.batch_size,))
    lls_loss = loss_seconds(LearnableLabelSmoothing(K, 0.1), logits, labels)
    ls_loss = loss_seconds(LabelSmoothing(0.1), logits, labels)
    inputs = {
        "bench": "lls_overhead",
        **machine(),
        "model": "resnet18 (CIFAR stem)",
        "data": f"random 3×32×32 images, K={K}",
        "batch size": args.batch_size,
        "steps per run": args.steps,
        "repeats": args.repeats,
        "loss forward+backward alone": f"LLS {lls_loss * 1e3:.3f} ms, LS {ls_loss * 1e3:.3f} ms",
        "ratio bound from the loss alone": f"{1 + (lls_loss - ls_loss) / (b.median('cpu') / args.steps):.4f}",
    }
    report(inputs, a, b, TARGET, clock="cpu")


if __name__ == "__main__":
    main()
