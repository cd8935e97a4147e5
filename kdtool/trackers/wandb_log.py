"""``--log wandb``: a Weights & Biases run (config, metrics per epoch, the Q heatmap) whose local files go to the
run folder's ``wandb/``. W&B's own settings apply: ``WANDB_MODE=offline`` needs no network (``wandb sync`` later),
``WANDB_API_KEY`` or ``wandb login`` online; ``--wandb-project`` names the project."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdtool.trackers import RunInfo, Tracker


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, project: str) -> None:
        self.project = project

    def start(self, run: RunInfo) -> dict[str, Any]:
        import wandb

        run_id = run.state.get("id") if run.resumed else None
        # console "off": W&B must not wrap stdout under kdtool's live epoch table
        self.run = wandb.init(project=self.project, name=run.name, dir=str(run.path), id=run_id,
                              resume="allow" if run_id else None, config=dict(run.options), reinit="create_new",
                              settings=wandb.Settings(console="off"))  # fmt: skip
        return {"id": self.run.id, "project": self.project}

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        self.run.log(dict(values), step=step)

    def log_image(self, tag: str, png: bytes, step: int) -> None:
        import wandb
        from PIL import Image

        with Image.open(io.BytesIO(png)) as image:
            self.run.log({tag: wandb.Image(image.convert("RGB"))}, step=step)

    def finish(self, run_path: Path, completed: bool) -> None:
        self.run.finish(exit_code=0 if completed else 1)


def make(options: Mapping[str, Any]) -> Tracker:
    return WandbTracker(options.get("wandb_project") or "kdtool")
