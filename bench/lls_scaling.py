"""LLS step / LS step as K grows, with Q updated densely (before) and row-sparsely (after), side by side.

A linear head 512 → K on random 512-feature inputs (2×16×16 images), batch 256, for each K of
``--classes``; a ResNet-18 (CIFAR stem, random 3×32×32 images) at K = 1,000 as a realistic case.
Every side trains through kdtool's engine as the CLI does (SGD lr 0.1, momentum 0.9, weight decay
5e-4, all sides from the same initial weights). ``dense`` is ``--q-update dense`` (Q in torch's SGD),
``sparse`` is ``--q-update sparse`` (kdtool.optim.lazysgd). Each timed run is one epoch of ``--steps`` steps;
each LLS side alternates with the LS side (LS, sparse, LS, dense: the two LLS sides are never held in
memory together). The sparse side's pass that brings every row of Q up to date at the end of an
epoch (O(K²) once an epoch; writing Q into the epoch's checkpoint costs more) is timed on its own,
printed, and left out of its per-step time. Memory: the process's peak resident set during each
side's runs. Communication: a 2-process torchrun (gloo) trains a few LLS steps each way and counts
the bytes each rank hands to the collectives that reduce Q's gradient.

    .venv/bin/python bench/lls_scaling.py [--classes 100,1000,10000,21841] [--steps S] [--repeats R] [--threads T]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist
from common import KdtoolEpochs, Timing, arguments, kdtool_config, machine, print_ratio, rss_mib, synthetic_images
from torch import nn

from kdtool.data import Dataset
from kdtool.distributed import barrier, init_from_env, max_divergence, shutdown
from kdtool.losses import LabelSmoothing, LearnableLabelSmoothing
from kdtool.models.registry import build_model
from kdtool.training import engine
from kdtool.workflows.pipeline import make_loaders

TARGET = 1.3
TARGET_K = 10_000
FEATURES = 512  # the linear head's input: 2×16×16 random images, flattened
IN21K_STEPS = 14_197_122 // 256  # steps of an ImageNet-21k epoch at batch 256 (the sync's amortisation)


def linear_head(k: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(FEATURES, k))


def side(
    dataset: Dataset, network: Callable[[], nn.Module], target: nn.Module, batch: int, augment: str
) -> KdtoolEpochs:
    """kdtool epochs of ``target``; the network is built after the config has seeded torch: equal on every side."""
    cfg = kdtool_config(batch, smoothing=target.name, augment=augment)
    return KdtoolEpochs(dataset, network(), target, cfg)


def lls_runs(
    name: str, lls: KdtoolEpochs, ls: KdtoolEpochs, ls_timing: Timing, repeats: int, warmup: int
) -> tuple[Timing, Timing | None]:
    """Alternate ``lls`` and ``ls`` epochs; a sparse side's end-of-epoch sync is run and timed apart."""
    optimizer = lls.trainer.optimizer
    sync = getattr(optimizer, "sync", None)
    sync_timing = Timing(f"{name}: end-of-epoch sync") if sync is not None else None
    if sync is not None:
        optimizer.sync = lambda *args: None  # the engine's call at the end of the epoch: done below instead
    timing = Timing(f"LLS {name} epoch")
    with lls:
        for i in range(warmup + repeats):
            if i < warmup:
                lls()
                ls()
                if sync is not None:
                    sync()
                continue
            timing.run(lls)
            if sync_timing is not None:
                sync_timing.run(sync)
            ls_timing.run(ls)
    return timing, sync_timing


def measure(
    k: int, dataset: Dataset, network: Callable[[], nn.Module], args: argparse.Namespace, augment: str, steps: int
) -> dict:
    """Per-step CPU seconds of LS, LLS sparse and LLS dense at ``k`` classes, their peak memory, the sync."""
    ls_timing = Timing("LS epoch")
    ls = side(dataset, network, LabelSmoothing(0.1), args.batch_size, augment)
    results: dict[str, float] = {}
    lines = []  # printed once the displays, which hold stdout, are closed
    with ls:
        for mode in ("sparse", "dense"):
            gc.collect()
            before = rss_mib()  # malloc_trim: what the other side freed is not counted as held
            lls = side(dataset, network, LearnableLabelSmoothing(k, 0.1, q_update=mode), args.batch_size, augment)
            timing, sync_timing = lls_runs(mode, lls, ls, ls_timing, args.repeats, args.warmup)
            results[mode] = timing.median("cpu") / steps
            results[f"{mode} peak MiB"] = max(timing.peaks_mib)
            results[f"{mode} added MiB"] = max(timing.peaks_mib) - before
            lines.append(timing.line(1e3 / steps, "ms a step"))
            if sync_timing is not None:
                results["sync"] = sync_timing.median("cpu")
                lines.append(sync_timing.line(1e3, "ms"))
            del lls
    results["ls"] = ls_timing.median("cpu") / steps
    print("\n".join([*lines, ls_timing.line(1e3 / steps, "ms a step")]))
    return results


def linear_case(k: int, args: argparse.Namespace) -> dict:
    dataset = synthetic_images(args.batch_size * args.steps, k, channels=2, size=16)
    return measure(k, dataset, lambda: linear_head(k), args, "none", args.steps)


def resnet_case(args: argparse.Namespace) -> dict:
    k = 1000
    dataset = synthetic_images(args.batch_size * args.resnet_steps, k)
    return measure(k, dataset, lambda: build_model("resnet18", k, 3, 32), args, "standard", args.resnet_steps)


# -- communication under torchrun -----------------------------------------------------------------
class CollectiveBytes:
    """Counts the bytes this rank hands to all_reduce / all_gather while Q's gradient is reduced."""

    def __init__(self) -> None:
        self.bytes, self.active = 0, False
        for name in ("all_reduce", "all_gather"):
            setattr(dist, name, self._counting(getattr(dist, name)))
        reduce = engine.average_method_gradients

        def counted(*args, **kwargs):
            self.active = True
            try:
                return reduce(*args, **kwargs)
            finally:
                self.active = False

        engine.average_method_gradients = counted

    def _counting(self, collective: Callable) -> Callable:
        def wrapper(first, *args, **kwargs):
            if self.active:
                tensor = args[0] if isinstance(first, list) else first  # all_gather(outputs, tensor)
                self.bytes += tensor.numel() * tensor.element_size()
            return collective(first, *args, **kwargs)

        return wrapper


def ddp_worker(args: argparse.Namespace) -> None:
    """One torchrun rank: a few LLS steps with each Q update, DDP-wrapped head, the global batch split."""
    env, device = init_from_env("cpu")
    k = args.ddp_classes
    counter = CollectiveBytes()
    dataset = synthetic_images(args.batch_size * args.ddp_steps, k, channels=2, size=16)
    for mode in ("dense", "sparse"):
        cfg = kdtool_config(args.batch_size // env.world_size, smoothing="lls", augment="none")
        cfg.resolve()
        model = nn.parallel.DistributedDataParallel(linear_head(k))
        target = LearnableLabelSmoothing(k, 0.1, q_update=mode)
        train, test = make_loaders(dataset, cfg, device, env)
        trainer = engine.Trainer(model, target, train, test, cfg, env)
        counter.bytes = 0
        trainer.train_epoch(0)
        per_step = counter.bytes / len(train)
        divergence = max_divergence(target.parameters(), env)
        if env.is_main:
            print(f"ddp {mode}: {per_step:.0f} bytes of Q gradient handed to collectives per rank per step "
                  f"({per_step / 2**20:.2f} MiB); Q difference between ranks {divergence:.3g}")  # fmt: skip
        del trainer, target, model
    barrier(env)  # as kdtool's runs end: no rank leaves the group while another still uses it
    shutdown(env)


def communication(args: argparse.Namespace) -> dict[str, float]:
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [str(torchrun), "--standalone", "--nproc-per-node", "2", __file__, "--ddp-worker", "1",
               "--ddp-classes", str(args.ddp_classes), "--ddp-steps", str(args.ddp_steps),
               "--batch-size", str(args.batch_size)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("ddp ")]
    for line in lines:
        print(line)
    if done.returncode != 0 or len(lines) != 2:
        print(f"torchrun failed ({done.returncode}): {done.stderr[-2000:]}")
        return {}
    return {line.split()[1].rstrip(":"): float(line.split()[2]) for line in lines}


def main() -> None:
    args = arguments(
        __doc__.splitlines()[0],
        repeats=3,
        batch_size=256,
        tiny={"classes": "10,100", "steps": 1, "target_k": 100, "ddp_classes": 100, "ddp_steps": 1},
        classes=(str, "100,1000,10000,21841", "class counts of the linear-head cases"),
        target_k=(int, TARGET_K, "the K of the last line's ratio (a linear-head case's K)"),
        steps=(int, 8, "training steps per timed run (one epoch)"),
        resnet_steps=(int, 1, "steps per timed run of the ResNet-18 case (0: skip it)"),
        ddp_classes=(int, 10_000, "K of the 2-process torchrun communication count (0: skip it)"),
        ddp_steps=(int, 3, "steps of each torchrun side"),
        ddp_worker=(int, 0, "internal: run as one torchrun rank"),
    )
    if args.ddp_worker:
        ddp_worker(args)
        return
    classes = [int(k) for k in args.classes.split(",")]
    inputs = {"bench": "lls_scaling", **machine(), "batch size": args.batch_size, "steps per run": args.steps,
              "repeats": args.repeats, "clock": "CPU time per step (median)"}  # fmt: skip
    for key, value in inputs.items():
        print(f"{key}: {value}")
    rows = []
    for k in classes:
        print(f"-- linear head 512 → {k}")
        rows.append((f"linear 512 → {k:,}", k, linear_case(k, args)))
    if args.resnet_steps:
        print("-- ResNet-18, K = 1000")
        rows.append(("ResNet-18, K = 1,000", 1000, resnet_case(args)))
    bytes_per_step = communication(args) if args.ddp_classes else {}

    print("| case | LS step ms | LLS dense (before) ms | ratio | LLS sparse (after) ms | ratio | sync at epoch end ms "
          "(per step over an IN-21k epoch) | peak RSS dense / sparse MiB |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for label, _, r in rows:
        sync = r.get("sync", 0.0)
        print(f"| {label} | {r['ls'] * 1e3:.1f} | {r['dense'] * 1e3:.1f} | {r['dense'] / r['ls']:.2f} | "
              f"{r['sparse'] * 1e3:.1f} | {r['sparse'] / r['ls']:.2f} | "
              f"{sync * 1e3:.0f} ({sync / IN21K_STEPS * 1e3:.4f}) | "
              f"{r['dense peak MiB']:.0f} / {r['sparse peak MiB']:.0f} |")  # fmt: skip
    for label, _, r in rows:
        print(f"{label}: memory LLS training added at its peak: dense {r['dense added MiB']:.0f} MiB, "
              f"sparse {r['sparse added MiB']:.0f} MiB")  # fmt: skip
    if bytes_per_step:
        dense, sparse = bytes_per_step["dense"], bytes_per_step["sparse"]
        print(f"Q-gradient bytes per rank per step, 2-process torchrun (gloo), K = {args.ddp_classes}: "
              f"dense {dense:.0f}, sparse {sparse:.0f} (sparse / dense {sparse / dense:.4f})")  # fmt: skip
    at_target = [r for label, k, r in rows if k == args.target_k and label.startswith("linear")]
    if at_target:
        r = at_target[0]
        print(f"(before: CPU time LLS dense step / LS step at K = {args.target_k} = {r['dense'] / r['ls']:.3f})")
        print_ratio(f"CPU time LLS sparse step / LS step at K = {args.target_k}", r["sparse"] / r["ls"], TARGET)


if __name__ == "__main__":
    main()
