"""#28.5: credentials in a tracker URI reach the tracker and nothing else: not config.json, trackers.json, the
trackers' records, the HTML report or the console."""

import json
import sys
from pathlib import Path

import pytest

from kdtool.redact import redact, redact_values
from tests.conftest import TINY

SECRET_URI = "http://alice:S3CRET-TOKEN@localhost:9/?api_key=S3CRET-KEY&workspace=lab"
SECRETS = ("S3CRET", "alice")


@pytest.mark.parametrize(("text", "clean"), [
    ("http://user:pw@host:5000/", "http://host:5000/"),
    ("https://h/x?token=abc&mode=ro", "https://h/x?mode=ro"),
    ("train-teacher --mlflow-uri https://u@h/x?sig=1 --out r", "train-teacher --mlflow-uri https://h/x --out r"),
    ("sqlite:///runs/mlflow.db", "sqlite:///runs/mlflow.db"),
    ("did you mean alpha? see http://h/docs?page=2", "did you mean alpha? see http://h/docs?page=2"),
    ("retries exceeded with url: /?api_key=S3/api/2.0 (Caused", "retries exceeded with url: /?api_key=*** (Caused"),
])  # fmt: skip
def test_redact_removes_user_info_and_secret_query_parameters(text, clean):
    assert redact(text) == clean


def test_redact_values_walks_nested_records_and_names_what_it_changed():
    record, changed = redact_values({"a": SECRET_URI, "b": {"c": ["x", "ftp://k:v@h/"]}, "d": 3})
    assert "S3CRET" not in json.dumps(record) and changed == ["a", "b.c"] and record["d"] == 3


def files_holding(folder: Path, needles) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and any(n.encode() in p.read_bytes() for n in needles)]


def test_no_credential_on_disk_in_trackers_report_or_console(run_cli, tmp_path, monkeypatch):
    import mlflow

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    given = []

    class Client(mlflow.MlflowClient):  # the server of SECRET_URI, played by a local store
        def __init__(self, tracking_uri=None, **kwargs):
            given.append(tracking_uri)
            super().__init__(tracking_uri=store, **kwargs)

    monkeypatch.setattr(mlflow, "MlflowClient", Client)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["kdtool", "train-teacher", "--mlflow-uri", SECRET_URI, "--out", str(out)])
    code, stdout, stderr = run_cli("train-teacher", *TINY, "--log", "mlflow,tensorboard", "--mlflow-uri", SECRET_URI,
                                   "--out", out)  # fmt: skip
    assert code == 0, stderr
    assert given == [SECRET_URI]  # the tracker itself gets the credentials
    record = json.loads((out / "config.json").read_text())
    assert record["mlflow_uri"] == "http://localhost:9/?workspace=lab" and record["redacted"] == [
        "mlflow_uri",
        "command",
    ]
    code, report_out, report_err = run_cli("report", out, "--out", tmp_path / "report.html")
    assert code == 0, report_err
    assert files_holding(tmp_path, SECRETS) == []  # run folder (tensorboard events too), report, mlflow store
    assert not any(s in stdout + stderr + report_out + report_err for s in SECRETS)
    params = mlflow.tracking.MlflowClient(tracking_uri=store).search_runs(["0", "1"])[0].data.params
    assert params["mlflow_uri"] == "http://localhost:9/?workspace=lab"


def test_a_tracker_uri_from_the_environment_is_never_persisted(run_cli, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'env-store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code, _, stderr = run_cli("train-teacher", *TINY, "--log", "mlflow", "--out", out)
    assert code == 0, stderr
    assert (
        json.loads((out / "trackers.json").read_text())["mlflow"]["tracking_uri"] == "environment (MLFLOW_TRACKING_URI)"
    )
    assert files_holding(out, ["env-store.db"]) == []


def test_a_failing_tracker_warning_carries_no_credential(run_cli, tmp_path, monkeypatch):
    from kdtool.trackers.tensorboard_log import TensorBoardTracker

    def refuse(self, values, step):
        raise ConnectionError(f"cannot reach {SECRET_URI}")

    monkeypatch.setattr(TensorBoardTracker, "log_scalars", refuse)
    code, stdout, stderr = run_cli("train-teacher", *TINY, "--log", "tensorboard", "--out", tmp_path / "run")
    assert code == 0, stderr
    assert (
        "--log tensorboard failed (ConnectionError: cannot reach http://localhost:9/?workspace=lab)" in stdout + stderr
    )
    assert not any(s in stdout + stderr for s in SECRETS)


def test_an_error_line_and_the_same_run_check_never_show_or_trip_on_a_credential(run_cli, tmp_path):
    code, _, err = run_cli("train-teacher", "--dataset", "wds:https://alice:S3CRET-TOKEN@host/train-{0..1}.tar",
                           "--out", tmp_path / "run")  # fmt: skip
    assert code == 2 and "S3CRET" not in err and "alice" not in err and "https://host/train-" in err
    from kdtool.runs.folder import first_difference

    requested = {"dataset": "wds:https://alice:S3CRET-TOKEN@host/train-{0..1}.tar", "alpha": 0.1}
    assert first_difference(redact_values(requested)[0], requested) is None  # the same run, as config.json has it
