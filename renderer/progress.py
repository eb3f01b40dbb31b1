"""rich progress bars shared by every long command: count, rate, elapsed and ETA."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

console = Console(stderr=True)  # progress, warnings and errors


def print_table(table) -> None:
    """Listings go to stdout, so `dream presets list | grep loop` works; as plain text with
    full paths (no boxes, no cut cells) when stdout is not a terminal."""
    if sys.stdout.isatty():
        Console().print(table)
        return
    table.box, table.title, table.show_edge = None, None, False
    Console(width=10_000, no_color=True, highlight=False, soft_wrap=True).print(table)


class RateColumn(TextColumn):
    """Items per second, labelled with the unit ('fps' for frames)."""

    def __init__(self):
        super().__init__("")

    def render(self, task):
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "it")
        return f"{speed:6.2f} {unit}/s" if speed else f"   -- {unit}/s"


def make_progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                    TaskProgressColumn(), RateColumn(), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(), console=console, disable=not sys.stderr.isatty()
                    and not _forced())


def _forced() -> bool:
    import os

    return os.environ.get("DREAM_PROGRESS") == "1"
