"""``--log mlflow``: an MLflow run with the resolved options as params, metrics per epoch, and the run folder's
files as artifacts. ``--mlflow-uri`` picks the tracking store (a server, or ``sqlite:///FILE`` / a folder, which
work offline; default: MLflow's own, ``MLFLOW_TRACKING_URI`` if set); ``--mlflow-experiment`` the experiment."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdtool.redact import redact
from kdtool.trackers import RunInfo, Tracker, option_text

# MLflow takes at most this many params in one call.
_PARAMS_PER_CALL = 100
# trackers.json's tracking_uri for a store named by MLFLOW_TRACKING_URI (the URI itself is not kept)
ENVIRONMENT = "environment (MLFLOW_TRACKING_URI)"


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, uri: str | None, experiment: str) -> None:
        self.uri, self.experiment = uri, experiment

    def start(self, run: RunInfo) -> dict[str, Any]:
        import mlflow
        from mlflow.entities import Param

        uri = self.uri or mlflow.get_tracking_uri()  # MLflow's default store: MLFLOW_TRACKING_URI, or its own
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        # trackers.json never holds a URI from the environment, nor any URI's credentials
        recorded = ENVIRONMENT if self.uri is None and os.environ.get("MLFLOW_TRACKING_URI") else redact(uri)
        if run.resumed and run.state.get("run_id") and run.state.get("tracking_uri") == recorded:
            self.run_id = run.state["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return dict(run.state)
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=run.name,
                                             tags={"kdtool.kind": run.kind, "kdtool.run_folder": str(run.path)}
                                             ).info.run_id  # fmt: skip
        params = [Param(key, option_text(value)) for key, value in run.options.items()]
        for first in range(0, len(params), _PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=params[first : first + _PARAMS_PER_CALL])
        return {"run_id": self.run_id, "tracking_uri": recorded, "experiment": self.experiment}

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def log_image(self, tag: str, png: bytes, step: int) -> None:
        from PIL import Image

        with Image.open(io.BytesIO(png)) as image:
            self.client.log_image(self.run_id, image.convert("RGB"), key=tag, step=step)

    def finish(self, run_path: Path, completed: bool) -> None:
        if completed:  # the finished run's files (not the checkpoint, nor other trackers' folders)
            for path in sorted(p for p in run_path.iterdir() if p.is_file() and not p.name.startswith(".")):
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status="FINISHED" if completed else "KILLED")


def make(options: Mapping[str, Any]) -> Tracker:
    return MlflowTracker(options.get("mlflow_uri"), options.get("mlflow_experiment") or "kdtool")
