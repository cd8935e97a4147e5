"""The training defaults per dataset family: what the docs' table says is what the code does, and
the short-run guard keeps a tiny default run from diverging."""

import csv
import itertools
import math
import re
from pathlib import Path

import pytest

from kdtool.config.runconfig import FAMILY_DEFAULTS, TrainConfig, training_defaults

TRAINING_PAGE = Path(__file__).resolve().parents[1] / "docs" / "training.md"


def documented_defaults_table() -> list[dict[str, str]]:
    """The rows of the table under the "### Training defaults" heading of docs/training.md."""
    section = TRAINING_PAGE.read_text(encoding="utf-8").split("### Training defaults", 1)[1]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != len(header):
            break  # the next table
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def datasets_of(cell: str) -> list[str]:
    """`fashion-mnist`, `imagefolder:` ... -> dataset names kdtool accepts (a prefix gets a path)."""
    names = re.findall(r"`([^`]+)`", cell)
    return [name + "some/path" if name.endswith(":") else name for name in names]


def test_documented_table_is_what_the_code_does():
    rows = documented_defaults_table()
    assert [row["family"] for row in rows] == [d.family for d in FAMILY_DEFAULTS]
    for row in rows:
        datasets = datasets_of(row["datasets"])
        assert datasets, row
        for dataset in datasets:
            chosen = training_defaults(dataset)
            assert chosen.family == row["family"], dataset
            assert row["`--schedule`"] == f"`{chosen.schedule}`", dataset
            assert float(row["`--lr`"]) == chosen.lr, dataset
            if chosen.family != "text":
                assert row["`--augment`"] == f"`{chosen.augment}`", dataset


@pytest.mark.parametrize("dataset", ["fashion-mnist", "goemotions-ekman"])
def test_a_run_resolves_its_family_defaults_and_explicit_values_win(dataset):
    expected = training_defaults(dataset)
    cfg = TrainConfig(dataset=dataset, model="bilstm" if "goemotions" in dataset else "lenet5").resolve()
    assert (cfg.augment, cfg.schedule, cfg.lr) == (expected.augment, expected.schedule, expected.lr)
    mine = TrainConfig(dataset=dataset, model=cfg.model, schedule="multistep", lr=0.3).resolve()
    assert (mine.schedule, mine.lr) == ("multistep", 0.3)


def test_family_defaults_differ_where_the_evidence_says():
    small, natural = training_defaults("mnist"), training_defaults("cifar10")
    assert (small.augment, small.lr) == ("none", 0.05) and (natural.augment, natural.lr) == ("standard", 0.1)


def test_a_short_default_run_on_a_few_hundred_images_learns_without_diverging(run_cli, tmp_path):
    # 4 epochs of 12 steps at the default learning rate and warm-up (at least one epoch); at --lr 0.5 the
    # same run's training accuracy falls after the warm-up, and at 0.2 short runs collapsed (docs/training.md)
    args = ("--limit-train", "384", "--limit-test", "128", "--epochs", "4", "--batch-size", "32", "--device", "cpu")
    code, stdout, stderr = run_cli("train-teacher", "--smoothing", "lls", *args, "--out", tmp_path / "r")
    assert code == 0, stderr
    assert "· lr 0.05, cosine, warm-up 1 epoch, augment none" in stdout  # the header shows the family's defaults
    rows = list(csv.DictReader(open(tmp_path / "r" / "metrics.csv")))
    losses = [float(r["train_loss"]) for r in rows]
    accs = [float(r["train_acc"]) for r in rows]
    assert all(math.isfinite(v) for v in losses)
    assert all(later >= earlier for earlier, later in itertools.pairwise(accs)), accs
    assert accs[-1] > accs[0] + 0.2 and losses[-1] < losses[0], (accs, losses)
