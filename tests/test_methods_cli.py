"""Every baseline method and augmentation through ``kdtool train-teacher`` on tiny data."""

import csv
import json

import pytest
import torch
from torch import nn

from kdtool.config.runconfig import TrainConfig
from kdtool.data import BatchLoader, ImageBatchTransform, Split
from kdtool.losses import OneHot
from kdtool.training.engine import Trainer
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
    assert float(row["grad_norm"]) > 0 and 0 <= float(row["generalization_error"]) <= 1


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


class AnswersFromThePixel(nn.Module):
    """Predicts the class written in an image's first pixel (class c: pixel 10·c), whatever SGD does
    to its one weight, which the logits only multiply by zero."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        predicted = (x[:, 0, 0, 0] * 255 / 10).round().long()
        return nn.functional.one_hot(predicted, 4).float() * 5 + 0 * self.w


def test_generalization_error_from_known_train_and_test_accuracy():
    """The engine's metrics row against numbers fixed in advance: 3 of 4 training images and 1 of 4
    test images are predicted right, so |train error − test error| = |0.25 − 0.75| = 0.5."""
    labels = torch.arange(4)

    def split(predicted):
        images = (torch.tensor(predicted) * 10).to(torch.uint8).view(4, 1, 1, 1).expand(4, 1, 2, 2)
        return Split(images.contiguous(), labels)

    transform = ImageBatchTransform((0.0,), (1.0,))
    train = BatchLoader(split([0, 1, 2, 0]), 2, transform, torch.device("cpu"), shuffle=True)
    test = BatchLoader(split([0, 0, 0, 0]), 4, transform, torch.device("cpu"))
    cfg = TrainConfig(epochs=1, warmup_epochs=0).resolve()
    row = next(Trainer(AnswersFromThePixel(), OneHot(), train, test, cfg).epochs())
    assert row["train_acc"] == pytest.approx(0.75) and row["test_acc"] == pytest.approx(0.25)
    assert row["generalization_error"] == pytest.approx(0.5)
