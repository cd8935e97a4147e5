"""``--seeds`` on tiny real runs, then ``evaluate`` and ``compare --plot`` on what they wrote."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from kdtool.cli import main
from kdtool.training.metrics import per_class_accuracy, select_classes
from kdtool.workflows.evaluate import Evaluation
from tests.conftest import TINY

TOPS = "T-shirt/top,Pullover,Coat,Shirt"
Q_ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "fmnist-lenet5-lls.q.safetensors"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """``train-teacher --seeds 0,1``: two tiny LLS runs under one folder (trained once for the module)."""
    out = tmp_path_factory.mktemp("seeded") / "lls"
    with pytest.raises(SystemExit) as done:
        main(["train-teacher", "--smoothing", "lls", *TINY, "--seeds", "0,1", "--out", str(out)])
    assert done.value.code == 0
    return out


def test_seeds_make_one_run_folder_per_seed(seeded):
    assert sorted(p.name for p in seeded.iterdir()) == ["seed0", "seed1"]
    for seed in (0, 1):
        config = json.loads((seeded / f"seed{seed}" / "config.json").read_text())
        assert config["seed"] == seed and config["out"] == str(seeded / f"seed{seed}")
        assert (seeded / f"seed{seed}" / "model.safetensors").is_file()
    weights = [(seeded / f"seed{s}" / "model.safetensors").read_bytes() for s in (0, 1)]
    assert weights[0] != weights[1]


def test_finished_seeds_are_skipped_and_new_ones_trained(run_cli, seeded, tmp_path):
    out = tmp_path / "lls"
    seed0 = seeded / "seed0"
    (out / "seed0").mkdir(parents=True)
    for name in ("config.json", "metrics.csv", "model.safetensors"):
        (out / "seed0" / name).write_bytes((seed0 / name).read_bytes())
    before = (out / "seed0" / "model.safetensors").stat().st_mtime_ns
    code, stdout, stderr = run_cli("train-teacher", "--smoothing", "lls", *TINY, "--seeds", "0,2", "--out", out)
    assert code == 0, stderr
    assert "seed 0: finished earlier, skipped" in stdout
    assert (out / "seed0" / "model.safetensors").stat().st_mtime_ns == before
    assert json.loads((out / "seed2" / "config.json").read_text())["seed"] == 2


def test_an_interrupted_seed_is_resumed(run_cli, seeded, tmp_path):
    # a run that stopped after its last checkpoint but before its weights were written
    out = tmp_path / "lls"
    (out / "seed1" / "checkpoint").mkdir(parents=True)
    for name in ("config.json", "metrics.csv", "checkpoint/last.pt"):
        (out / "seed1" / name).write_bytes((seeded / "seed1" / name).read_bytes())
    config = json.loads((out / "seed1" / "config.json").read_text())
    (out / "seed1" / "config.json").write_text(json.dumps({**config, "out": str(out / "seed1")}))
    code, stdout, stderr = run_cli("train-teacher", "--smoothing", "lls", *TINY, "--seeds", "1", "--out", out)
    assert code == 0, stderr
    assert "(resuming)" in stdout
    assert (out / "seed1" / "model.safetensors").read_bytes() == (seeded / "seed1" / "model.safetensors").read_bytes()


def test_distill_takes_seeds_too(run_cli, tmp_path):
    args = ("distill", "--substitute-q", Q_ARTIFACT, *TINY, "--seeds", "3,4", "--out", tmp_path / "st")
    code, stdout, stderr = run_cli(*args)
    assert code == 0, stderr
    configs = [json.loads((tmp_path / "st" / f"seed{s}" / "config.json").read_text()) for s in (3, 4)]
    assert [c["seed"] for c in configs] == [3, 4] and {c["smoothing"] for c in configs} == {"lls-st"}
    code, stdout, stderr = run_cli(*args)
    assert code == 0 and stdout.count("finished earlier, skipped") == 2


@pytest.mark.parametrize(
    ("seeds", "message"),
    [("0,0", "lists a seed twice"), ("1,-2", "non-negative"), ("a", "comma-separated integers"), (",", "at least one")],
)
def test_bad_seed_lists_are_refused(run_cli, tmp_path, seeds, message):
    code, _, stderr = run_cli("train-teacher", *TINY, "--seeds", seeds, "--out", tmp_path / "x")
    assert code == 2 and message in stderr
    assert not (tmp_path / "x").exists()


def test_seeds_refuse_an_out_that_is_a_run_folder(run_cli, seeded):
    code, _, stderr = run_cli("train-teacher", *TINY, "--seeds", "0", "--out", seeded / "seed0")
    assert code == 2 and "is itself a run folder" in stderr


def test_evaluate_reproduces_the_run_s_own_test_metrics(run_cli, seeded):
    run = seeded / "seed0"
    code, stdout, stderr = run_cli("evaluate", run)
    assert code == 0, stderr
    last = list(csv.DictReader(open(run / "metrics.csv")))[-1]
    assert f"accuracy {float(last['test_acc']):.2%}" in stdout
    assert f"NLL {float(last['test_nll']):.4f}" in stdout and f"ECE {float(last['test_ece']):.4f}" in stdout
    assert "128 samples, 10 classes" in stdout and "Ankle boot" in stdout
    png = run / "confusion-test.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, _, stderr = run_cli("evaluate", run)
    assert code == 2 and "confusion-test.png already exists: pass --force" in stderr


def test_evaluate_on_a_dataset_and_a_class_subset(run_cli, seeded, tmp_path):
    png = tmp_path / "tops.png"
    args = ("evaluate", seeded / "seed1", "--dataset", "fashion-mnist", "--limit-test", "400", "--classes", TOPS)
    code, stdout, stderr = run_cli(*args, "--confusion", png)
    assert code == 0, stderr
    assert "4 classes" in stdout and "Pullover" in stdout and "Trouser" not in stdout
    assert png.is_file()
    code, _, stderr = run_cli(
        "evaluate", seeded / "seed1", "--classes", "Shirt,Dress,Blouse", "--confusion", png, "--force"
    )
    assert code == 2 and "unknown class 'Blouse'" in stderr
    code, _, stderr = run_cli("evaluate", seeded / "seed1", "--limit-test", "10")
    assert code == 2 and "apply with --dataset only" in stderr
    code, _, stderr = run_cli("evaluate", seeded)
    assert code == 2 and "is a folder of runs (seed0, seed1), not a run" in stderr


def test_compare_plot_evaluates_each_group_s_best_run(run_cli, seeded, tmp_path):
    png = tmp_path / "curves.png"
    code, stdout, stderr = run_cli("compare", seeded, "--plot", png)
    assert code == 0, stderr
    assert "reliability" not in stderr and png.read_bytes()[:4] == b"\x89PNG"
    assert "│ lls " in stdout


def test_evaluation_by_hand():
    # true 0 0 1 1 2, predicted 0 1 1 1 0
    labels = torch.tensor([0, 0, 1, 1, 2])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 1, 0]), 3).float() * 4
    result = Evaluation.of(logits, labels, ["a", "b", "c"])
    assert result.support.tolist() == [2, 2, 1]
    assert result.accuracy.tolist() == [0.5, 1.0, 0.0]
    assert result.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert result.metrics["acc"] == pytest.approx(0.6)
    assert math.isnan(per_class_accuracy(logits, torch.tensor([0, 0, 0, 0, 0]))[1])


def test_select_classes_predicts_among_the_kept_classes_only():
    logits = torch.tensor([[5.0, 1.0, 2.0], [0.0, 1.0, 3.0], [9.0, 0.0, 0.0]])
    labels = torch.tensor([2, 1, 0])
    kept_logits, kept_labels = select_classes(logits, labels, [2, 1])
    assert kept_labels.tolist() == [0, 1]  # the sample of class 0 is dropped; 2 -> 0, 1 -> 1
    assert kept_logits.tolist() == [[2.0, 1.0], [3.0, 1.0]]
    assert kept_logits.argmax(1).tolist() == [0, 0]  # class 0's logit 5 no longer wins
