"""Every baseline method and augmentation through ``kdtool train-teacher`` on tiny data."""

import csv
import json

import pytest
import torch
from torch import nn

from kdtool.engine import gradient_norm
from tests.conftest import TINY


def read_rows(out):
    with open(out / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize(
    "args",
    [
        ["--smoothing", "ols"],
        ["--smoothing", "tfkd-reg", "--tfkd-temperature", "20", "--tfkd-weight", "0.1", "--tfkd-multiplier", "100"],
        ["--smoothing", "zipf", "--zipf-weight", "0.5", "--zipf-exponent", "1.5"],
        ["--smoothing", "focal", "--focal-gamma", "3"],
        ["--smoothing", "focal", "--focal-gamma", "adaptive"],
        ["--smoothing", "lls", "--augment", "cutout,mixup,cutmix,randaugment"],
        ["--smoothing", "ols", "--augment", "mixup"],
    ],
)
def test_method_trains_and_logs_training_dynamics(run_cli, tmp_path, args):
    out = tmp_path / "run"
    code, _, stderr = run_cli("train-teacher", *args, *TINY, "--out", out)
    assert code == 0, stderr
    config = json.loads((out / "config.json").read_text())
    assert config["smoothing"] == args[1]
    row = read_rows(out)[-1]
    assert float(row["grad_norm"]) > 0
    gap = abs(float(row["train_acc"]) - float(row["test_acc"]))
    assert float(row["generalization_error"]) == pytest.approx(gap)


def test_prior_and_tfkd_self_end_to_end(run_cli, tmp_path):
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"tops": ["T-shirt/top", "Pullover", "Coat", "Shirt", "Dress"], "bottoms": ["Trouser"],
                                  "shoes": ["Sandal", "Sneaker", "Ankle boot"], "bags": ["Bag"]}))  # fmt: skip
    prior = tmp_path / "p.q.safetensors"
    code, _, stderr = run_cli(
        "make-prior", "superclass", "--dataset", "fashion-mnist", "--groups", groups, "--out", prior
    )
    assert code == 0, stderr
    code, _, stderr = run_cli(
        "train-teacher", "--smoothing", "prior", "--prior", prior, *TINY, "--out", tmp_path / "cls"
    )
    assert code == 0, stderr
    assert not (tmp_path / "cls" / "q.safetensors").exists()
    teacher = tmp_path / "teacher"
    assert run_cli("train-teacher", "--smoothing", "onehot", *TINY, "--out", teacher)[0] == 0
    code, _, stderr = run_cli("train-teacher", "--smoothing", "tfkd-self", "--teacher", teacher, "--augment", "cutmix",
                              *TINY, "--out", tmp_path / "self")  # fmt: skip
    assert code == 0, stderr
    assert json.loads((tmp_path / "self" / "config.json").read_text())["teacher"] == str(teacher)


def test_no_augment_is_recorded_as_none(run_cli, tmp_path):
    assert run_cli("train-teacher", "--smoothing", "onehot", "--no-augment", *TINY, "--out", tmp_path / "r")[0] == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["augment"] == "none"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--smoothing", "tfkd-self"], "needs --teacher"),
        (["--smoothing", "tfkd-self", "--teacher", "/nonexistent/run"], "does not exist"),
        (["--smoothing", "prior"], "needs --prior"),
        (["--smoothing", "prior", "--prior", "/nonexistent.q.safetensors"], "does not exist"),
        (["--augment", "autoaugment"], "unknown augmentation"),
        (["--focal-gamma", "big"], "--focal-gamma"),
        (["--tfkd-weight", "2"], "--tfkd-weight must be in [0, 1]"),
        (["--zipf-exponent", "0"], "--zipf-exponent must be > 0"),
    ],
)
def test_bad_method_options_exit_2(run_cli, tmp_path, args, message):
    code, _, stderr = run_cli("train-teacher", *args, *TINY, "--out", tmp_path / "never")
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


def test_gradient_norm_is_the_norm_of_the_whole_gradient_vector():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))
    model(torch.randn(4, 3)).square().sum().backward()
    flat = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert gradient_norm(model).item() == pytest.approx(flat.norm().item())
