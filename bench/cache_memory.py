"""Teacher cache sizes (bytes per sample and view) and the peak memory of a student epoch reading a cache bigger
than its memory budget (format kdtool.cache/2).

Sizes: caches of random logits written by kdtool's own writer for K = 10, 100, 1000 classes and top-k choices,
float16 (the default), in-memory data (P = 2 int16 draws: Fashion-MNIST's standard crop and flip) and streamed
data (7 int32 draws: crop box, flip, image size); bytes per sample-view = (file − header − the per-sample index)
/ (N·V). Memory: a Fashion-MNIST subset, a cache of ``--views`` views of a fixed random teacher (float32, so the
file is big), opened with a budget of a quarter of its size (read per batch from the file) and whole; the peak
RSS of opening it plus one LeNet-5 KD epoch, above the process's RSS before: each of ``--repeats`` runs and their
median (one run's peak varies by hundreds of MiB, loaded whole or not: what the epoch's garbage holds when the
collector runs; the median is what to read).

    python bench/cache_memory.py [--limit N] [--views V] [--repeats R] [--tiny]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
from pathlib import Path

import torch
from common import KdtoolEpochs, fashion_mnist, kdtool_config, lenet5, peak_rss_mib, reset_peak_rss, rss_mib

from kdtool.distill.cache import CACHE_DTYPES, CacheWriter, Layout, TeacherCache, data_options
from kdtool.distill.cachebuild import CacheRequest, write_teacher_cache
from kdtool.losses import KnowledgeDistillation

SIZES = ((10, 10), (10, 5), (100, 100), (100, 10), (1000, 1000), (1000, 100), (1000, 10))


def bytes_per_sample_view(folder: Path, classes: int, top_k: int, streamed: bool, n: int, views: int = 2) -> float:
    """Measured from a written file: what each sample adds per view."""
    params = 7 if streamed else 2
    layout = Layout(views, n, classes, top_k, params, CACHE_DTYPES["float16"], streamed)
    options = data_options("wds:x" if streamed else "toy", 32, "standard", None, 0, False,
                           "stream" if streamed else "memory")  # fmt: skip
    meta = {"teacher_run": "-", "teacher_sha256": "-", "dataset": "toy", "class_names": "[]", "num_samples": str(n),
            "views": str(views), "top_k": str(top_k), "cache_dtype": "float16", "data_options": str(options),
            "created_by": "bench"}  # fmt: skip
    path = folder / f"size-{classes}-{top_k}-{streamed}.safetensors"
    writer = CacheWriter(path, layout, torch.arange(n), meta)
    for view in range(views):
        writer.add(view, torch.arange(n), torch.arange(n) % classes, torch.zeros(n, params, dtype=torch.long),
                   torch.randn(n, classes))  # fmt: skip
    writer.close()
    header = int.from_bytes(path.read_bytes()[:8], "little") + 8
    return (path.stat().st_size - header - 16 * n) / (n * views)


def epoch_peak(dataset, path: str, budget: int | None, batch_size: int) -> tuple[float, bool]:
    """Peak RSS (MiB) of opening the cache with ``budget`` and one KD epoch from it, above the RSS before."""
    gc.collect()
    before = rss_mib()
    reset_peak_rss()
    cache = TeacherCache.open(path, budget)
    cfg = kdtool_config(batch_size, smoothing="kd", augment="standard")  # the cache's augmentation
    with KdtoolEpochs(dataset, lenet5(), KnowledgeDistillation(None), cfg, teacher_cache=cache) as epochs:
        epochs()
    return peak_rss_mib() - before, cache.in_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20000, help="Fashion-MNIST training samples")
    parser.add_argument("--views", type=int, default=200, help="views of the cache (its size grows with them)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="measured runs of each (their median is reported)")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (the test suite's)")
    args = parser.parse_args()
    if args.tiny:
        args.limit, args.views, args.repeats = 256, 8, 1
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("| K | k | bytes per sample-view, in-memory data | streamed data |")
        print("| --- | --- | --- | --- |")
        for classes, top_k in SIZES:
            memory, stream = (bytes_per_sample_view(folder, classes, top_k, s, 64 if args.tiny else 1024)
                              for s in (False, True))  # fmt: skip
            print(f"| {classes} | {top_k} | {memory:.0f} | {stream:.0f} |")
        dataset = fashion_mnist(args.limit)
        projection = torch.randn(28 * 28, 10) / 28  # a fixed random teacher: only the cache's size matters here

        def teacher(x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) @ projection

        options = data_options("fashion-mnist", 28, "standard", args.limit, 0, text=False)
        path = str(folder / "memory.cache.safetensors")
        request = CacheRequest(views=args.views, limit_train=args.limit, cache_dtype="float32")
        write_teacher_cache(teacher, dataset, path, request, options, {"teacher_run": "-", "teacher_sha256": "-"})
        size = TeacherCache.file_bytes(path)
        budget = size // 4
        print(f"cache: {args.views} views of {args.limit} samples, 10 classes, float32: {size / 2**20:.1f} MiB; "
              f"budget {budget / 2**20:.1f} MiB (a quarter)")  # fmt: skip
        epoch_peak(dataset, path, budget, args.batch_size)  # warm-up: first-use allocations count for neither
        for name, given in (("cache 4x the budget (read per batch)", budget), ("cache loaded whole", None)):
            runs = [epoch_peak(dataset, path, given, args.batch_size) for _ in range(args.repeats)]
            peaks, median = ", ".join(f"{peak:.1f}" for peak, _ in runs), statistics.median(p for p, _ in runs)
            print(f"{name}: peak RSS of opening it and one KD epoch, above the RSS before: median {median:.1f} MiB "
                  f"of {peaks} (in memory: {runs[0][1]})")  # fmt: skip


if __name__ == "__main__":
    main()
