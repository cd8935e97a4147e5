"""Live terminal display of a run: a progress bar within the epoch above a growing table of epochs."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

_COLUMNS = (
    ("epoch", "epoch", "{:.0f}"),
    ("lr", "lr", "{:.4g}"),
    ("train_loss", "train loss", "{:.4f}"),
    ("train_acc", "train acc", "{:.2%}"),
    ("test_acc", "test acc", "{:.2%}"),
    ("test_nll", "test NLL", "{:.4f}"),
    ("test_ece", "test ECE", "{:.4f}"),
    ("seconds", "s", "{:.1f}"),
)


class EpochDisplay:
    """Context manager: ``step()`` advances the bar, ``epoch_done(row)`` adds a table row."""

    def __init__(self, console: Console, title: str, epochs: int, steps_per_epoch: int) -> None:
        self.console = console
        self.table = Table(title=title, title_justify="left")
        for _, header, _ in _COLUMNS:
            self.table.add_column(header, justify="right")
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/" + str(epochs)),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("train", total=steps_per_epoch, epoch=1)
        # Each refresh redraws the whole table from a second thread (about 2 ms here): at 8 per second that
        # took ~2% of a core from training. Twice a second is enough for a progress bar.
        self.live = Live(Group(self.table, self.progress), console=console, refresh_per_second=2)

    def __enter__(self) -> EpochDisplay:
        self.live.__enter__()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.live.update(self.table)  # leave only the table on screen
        self.live.__exit__(exc_type, exc, tb)
        if not self.console.is_terminal:
            self.console.line()  # rich ends a non-interactive live render without a newline

    def step(self) -> None:
        self.progress.advance(self.task)

    def epoch_done(self, row: dict[str, float]) -> None:
        self.table.add_row(*(fmt.format(row[key]) for key, _, fmt in _COLUMNS if key in row))
        self.progress.reset(self.task, epoch=int(row["epoch"]) + 1)
