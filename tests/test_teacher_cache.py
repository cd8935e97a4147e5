"""The teacher cache: its top-k compression, its file, its exact replay of views and logits, the data
checks, and ``cache-teacher`` / ``distill --teacher-cache`` end to end."""

import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from kdtool.config.runconfig import DistillConfig
from kdtool.data import Dataset, DatasetInfo, ImageBatchTransform, Split, load_dataset
from kdtool.data.augment import BatchMixer, MixedBatch, parse_augment
from kdtool.distill.cache import CACHE_DTYPES, CacheWriter, Layout, TeacherCache, compress_logits, data_options
from kdtool.distill.cachebuild import CacheRequest, build_teacher_cache, view_generator
from kdtool.distill.replay import ReplayLoader
from kdtool.errors import KdtoolError
from kdtool.losses import DISTKD, WTTM, DecoupledKD, FrozenTeacher, KnowledgeDistillation, NormalizedKD
from kdtool.runs.folder import RunDir
from kdtool.training.accel import frozen_for_inference
from kdtool.training.rundata import select_data
from kdtool.training.runmodel import load_run_model
from kdtool.workflows.pipeline import checked_teacher_cache, make_loaders
from tests.conftest import TINY

LIMIT = ("--limit-train", "256")
# fashion-mnist trains without augmentation by default; these caches hold augmented views
AUGMENTED = ("--augment", "standard")


# -- top-k compression ----------------------------------------------------------------------------


def dense_of(parts, labels, k):
    """The B×K logits a cache's parts stand for (as TeacherCache.teacher_logits rebuilds them)."""
    if "logits" in parts:
        return parts["logits"]
    dense = parts["rest_logit"][:, None].expand(-1, k).clone()
    dense.scatter_(1, labels[:, None], parts["gt_logit"][:, None])
    return dense.scatter_(1, parts["topk_indices"], parts["topk_logits"])


def test_all_classes_are_stored_exactly_in_class_order():
    torch.manual_seed(0)
    logits = torch.randn(5, 6) * 3
    parts = compress_logits(logits, 6, torch.arange(5))
    assert list(parts) == ["logits"] and torch.equal(parts["logits"], logits)


@pytest.mark.parametrize("top_k", [1, 3, 5])
def test_top_k_keeps_the_k_largest_and_the_ground_truth_exactly_and_the_rest_mass(top_k):
    torch.manual_seed(1)
    logits = torch.randn(7, 8) * 4
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 7])
    parts = compress_logits(logits, top_k, labels)
    dense = dense_of(parts, labels, 8)
    kept = torch.zeros(7, 8, dtype=torch.bool).scatter_(1, parts["topk_indices"], True)
    kept.scatter_(1, labels[:, None], True)
    assert torch.equal(dense[kept], logits[kept])  # the top-k and ground-truth logits, bit for bit
    assert torch.equal(logits.topk(top_k, 1).indices.sort(1).values, parts["topk_indices"].sort(1).values)
    p, q = F.softmax(logits, 1), F.softmax(dense, 1)
    torch.testing.assert_close(q[kept], p[kept])  # the softmax normaliser is unchanged...
    torch.testing.assert_close((q * ~kept).sum(1), (p * ~kept).sum(1))  # ...so is the rest's total mass
    for row in range(7):  # one logit stands for every other class
        others = dense[row][~kept[row]]
        assert torch.equal(others, others[:1].expand_as(others))


# -- the file -------------------------------------------------------------------------------------


def write_cache(path, logits, labels, params=None, ids=None, top_k=None, dtype="float32", options=None, dataset="toy"):
    """A cache file of the V×N×K ``logits`` of samples of class ``labels`` (ids: 0..N−1 unless given), opened."""
    views, n, k = logits.shape
    params = torch.zeros(views, n, 0, dtype=torch.long) if params is None else params
    options = options or data_options("toy", 8, "standard", None, 0, False)
    layout = Layout(views, n, k, top_k or k, params.shape[2], CACHE_DTYPES[dtype], options["loader"] == "stream")
    meta = {"teacher_run": "runs/t", "teacher_sha256": "ab" * 32, "dataset": dataset, "num_samples": str(n),
            "class_names": json.dumps([f"c{i}" for i in range(k)]), "views": str(views), "top_k": str(top_k or k),
            "cache_dtype": dtype, "data_options": json.dumps(options), "created_by": "test"}  # fmt: skip
    writer = CacheWriter(path, layout, torch.arange(n) if ids is None else ids, meta)
    for view in range(views):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(view))  # rows may come in any order
        writer.add(view, order, labels[order], params[view, order], logits[view, order])
    writer.close()
    return TeacherCache.open(path)


def toy_cache(tmp_path, views=2, n=6, k=3, top_k=3, params=2, dtype="float32", budget=None) -> TeacherCache:
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(views, n, k, generator=g), torch.arange(n) % k
    cache = write_cache(tmp_path / "toy.safetensors", logits, labels, torch.randint(0, 9, (views, n, params),
                        generator=g), torch.arange(n) * 2, top_k, dtype)  # fmt: skip
    return cache if budget is None else TeacherCache.open(cache.path, budget)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("top_k", [4, 2])
@pytest.mark.parametrize("budget", [None, 0])
def test_a_cache_file_round_trips_in_memory_or_read_per_batch(tmp_path, dtype, top_k, budget):
    g = torch.Generator().manual_seed(0)
    logits, labels, params = torch.randn(2, 6, 4, generator=g) * 5, torch.arange(6) % 4, torch.randint(0, 9, (2, 6, 3))
    written = write_cache(tmp_path / "c.safetensors", logits, labels, params, torch.arange(6) * 2, top_k, dtype)
    cache = TeacherCache.open(written.path, budget)
    assert cache.in_memory == (budget is None) and cache.cache_dtype == dtype
    assert (cache.views, cache.num_samples, cache.top_k, cache.num_classes) == (2, 6, top_k, 4)
    assert torch.equal(cache.sample_index, torch.arange(6) * 2) and torch.equal(cache.labels, labels)
    rows = torch.tensor([4, 0, 5, 1])  # in no order, with a run of two consecutive rows
    for view in range(2):
        assert torch.equal(cache.aug_params(view, rows), params[view, rows])
        parts = compress_logits(logits[view, rows], top_k, labels[rows])  # in float32, each part then rounded
        rounded = {name: v.to(CACHE_DTYPES[dtype]).float() if v.is_floating_point() else v for name, v in parts.items()}
        expected = dense_of(rounded, labels[rows], 4)
        torch.testing.assert_close(cache.teacher_logits(view, rows), expected, rtol=0, atol=0)


def test_a_cache_bigger_than_the_budget_is_never_loaded_whole(tmp_path, monkeypatch):
    cache = toy_cache(tmp_path, budget=10)
    assert not cache.in_memory and TeacherCache.file_bytes(cache.path) > 10
    read = []
    original = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, size, offset: read.append(size) or original(fd, size, offset))
    cache.teacher_logits(1, torch.tensor([3]))
    assert read == [3 * 4]  # one row of one view: 3 float32 logits
    assert "read from the file per batch" in cache.replay_line("standard")


def test_cache_sizes_per_sample_view():
    sizes = {(k, top): Layout(1, 1, k, top, 2, torch.float16).bytes_per_view() for k, top in
             ((10, 10), (100, 100), (100, 10), (1000, 1000), (1000, 100), (1000, 10))}  # fmt: skip
    # k = K: the K logits alone (no classes); k < K: k logits and classes, the ground truth and the rest; P = 2
    assert sizes == {(10, 10): 24, (100, 100): 204, (100, 10): 48, (1000, 1000): 2004, (1000, 100): 408,
                     (1000, 10): 48}  # fmt: skip


def test_damaged_or_foreign_files_are_refused_in_one_line(tmp_path):
    import pickle

    from safetensors.torch import save_file

    (tmp_path / "pickle.safetensors").write_bytes(pickle.dumps({"a": 1}))
    cache = toy_cache(tmp_path)
    with safe_open(cache.path, "pt") as fh:
        meta = fh.metadata()
        tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    save_file(tensors, str(tmp_path / "qformat.safetensors"), metadata={**meta, "format": "kdtool.q/1"})
    save_file(tensors, str(tmp_path / "v1.safetensors"), metadata={**meta, "format": "kdtool.cache/1"})
    save_file({**tensors, "logits": tensors["logits"].clone().fill_(float("nan"))}, str(tmp_path / "nan.safetensors"),
              metadata=meta)  # fmt: skip
    save_file({**tensors, "logits": tensors["logits"][:1]}, str(tmp_path / "shape.safetensors"), metadata=meta)
    for name, message in (("pickle", "never unpickles"), ("qformat", "unknown format"),
                          ("v1", "is a kdtool.cache/1 file (whole-file, float32), which this kdtool no longer reads: "
                                 "rebuild it with kdtool cache-teacher"),
                          ("shape", "logits is F32 (1, 6, 3), expected F32 (2, 6, 3)"),
                          ("missing", "does not exist")):  # fmt: skip
        with pytest.raises(KdtoolError, match=re.escape(message)) as info:
            TeacherCache.open(tmp_path / f"{name}.safetensors")
        assert "\n" not in str(info.value)
    with pytest.raises(KdtoolError, match=r"holds a NaN or infinite logit, .* in its tensors: it is damaged"):
        TeacherCache.open(tmp_path / "nan.safetensors")  # in memory: checked whole when opened
    damaged = TeacherCache.open(tmp_path / "nan.safetensors", 0)  # read per batch: each batch checked as read
    with pytest.raises(KdtoolError, match=r"holds a NaN or infinite logit, .* in view 1: it is damaged"):
        damaged.teacher_logits(1, torch.tensor([0]))


def test_a_cache_loaded_whole_is_checked_piece_by_piece_to_its_last_logit(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from kdtool.distill import cache as cache_module

    monkeypatch.setattr(cache_module, "CHECK_CHUNK", 5)  # pieces of 5 logits: the damaged one is in the last piece
    cache = toy_cache(tmp_path)
    with safe_open(cache.path, "pt") as fh:
        meta, tensors = fh.metadata(), {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    assert tensors["logits"].numel() > 5 * 6
    TeacherCache.open(cache.path)  # every piece finite
    logits = tensors["logits"].clone()
    logits.view(-1)[-1] = float("inf")
    save_file({**tensors, "logits": logits}, str(tmp_path / "inf.safetensors"), metadata=meta)
    with pytest.raises(KdtoolError, match=r"holds a NaN or infinite logit, .* in its tensors: it is damaged"):
        TeacherCache.open(tmp_path / "inf.safetensors")


# -- replay ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(tiny_onehot_run):
    """A tiny 1-hot LeNet-5 teacher run (1 epoch on 256 images): the session's (tests/conftest.py), read only here."""
    return tiny_onehot_run


def replay_loader(cache):
    """The replay of a cache of the 256-image Fashion-MNIST limit, by a run augmenting as the cache was made."""
    data = load_dataset("fashion-mnist").limited(256, None, 0)
    augment = parse_augment(cache.data_options["augment"])
    transform = ImageBatchTransform.for_dataset(data.info, augment)
    rows = cache.rows_of(data.train.sample_ids())
    return ReplayLoader(data.train, 64, transform, torch.device("cpu"), cache, rows, augment), data, transform


def test_replay_with_all_classes_gives_the_live_teachers_loss_for_every_view(teacher, tmp_path):
    views = 3
    request = CacheRequest(views=views, limit_train=256, batch_size=100, device="cpu", cache_dtype="float32")
    cache = build_teacher_cache(RunDir.open(teacher), str(tmp_path / "c.safetensors"), request)
    network, _, _ = load_run_model(RunDir.open(teacher))
    live = KnowledgeDistillation(FrozenTeacher(frozen_for_inference(network, channels_last=True)), temperature=2.0)
    cached = KnowledgeDistillation(None, temperature=2.0)
    loader, data, transform = replay_loader(cache)
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    seen = []
    for epoch in range(views + 1):
        for x, y, teacher_logits in loader.training_batches(epoch):
            logits = student(x)
            torch.testing.assert_close(cached(logits, y, teacher_logits=teacher_logits), live(logits, y, x),
                                       rtol=1e-5, atol=1e-6)  # fmt: skip
        # every sample of the epoch augmented exactly as the cache's view (epoch mod V) drew it
        order = torch.cat(list(loader.batch_indices(epoch)))
        x_epoch = torch.cat([x for x, _ in loader.epoch(epoch)])
        drawn = transform.draw(data.train.inputs.shape, view_generator(0, epoch % views), torch.device("cpu"))
        assert torch.equal(x_epoch, transform.apply(data.train.inputs[order], drawn[order]))
        seen.append(x_epoch[order.argsort()])
    assert not torch.equal(seen[0], seen[1]) and torch.equal(seen[0], seen[views])  # views cycle


def test_an_unaugmented_cache_holds_the_teachers_logits_of_the_plain_images(teacher, tmp_path):
    request = CacheRequest(augment="none", limit_train=256, device="cpu", cache_dtype="float32")
    cache = build_teacher_cache(RunDir.open(teacher), str(tmp_path / "c.safetensors"), request)
    assert cache.views == 1 and cache.store["aug_params"].shape == (1, 256, 0)
    network, _, _ = load_run_model(RunDir.open(teacher))
    _, data, _ = replay_loader(cache)
    plain = ImageBatchTransform.for_dataset(data.info, ())
    with torch.no_grad():
        expected = network(plain(data.train.inputs, None))
    torch.testing.assert_close(cache.teacher_logits(0, torch.arange(256)), expected, rtol=1e-5, atol=1e-5)


def test_mixing_mixes_the_teacher_logits_with_the_same_pairs_and_weight():
    torch.manual_seed(2)
    x, y, t = torch.randn(6, 1, 4, 4), torch.arange(6), torch.randn(6, 3)
    for modes in (("mixup",), ("cutmix",), ("mixup", "cutmix")):
        batch = BatchMixer(modes)(x, y, torch.Generator().manual_seed(5), t)
        assert isinstance(batch, MixedBatch)
        order = torch.tensor([y.tolist().index(p) for p in batch.paired_labels.tolist()])
        torch.testing.assert_close(batch.teacher_logits, batch.lam * t + (1 - batch.lam) * t[order])
        again = BatchMixer(modes)(x, y, torch.Generator().manual_seed(5))  # the same draws without a cache
        assert torch.equal(again.inputs, batch.inputs) and again.teacher_logits is None
        passed = []

        def target(logits, labels, inputs, teacher_logits=None, passed=passed):
            passed.append(teacher_logits)
            return torch.zeros(())

        batch.loss(target, x)
        assert len(passed) == 2 and all(p is batch.teacher_logits for p in passed)


def synthetic(n=40, k=4):
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8), torch.arange(n) % k)
    info = DatasetInfo("synthetic", tuple(f"c{i}" for i in range(k)), 1, 8, (0.5,), (0.25,))
    return Dataset(info, split, split)


def test_class_and_sample_subsets_find_their_samples_and_slice_the_classes(tmp_path):
    full = synthetic()
    logits = torch.randn(1, 40, 4)
    options = data_options("fashion-mnist", 8, "none", None, 0, False)
    write_cache(tmp_path / "c.safetensors", logits, full.train.labels, options=options, dataset="synthetic")
    cfg = DistillConfig(teacher_cache=str(tmp_path / "c.safetensors"), augment="none", classes=["c3", "c1"],
                        sample_fraction=0.5, batch_size=4, val_fraction=0.25)  # fmt: skip
    cfg.resolve()
    dataset = select_data(full, cfg, [3, 1], cfg.sample_fraction).with_validation(cfg.val_fraction, cfg.seed)
    loaded = checked_teacher_cache(cfg, full, dataset)
    train, _ = make_loaders(dataset, cfg, torch.device("cpu"), teacher_cache=loaded)
    target = KnowledgeDistillation(None, class_index=[3, 1])
    ids = dataset.train.sample_ids()
    for idx, (x, _, t) in zip(train.batch_indices(0), train.training_batches(0), strict=True):
        assert torch.equal(t, logits[0, ids[idx]])  # each sample's own cached logits
        assert torch.equal(target.teacher_logits(x, t), logits[0, ids[idx]][:, [3, 1]])
        assert set((full.train.labels[ids[idx]]).tolist()) <= {1, 3}


# -- command line ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_file(teacher, tmp_path_factory):
    from kdtool.cli import main

    out = tmp_path_factory.mktemp("cache") / "teacher.cache.safetensors"
    with pytest.raises(SystemExit) as info:
        main(["cache-teacher", str(teacher), "--views", "2", *AUGMENTED, *LIMIT, "--out", str(out)])
    assert info.value.code == 0
    return out


def test_cache_teacher_writes_what_it_says(cache_file, teacher):
    cache = TeacherCache.open(cache_file)
    assert (cache.views, cache.num_samples, cache.top_k) == (2, 256, 10) and cache.store["aug_params"].shape[2] == 2
    assert cache.data_options == {"dataset": "fashion-mnist", "image_size": None, "augment": "standard",
                                  "limit_train": 256, "seed": 0, "loader": "memory"}  # fmt: skip
    assert cache.cache_dtype == "float16" and cache.extra["teacher_amp"] == "none"  # the defaults
    assert cache.teacher_run == str(teacher) and len(cache.teacher_sha256) == 64


@pytest.mark.parametrize("args", [[], ["--kd-loss", "dkd", "--augment", "standard,mixup"],
                                  ["--kd-loss", "dist", "--augment", "standard,cutmix"]])  # fmt: skip
def test_distill_from_a_cache_builds_no_teacher(run_cli, cache_file, tmp_path, monkeypatch, args):
    def no_teacher(*a, **k):
        raise AssertionError("a cached teacher must not be built")

    monkeypatch.setattr("kdtool.distill.teachers.load_run_model", no_teacher)
    out = tmp_path / "st"
    augment = () if "--augment" in args else AUGMENTED
    code, _, stderr = run_cli("distill", "--teacher-cache", cache_file, *args, *augment, *TINY, "--out", out)
    assert code == 0, stderr
    config = json.loads((out / "config.json").read_text())
    assert config["teacher_cache"] == str(cache_file) and "teacher" not in config
    assert config["teacher_cache_file"]["views"] == 2 and config["teacher_cache_file"]["top_k"] == 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit-train", "128"], "made with --limit-train 256, this run has --limit-train 128"),
        (["--no-augment", *LIMIT], "made with --augment standard, this run has --augment none"),
        (["--seed", "1", *LIMIT], "made with --seed 0, this run has --seed 1"),
        (["--classes", "Shirt,Coat", *LIMIT], "holds no views of"),
        (["--teacher", "{teacher}", *LIMIT], "give exactly one of"),
        (["--alpha", "0.1", *LIMIT], "--alpha"),
    ],
)
def test_a_cache_for_other_data_is_refused_in_one_line(run_cli, cache_file, teacher, tmp_path, args, message):
    args = [a.format(teacher=teacher) for a in args] + ([] if "--no-augment" in args else list(AUGMENTED))
    out = tmp_path / "never"
    code, _, stderr = run_cli("distill", "--teacher-cache", cache_file, *args, "--epochs", "1", "--out", out)
    assert code == 2 and message in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and not out.exists()


def test_a_cache_of_another_dataset_classes_or_size_is_refused(tmp_path):
    cache = toy_cache(tmp_path)
    options = dict(cache.data_options)
    cache.check_matches(options, "toy", ["c0", "c1", "c2"], 6)
    for args, message in (
        ((options, "mnist", ["c0", "c1", "c2"], 6), "was made on toy, this run's data is mnist"),
        ((options, "toy", ["c0", "c2", "c1"], 6), "has classes"),
        ((options, "toy", ["c0", "c1", "c2"], 7), "holds 6 training samples, this run's data has 7"),
        (({**options, "image_size": 32}, "toy", ["c0", "c1", "c2"], 6), "made with no --image-size"),
    ):
        with pytest.raises(KdtoolError, match=message):
            cache.check_matches(*args)
    with pytest.raises(KdtoolError, match="holds no views of 1 of this run's 2 training samples"):
        cache.rows_of(torch.tensor([2, 3]))  # the cache holds the even samples 0..10
    assert cache.rows_of(torch.tensor([10, 0])).tolist() == [5, 0]
    cache.check_labels(torch.tensor([1, 2]), torch.tensor([1, 2]))
    with pytest.raises(KdtoolError, match="was made with sample 4 of class c2, this run's data has it as c0: the data "
                                          "changed since it was made"):  # fmt: skip
        cache.check_labels(torch.tensor([1, 2]), torch.tensor([1, 0]))


def test_cache_teacher_refuses_bad_options(run_cli, teacher, tmp_path):
    out = tmp_path / "c.safetensors"
    for args, message in ((["--no-augment", "--views", "3"], "--views must be at least 1, and 1 without"),
                          (["--top-k", "11"], "--top-k must be between 1 and the 10 classes"),
                          (["--top-k", "0"], "--top-k must be between"),
                          (["--cache-dtype", "float64"], "unknown --cache-dtype 'float64': choose one of float16, "
                                                         "bfloat16, float32"),
                          (["--amp", "fp16", "--device", "cpu"], "--amp fp16 needs a CUDA device"),
                          (["--loader", "stream"], "--loader does not apply here: "),
                          (["--workers", "2"], "--workers does not apply here: ")):  # fmt: skip
        code, _, stderr = run_cli("cache-teacher", teacher, *args, *LIMIT, "--out", out)
        assert code == 2 and message in stderr, stderr
    assert not out.exists()


def write_text_folder(folder, n_train=60, n_test=30):
    """A three-class toy corpus: one cue word per text gives its label away."""
    words = {"joy": ["love", "great"], "anger": ["hate", "worst"], "fear": ["scared", "afraid"]}
    rng = random.Random(0)
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        lines = [f"{label}\tso {rng.choice(words[label])} it is" for label in list(words) * math.ceil(n / 3)][:n]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_text_has_one_unaugmented_view_and_class_subsets_work(run_cli, tmp_path):
    data = ("--dataset", f"text:{write_text_folder(tmp_path / 'emo')}")
    small = ("--epochs", "1", "--batch-size", "16", "--hidden-size", "4", "--embed-dim", "8")
    assert run_cli("train-teacher", *data, "--model", "textcnn", "--smoothing", "onehot", *small,
                   "--out", tmp_path / "t")[0] == 0  # fmt: skip
    code, _, stderr = run_cli("cache-teacher", tmp_path / "t", "--augment", "standard", "--out", tmp_path / "c")
    assert code == 2 and "text has no augmentation" in stderr
    assert run_cli("cache-teacher", tmp_path / "t", "--out", tmp_path / "c.safetensors")[0] == 0
    cache = TeacherCache.open(tmp_path / "c.safetensors")
    assert (
        cache.views == 1 and cache.store["aug_params"].shape == (1, 60, 0) and cache.data_options["augment"] == "none"
    )
    code, _, stderr = run_cli("distill", "--teacher-cache", tmp_path / "c.safetensors", *data, "--student", "textcnn",
                              *small, "--classes", "fear,joy", "--out", tmp_path / "st")  # fmt: skip
    assert code == 0, stderr
    assert json.loads((tmp_path / "st" / "config.json").read_text())["dataset_info"]["class_names"] == ["fear", "joy"]


# -- the exactness contract (#28.3) -----------------------------------------------------------------------------
EXACT_LOSSES = {
    "kd T=1": lambda t: KnowledgeDistillation(t, temperature=1.0),
    "kd T=4": lambda t: KnowledgeDistillation(t, temperature=4.0),
    "kd + standardisation T=2": lambda t: KnowledgeDistillation(t, beta=0.1, temperature=2.0, standardize=True),
    "dkd T=4": lambda t: DecoupledKD(t, temperature=4.0, warmup_epochs=0),
    "dkd + standardisation": lambda t: DecoupledKD(t, temperature=2.0, warmup_epochs=0, standardize=True),
    "dist T=4": lambda t: DISTKD(t, temperature=4.0),
    "dist + standardisation": lambda t: DISTKD(t, temperature=2.0, standardize=True),
    "wttm": lambda t: WTTM(t, gamma=0.2, weight=4.0),
    "wttm + standardisation": lambda t: WTTM(t, gamma=0.5, weight=1.0, standardize=True),
    "nkd T=3": lambda t: NormalizedKD(t, gamma=3.5, temperature=3.0),
    "nkd + standardisation": lambda t: NormalizedKD(t, temperature=2.0, standardize=True),
}


def loss_and_gradient(target, logits, labels, **batch):
    student = logits.detach().clone().requires_grad_(True)
    loss = target(student, labels, **batch)
    loss.backward()
    return loss.detach(), student.grad


class Rounded(torch.nn.Module):
    """A network whose logits are rounded to a cache dtype: the teacher a cache of that dtype replays."""

    def __init__(self, network, dtype):
        super().__init__()
        self.network, self.dtype = network, dtype

    def forward(self, x):
        return self.network(x).to(self.dtype).float()


@pytest.mark.parametrize("budget", [None, 0])
@pytest.mark.parametrize("name", list(EXACT_LOSSES))
def test_a_full_cache_replays_every_loss_and_gradient_as_the_live_teacher(teacher, cache_file, name, budget):
    """The cache written by cache-teacher (float16, the default) and read back, whole or per batch, gives each
    loss and its gradient as the live teacher whose logits are rounded to float16, on the very same augmented
    images (k = K, the default)."""
    cache = TeacherCache.open(cache_file, budget)
    assert cache.exact and cache.top_k == 10 and cache.cache_dtype == "float16"
    network, _, _ = load_run_model(RunDir.open(teacher))
    live = EXACT_LOSSES[name](FrozenTeacher(Rounded(frozen_for_inference(network, channels_last=True), torch.float16)))
    cached = EXACT_LOSSES[name](None)
    loader, _, _ = replay_loader(cache)
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    for epoch in range(cache.views):
        for x, y, teacher_logits in loader.training_batches(epoch):
            logits = student(x)
            live_loss, live_grad = loss_and_gradient(live, logits, y, inputs=x)
            cached_loss, cached_grad = loss_and_gradient(cached, logits, y, teacher_logits=teacher_logits)
            torch.testing.assert_close(cached_loss, live_loss, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(cached_grad, live_grad, rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def top3_cache(teacher, tmp_path_factory):
    from kdtool.cli import main

    out = tmp_path_factory.mktemp("cache") / "top3.cache.safetensors"
    with pytest.raises(SystemExit) as info:
        main(["cache-teacher", str(teacher), "--views", "1", "--top-k", "3", *AUGMENTED, *LIMIT, "--out", str(out)])
    assert info.value.code == 0
    return out


@pytest.mark.parametrize("kd_loss", ["kd", "dkd", "dist", "wttm", "nkd"])
def test_a_top_k_cache_is_refused_unless_approximate_is_asked_for(run_cli, top3_cache, tmp_path, kd_loss):
    args = ("distill", "--teacher-cache", top3_cache, "--kd-loss", kd_loss, *AUGMENTED, *TINY)
    code, _, err = run_cli(*args, "--out", tmp_path / "refused")
    assert code == 2 and "Traceback" not in err
    assert (f"holds the top-3 of 10 logits: --kd-loss {kd_loss} from it is not the live teacher's loss (the other 7 "
            "classes share one logit)") in err and "--approximate-cache" in err  # fmt: skip
    assert not (tmp_path / "refused").exists()
    code, out, err = run_cli(*args, "--approximate-cache", "--out", tmp_path / "approx")
    assert code == 0, err
    assert "teacher: cache, top-3 of 10 (approximate)" in out
    record = json.loads((tmp_path / "approx" / "config.json").read_text())
    assert record["approximate_cache"] is True and record["teacher_cache_file"]["replay"] == (
        "top-3 of 10 (approximate), float16, in memory"
    )


def test_an_exact_cache_says_so_and_refuses_approximate(run_cli, cache_file, tmp_path):
    args = ("distill", "--teacher-cache", cache_file, *AUGMENTED, *TINY)
    code, _, err = run_cli(*args, "--approximate-cache", "--out", tmp_path / "no")
    assert code == 2 and "--approximate-cache does not apply" in err and "holds all 10 logits" in err
    code, out, err = run_cli("distill", "--teacher-cache", cache_file, "--augment", "standard,mixup", *TINY,
                             "--out", tmp_path / "mixed")  # fmt: skip
    assert code == 0, err
    assert ("teacher: cache, all 10 logits (exact), float16, in memory; mixup/cutmix mix its logits linearly, not the "
            "teacher's output on the mixed images") in out  # fmt: skip


def test_a_cache_missing_one_class_is_exact_its_rest_logit_is_that_class(tmp_path):
    logits, labels = torch.randn(5, 4), torch.arange(5) % 4
    assert torch.allclose(dense_of(compress_logits(logits, 3, labels), labels, 4), logits, atol=1e-6)
    assert toy_cache(tmp_path, k=3, top_k=2).exact and not toy_cache(tmp_path, k=3, top_k=1).exact


def test_a_cache_over_the_memory_budget_is_read_per_batch_and_the_run_says_so(run_cli, cache_file, tmp_path):
    args = ("distill", "--teacher-cache", cache_file, *AUGMENTED, *TINY)
    code, out, err = run_cli(*args, "--memory-budget", "1KB", "--out", tmp_path / "lazy")
    assert code == 0, err
    assert "teacher: cache, all 10 logits (exact), float16, read from the file per batch" in out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_two_processes_each_cache_every_second_batch_into_one_file(teacher, cache_file, tmp_path):
    out = tmp_path / "ddp.cache.safetensors"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    done = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "kdtool", "cache-teacher",
                           str(teacher), "--views", "2", *AUGMENTED, *LIMIT, "--batch-size", "100", "--device", "cpu",
                           "--out", str(out)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = TeacherCache.open(cache_file), TeacherCache.open(out)
    assert torch.equal(a.sample_index, b.sample_index) and torch.equal(a.labels, b.labels)
    rows = torch.arange(a.num_samples)
    for view in range(2):
        assert torch.equal(a.aug_params(view, rows), b.aug_params(view, rows))
        # float16 both: a float32 difference in the last bits (other batches) may round one float16 step apart
        torch.testing.assert_close(a.teacher_logits(view, rows), b.teacher_logits(view, rows), rtol=2e-3, atol=2e-3)


def test_amp_caches_the_mixed_precision_teachers_logits(run_cli, teacher, cache_file, tmp_path):
    out = tmp_path / "bf16.cache.safetensors"
    code, _, err = run_cli("cache-teacher", teacher, "--views", "2", *AUGMENTED, *LIMIT, "--amp", "bf16", "--device",
                           "cpu", "--out", out)  # fmt: skip
    assert code == 0, err
    amp, plain = TeacherCache.open(out), TeacherCache.open(cache_file)
    assert amp.extra["teacher_amp"] == "bf16"
    rows = torch.arange(256)
    gap = (amp.teacher_logits(0, rows) - plain.teacher_logits(0, rows)).abs().max()
    assert 0 < gap < 0.5  # bfloat16 autocast: close to the float32 teacher, not equal


def test_the_loaders_refuse_a_cache_augmented_otherwise_than_the_run_whoever_builds_them(tmp_path):
    # make_loaders is what bench/ and the Python API call without the CLI's checks: a cache whose views were
    # drawn by another augmentation than the run's must be refused there, in one line, before any batch
    data = synthetic()
    cpu = torch.device("cpu")

    def cache_of(augment: str) -> TeacherCache:
        transform = ImageBatchTransform.for_dataset(data.info, parse_augment(augment))
        drawn = transform.draw(data.train.inputs.shape, view_generator(0, 0), cpu)
        options = data_options("synthetic", 8, augment, None, 0, False)
        return write_cache(tmp_path / f"{augment}.safetensors", torch.randn(1, 40, 4), data.train.labels,
                           drawn[None], options=options, dataset="synthetic")  # fmt: skip

    for made, run in (("standard", "none"), ("none", "standard"), ("standard", "standard,cutout")):
        cfg = DistillConfig(teacher_cache="(in memory)", augment=run, batch_size=8).resolve()
        cache = cache_of(made)
        with pytest.raises(KdtoolError) as info:
            train, _ = make_loaders(data, cfg, cpu, teacher_cache=cache)
            next(train.training_batches(0))
        assert str(info.value) == (f"teacher cache {cache.path} was made with --augment {made}, this run has "
                                   f"--augment {run}: they must agree")  # fmt: skip
    cfg = DistillConfig(teacher_cache="(in memory)", augment="standard,mixup", batch_size=8).resolve()
    train, _ = make_loaders(data, cfg, cpu, teacher_cache=cache_of("standard"))  # batch mixing is the student's own
    assert len(list(train.training_batches(0))) == 5
