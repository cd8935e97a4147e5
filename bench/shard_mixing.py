"""Distinct classes per training batch read from wds: shards, before and after seeded writing + interleaved reading.

    python bench/shard_mixing.py [--classes 20] [--per-class 1300] [--shard-size 1000] [--batch 128]

An ImageFolder-like split (``--classes`` × ``--per-class`` tiny images, in class order as an ImageFolder
lists them) goes through ``kdtool shard``'s writer, then through the training reader of ``wds:`` data (its
1,000-sample shuffle buffer, one process, no workers). For each batch: the number of distinct classes in it,
averaged over the epoch. Side by side: the old layout (shards in class order, read one at a time), each half
of the fix alone, the fix (seeded order + 4 interleaved shards), and the expectation of a uniform shuffle
``K·(1 − (1 − 1/K)^B)``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
from pathlib import Path
from unittest import mock

import torch
from common import parse

from kdtool.data import Dataset, DatasetInfo, Split
from kdtool.data import shards as wds


def class_ordered(classes: int, per_class: int) -> Dataset:
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8)
    split = Split(images, labels)
    info = DatasetInfo("toy", tuple(f"c{i}" for i in range(classes)), 1, 2, (0.0,), (1.0,))
    return Dataset(info, split, Split(images[:10], labels[:10]))


def distinct_per_batch(folder: Path, batch: int, interleave: int, seed: int = 0) -> float:
    """Mean distinct classes per training batch of one epoch read from the shards in ``folder``."""
    split = wds._split_of(wds.shard_pattern(sorted(folder.glob("train-*.tar"))), "bench", False)
    readers, _ = wds.plan_readers(split, batch, 0, 1, 0, shard_ranks=True)
    samples = wds._ShardSamples(split, readers, batch, None, 0, shuffle=True, seed=seed, rank=0)
    with mock.patch.object(wds, "INTERLEAVE", interleave):
        items = samples._samples(list(readers[0].shards), random.Random(seed))
        labels = [int(fields[wds.LABEL_KEY]) for _, _, fields in items]
    return statistics.mean(len(set(labels[i : i + batch])) for i in range(0, len(labels) - batch + 1, batch))


def write(dataset: Dataset, folder: Path, shard_size: int, shuffled: bool) -> Path:
    if shuffled:
        wds.write_shards(dataset, folder, shard_size, seed=0)
    else:  # the old writer: split order
        with mock.patch.object(torch, "randperm", lambda n, generator=None: torch.arange(n)):
            wds.write_shards(dataset, folder, shard_size, seed=0)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=1300)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128)
    args = parse(parser, {"classes": 4, "per_class": 50, "shard_size": 40, "batch": 16})
    dataset = class_ordered(args.classes, args.per_class)
    k, b = args.classes, args.batch
    with tempfile.TemporaryDirectory() as tmp:
        ordered = write(dataset, Path(tmp) / "ordered", args.shard_size, shuffled=False)
        shuffled = write(dataset, Path(tmp) / "shuffled", args.shard_size, shuffled=True)
        rows = [
            ("before: class order, one shard at a time", distinct_per_batch(ordered, b, 1)),
            ("class order, 4 shards interleaved", distinct_per_batch(ordered, b, 4)),
            ("seeded order, one shard at a time", distinct_per_batch(shuffled, b, 1)),
            ("after: seeded order, 4 shards interleaved", distinct_per_batch(shuffled, b, 4)),
            ("uniform shuffle (expected)", k * (1 - (1 - 1 / k) ** b)),
        ]
    print(f"{k} classes × {args.per_class} samples, shards of {args.shard_size}, buffer {wds.SHUFFLE_BUFFER}, "
          f"batches of {b}: distinct classes per batch")  # fmt: skip
    for name, value in rows:
        print(f"  {name:<45} {value:6.2f}")


if __name__ == "__main__":
    main()
