"""``--log tensorboard``: event files in the run folder's ``tensorboard/`` (``tensorboard --logdir runs``)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdtool.runs.folder import TENSORBOARD_DIR
from kdtool.trackers import RunInfo, Tracker, option_text

# The metrics TensorBoard's HParams dashboard lists beside the options.
_HPARAM_METRICS = ("test_acc", "test_nll", "test_ece")


class TensorBoardTracker(Tracker):
    """Scalars under their metrics.csv names, the Q heatmap as an image, the options as text and hparams."""

    name = "tensorboard"

    def start(self, run: RunInfo) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard drops what an interrupted run logged past its last checkpoint
        self.writer = SummaryWriter(str(run.path / TENSORBOARD_DIR), purge_step=run.epochs_done + 1 if run.resumed
                                    else None)  # fmt: skip
        if not run.resumed:
            options = {key: option_text(value) for key, value in run.options.items()}
            self.writer.add_text("options", "```\n" + json.dumps(options, indent=2) + "\n```", 0)
            self._write_hparams(run.options)
        return {}

    def _write_hparams(self, options: Mapping[str, Any]) -> None:
        """The HParams dashboard's records, in this run's own event file (``add_hparams`` would make another run)."""
        from torch.utils.tensorboard.summary import hparams

        values = {k: v if isinstance(v, bool | int | float | str) else option_text(v) for k, v in options.items()}
        for summary in hparams(values, dict.fromkeys(_HPARAM_METRICS, 0.0)):
            self.writer.file_writer.add_summary(summary)

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def log_image(self, tag: str, png: bytes, step: int) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(io.BytesIO(png)) as image:
            pixels = np.asarray(image.convert("RGB"))
        self.writer.add_image(tag, pixels, step, dataformats="HWC")
        self.writer.flush()

    def finish(self, run_path: Path, completed: bool) -> None:
        self.writer.close()


def make(options: Mapping[str, Any]) -> Tracker:
    return TensorBoardTracker()
