"""A KD epoch from a teacher cache / a KD epoch from the live teacher: ResNet-18 teacher -> LeNet-5 student.

Both run through kdtool's engine on the same Fashion-MNIST subset (CPU: a ResNet-18 forward per
batch makes the full set too slow here; ``--limit`` says how many samples), with the standard
augmentation. The live side runs the frozen teacher (BatchNorm folded, channels-last, as
``kdtool distill`` prepares it on a CPU) on every augmented batch; the cached side replays the
cache's views (``--views``, all 10 logits kept: exact) and never runs it. Making the cache, V teacher
passes over the subset, is timed once and printed for information. Weights do not change the speed,
so both networks are freshly initialised.

    .venv/bin/python bench/cache_vs_kd.py [--limit N] [--views V] [--repeats R] [--threads T]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from common import KdtoolEpochs, Timing, arguments, fashion_mnist, interleave, kdtool_config, lenet5, machine, report

from kdtool.distill.cache import data_options
from kdtool.distill.cachebuild import CacheRequest, write_teacher_cache
from kdtool.losses import FrozenTeacher, KnowledgeDistillation
from kdtool.models.registry import build_model
from kdtool.training.accel import frozen_for_inference

TARGET = 0.1


def main() -> None:
    args = arguments(__doc__.splitlines()[0], limit=1024, tiny={"views": 2}, views=(int, 4, "views of the cache"))
    dataset = fashion_mnist(args.limit)
    torch.manual_seed(0)
    teacher = FrozenTeacher(frozen_for_inference(build_model("resnet18", 10, 1, 28), channels_last=True))
    options = data_options("fashion-mnist", 28, "standard", args.limit, 0, text=False)
    request = CacheRequest(views=args.views, limit_train=args.limit, cache_dtype="float32")
    start = time.process_time()
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "bench.cache.safetensors")
        cache = write_teacher_cache(
            teacher, dataset, path, request, options, {"teacher_run": "-", "teacher_sha256": "-"}
        )
    cache_seconds = time.process_time() - start
    cfg = kdtool_config(args.batch_size, smoothing="kd")
    cached = KdtoolEpochs(dataset, lenet5(), KnowledgeDistillation(None), cfg, teacher_cache=cache)
    live = KdtoolEpochs(dataset, lenet5(), KnowledgeDistillation(teacher), kdtool_config(args.batch_size, "kd"))
    a, b = Timing("KD epoch from the cache"), Timing("KD epoch (live ResNet-18 teacher)")
    with cached, live:
        interleave(a, cached, b, live, args.repeats, args.warmup)
    inputs = {
        "bench": "cache_vs_kd",
        **machine(),
        "student": "lenet5",
        "teacher": "resnet18 (CIFAR stem), frozen, BatchNorm folded, channels-last",
        "data": f"fashion-mnist train subset, {len(dataset.train)} of 60000, standard augmentation",
        "cache": f"{args.views} views, all 10 logits; made in {cache_seconds:.2f} s CPU (once, not in the ratio)",
        "batch size": args.batch_size,
        "repeats": args.repeats,
    }
    report(inputs, a, b, TARGET, clock="cpu")


if __name__ == "__main__":
    main()
