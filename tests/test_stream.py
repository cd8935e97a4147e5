"""The streaming data path (#17): --loader, streamed ImageFolder, wds: shards, kdtool shard, bad samples, torchrun."""

import gc
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tarfile
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from kdtool.config.runconfig import TrainConfig
from kdtool.data.registry import load_dataset
from kdtool.data.shards import ShardSplit, default_val_shards, expand_braces
from kdtool.data.stream import FileSplit
from kdtool.training.rundata import load_data
from kdtool.workflows.pipeline import make_loaders

CPU = torch.device("cpu")
COLOURS = ((220, 40, 40), (40, 200, 60), (50, 70, 230))  # one class per colour: learnable in an epoch or two
SMALL = ("--model", "lenet5", "--image-size", "32", "--batch-size", "16", "--device", "cpu", "--seed", "5")


def make_imagefolder(root: Path, per_class: tuple[int, int] = (24, 8), seed: int = 0) -> Path:
    """train/ and val/ of three colour classes, images of varied sizes, half JPEG and half PNG."""
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "val"), per_class, strict=True):
        for c, colour in enumerate(COLOURS):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = rng.integers(36, 60, size=2)
                pixels = np.clip(np.array(colour) + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.{'jpg' if i % 2 else 'png'}")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_imagefolder(tmp_path_factory.mktemp("imagefolder"))


def stream_config(dataset: str, **options) -> TrainConfig:
    values = {"dataset": dataset, "image_size": 32, "batch_size": 16, "device": "cpu", "seed": 5, "loader": "stream",
              "epochs": 2, **options}  # fmt: skip
    return TrainConfig(**values).resolve()


def raw_batches(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The uint8 batches and labels of one epoch, as they come from the workers (before the device transform)."""
    return [(x.clone(), y.clone()) for x, y, *_ in loader.raw_batches(epoch)]


def ids_as_labels(monkeypatch, module: str) -> None:
    """Make every decoded sample a blank image labelled with its sample id: which samples a loader delivers."""

    def read(where, data, label, num_classes, transform, epoch, sample_id):
        return torch.zeros(3, transform.size, transform.size, dtype=torch.uint8), sample_id, sample_id, ()

    monkeypatch.setattr(f"{module}.read_sample", read)


def test_stream_trains_as_well_as_memory(run_cli, tmp_path, folder):
    accuracy = {}
    for loader in ("memory", "stream"):
        extra = ("--workers", "1") if loader == "stream" else ()
        code, out, err = run_cli("train-teacher", "--dataset", f"imagefolder:{folder}", *SMALL, "--epochs", "3",
                                 "--loader", loader, *extra, "--out", tmp_path / loader)  # fmt: skip
        assert code == 0, err
        assert f"data: {loader} (--loader {loader})" in out
        record = json.loads((tmp_path / loader / "config.json").read_text())
        assert record["loader"] == loader and record["data_loader"]["used"] == loader
        assert ("workers" in record) == (loader == "stream")  # config.json records only what applies
        accuracy[loader] = [row["test_acc"] for row in csv_rows(tmp_path / loader)][-1]
    assert accuracy["memory"] >= 0.9 and accuracy["stream"] >= 0.9, accuracy
    assert abs(accuracy["memory"] - accuracy["stream"]) <= 0.15, accuracy


def test_students_distill_on_streamed_data(run_cli, tmp_path, folder):
    # the teacher sees the student's streamed batch (KD), or no teacher runs at all (LLS-ST from its Q)
    data = ("--dataset", f"imagefolder:{folder}", "--image-size", "32", "--batch-size", "16", "--device", "cpu",
            "--loader", "stream", "--workers", "1", "--epochs", "2")  # fmt: skip
    code, _, err = run_cli("train-teacher", *data, "--model", "lenet5", "--out", tmp_path / "t")
    assert code == 0, err
    for source in (("--teacher", tmp_path / "t"), ("--substitute-q", tmp_path / "t")):
        out = tmp_path / source[0].strip("-")
        code, stdout, err = run_cli("distill", *source, "--student", "lenet5", *data, "--out", out)
        assert code == 0, err
        assert "data: stream (--loader stream)" in stdout
        assert json.loads((out / "config.json").read_text())["data_loader"]["used"] == "stream"
        assert csv_rows(out)[-1]["test_acc"] >= 0.6


def csv_rows(run: Path) -> list[dict[str, float]]:
    from kdtool.runs.folder import RunDir

    return [{k: float(v) for k, v in row.items()} for row in RunDir(run).metrics()]


def test_batches_do_not_depend_on_workers_and_follow_the_memory_order(folder):
    cfg = stream_config(f"imagefolder:{folder}", augment="standard")
    dataset = load_data(cfg, stream=True)
    assert isinstance(dataset.train, FileSplit) and len(dataset.train) == 72
    by_workers = {}
    for workers in (0, 1, 2):
        cfg.workers = workers
        train, _ = make_loaders(dataset, cfg, CPU)
        by_workers[workers] = [raw_batches(train, epoch) for epoch in (0, 1)]
    for workers in (1, 2):
        for epoch in (0, 1):
            assert len(by_workers[workers][epoch]) == len(by_workers[0][epoch]) == 5
            for (x0, y0), (x, y) in zip(by_workers[0][epoch], by_workers[workers][epoch], strict=True):
                assert torch.equal(x0, x) and torch.equal(y0, y)
    # each epoch draws new crops and a new order
    assert not torch.equal(by_workers[0][0][0][0], by_workers[0][1][0][0])
    # the same global order as the in-memory path: the same labels batch by batch
    memory_cfg = stream_config(f"imagefolder:{folder}", loader="memory")
    memory_train, _ = make_loaders(load_data(memory_cfg), memory_cfg, CPU)
    for epoch in (0, 1):
        memory_labels = [y for _, y in memory_train.epoch(epoch)]
        assert [torch.equal(a, y) for a, (_, y) in zip(memory_labels, by_workers[2][epoch], strict=True)] == [True] * 5


def test_interrupt_then_resume_a_streamed_run_is_bit_identical(run_cli, tmp_path, folder, interrupt_at_epoch):
    args = ("train-teacher", "--dataset", f"imagefolder:{folder}", *SMALL, "--epochs", "3", "--loader", "stream",
            "--augment", "standard,mixup")  # fmt: skip
    assert run_cli(*args, "--workers", "2", "--out", tmp_path / "straight")[0] == 0
    interrupt_at_epoch(2)
    code, _, err = run_cli(*args, "--workers", "1", "--out", tmp_path / "resumed")
    assert code == 130 and "--resume" in err
    interrupt_at_epoch(None)
    code, out, err = run_cli(*args, "--workers", "0", "--out", tmp_path / "resumed", "--resume")  # workers may change
    assert code == 0, err
    assert "kept on --resume" in out
    a, b = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("straight", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_auto_streams_when_the_data_exceed_the_memory_budget(run_cli, tmp_path, folder):
    common = ("train-teacher", "--dataset", f"imagefolder:{folder}", *SMALL, "--epochs", "1", "--limit-train", "32")
    code, out, err = run_cli(*common, "--memory-budget", "1KB", "--out", tmp_path / "tiny")
    assert code == 0, err
    assert "data: stream (--loader auto: decoded data 288.0 KiB exceeds 1000 B (--memory-budget 1KB))" in out
    record = json.loads((tmp_path / "tiny" / "config.json").read_text())
    assert record["data_loader"]["used"] == "stream" and record["memory_budget"] == "1KB"
    code, out, err = run_cli(*common, "--memory-budget", "1GiB", "--out", tmp_path / "ample")
    assert code == 0, err
    assert "data: memory (--loader auto: decoded data 288.0 KiB fits in 1.0 GiB (--memory-budget 1GiB))" in out
    code, out, err = run_cli(*common, "--out", tmp_path / "default")  # half the available RAM: ample here
    assert code == 0 and "data: memory (--loader auto" in out and "of available RAM" in out, err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--loader", "memory", "--workers", "2"), "--workers does not apply to this run (--loader memory)"),
        (("--loader", "stream", "--memory-budget", "1GB"), "--memory-budget does not apply to this run (--dataset"),
        (("--val-shards", "x-{0..1}.tar"), "--val-shards does not apply to this run (--dataset imagefolder:"),
        (("--class-names", "names.txt"), "--class-names does not apply to this run"),
        (("--loader", "disk"), "unknown --loader 'disk'"),
        (("--memory-budget", "lots"), "--memory-budget takes a size such as 8GiB"),
        (("--loader", "stream", "--workers", "-1"), "--workers must be ≥ 0"),
    ],
)
def test_streaming_options_that_do_not_apply_are_refused(run_cli, tmp_path, folder, extra, message):
    code, _, err = run_cli("train-teacher", "--dataset", f"imagefolder:{folder}", *extra, "--out", tmp_path / "r")
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_loader_is_refused_for_datasets_held_in_memory(run_cli, tmp_path):
    code, _, err = run_cli("train-teacher", "--loader", "stream", "--out", tmp_path / "r")
    assert code == 2 and "--loader" in err


def test_brace_patterns_and_the_default_evaluation_shards(tmp_path):
    assert expand_braces("a-{008..011}.tar") == ["a-008.tar", "a-009.tar", "a-010.tar", "a-011.tar"]
    assert expand_braces("{x,y}-{1..2}") == ["x-1", "x-2", "y-1", "y-2"]
    for name in ("val-000000.tar", "val-000001.tar"):
        (tmp_path / name).write_bytes(b"")
    assert default_val_shards(f"{tmp_path}/train-{{000000..000004}}.tar") == f"{tmp_path}/val-{{000000..000001}}.tar"
    assert default_val_shards(f"{tmp_path}/data-{{0..4}}.tar") is None


@pytest.fixture(scope="module")
def shards(tmp_path_factory, folder) -> Path:
    from kdtool.cli import main_args

    out = tmp_path_factory.mktemp("shards") / "wds"
    assert main_args(["shard", f"imagefolder:{folder}", "--out", str(out), "--shard-size", "10"]) == 0
    return out


def test_shard_round_trip_sees_every_sample_once_per_epoch(shards, monkeypatch, folder):
    assert sorted(p.name for p in shards.iterdir())[:4] == [
        ".kdtool-manifest.json",
        "classes.txt",
        "shards.json",
        "train-000000.tar",
    ]
    assert len(list(shards.glob("train-*.tar"))) == 8 and len(list(shards.glob("val-*.tar"))) == 3
    assert (shards / "classes.txt").read_text().split() == ["class0", "class1", "class2"]
    files = load_dataset(f"imagefolder:{folder}", stream=True).train.files
    first = torch.randperm(len(files), generator=torch.Generator().manual_seed(0))[:3].tolist()  # --seed 0's order
    with tarfile.open(shards / "train-000000.tar") as tar:  # the imagefolder's files, as they are
        names = tar.getnames()[:6]
        assert names[1::2] == [f"{i:08d}.cls" for i in first]
        for name, i in zip(names[::2], first, strict=True):
            assert (
                name == f"{i:08d}{Path(files[i]).suffix}"
                and tar.extractfile(name).read() == Path(files[i]).read_bytes()
            )
    cfg = stream_config(f"wds:{shards}/train-{{000000..000007}}.tar", workers=2)
    assert cfg.val_shards == f"{shards}/val-{{000000..000002}}.tar"
    dataset = load_data(cfg)
    assert isinstance(dataset.train, ShardSplit) and (len(dataset.train), len(dataset.test)) == (72, 24)
    ids_as_labels(monkeypatch, "kdtool.data.shards")
    train, test = make_loaders(dataset, cfg, CPU)
    orders = []
    for epoch in (0, 1):
        seen = torch.cat([y for _, y in raw_batches(train, epoch)])
        assert sorted(seen.tolist()) == list(range(72))
        orders.append(seen.tolist())
    assert orders[0] != orders[1]  # shard order and buffer are reseeded every epoch
    assert sorted(torch.cat([y for _, y in raw_batches(test, 0)]).tolist()) == list(range(24))
    # --limit-train keeps the samples the same seeded choice picks
    cfg.limit_train = 20
    limited = load_data(cfg)
    train, _ = make_loaders(limited, cfg, CPU)
    seen = sorted(torch.cat([y for _, y in raw_batches(train, 0)]).tolist())
    assert seen == limited.train.sample_ids().tolist() and len(seen) == 20


def test_a_wds_run_trains_from_shards(run_cli, tmp_path, shards):
    code, out, err = run_cli("train-teacher", "--dataset", f"wds:{shards}/train-{{000000..000007}}.tar", *SMALL,
                             "--epochs", "2", "--workers", "2", "--out", tmp_path / "run")  # fmt: skip
    assert code == 0, err
    assert "data: stream (wds: shards are always streamed)" in out and "(72 train / 24 test)" in out
    assert csv_rows(tmp_path / "run")[-1]["test_acc"] >= 0.9
    code, _, err = run_cli("train-teacher", "--dataset", f"wds:{shards}/train-{{000000..000007}}.tar",
                           "--loader", "memory", "--out", tmp_path / "mem")  # fmt: skip
    assert code == 2 and "always streamed" in err


def test_shards_written_by_webdataset_are_read(tmp_path, monkeypatch):
    webdataset = pytest.importorskip("webdataset")  # the test extra installs it
    root = tmp_path / "wds"
    root.mkdir()
    with webdataset.TarWriter(str(root / "train-0.tar")) as sink:
        for i in range(5):
            image = Image.fromarray(np.full((20, 20, 3), 40 * i, dtype=np.uint8))
            sink.write({"__key__": f"s{i:03d}", "png": image, "cls": i % 2})
    shutil.copy(root / "train-0.tar", root / "val-0.tar")
    (root / "names.txt").write_text("even\nodd\n")
    cfg = stream_config(f"wds:{root}/train-{{0..0}}.tar", class_names=str(root / "names.txt"), workers=0)
    dataset = load_data(cfg)
    assert dataset.info.class_names == ("even", "odd") and len(dataset.train) == 5
    train, _ = make_loaders(dataset, cfg, CPU)
    labels = torch.cat([y for _, y in raw_batches(train, 0)])
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1]


def test_shard_refuses_a_foreign_folder_and_force_replaces_its_own(run_cli, tmp_path, folder):
    out = tmp_path / "s"
    assert run_cli("shard", f"imagefolder:{folder}", "--out", out, "--shard-size", "50")[0] == 0
    code, _, err = run_cli("shard", f"imagefolder:{folder}", "--out", out)
    assert code == 2 and "--force" in err
    assert run_cli("shard", f"imagefolder:{folder}", "--out", out, "--shard-size", "100", "--force")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [
        ".kdtool-manifest.json",
        "classes.txt",
        "shards.json",
        "train-000000.tar",
        "val-000000.tar",
    ]
    (out / "notes.txt").write_text("mine")
    code, _, err = run_cli("shard", f"imagefolder:{folder}", "--out", out, "--force")
    assert code == 2 and "notes.txt" in err and (out / "notes.txt").exists()


# -- bad samples ------------------------------------------------------------------------------------------
def run_twice(run_cli, tmp_path, dataset: str, *extra: str) -> tuple[str, str]:
    """A run without and one with --skip-bad-samples: the first's error line, the second's output."""
    args = ("train-teacher", "--dataset", dataset, *SMALL, "--epochs", "1", "--workers", "1", *extra)
    code, _, err = run_cli(*args, "--out", tmp_path / "strict")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    code, out, err2 = run_cli(*args, "--skip-bad-samples", "--out", tmp_path / "lenient")
    assert code == 0, err2
    return err, out


def test_a_corrupt_image_is_named_or_skipped(run_cli, tmp_path):
    data = make_imagefolder(tmp_path / "data", per_class=(8, 4))
    bad = data / "train" / "class1" / "0003.jpg"
    bad.write_bytes(b"\xff\xd8 this is no JPEG")
    err, out = run_twice(run_cli, tmp_path, f"imagefolder:{data}", "--loader", "stream")
    assert str(bad) in err and "not a readable image" in err and "--skip-bad-samples" in err
    assert f"skipped 1 unreadable sample in this pass (--skip-bad-samples); the first: {bad}" in out


def test_a_truncated_shard_is_named_or_skipped(run_cli, tmp_path, shards):
    copy = tmp_path / "wds"
    shutil.copytree(shards, copy)
    broken = copy / "train-000003.tar"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    err, out = run_twice(run_cli, tmp_path, f"wds:{copy}/train-{{000000..000007}}.tar")
    assert str(broken) in err and "truncated" in err
    assert "skipped" in out and str(broken) in out


def test_a_sample_without_cls_is_named_or_skipped(run_cli, tmp_path, shards):
    copy = tmp_path / "wds"
    shutil.copytree(shards, copy)
    shard = copy / "train-000001.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w") as tar:
        for member, data in members:
            if member.name != "00000012.cls":
                tar.addfile(member, io.BytesIO(data))
    err, out = run_twice(run_cli, tmp_path, f"wds:{copy}/train-{{000000..000007}}.tar")
    assert f"{shard}: sample 00000012: has no cls" in err
    assert "skipped 1 incomplete sample" in out and "(71 train / 24 test)" in out


# -- torchrun ---------------------------------------------------------------------------------------------
DDP_SCRIPT = """
import sys, torch, torch.distributed as dist
sys.path.insert(0, {tests!r})
from test_stream import stream_config
from kdtool.distributed import init_from_env
from kdtool.training.rundata import load_data
from kdtool.workflows.pipeline import make_loaders
import kdtool.data.shards, kdtool.data.stream

def read(where, data, label, num_classes, transform, epoch, sample_id):
    return torch.zeros(3, transform.size, transform.size, dtype=torch.uint8), sample_id, sample_id, ()

kdtool.data.shards.read_sample = kdtool.data.stream.read_sample = read
env, device = init_from_env("cpu")
report = {{}}
for name, dataset, extra in (("folder", {folder!r}, {{"loader": "stream"}}), ("even", {even!r}, {{}}),
                             ("uneven", {uneven!r}, {{}})):
    cfg = stream_config(dataset, workers=2, batch_size=4, **extra)
    train, _ = make_loaders(load_data(cfg, stream=True), cfg, device, env)
    for epoch in (0, 1):
        ids = torch.cat([y for _, y, *_ in train.raw_batches(epoch)])
        gathered = [None] * env.world_size
        dist.all_gather_object(gathered, (len(train), ids.tolist()))
        report[f"{{name}} {{epoch}}"] = gathered
if env.rank == 0:
    import json
    json.dump(report, open({result!r}, "w"))
dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_two_processes_see_each_sample_once_per_epoch(tmp_path, folder, shards):
    from kdtool.cli import main_args

    # 5 training shards for 2 ranks: uneven, and no rank may wait for the other
    uneven = tmp_path / "uneven"
    uneven.mkdir()
    for i in range(5):
        shutil.copy(shards / f"train-{i:06d}.tar", uneven / f"train-{i:06d}.tar")
    shutil.copy(shards / "val-000000.tar", uneven / "val-000000.tar")
    shutil.copy(shards / "classes.txt", uneven / "classes.txt")
    even = tmp_path / "even"  # 8 shards of 9: 36 samples per rank, 18 per reader
    assert main_args(["shard", f"imagefolder:{folder}", "--out", str(even), "--shard-size", "9"]) == 0
    script, result = tmp_path / "ddp.py", tmp_path / "result.json"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), folder=f"imagefolder:{folder}",
                                        even=f"wds:{even}/train-{{000000..000007}}.tar",
                                        uneven=f"wds:{uneven}/train-{{000000..000004}}.tar",
                                        result=str(result)))  # fmt: skip
    torchrun = str(Path(sys.executable).parent / "torchrun")
    done = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", str(script)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(result.read_text())
    for epoch in (0, 1):
        (len0, ids0), (len1, ids1) = report[f"folder {epoch}"]
        assert len0 == len1 and sorted(ids0 + ids1) == list(range(72))  # 72 = 9 global batches of 8
        (len0, ids0), (len1, ids1) = report[f"even {epoch}"]
        assert len0 == len1 and not set(ids0) & set(ids1) and sorted(ids0 + ids1) == list(range(72))
        (len0, ids0), (len1, ids1) = report[f"uneven {epoch}"]
        # rank 0 holds shards 0, 2, 4 (30 samples), rank 1 shards 1, 3 (20, in 6 batches of its 2 readers):
        # both train 6 batches, rank 0 dropping the rest of its samples this epoch
        assert len0 == len1 == 6 and len(ids1) == 20 and 20 <= len(ids0) < 30 and not set(ids0) & set(ids1)


def test_train_loss_and_accuracy_count_only_the_samples_delivered(tmp_path):
    import torch.nn.functional as F
    from torch import nn

    from kdtool.losses.simple import OneHot
    from kdtool.training.engine import Trainer

    data = make_imagefolder(tmp_path / "data", per_class=(8, 4))
    for name in ("0001.jpg", "0002.png", "0005.jpg"):
        (data / "train" / "class1" / name).write_bytes(b"no image")
    cfg = stream_config(f"imagefolder:{data}", skip_bad_samples=True, workers=0, epochs=1, batch_size=8)
    cfg.lr = 0.0  # the network stays as it is: its loss on the delivered samples is known
    train, test = make_loaders(load_data(cfg, stream=True), cfg, CPU, note=lambda _: None)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    row = Trainer(model, OneHot(), train, test, cfg).train_epoch(0)
    with torch.no_grad():
        outputs = [(model(x), y) for x, y in train.epoch(0)]
    delivered = sum(len(y) for _, y in outputs)
    assert delivered == 21
    loss = sum(F.cross_entropy(logits, y, reduction="sum") for logits, y in outputs) / delivered
    hits = sum(int((logits.argmax(1) == y).sum()) for logits, y in outputs)
    assert row["train_loss"] == pytest.approx(float(loss), rel=1e-5)
    assert row["train_acc"] == pytest.approx(hits / delivered)


def test_a_pass_without_a_readable_sample_is_refused(run_cli, tmp_path):
    data = make_imagefolder(tmp_path / "data", per_class=(2, 2))
    corrupt = sorted((data / "train").rglob("*.*"))
    for path in corrupt:
        path.write_bytes(b"no image")
    code, _, err = run_cli("train-teacher", "--dataset", f"imagefolder:{data}", *SMALL, "--epochs", "1", "--loader",
                           "stream", "--workers", "0", "--skip-bad-samples", "--out", tmp_path / "run")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    line = " ".join(err.split())
    assert line.startswith("error: no batch of this pass has a readable sample: skipped 6 unreadable samples in this "
                           "pass (--skip-bad-samples); the first: ")  # fmt: skip
    assert any(f"the first: {path}: not a readable image" in line for path in corrupt)


DDP_BAD_BATCH = ("--model", "lenet5", "--image-size", "32", "--batch-size", "4", "--device", "cpu", "--seed", "5",
                 "--loader", "stream", "--workers", "0", "--epochs", "1", "--skip-bad-samples")  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_two_processes_stay_in_step_when_a_batch_of_one_is_all_unreadable(tmp_path):
    from kdtool.distributed import DistEnv

    data = make_imagefolder(tmp_path / "data", per_class=(8, 4))  # 24 samples: 3 global batches of 2 × 4
    cfg = stream_config(f"imagefolder:{data}", batch_size=4, workers=0, epochs=1)
    dataset = load_data(cfg, stream=True)
    rank1, _ = make_loaders(dataset, cfg, CPU, DistEnv(rank=1, world_size=2))
    corrupt = [dataset.train.files[i] for i in rank1.batch_positions(0)[1]]  # rank 1's second batch, all of it
    for path in corrupt:
        Path(path).write_bytes(b"\xff\xd8 this is no JPEG")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    done = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "kdtool", "train-teacher",
                           "--dataset", f"imagefolder:{data}", *DDP_BAD_BATCH, "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # rank 0 reports every process's unreadable samples, and the readable ones it left out to stay in step
    assert (
        "skipped 4 unreadable samples in this pass (--skip-bad-samples, all processes), and 4 readable ones of "
        "batches that some process had no readable sample of (every process skips such a batch, to stay in "
        "step)"
    ) in " ".join(done.stdout.split())
    assert "2 processes; largest parameter difference from rank 0: 0" in done.stdout
    rows = csv_rows(tmp_path / "run")
    assert len(rows) == 1 and 0 < rows[0]["train_loss"] < 10


def test_a_dropped_streamed_loader_stops_its_workers_at_once(folder):
    # freed by reference counting, a loader's DataLoader stops its workers in order; left to the garbage collector
    # (a reference cycle), its worker queues can be closed first, and each worker's join waited out its 5 s timeout
    # (10 s a loader: most of a streamed test's time)
    cfg = stream_config(f"imagefolder:{folder}", workers=2)
    before = set(multiprocessing.active_children())
    train, test = make_loaders(load_data(cfg, stream=True), cfg, CPU)
    assert len(list(train.epoch(0))) == 5 and len(list(test.epoch(0))) == 1
    workers = set(multiprocessing.active_children()) - before
    assert len(workers) == 4
    loaders = [weakref.ref(train), weakref.ref(test)]
    gc.disable()
    try:
        del train, test
        assert [ref() for ref in loaders] == [None, None]
        assert [worker for worker in workers if worker.is_alive()] == []
    finally:
        gc.enable()


def test_a_streamed_run_in_this_process_leaves_no_worker_running(run_cli, tmp_path, folder):
    # when the run returns nothing holds its trainer (no reference cycle), so its loaders' workers stop then
    before = set(multiprocessing.active_children())
    gc.disable()
    try:
        code, _, err = run_cli("train-teacher", "--dataset", f"imagefolder:{folder}", *SMALL, "--epochs", "1",
                               "--loader", "stream", "--workers", "2", "--out", tmp_path / "run")  # fmt: skip
        assert code == 0, err
        assert [worker for worker in set(multiprocessing.active_children()) - before if worker.is_alive()] == []
    finally:
        gc.enable()


@pytest.mark.parametrize(("cores", "local_processes", "expected"), [(16, None, 16), (16, "2", 8), (64, None, 16),
                                                                    (3, None, 3), (4, "8", 1)])  # fmt: skip
def test_default_workers_is_the_share_of_the_cores_up_to_16(monkeypatch, cores, local_processes, expected):
    # 16, not 8: on an H200 with 16 cores, 8 workers fed a ResNet-50 2,419 JPEGs/s and 16 fed it 4,274
    # (bench/gpu.py --parts stream), so 8 left the GPU waiting
    from kdtool.data import stream

    monkeypatch.setattr(stream.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    if local_processes is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_processes)
    assert stream.default_workers() == expected
