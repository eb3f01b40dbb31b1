"""rich progress bars shared by every long command: count, rate, elapsed and ETA."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

console = Console(stderr=True)


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
