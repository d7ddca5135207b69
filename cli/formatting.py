"""How tables read: plain columns (kubectl style), cells that are cut rather than wrapped,
durations (`4.2s`, `3m07s`, `1h05m`), ages (`12s`, `5m`, `3d`) and UTC time stamps."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

WEIGHTS_BAR_WIDTH = 12


def table(*columns: str) -> Table:
    """Columns without borders; a column whose cells are `cut` gives way on a narrow screen."""
    plain = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 2, 0, 0))
    for column in columns:
        plain.add_column(column, no_wrap=True)
    return plain


def cut(text: str, style: str = "") -> Text:
    """A cell cut with an ellipsis when the screen is too narrow, never wrapped. Its column must
    allow wrapping (rich narrows only such columns), hence `flexible` below."""
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


def flexible(grid: Table, *columns: str) -> None:
    """Let these columns (holding `cut` cells) give way on a narrow screen."""
    for column in grid.columns:
        if column.header in columns:
            column.no_wrap = False


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def age_text(moment: datetime | str, now: datetime | None = None) -> str:
    """How long ago, in the largest whole unit: `45s`, `12m`, `3h`, `2d`."""
    seconds = ((now or datetime.now(UTC)) - _aware(moment)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def _aware(moment: datetime | str) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def time_text(moment: datetime | str) -> str:
    """`2025-07-14 09:30:12` in UTC."""
    return _aware(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def weights_cell(percent: float | None) -> RenderableType:
    if percent is None:
        return Text("-")
    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        ProgressBar(total=100, completed=percent, width=WEIGHTS_BAR_WIDTH),
        Text(f"{percent:>3.0f}%"),
    )
    return grid
