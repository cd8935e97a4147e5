"""--log: TensorBoard, MLflow and W&B read back with their own readers; a failing tracker never stops a run."""

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY

TWO_EPOCHS = (*TINY, "--epochs", "2")


def metrics_rows(run):
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def logged_columns(run):
    """The metrics.csv columns a tracker logs per epoch: all but the epoch number and the final selected mark."""
    return [c for c in metrics_rows(run)[0] if c not in ("epoch", "selected")]


def test_tensorboard_logs_every_metric_once_per_epoch_across_a_resume(run_cli, tmp_path, interrupt_at_epoch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "lls"
    args = ("train-teacher", *TWO_EPOCHS, "--smoothing", "lls", "--log", "tensorboard", "--out", out)
    interrupt_at_epoch(1)
    assert run_cli(*args)[0] == 130
    interrupt_at_epoch(None)
    code, _, stderr = run_cli(*args, "--resume")
    assert code == 0, stderr
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()
    rows = metrics_rows(out)
    columns = logged_columns(out)
    assert set(columns) <= set(events.Tags()["scalars"])
    assert {"lr_mean", "test_acc", "test_nll", "test_ece", "train_loss", "grad_norm"} <= set(columns)
    for column in columns:
        scalars = events.Scalars(column)
        assert [s.step for s in scalars] == [1, 2], column  # once per epoch, the resumed epoch not twice
        for scalar, row in zip(scalars, rows, strict=True):
            assert scalar.value == pytest.approx(float(row[column]), rel=1e-6, abs=1e-7), column
    assert [image.step for image in events.Images("q_heatmap")] == [2]  # the kept Q at the end
    assert "options/text_summary" in events.Tags()["tensors"]


def test_mlflow_params_and_metrics_read_back_from_a_sqlite_store(run_cli, tmp_path, monkeypatch, interrupt_at_epoch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # the sqlite store keeps artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "ls"
    args = ("train-teacher", *TWO_EPOCHS, "--smoothing", "ls", "--log", "mlflow", "--mlflow-uri", uri,
            "--mlflow-experiment", "tests", "--out", out)  # fmt: skip
    interrupt_at_epoch(1)
    assert run_cli(*args)[0] == 130
    first = json.loads((out / "trackers.json").read_text())["mlflow"]["run_id"]
    assert MlflowClient(tracking_uri=uri).get_run(first).info.status == "KILLED"
    interrupt_at_epoch(None)
    code, _, stderr = run_cli(*args, "--resume")
    assert code == 0, stderr
    state = json.loads((out / "trackers.json").read_text())["mlflow"]
    assert state["run_id"] == first  # the resumed run continues the same MLflow run
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "ls"
    assert client.get_experiment(run.info.experiment_id).name == "tests"
    config = json.loads((out / "config.json").read_text())
    assert run.data.params["smoothing"] == "ls" and run.data.params["epsilon"] == str(config["epsilon"])
    assert run.data.params["mlflow_uri"] == uri and "alpha" not in run.data.params
    rows = metrics_rows(out)
    for column in logged_columns(out):
        history = sorted(client.get_metric_history(run.info.run_id, column), key=lambda m: m.step)
        assert [m.step for m in history] == [1, 2], column  # each epoch once across the resume
        for metric, row in zip(history, rows, strict=True):
            assert metric.value == pytest.approx(float(row[column])), column
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "metrics.csv", "model.safetensors"} <= artifacts


def test_wandb_offline_writes_its_run_files_in_the_run_folder(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = tmp_path / "lls"
    code, _, stderr = run_cli("train-teacher", *TINY, "--log", "wandb", "--wandb-project", "tests", "--out", out)
    assert code == 0, stderr
    run_id = json.loads((out / "trackers.json").read_text())["wandb"]["id"]
    (folder,) = (out / "wandb").glob(f"offline-run-*-{run_id}")
    assert (folder / f"run-{run_id}.wandb").stat().st_size > 0
    assert list((folder / "files" / "media" / "images").glob("q_heatmap_*.png"))
    # --force clears what the tracker wrote in the run folder (and nothing else is there)
    code, _, stderr = run_cli("train-teacher", *TINY, "--out", out, "--force")
    assert code == 0, stderr
    assert not (out / "wandb").exists() and not (out / "trackers.json").exists()


def test_a_tracker_failing_mid_run_warns_once_and_training_finishes(run_cli, tmp_path, monkeypatch):
    from kdtool.trackers.tensorboard_log import TensorBoardTracker

    calls = []

    def server_gone(self, values, step):
        calls.append(step)
        raise ConnectionError("server gone")

    monkeypatch.setattr(TensorBoardTracker, "log_scalars", server_gone)
    out = tmp_path / "lls"
    code, stdout, stderr = run_cli("train-teacher", *TWO_EPOCHS, "--log", "tensorboard", "--out", out)
    assert code == 0, stderr
    assert calls == [1]  # dropped after its first failure
    assert (stdout + stderr).count("--log tensorboard failed (ConnectionError: server gone)") == 1
    assert len(metrics_rows(out)) == 2 and (out / "model.safetensors").is_file()


def test_a_missing_tracker_package_is_one_line_before_any_work(run_cli, tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    code, _, stderr = run_cli("train-teacher", *TINY, "--log", "tensorboard,wandb", "--out", tmp_path / "x")
    assert code == 2 and stderr.strip() == 'error: --log wandb needs the wandb package: pip install "kdtool[wandb]"'
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--mlflow-uri", "sqlite:///x.db"), "--mlflow-uri does not apply to this run (--log csv): it is used by "
                                             "--log mlflow only"),
        (("--log", "wandb", "--mlflow-experiment", "e"), "--mlflow-experiment does not apply"),
        (("--log", "mlflow", "--wandb-project", "p"), "--wandb-project does not apply"),
        (("--log", "tensorbord"), "unknown --log 'tensorbord': choose a comma list of csv, tensorboard, mlflow, wandb"),
    ],
    ids=["mlflow-uri", "mlflow-experiment", "wandb-project", "unknown"],
)  # fmt: skip
def test_tracker_options_apply_only_with_their_tracker(run_cli, tmp_path, options, message):
    code, _, stderr = run_cli("train-teacher", *options, "--out", tmp_path / "x")
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_trackers_do_not_make_another_run():
    from kdtool.config.runconfig import TrainConfig
    from kdtool.runs.folder import first_difference

    plain = TrainConfig().resolve().to_dict()
    logged = TrainConfig(log="mlflow,tensorboard", mlflow_uri="sqlite:///m.db").resolve()
    assert logged.log == "csv,tensorboard,mlflow"
    assert first_difference(plain, logged.result_options()) is None  # --resume and --seeds accept another --log


@pytest.mark.slow  # two torchrun processes: about 15 s on 2 CPU cores
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_under_torchrun_only_rank_0_logs(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "ddp"
    done = subprocess.run(
        # `--`: torchrun's parser would take --log for an abbreviation of its --log-dir
        [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "kdtool", "--",
         "train-teacher", *TWO_EPOCHS, "--batch-size", "32", "--device", "cpu", "--log", "tensorboard", "--out", out],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    assert [s.step for s in events.Scalars("test_acc")] == [1, 2]
