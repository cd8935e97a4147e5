"""A KD epoch from a teacher cache / a KD epoch from the live teacher, on streamed ImageFolder data (#31).

Both run through kdtool's engine on the same streamed ``imagefolder:`` tree (Fashion-MNIST images written as
PNG files, decoded in ``--workers`` DataLoader processes and cropped to 32 × 32 with the stream path's
random-resized crop and flip): the live side runs a frozen ResNet-18 teacher (BatchNorm folded,
channels-last) on every batch, the cached side replays ``cache-teacher``'s stored crop boxes and logits
(``--views``, all 10 logits, float16) and never runs it; the student is LeNet-5. Making the cache is timed
once and printed for information. Weights do not change the speed, so both networks are freshly initialised.
Wall time (the decoding runs in worker processes).

    python bench/cache_vs_kd_stream.py [--limit N] [--views V] [--workers W] [--repeats R] [--tiny]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
from common import KdtoolEpochs, Timing, arguments, fashion_mnist, interleave, kdtool_config, machine, report
from torchvision.io import write_png

from kdtool.data import load_dataset
from kdtool.distill.cache import TeacherCache, data_options
from kdtool.distill.cachebuild import CacheRequest, write_teacher_cache
from kdtool.losses import FrozenTeacher, KnowledgeDistillation
from kdtool.models.registry import build_model
from kdtool.training.accel import frozen_for_inference

TARGET = 0.3
SIZE = 32


def write_imagefolder(root: Path, limit: int) -> None:
    """``limit`` Fashion-MNIST training images (and a tenth as many test ones, every class) as PNG files, one
    folder a class."""
    data = fashion_mnist(limit)
    per_class = max(1, limit // 100)
    val = torch.cat([(data.test.labels == c).nonzero()[:per_class, 0] for c in range(10)])
    for split, part in (("train", data.train), ("val", data.test.take(val))):
        for i, (image, label) in enumerate(zip(part.inputs, part.labels.tolist(), strict=True)):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            write_png(image, str(folder / f"{i:06d}.png"))


def main() -> None:
    tiny = "--tiny" in sys.argv
    if tiny:  # a seconds-long smoke run (the test suite's)
        sys.argv.remove("--tiny")
    args = arguments(__doc__.splitlines()[0], limit=2048, views=(int, 4, "views of the cache"),
                     workers=(int, 2, "DataLoader workers of both sides"))  # fmt: skip
    if tiny:
        args.limit, args.views, args.repeats, args.warmup, args.batch_size = 64, 1, 1, 0, 32
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fmnist"
        write_imagefolder(root, args.limit)
        spec = f"imagefolder:{root}"
        dataset = load_dataset(spec, image_size=SIZE, stream=True)
        teacher = FrozenTeacher(frozen_for_inference(build_model("resnet18", 10, 3, SIZE), channels_last=True))
        options = data_options(spec, SIZE, "standard", None, 0, False, "stream")
        request = CacheRequest(views=args.views, loader="stream", workers=args.workers, batch_size=args.batch_size)
        path = str(Path(tmp) / "teacher.cache.safetensors")
        start = time.perf_counter()
        write_teacher_cache(teacher, dataset, path, request, options, {"teacher_run": "-", "teacher_sha256": "-"})
        cache_seconds = time.perf_counter() - start
        cache = TeacherCache.open(path)
        common = {
            "dataset": spec,
            "image_size": SIZE,
            "loader": "stream",
            "workers": args.workers,
            "augment": "standard",
        }

        def student() -> torch.nn.Module:
            return build_model("lenet5", 10, 3, SIZE)

        cached = KdtoolEpochs(dataset, student(), KnowledgeDistillation(None),
                              kdtool_config(args.batch_size, "kd", **common), teacher_cache=cache)  # fmt: skip
        live = KdtoolEpochs(dataset, student(), KnowledgeDistillation(teacher),
                            kdtool_config(args.batch_size, "kd", **common))  # fmt: skip
        a, b = Timing("KD epoch from the cache"), Timing("KD epoch (live ResNet-18 teacher)")
        with cached, live:
            interleave(a, cached, b, live, args.repeats, args.warmup)
    inputs = {
        "bench": "cache_vs_kd_stream",
        **machine(),
        "student": "lenet5",
        "teacher": "resnet18 (CIFAR stem), frozen, BatchNorm folded, channels-last",
        "data": f"imagefolder: of {args.limit} Fashion-MNIST PNGs, --loader stream, {args.workers} workers, "
        f"random-resized crop to {SIZE} and flip",
        "cache": f"{args.views} views, all 10 logits, float16; made in {cache_seconds:.2f} s wall (once, not in "
        f"the ratio)",
        "batch size": args.batch_size,
        "repeats": args.repeats,
    }
    report(inputs, a, b, TARGET, clock="wall")


if __name__ == "__main__":
    main()
