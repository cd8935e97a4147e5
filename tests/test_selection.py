import json

import pytest
import torch

from kdtool.config.runconfig import TrainConfig
from kdtool.data import Dataset, DatasetInfo, Split
from kdtool.data.dataset import stratified_index
from kdtool.errors import KdtoolError
from kdtool.runs.folder import RunDir, selected_row
from kdtool.training.selection import ModelSelector
from tests.conftest import TINY


def rows_of(val_nll, val_acc):
    f1 = [0.2, 0.3, 0.5, 0.4, 0.5, 0.1][: len(val_nll)]
    values = zip(val_nll, val_acc, f1, strict=True)
    return [{"epoch": i + 1, "val_nll": n, "val_acc": a, "val_macro_f1": f} for i, (n, a, f) in enumerate(values)]


@pytest.mark.parametrize(
    ("criterion", "expected"), [("last", 5), ("best-val-loss", 2), ("best-val-acc", 4), ("best-val-f1", 3)]
)
def test_selector_picks_the_right_epoch_and_keeps_its_weights(criterion, expected):
    selector = ModelSelector(criterion)
    for row in rows_of([0.9, 0.5, 0.6, 0.5, 0.7], [0.1, 0.3, 0.2, 0.4, 0.4]):
        selector.update(row, {"w": torch.tensor(float(row["epoch"]))})
    assert selector.selected_epoch == expected
    if criterion != "last":
        assert selector.best_state["w"].item() == expected


def test_early_stopping_stops_after_patience_epochs_without_lower_val_loss():
    selector = ModelSelector("best-val-loss", patience=2)
    stopped_at = None
    for row in rows_of([0.9, 0.5, 0.6, 0.5, 0.4, 0.8], [0] * 6):
        selector.update(row, {})
        if selector.should_stop():
            stopped_at = row["epoch"]
            break
    assert stopped_at == 4  # epochs 3 and 4 did not beat 0.5 (a tie is not an improvement)


def test_validation_split_is_stratified_disjoint_and_seeded():
    labels = torch.arange(100) % 4
    split = Split(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1), labels)
    info = DatasetInfo("toy", ("a", "b", "c", "d"), 1, 1, (0.0,), (1.0,))
    ds = Dataset(info, split, split).with_validation(0.2, seed=3)
    assert len(ds.validation) == 20 and len(ds.train) == 80
    assert torch.bincount(ds.validation.labels).tolist() == [5, 5, 5, 5]
    ids_train = set(ds.train.inputs.flatten().tolist())
    ids_val = set(ds.validation.inputs.flatten().tolist())
    assert not ids_train & ids_val and len(ids_train | ids_val) == 100
    again = Dataset(info, split, split).with_validation(0.2, seed=3)
    assert torch.equal(again.validation.inputs, ds.validation.inputs)
    assert torch.equal(ds.test.inputs, split.inputs)  # the test split is never touched
    assert torch.equal(stratified_index(labels, 0.2, 3), stratified_index(labels, 0.2, 3))


def test_config_rules():
    assert TrainConfig(val_fraction=0.1).resolve().select == "best-val-loss"
    assert TrainConfig().resolve().select == "last"
    with pytest.raises(KdtoolError, match="needs a validation split"):
        TrainConfig(select="best-val-acc").resolve()
    with pytest.raises(KdtoolError, match="--early-stopping"):
        TrainConfig(early_stopping=3).resolve()
    with pytest.raises(KdtoolError, match="--val-fraction"):
        TrainConfig(val_fraction=1.0).resolve()


def test_cli_run_with_validation_records_the_selected_epoch(run_cli, tmp_path):
    out = tmp_path / "run"
    args = [*TINY[:-4], "--epochs", "3", "--batch-size", "64"]
    code, stdout, stderr = run_cli("train-teacher", *args, "--val-fraction", "0.25", "--select", "best-val-acc",
                                   "--out", out)  # fmt: skip
    assert code == 0, stderr
    rows = RunDir(out).metrics()
    assert {"val_acc", "val_nll", "val_ece", "selected"} <= set(rows[0])
    config = json.loads((out / "config.json").read_text())
    facts = config["dataset_info"]
    assert facts["num_train"] + facts["num_val"] == 256 and abs(facts["num_val"] - 64) <= 5  # rounding per class
    best = max(rows, key=lambda r: (float(r["val_acc"]), -int(r["epoch"])))
    assert config["selected_epoch"] == int(best["epoch"])
    assert selected_row(rows)["epoch"] == best["epoch"]
    assert f"{float(best['test_acc']):.2%}" in stdout
