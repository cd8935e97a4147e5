import csv
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from kdtool import QMatrix
from kdtool.config.runconfig import TrainConfig
from kdtool.data import load_dataset
from kdtool.models.registry import build_model
from kdtool.runs.folder import RunDir
from kdtool.training.engine import lr_factor
from tests.conftest import TINY


def test_train_teacher_lls_writes_a_complete_loadable_run(run_cli, tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli("train-teacher", "--smoothing", "lls", "--alpha", "0.2", *TINY, "--out", out)
    assert code == 0, stderr
    assert "test accuracy" in stdout and "q.safetensors" in stdout
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        ".kdtool-manifest.json",
        "checkpoint",
        "config.json",
        "metrics.csv",
        "model.safetensors",
        "q.safetensors",
    ]
    assert [p.name for p in (out / "checkpoint").iterdir()] == ["last.pt"]  # no temporary leftovers
    config = json.loads((out / "config.json").read_text())
    assert config["smoothing"] == "lls" and config["alpha"] == 0.2 and config["seed"] == 0
    assert config["versions"]["torch"] == torch.__version__
    assert config["dataset_info"]["class_names"][6] == "Shirt"
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 1
    columns = set(rows[0])
    assert {"epoch", "lr_mean", "train_loss", "train_acc", "test_acc", "test_nll", "test_ece", "seconds"} <= columns
    # the epoch's mean rate over its 4 steps (warm-up, then the cosine), not the first step's
    cfg = TrainConfig(epochs=1).resolve()
    assert float(rows[0]["lr_mean"]) == pytest.approx(cfg.lr * sum(lr_factor(s, 4, cfg) for s in range(4)) / 4)
    torch.manual_seed(0)
    untrained = build_model("lenet5", 10, 1, 28)
    model = RunDir.open(out).load_weights(build_model("lenet5", 10, 1, 28))
    saved, loaded = load_file(str(out / "model.safetensors")), model.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert not all(torch.equal(saved[k], untrained.state_dict()[k]) for k in saved)  # trained, not the seed-0 init
    assert model.eval()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    q = QMatrix.load(out / "q.safetensors")
    assert q.num_classes == 10 and q.alpha == 0.2 and q.source == "lls" and q.dataset == "fashion-mnist"
    assert q.class_names[0] == "T-shirt/top"
    assert not torch.equal(q.logits, torch.zeros(10, 10))  # Q was trained


@pytest.mark.parametrize("method", ["onehot", "ls"])
def test_other_methods_write_no_q(run_cli, tmp_path, method):
    code, _, stderr = run_cli("train-teacher", "--smoothing", method, *TINY, "--out", tmp_path / method)
    assert code == 0, stderr
    assert not (tmp_path / method / "q.safetensors").exists()
    assert (tmp_path / method / "model.safetensors").is_file()


def test_same_seed_same_result(run_cli, tmp_path):
    for name in ("a", "b"):
        assert run_cli("train-teacher", *TINY, "--seed", "5", "--out", tmp_path / name)[0] == 0
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    metrics = [next(csv.DictReader(open(tmp_path / n / "metrics.csv"))) for n in ("a", "b")]
    assert metrics[0]["train_loss"] == metrics[1]["train_loss"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "vgg99"], "unknown model"),
        (["--smoothing", "magic"], "unknown smoothing method"),
        (["--alpha", "1.2"], "alpha must be in (0, 1)"),
        (["--epsilon", "1"], "epsilon must be in (0, 1)"),
        (["--dataset", "cifar100"], "--data-root is required"),
        (["--dataset", "cifar10", "--data-root", "/nonexistent/data"], "does not exist"),
        (["--lls-terms", "forward-ce,nope"], "unknown LLS term"),
        (["--milestones", "ten"], "comma-separated integers"),
        (["--no-such-option"], "No such option"),
    ],
)
def test_bad_inputs_exit_2_with_one_line_and_write_nothing(run_cli, tmp_path, args, message):
    out = tmp_path / "never"
    code, _, stderr = run_cli("train-teacher", *args, "--out", out)
    assert code == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not out.exists()


def test_existing_run_is_refused_without_force(run_cli, tmp_path):
    out = tmp_path / "run"
    assert run_cli("train-teacher", *TINY, "--out", out)[0] == 0
    before = (out / "model.safetensors").read_bytes()
    code, _, stderr = run_cli("train-teacher", *TINY, "--out", out)
    assert code == 2 and "--force" in stderr
    assert (out / "model.safetensors").read_bytes() == before
    assert run_cli("train-teacher", *TINY, "--seed", "1", "--out", out, "--force")[0] == 0
    assert (out / "model.safetensors").read_bytes() != before


def test_force_never_wipes_a_folder_that_is_not_a_run(run_cli, tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    code, _, stderr = run_cli("train-teacher", *TINY, "--out", tmp_path, "--force")
    assert code == 2 and "not a kdtool run" in stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out(run_cli, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, stderr = run_cli("train-teacher", *TINY, "--out", locked / "run")
    assert code == 2 and "not writable" in stderr


def test_out_is_a_file(run_cli, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    code, _, stderr = run_cli("train-teacher", *TINY, "--out", target)
    assert code == 2 and "not a folder" in stderr


def test_schedule_warmup_then_milestones():
    cfg = TrainConfig(epochs=10, warmup_epochs=2, schedule="multistep", milestones=[5, 8], gamma=0.1).resolve()
    steps = 4
    factors = [lr_factor(s, steps, cfg) for s in range(40)]
    assert factors[0] == pytest.approx(1 / 8) and factors[7] == pytest.approx(1.0)
    assert factors[8] == 1.0 and factors[19] == 1.0
    assert factors[20] == pytest.approx(0.1) and factors[32] == pytest.approx(0.01)


def test_short_runs_scale_the_default_warmup():
    assert TrainConfig(epochs=200).resolve().warmup_epochs == 5
    assert TrainConfig(epochs=10).resolve().warmup_epochs == 1
    assert TrainConfig(epochs=3).resolve().warmup_epochs == 1  # the short-run guard: at least one epoch
    assert TrainConfig(epochs=200, schedule="multistep").resolve().milestones == [100, 150]


def test_the_default_warmup_takes_at_most_half_the_run():
    # a 1-epoch run used to warm up for all of it, never training at its learning rate
    one = TrainConfig(epochs=1).resolve()
    assert one.warmup_epochs == 0.5
    assert [lr_factor(s, 4, one) for s in range(4)] == [0.5, 1.0, 1.0, 0.5]  # warm-up, then the cosine from its peak
    assert TrainConfig(epochs=2).resolve().warmup_epochs == 1


def test_an_explicit_warmup_longer_than_half_the_run_is_refused(run_cli, tmp_path):
    code, _, stderr = run_cli("train-teacher", *TINY, "--warmup-epochs", "1", "--out", tmp_path / "x")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    assert (
        "--warmup-epochs 1 is more than half of the run's 1 epoch: most of the run would train below --lr; give at "
        "most 0.5" in " ".join(stderr.split())
    )
    half = TrainConfig(epochs=3, warmup_epochs=1.5, schedule="constant").resolve()
    assert [lr_factor(s, 2, half) for s in range(4)] == [pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0, 1.0]


def test_console_script_and_module_entry_points():
    out = subprocess.run([sys.executable, "-m", "kdtool", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("kdtool ")
    helped = subprocess.run([sys.executable, "-m", "kdtool", "train-teacher", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "Examples" in helped.stdout


def test_dataset_limit_is_respected():
    ds = load_dataset("fashion-mnist").limited(256, 128, seed=0)
    assert len(ds.train) == 256


def test_constant_and_cosine_schedules():
    constant = TrainConfig(epochs=4, warmup_epochs=1, schedule="constant").resolve()
    assert [lr_factor(s, 2, constant) for s in range(8)] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    cosine = TrainConfig(epochs=5, warmup_epochs=0, schedule="cosine").resolve()
    factors = [lr_factor(s, 1, cosine) for s in range(5)]
    assert factors[0] == 1.0 and factors == sorted(factors, reverse=True)
    assert factors[2] == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 5)))


def test_unknown_schedule(run_cli, tmp_path):
    code, _, stderr = run_cli("train-teacher", "--schedule", "zigzag", "--out", tmp_path / "x")
    assert code == 2 and "unknown --schedule" in stderr


@pytest.mark.slow
def test_a_run_resumed_from_an_older_kdtools_checkpoint_keeps_both_lr_columns(run_cli, tmp_path, interrupt_at_epoch):
    out = tmp_path / "run"
    args = ("train-teacher", *TINY, "--epochs", "2", "--device", "cpu", "--out", out)
    interrupt_at_epoch(1)
    assert run_cli(*args)[0] == 130
    # as kdtool wrote it before the epoch's mean rate: the first step's rate, named "lr"
    checkpoint = out / "checkpoint" / "last.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["rows"] = [{("lr" if k == "lr_mean" else k): v for k, v in row.items()} for row in state["rows"]]
    torch.save(state, checkpoint)
    interrupt_at_epoch(None)
    code, _, stderr = run_cli(*args, "--resume")
    assert code == 0, stderr
    rows = RunDir(out).metrics()
    assert list(rows[0])[:2] == ["epoch", "lr"] and "lr_mean" in rows[0]
    assert rows[0]["lr_mean"] == "" and rows[1]["lr"] == "" and float(rows[0]["lr"]) > 0 < float(rows[1]["lr_mean"])
    code, _, stderr = run_cli("report", out, "--out", tmp_path / "report.html", "--device", "cpu")
    assert code == 0, stderr
