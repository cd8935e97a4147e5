"""Teacher caches of streamed data (#31): ``cache-teacher`` on ``imagefolder:`` with ``--loader stream`` and on
``wds:`` shards, replayed by ``distill --teacher-cache`` with exactly the stored crop boxes and flips."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kdtool.config.runconfig import DistillConfig
from kdtool.distill.cache import TeacherCache
from kdtool.losses import DISTKD, FrozenTeacher, KnowledgeDistillation
from kdtool.runs.folder import RunDir
from kdtool.training.accel import frozen_for_inference
from kdtool.training.rundata import load_full_data, select_data
from kdtool.training.runmodel import load_run_model
from kdtool.workflows.pipeline import checked_teacher_cache, make_loaders
from tests.test_stream import folder, make_imagefolder, shards  # noqa: F401 (fixtures)

CPU = torch.device("cpu")
DATA = ("--image-size", "32", "--batch-size", "16", "--device", "cpu", "--seed", "5")
VIEWS = 2


def wds(path) -> str:
    return f"wds:{path}/train-{{000000..000007}}.tar"


@pytest.fixture(scope="module", params=["imagefolder", "wds"])
def streamed(request, tmp_path_factory, folder, shards):  # noqa: F811
    """(dataset, teacher run, float32 cache of 2 views) for streamed ImageFolder and wds: shards."""
    from kdtool.cli import main_args

    dataset = f"imagefolder:{folder}" if request.param == "imagefolder" else wds(shards)
    root = tmp_path_factory.mktemp(f"stream-cache-{request.param}")
    loader = ("--loader", "stream") if request.param == "imagefolder" else ()
    assert main_args(["train-teacher", "--dataset", dataset, "--model", "lenet5", *DATA, *loader, "--epochs", "1",
                      "--workers", "0", "--out", str(root / "teacher")]) == 0  # fmt: skip
    cache = root / "teacher.cache.safetensors"
    assert main_args(["cache-teacher", str(root / "teacher"), *loader, "--views", str(VIEWS), "--cache-dtype",
                      "float32", "--workers", "2", "--batch-size", "10", "--out", str(cache)]) == 0  # fmt: skip
    return dataset, root / "teacher", cache


def student_loader(dataset: str, cache, workers: int, env=None, **options):
    values = {"image_size": 32, "batch_size": 16, "device": "cpu", "seed": 5, "loader": "stream", "augment": "standard"}
    cfg = DistillConfig(teacher_cache=str(cache) if cache else None, teacher=None if cache else "t", dataset=dataset,
                        workers=workers, **{**values, **options})  # fmt: skip
    cfg.resolve()
    full = load_full_data(cfg, stream=True)
    data = select_data(full, cfg, None)
    loaded = checked_teacher_cache(cfg, full, data, streamed=True) if cache else None
    return make_loaders(data, cfg, CPU, *(() if env is None else (env,)), teacher_cache=loaded)[0]


def loss_and_gradient(target, logits, labels, **batch):
    student = logits.detach().clone().requires_grad_(True)
    loss = target(student, labels, **batch)
    loss.backward()
    return loss.detach(), student.grad


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_replay_gives_the_live_teachers_loss_and_gradient(streamed, workers):
    """On the very batches the replay delivers, the cached logits give KD's and DIST's loss and student gradient
    as the live teacher on those images (k = K, float32), to 1e-5: the teacher ran on other batches when it was
    cached (unshuffled, 10 a batch), and a convolution's float32 result differs in its last bits by batch."""
    dataset, teacher, cache = streamed
    network, _, _ = load_run_model(RunDir.open(teacher))
    live_teacher = FrozenTeacher(frozen_for_inference(network, channels_last=True))
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 3))
    loader = student_loader(dataset, cache, workers)
    for epoch in range(VIEWS + 1):
        for x, y, teacher_logits in loader.training_batches(epoch):
            logits = student(x)
            for make in (lambda t: KnowledgeDistillation(t, temperature=4.0), lambda t: DISTKD(t, temperature=4.0)):
                live = loss_and_gradient(make(live_teacher), logits, y, inputs=x)
                cached = loss_and_gradient(make(None), logits, y, teacher_logits=teacher_logits)
                torch.testing.assert_close(cached[0], live[0], rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(cached[1], live[1], rtol=1e-5, atol=1e-5)


def images_by_id(loader, epoch: int) -> dict[int, torch.Tensor]:
    return {i: x for images, _, ids, _ in loader.raw_batches(epoch) for i, x in zip(ids.tolist(), images, strict=True)}


def test_views_are_the_stream_paths_draws_cycling_whatever_the_workers(streamed):
    """Epoch e replays view e mod V: for e < V the very images an uncached stream run of the cache's seed sees
    in epoch e (the cache stores that epoch's crop boxes and flips), then the views again; every sample once
    per epoch, and the same with 0 or 2 workers."""
    dataset, _, cache = streamed
    replay = {workers: student_loader(dataset, cache, workers) for workers in (0, 2)}
    plain = student_loader(dataset, None, 0, seed=0)  # the seed of cache-teacher's draws
    seen = [images_by_id(replay[0], epoch) for epoch in range(VIEWS + 1)]
    assert seen[0].keys() == seen[1].keys() == set(range(72))
    for epoch in range(VIEWS + 1):
        assert all(torch.equal(x, seen[epoch][i]) for i, x in images_by_id(replay[2], epoch).items())
    for epoch in range(VIEWS):
        assert all(torch.equal(x, seen[epoch][i]) for i, x in images_by_id(plain, epoch).items())
    assert any(not torch.equal(seen[0][i], seen[1][i]) for i in seen[0])
    assert all(torch.equal(seen[0][i], seen[VIEWS][i]) for i in seen[0])


def test_a_limited_student_finds_its_samples_by_id(streamed, tmp_path):
    from kdtool.cli import main_args

    dataset, teacher, _ = streamed
    cache = tmp_path / "c.safetensors"
    assert main_args(["cache-teacher", str(teacher), "--limit-train", "40", "--seed", "5", "--views", "1",
                      "--workers", "0",
                      *(("--loader", "stream") if dataset.startswith("imagefolder:") else ()),
                      "--out", str(cache)]) == 0  # fmt: skip
    opened = TeacherCache.open(cache)
    assert opened.cache_dtype == "float16" and opened.store["aug_params"].shape == (1, 40, 7)
    loader = student_loader(dataset, cache, 0, limit_train=40)
    ids = torch.cat([ids for _, _, ids, _ in loader.raw_batches(0)])
    assert sorted(ids.tolist()) == sorted(opened.sample_index.tolist())


def test_distill_from_a_streamed_cache_builds_no_teacher(run_cli, streamed, tmp_path, monkeypatch):
    def no_teacher(*a, **k):
        raise AssertionError("a cached teacher must not be built")

    dataset, _, cache = streamed
    monkeypatch.setattr("kdtool.distill.teachers.load_run_model", no_teacher)
    loader = ("--loader", "stream") if dataset.startswith("imagefolder:") else ()
    code, out, err = run_cli("distill", "--teacher-cache", cache, "--dataset", dataset, *DATA, *loader, "--workers",
                             "2", "--student", "lenet5", "--epochs", "1", "--augment", "standard,mixup",
                             "--out", tmp_path / "st")  # fmt: skip
    assert code == 0, err
    assert "teacher: cache, all 3 logits (exact), float32, in memory; mixup/cutmix" in out
    config = json.loads((tmp_path / "st" / "config.json").read_text())
    assert config["data_loader"]["used"] == "stream" and config["teacher_cache_file"]["views"] == VIEWS


def test_a_streamed_cache_for_other_data_is_refused_in_one_line(run_cli, streamed, tmp_path):
    dataset, _, cache = streamed
    stream = ("--loader", "stream") if dataset.startswith("imagefolder:") else ()
    cases = [(("--image-size", "40", *stream), "was made with --image-size 32, this run has --image-size 40")]
    if dataset.startswith("imagefolder:"):
        cases.append((("--image-size", "32", "--loader", "memory"), "made with --loader stream, this run has "
                                                                    "--loader memory"))  # fmt: skip
    for args, message in cases:
        code, _, err = run_cli("distill", "--teacher-cache", cache, "--dataset", dataset, "--augment", "standard",
                               "--student", "lenet5", *args, "--epochs", "1", "--out", tmp_path / "never")  # fmt: skip
        assert code == 2 and message in err, err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "never").exists()


def test_a_changed_image_is_refused_in_one_line(run_cli, tmp_path):
    """The same files, names and labels, but one image now of another size: the stored crop box was drawn on the
    old one, so the replay refuses it (it would crop a different region)."""
    from PIL import Image

    root = make_imagefolder(tmp_path / "data", per_class=(4, 2))
    data = ("--dataset", f"imagefolder:{root}", *DATA, "--loader", "stream", "--workers", "0")
    assert run_cli("train-teacher", *data, "--model", "lenet5", "--epochs", "1", "--out", tmp_path / "t")[0] == 0
    assert run_cli("cache-teacher", tmp_path / "t", "--loader", "stream", "--workers", "0", "--views", "1",
                   "--out", tmp_path / "c.safetensors")[0] == 0  # fmt: skip
    first = root / "train" / "class0" / "0000.png"
    Image.new("RGB", (70, 65), (220, 40, 40)).save(first)
    code, _, err = run_cli("distill", "--teacher-cache", tmp_path / "c.safetensors", *data, "--augment", "standard",
                           "--student", "lenet5", "--epochs", "1", "--out", tmp_path / "st")  # fmt: skip
    assert code == 2, err
    assert (
        f"{first}: is 65×70 pixels, but teacher cache {tmp_path / 'c.safetensors'} drew its crop on a " in err
        and "image: the data changed since the cache was made; rebuild it (kdtool cache-teacher)" in err
    ), err
    assert len(err.strip().splitlines()) == 1


def test_interrupt_then_resume_a_streamed_cached_run_is_bit_identical(run_cli, streamed, tmp_path,
                                                                       interrupt_at_epoch):  # fmt: skip
    dataset, _, cache = streamed
    loader = ("--loader", "stream") if dataset.startswith("imagefolder:") else ()
    args = ("distill", "--teacher-cache", cache, "--dataset", dataset, *DATA, *loader, "--student", "lenet5",
            "--epochs", "3", "--augment", "standard,mixup", "--kd-loss", "dkd", "--dkd-warmup-epochs", "0")  # fmt: skip
    assert run_cli(*args, "--workers", "2", "--out", tmp_path / "straight")[0] == 0
    interrupt_at_epoch(2)  # epoch 2 replays view 0 again
    # the same workers: a wds: run's order depends on them (docs/big-data.md)
    code, _, err = run_cli(*args, "--workers", "2", "--out", tmp_path / "resumed")
    assert code == 130 and "--resume" in err
    interrupt_at_epoch(None)
    code, _, err = run_cli(*args, "--workers", "2", "--out", tmp_path / "resumed", "--resume")
    assert code == 0, err
    a, b = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("straight", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


DDP_SCRIPT = """
import json, sys, torch, torch.distributed as dist
sys.path.insert(0, {root!r})
from tests.test_stream_cache import student_loader
from kdtool.distributed import init_from_env
from kdtool.losses import KnowledgeDistillation, FrozenTeacher
from kdtool.runs.folder import RunDir
from kdtool.training.accel import frozen_for_inference
from kdtool.training.runmodel import load_run_model

env, device = init_from_env("cpu")
network, _, _ = load_run_model(RunDir.open({teacher!r}))
live = FrozenTeacher(frozen_for_inference(network, channels_last=True))
loader = student_loader({dataset!r}, {cache!r}, 2, env)
gap = 0.0
for x, y, cached in loader.training_batches(0):
    gap = max(gap, float((cached - live(x)).abs().max()))
seen = [ids for _, _, ids, _ in loader.raw_batches(0)]
gathered = [None] * env.world_size
dist.all_gather_object(gathered, (gap, torch.cat(seen).tolist()))
if env.rank == 0:
    json.dump(gathered, open({result!r}, "w"))
dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_two_processes_replay_their_own_samples_with_the_teachers_logits(streamed, tmp_path):
    """Under a 2-process torchrun each rank's streamed batches bring the cached logits of its own samples, equal to
    the live teacher's on the replayed images; together the ranks see every sample once."""
    dataset, teacher, cache = streamed
    script, result = tmp_path / "ddp.py", tmp_path / "result.json"
    script.write_text(DDP_SCRIPT.format(root=str(Path(__file__).parent.parent), teacher=str(teacher),
                                        dataset=dataset, cache=str(cache), result=str(result)))  # fmt: skip
    torchrun = str(Path(sys.executable).parent / "torchrun")
    done = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", str(script)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (gap0, ids0), (gap1, ids1) = json.loads(result.read_text())
    assert gap0 < 1e-4 and gap1 < 1e-4
    assert not set(ids0) & set(ids1) and len(ids0) + len(ids1) >= 64


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_two_processes_each_cache_their_share_into_one_file(streamed, tmp_path):
    """``torchrun --nproc-per-node 2 -m kdtool cache-teacher``: each rank runs the teacher over every second sample
    and writes its rows into the one file; it holds what one process writes (the draws exactly, the logits to
    float32 rounding: the teacher ran on other batches)."""
    dataset, teacher, single = streamed
    out = tmp_path / "ddp.cache.safetensors"
    loader = ["--loader", "stream"] if dataset.startswith("imagefolder:") else []
    torchrun = str(Path(sys.executable).parent / "torchrun")
    done = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "kdtool", "cache-teacher",
                           str(teacher), *loader, "--views", str(VIEWS), "--cache-dtype", "float32", "--workers", "1",
                           "--batch-size", "10", "--device", "cpu", "--out", str(out)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1  # rank 0 reports
    a, b = TeacherCache.open(single), TeacherCache.open(out)
    assert torch.equal(a.sample_index, b.sample_index) and torch.equal(a.labels, b.labels)
    rows = torch.arange(a.num_samples)
    for view in range(VIEWS):
        assert torch.equal(a.aug_params(view, rows), b.aug_params(view, rows))
        torch.testing.assert_close(a.teacher_logits(view, rows), b.teacher_logits(view, rows), rtol=1e-5, atol=1e-5)
