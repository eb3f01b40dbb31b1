"""What the CLI shows: rich progress bars (count, rate, elapsed and ETA) that listen to a
render's progress sink, listings, and the library's notes on stderr."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from renderer.progress import ProgressSink

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
                    TimeRemainingColumn(), console=console, disable=not _shown())


@contextmanager
def setting_up(what: str):
    """A spinner while a command prepares (reading the clip, listening to the song, loading
    the network), so a minute of set-up is not a silent one."""
    if not _shown():
        yield
        return
    with console.status(f"setting up: {what}"):
        yield


def busy_note() -> str | None:
    """A note beside the progress bars (so only where they show) when other work already
    loads the machine: speeds and ETAs will swing."""
    import os

    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load <= cores * 0.75 or not _shown():
        return None
    return (f"note: the machine is busy (load {load:.1f} on {cores} cores): the speed and the "
            "ETA will swing with the other work")


def _shown() -> bool:
    """Whether progress is drawn: on a terminal, or where DREAM_PROGRESS=1 asks for it."""
    import os

    return sys.stderr.isatty() or os.environ.get("DREAM_PROGRESS") == "1"


UNITS = {"listening": "s"}  # what a stage counts, where it is not frames


class RichBars(ProgressSink):
    """A bar per stage of a render (a spinner for a stage without a total)."""

    def __init__(self, progress: Progress):
        self.progress, self.tasks = progress, {}

    def stage(self, name: str, total: int | None, done: int = 0) -> None:
        self.tasks[name] = self.progress.add_task(name, total=total, completed=done,
                                                  unit=UNITS.get(name, "frames") if total
                                                  else "")

    def advance(self, name: str, n: int = 1) -> None:
        if name in self.tasks:
            self.progress.advance(self.tasks[name], n)


class _Notes(logging.Handler):
    """The library's log records as lines on stderr: warnings as 'note: ...', info as is; one
    line each, whatever the terminal's width (a log that is grepped keeps each whole)."""

    def emit(self, record: logging.LogRecord) -> None:
        text = escape(record.getMessage())
        console.print(f"[yellow]note:[/yellow] {text}" if record.levelno >= logging.WARNING
                      else text, highlight=False, soft_wrap=True)


def show_library_notes() -> None:
    logger = logging.getLogger("renderer")
    if not any(isinstance(h, _Notes) for h in logger.handlers):
        logger.addHandler(_Notes())
    logger.setLevel(logging.INFO)
    logger.propagate = False
