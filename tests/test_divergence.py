"""#28.1: a non-finite value never wins; a diverged run stops at once, says where, and is shown as diverged."""

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdtool.training.selection import ModelSelector

ROOT = Path(__file__).resolve().parent.parent
NAN = math.nan
# epoch 1 trains at lr 0.01; from epoch 2 the multistep "decay" multiplies it by 10^6: a real divergence
DIVERGES_IN_EPOCH_2 = ("--limit-train", "256", "--limit-test", "128", "--batch-size", "64", "--lr", "0.01",
                       "--warmup-epochs", "0", "--schedule", "multistep", "--milestones", "1", "--gamma", "1e6",
                       "--smoothing", "onehot")  # fmt: skip
# not finite, or 10^4 times the first step's loss or more (at the first check of those steps, whichever comes first)
LOSS = r"(nan|\S+ \(the first step's was \S+\))"
LINE = rf"epoch 2 diverged: training loss is {LOSS} at step \d+ \(lr 1e\+04\); the last finite checkpoint is epoch 1"


@pytest.mark.parametrize(("criterion", "key"), [("best-val-loss", "val_nll"), ("best-val-acc", "val_acc"),
                                                 ("best-val-f1", "val_macro_f1")])  # fmt: skip
def test_a_non_finite_validation_value_is_never_selected(criterion, key):
    values = {"val_nll": [0.9, 0.8, NAN, 0.85, -math.inf], "val_acc": [0.3, 0.4, NAN, 0.35, math.inf],
              "val_macro_f1": [0.3, 0.4, NAN, 0.35, math.inf]}  # fmt: skip
    selector = ModelSelector(criterion)
    first_nan = ModelSelector(criterion)
    for epoch in range(5):
        row = {"epoch": epoch + 1, **{k: v[epoch] for k, v in values.items()}}
        selector.update(row, {"w": torch.tensor(float(epoch + 1))})
        first_nan.update({**row, key: NAN if epoch == 0 else row[key]}, {"w": torch.tensor(float(epoch + 1))})
    assert selector.selected_epoch == 2 and selector.best_state["w"].item() == 2.0
    assert first_nan.selected_epoch == 2  # a NaN first epoch does not block every later one


def test_a_nan_validation_loss_is_no_new_best_for_early_stopping():
    selector = ModelSelector("best-val-loss", patience=2)
    for epoch, nll in enumerate([NAN, 0.5, 0.4], 1):
        selector.update({"epoch": epoch, "val_nll": nll, "val_acc": 0.0, "val_macro_f1": 0.0}, {})
    assert not selector.should_stop() and selector.best_loss == 0.4
    for epoch, nll in enumerate([NAN, NAN], 4):
        selector.update({"epoch": epoch, "val_nll": nll, "val_acc": 0.0, "val_macro_f1": 0.0}, {})
    assert selector.should_stop() and selector.best_loss == 0.4


def test_a_diverging_run_stops_with_one_line_exit_3_and_keeps_its_last_finite_epoch(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "kdtool", "train-teacher", *DIVERGES_IN_EPOCH_2, "--epochs", "4",
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(LINE + rf" \({re.escape(str(out))}\)", done.stderr), done.stderr
    record = json.loads((out / "config.json").read_text())
    assert record["status"] == "diverged" and record["diverged"]["epoch"] == 2
    assert not float(record["diverged"]["loss"]) < 1e4 * 2.31  # nan, or exploded from its first step's log(10)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1"] and math.isfinite(float(rows[0]["train_loss"]))
    assert (out / "checkpoint" / "last.pt").is_file() and not (out / "model.safetensors").exists()
    first = torch.load(out / "checkpoint" / "last.pt", weights_only=True)["trainer"]["first_loss"]
    assert abs(first - math.log(10)) < 0.1  # kept for --resume: the limit stays the run's own


def test_seeds_go_on_after_a_diverged_run_and_list_it(run_cli, tmp_path, monkeypatch):
    """Seed 1 diverges (its learning rate alone is raised 10^6-fold from epoch 2); seeds 0 and 2 train."""
    from kdtool.training import engine

    original = engine.lr_factor

    def lr_factor(step, steps_per_epoch, cfg):
        return original(step, steps_per_epoch, cfg) * (1e6 if cfg.seed == 1 and step >= steps_per_epoch else 1)

    monkeypatch.setattr(engine, "lr_factor", lr_factor)
    args = list(DIVERGES_IN_EPOCH_2)
    args[args.index("--gamma") + 1] = "1.0"
    code, out, err = run_cli("train-teacher", *args, "--epochs", "2", "--seeds", "0,1,2", "--out", tmp_path / "s")
    assert code == 3, err
    assert "1 of 3 runs diverged: seed 1" in err
    assert (tmp_path / "s" / "seed0" / "model.safetensors").is_file()
    assert (tmp_path / "s" / "seed2" / "model.safetensors").is_file()
    # compare leaves it out as diverged, never averages it in
    code, out, err = run_cli("compare", tmp_path / "s", "--format", "csv")
    assert code == 0, err
    assert f"left out 1 diverged runs: {tmp_path / 's' / 'seed1'}" in err
    assert next(csv.DictReader(out.splitlines()))["n"] == "2"
    # a report on it says it diverged; run again, the diverged seed is skipped and listed again
    code, _, err = run_cli("report", tmp_path / "s" / "seed1", "--out", tmp_path / "r.html")
    assert code == 2 and "seed1 diverged in epoch 2 (training loss " in err
    code, out, err = run_cli("train-teacher", *args, "--epochs", "2", "--seeds", "0,1,2", "--out", tmp_path / "s")
    assert code == 3 and "diverged earlier, skipped" in out and "1 of 3 runs diverged" in err


def test_search_table_never_chooses_a_non_finite_epoch():
    import importlib.util

    spec = importlib.util.spec_from_file_location("search_table", ROOT / "recipes" / "search_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    run = [{"epoch": 1, "val_nll": NAN}, {"epoch": 2, "val_nll": 0.9}, {"epoch": 3, "val_nll": 0.7},
           {"epoch": 4, "val_nll": NAN}, {"epoch": 5, "val_nll": 0.8}]  # fmt: skip
    assert [row["epoch"] for row in table.selected_rows([run, [{"epoch": 1, "val_nll": NAN}]])] == [3, 1]


def test_a_sweep_goes_on_after_a_diverged_run_and_lists_it(run_cli, tmp_path):
    # --lr 100 diverges in epoch 1 (its loss explodes to 1e13 and more: a finished epoch of loss 1e15 before the
    # loss had to be non-finite to count); the next grid point still trains
    args = ("sweep", "--lr", "100,0.05", "--limit-train", "256", "--limit-test", "128", "--epochs", "2",
            "--batch-size", "64", "--smoothing", "onehot", "--schedule", "constant", "--out", tmp_path)  # fmt: skip
    code, out, err = run_cli(*args)
    assert code == 3, err
    assert re.search(rf"epoch 1 diverged: training loss is {LOSS} at step \d+ \(lr 100\); no epoch finished before "
                     rf"it \({re.escape(str(tmp_path / 'lr-100'))}\)", out), out  # fmt: skip
    assert (tmp_path / "lr-0.05" / "model.safetensors").is_file()
    assert [row["lr"] for row in csv.DictReader((tmp_path / "sweep.csv").open())] == ["0.05"]  # results only
    assert f"1 runs summarised in {tmp_path / 'sweep.csv'}" in out
    assert err.strip().splitlines()[-1] == f"1 of 2 runs diverged: lr-100 ({tmp_path / 'lr-100'})"
    code, out, err = run_cli(*args)  # run again: the diverged point is skipped and listed again
    assert code == 3 and "[1/2] lr-100: diverged earlier, skipped" in out and "1 of 2 runs diverged" in err


def write_seed(folder: Path, rows: list[dict[str, float]], status: str = "finished") -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"status": status}))
    with open(folder / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_search_table_skips_non_finite_rows_and_names_diverged_seeds(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("search_table", ROOT / "recipes" / "search_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)

    def row(epoch, val_nll, val_acc, train_loss=1.0):
        return {"epoch": epoch, "train_loss": train_loss, "train_acc": 0.5, "val_nll": val_nll, "val_acc": val_acc,
                "test_acc": 0.8}  # fmt: skip

    point = tmp_path / "grid" / "a"
    write_seed(point / "seed0", [row(1, 0.9, 0.4), row(2, 0.5, 0.6), row(3, NAN, 0.1)])
    write_seed(point / "seed1", [row(1, NAN, 0.1), row(2, 0.7, 0.5)])
    write_seed(point / "seed2", [row(1, 0.1, 0.9)], status="diverged")  # stopped in its 2nd epoch: no result
    write_seed(tmp_path / "probe" / "b" / "seed0", [row(1, 0.9, 0.4), row(2, 0.9, 0.4, train_loss=NAN)])
    write_seed(tmp_path / "probe" / "c" / "seed0", [row(1, 0.9, 0.4)], status="diverged")
    assert [r["epoch"] for r in table.selected_rows(table.seeds_of(point))] == [2, 2]
    grid = table.grid_table(tmp_path / "grid")
    assert "| a | 2 | 55.00 | 0.6000 | 55.00 | 0.6000 |" in grid  # seeds 0 and 1, their finite rows only
    assert "Left out, diverged: a/seed2" in grid
    probe = table.probe_table(tmp_path / "probe")
    assert "| b | 50.0 | 50.0 | NO: seed0 |" in probe and "| c | - | - | NO: seed0 diverged |" in probe


def test_a_finite_loss_that_explodes_is_a_divergence_too():
    from kdtool.distributed import DistEnv
    from kdtool.errors import RunDiverged
    from kdtool.training.tally import EpochTally

    def tally_of(losses):
        tally = EpochTally(1, 10, torch.device("cpu"), DistEnv(), first_loss=6.4)
        for loss in losses:
            tally.record(torch.tensor(loss), torch.tensor(0), 8, 0.05)
        return tally

    tally_of([3.0, 2.5, 6.3e4, 7.0]).check(lambda step: 0.05)  # under 10^4 × the first loss: trains on
    with pytest.raises(RunDiverged) as caught:
        tally_of([3.0, 2.5, 7e4, 7.0]).check(lambda step: 0.05)
    assert caught.value.record == {"epoch": 2, "step": 13, "lr": 0.05, "loss": "7e+04", "first_loss": 6.4}
    assert str(caught.value) == ("epoch 2 diverged: training loss is 7e+04 (the first step's was 6.4) at step 13 "
                                 "(lr 0.05); the last finite checkpoint is epoch 1")  # fmt: skip
    EpochTally(0, 10, torch.device("cpu"), DistEnv()).check(lambda step: 0.05)  # before the first step: no limit
