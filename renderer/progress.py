"""How a render says how far it is: named stages with a total, advanced as frames pass.

The render loops only call a sink; who listens is the caller's business (the CLI's rich bars,
a queued job's progress file, a test). Stages: `decoded`, `dreamed`, `encoded` (frames of the
output written: what a job's progress counts) and `finishing` (the mux, no total).
"""

from __future__ import annotations


class ProgressSink:
    """Listens to a render; this base ignores everything."""

    def stage(self, name: str, total: int | None, done: int = 0) -> None:
        """A stage begins: `total` items (None: unknown), `done` of them already (a resume)."""

    def advance(self, name: str, n: int = 1) -> None:
        """`n` more items of stage `name` are done."""


class Fanout(ProgressSink):
    """One sink that tells several."""

    def __init__(self, *sinks: ProgressSink | None):
        self.sinks = [s for s in sinks if s is not None]

    def stage(self, name: str, total: int | None, done: int = 0) -> None:
        for sink in self.sinks:
            sink.stage(name, total, done)

    def advance(self, name: str, n: int = 1) -> None:
        for sink in self.sinks:
            sink.advance(name, n)


SILENT = ProgressSink()
