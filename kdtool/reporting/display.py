"""Terminal output: a console that prints plain lines into pipes, tables that never cut a number, and the live
display of a run (a progress bar within the epoch above a growing table of epochs).

Every table kdtool prints keeps each cell (a number, ``mean ± std``, a path, a SHA-256) on one line and whole:
when a table is wider than the terminal, it hides its least important columns, names them in a caption,
and wraps only its headers. Into a pipe or a file, text is never wrapped and tables take their natural width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleDimensions, ConsoleOptions, Group, RenderResult
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

# Width a console reports when it writes to a pipe or a file: wide enough for any table's natural width,
# so nothing is wrapped or shrunk to fit an 80-column guess.
PLAIN_WIDTH = 10_000


class OutputConsole(Console):
    """rich's console on a terminal; into a pipe or a file, plain lines: text is not wrapped (soft wrap),
    tables take their natural width and a rule is a short line around its title.

    Whether the output is a terminal is decided at each print, so the console follows ``sys.stdout``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fixed_width = kwargs.get("width") is not None

    @property
    def soft_wrap(self) -> bool:  # type: ignore[override]
        return self._soft_wrap or not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:
        self._soft_wrap = value

    @property
    def size(self) -> ConsoleDimensions:  # type: ignore[override]
        size = Console.size.fget(self)
        if self._fixed_width or self.is_terminal:
            return size
        return ConsoleDimensions(PLAIN_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)
        self._fixed_width = True

    def rule(self, title: Any = "", *, characters: str = "─", style: Any = "rule.line", align: Any = "center") -> None:
        if self.is_terminal or self._fixed_width:
            super().rule(title, characters=characters, style=style, align=align)
        else:
            self.print(Text.assemble((characters * 3, style), " ", title, " ", (characters * 3, style)) if title
                       else Text(characters * 40, style=style))  # fmt: skip


@dataclass(frozen=True)
class Column:
    """A column of a :class:`FittedTable`.

    ``drop``: when the table is too wide, columns are hidden in increasing ``drop`` order (None: always
    shown). ``width_hint``: the width its values usually take, reserved before the first row arrives.
    """

    header: str
    justify: str = "right"
    drop: int | None = None
    width_hint: int = 0


class FittedTable:
    """A table that never wraps or cuts a cell: it fits the width it is drawn in by hiding its least important
    columns (named in the caption) and by wrapping headers at their spaces. Fitted at every render, so a live
    display follows the terminal's width."""

    _EDGE = 1  # the left border; each column adds its padding (2) and its right border (1)

    def __init__(self, columns: Sequence[Column], title: str = "", caption: str = "") -> None:
        self.columns = list(columns)
        self.title = title
        self.caption = caption
        self.rows: list[list[str]] = []

    def add_row(self, *cells: str) -> None:
        self.rows.append([str(c) for c in cells])

    def _widths(self) -> list[tuple[int, int]]:
        """Per column: (least width: its longest cell or header word, natural width: one-line header)."""
        result = []
        for i, column in enumerate(self.columns):
            cells = max([cell_len(row[i]) for row in self.rows if i < len(row)] + [column.width_hint])
            words = max(cell_len(word) for word in column.header.split() or [""])
            result.append((max(cells, words, 1), max(cells, cell_len(column.header), 1)))
        return result

    def shown(self, width: int) -> list[int]:
        """Indices of the columns shown at ``width``: least important ones hidden until the rest fits."""
        widths = self._widths()
        shown = list(range(len(self.columns)))
        droppable = sorted((c.drop, i) for i, c in enumerate(self.columns) if c.drop is not None)
        for _, index in droppable:
            if self._EDGE + sum(widths[i][0] + 3 for i in shown) <= width:
                break
            shown.remove(index)
        return shown

    def table(self, width: int) -> Table:
        """The rich table drawn at ``width``."""
        widths = self._widths()
        shown = self.shown(width)
        spare = width - self._EDGE - sum(widths[i][0] + 3 for i in shown)
        hidden = [self.columns[i].header for i in range(len(self.columns)) if i not in shown]
        caption = "; ".join(filter(None, [self.caption, f"not shown at this width: {', '.join(hidden)}" if hidden
                                          else ""]))  # fmt: skip
        # spare width goes first to the headers that need least of it to fit on one line
        final = {i: widths[i][0] for i in shown}
        for i in sorted(shown, key=lambda i: widths[i][1] - widths[i][0]):
            grow = max(0, min(spare, widths[i][1] - widths[i][0]))
            final[i] += grow
            spare -= grow
        table = Table(title=self.title or None, title_justify="left", caption=caption or None, caption_justify="left")
        for i in shown:
            column = self.columns[i]
            table.add_column(column.header, justify=column.justify, width=final[i])  # type: ignore[arg-type]
        for row in self.rows:
            table.add_row(*(Text(row[i]) if i < len(row) else "" for i in shown))
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(options.max_width)


def short_sci(value: float) -> str:
    """A learning rate in short scientific form: 0.1 -> ``1e-1``, 0.0025 -> ``2.5e-3``, 0 -> ``0``."""
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


# key in a metrics row, column (drop: hidden in this order when narrow), how a value is written
_COLUMNS: tuple[tuple[str, Column, Callable[[float], str]], ...] = (
    ("epoch", Column("epoch"), "{:.0f}".format),
    ("lr_mean", Column("mean lr", drop=3, width_hint=4), short_sci),
    ("train_loss", Column("train loss", drop=5, width_hint=6), "{:.4f}".format),
    ("train_acc", Column("train acc", drop=2, width_hint=6), "{:.2%}".format),
    ("test_acc", Column("test acc", width_hint=6), "{:.2%}".format),
    ("test_macro_f1", Column("test macro F1", drop=7, width_hint=6), "{:.4f}".format),
    # on imbalanced training data only (see EpochDisplay)
    ("test_balanced_acc", Column("test bal. acc", drop=11, width_hint=6), "{:.2%}".format),
    ("test_many_acc", Column("many", drop=8, width_hint=6), "{:.2%}".format),
    ("test_medium_acc", Column("medium", drop=9, width_hint=6), "{:.2%}".format),
    ("test_few_acc", Column("few", drop=10, width_hint=6), "{:.2%}".format),
    ("test_nll", Column("test NLL", drop=6, width_hint=6), "{:.4f}".format),
    ("test_ece", Column("test ECE", drop=4, width_hint=6), "{:.4f}".format),
    ("seconds", Column("s", drop=1, width_hint=3), "{:.1f}".format),
)


_LONG_TAIL_KEYS = ("test_balanced_acc", "test_many_acc", "test_medium_acc", "test_few_acc")


class EpochDisplay:
    """Context manager: ``step()`` advances the bar, ``epoch_done(row)`` adds a table row; ``done``: epochs
    trained before (a resumed run), the bar starts after them. ``long_tail``: the columns of balanced and
    many/medium/few-shot accuracy too (imbalanced training data)."""

    def __init__(
        self, console: Console, title: str, epochs: int, steps_per_epoch: int, done: int = 0, long_tail: bool = False
    ) -> None:
        self.console = console
        self.columns = [c for c in _COLUMNS if long_tail or c[0] not in _LONG_TAIL_KEYS]
        self.table = FittedTable([column for _, column, _ in self.columns], title=title)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/" + str(epochs)),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("train", total=steps_per_epoch, epoch=done + 1)
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
        self.table.add_row(*(write(row[key]) if key in row else "—" for key, _, write in self.columns))
        self.progress.reset(self.task, epoch=int(row["epoch"]) + 1)
