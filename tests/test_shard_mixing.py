"""#28.2: kdtool shard writes a seeded random order and readers interleave shards, so batches mix classes."""

import json
import random
import statistics

import torch

from kdtool.data import Dataset, DatasetInfo, Split
from kdtool.data import shards as wds


def class_ordered(classes=20, per_class=150) -> Dataset:
    """An ImageFolder-like training split: 3,000 samples in class order (more than the 1,000-sample buffer)."""
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = (torch.arange(len(labels)) % 251).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    info = DatasetInfo("toy", tuple(f"c{i}" for i in range(classes)), 1, 2, (0.0,), (1.0,))
    return Dataset(info, Split(images, labels), Split(images[:10], labels[:10]))


def epoch_labels(folder, batch=128, seed=0) -> list[int]:
    split = wds._split_of(wds.shard_pattern(sorted(folder.glob("train-*.tar"))), "test", False)
    readers, _ = wds.plan_readers(split, batch, 0, 1, 0, shard_ranks=True)
    samples = wds._ShardSamples(split, readers, batch, None, 0, shuffle=True, seed=seed, rank=0)
    shards = list(readers[0].shards)
    random.Random(seed).shuffle(shards)
    return [int(fields[wds.LABEL_KEY]) for _, _, fields in samples._samples(shards, random.Random(seed))]


def test_batches_of_a_class_ordered_folder_hold_about_every_class(tmp_path):
    dataset = class_ordered()
    done = wds.write_shards(dataset, tmp_path / "wds", shard_size=300, seed=0)
    assert len(done.train) == 10 and done.num_train > wds.SHUFFLE_BUFFER
    labels = epoch_labels(tmp_path / "wds")
    assert sorted(labels) == sorted(dataset.train.labels.tolist())  # every sample once
    distinct = statistics.mean(len(set(labels[i : i + 128])) for i in range(0, len(labels) - 127, 128))
    assert distinct >= 18.5, distinct  # uniform shuffle: 20·(1 − 0.95^128) ≈ 19.97; class order gave ≈ 5
    record = json.loads((tmp_path / "wds" / wds.SHARDS_FILE).read_text())
    assert record["seed"] == 0 and record["train_order"] == "random permutation, seed 0"


def test_the_written_order_is_seeded(tmp_path):
    dataset = class_ordered(classes=4, per_class=10)
    orders = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        done = wds.write_shards(dataset, tmp_path / name, shard_size=40, seed=seed)
        orders[name] = [key for key, _ in wds.shard_samples(str(done.train[0]))]
    assert orders["a"] == orders["b"] != orders["c"]
    assert orders["a"] != sorted(orders["a"])  # not split (class) order


def test_workers_change_wds_batches_so_they_count_as_a_result_changing_option(tmp_path):
    """wds: shards are dealt out to the workers, each making its own batches: --workers is recorded (resolved)
    and a run of other --workers is another run; streamed imagefolder batches do not depend on it."""
    from kdtool.config.runconfig import TrainConfig
    from kdtool.runs.folder import first_difference

    dataset = class_ordered(classes=4, per_class=10)
    wds.write_shards(dataset, tmp_path / "wds", shard_size=10, seed=0)
    spec = f"wds:{tmp_path}/wds/train-{{000000..000003}}.tar"
    cfg = TrainConfig(dataset=spec).resolve()
    assert isinstance(cfg.workers, int) and cfg.to_dict()["workers"] == cfg.workers
    other = {**cfg.result_options(), "workers": cfg.workers + 1}
    assert first_difference(cfg.to_dict(), other) == ("workers", cfg.workers, cfg.workers + 1)
    folder = TrainConfig(dataset="imagefolder:x", workers=2, augment="none")
    assert folder.to_dict()["workers"] == 2 and "workers" not in folder.result_options()
