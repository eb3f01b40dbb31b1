"""Progress of queued renders: the render writes a small JSON file, its worker's heartbeat
reads it into the queue (so `dream queue list` shows frames, fps and ETA)."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path

from renderer.outputs import atomic_write
from renderer.progress import ProgressSink

PROGRESS_ENV = "DREAM_PROGRESS_FILE"  # set by the worker: where its render reports


class ProgressFile(ProgressSink):
    """A render's listener that leaves the `encoded` stage's count in the worker's progress
    file, at most once a second and at the end (each write fenced, like every commit). Its
    fps is the rate over the last `window` seconds, as the render's own progress bar shows
    it (rich's speed estimate), and frames done before a resume count in `done` only."""

    def __init__(self, path: str | Path, every: float = 1.0, window: float = 30.0):
        self.path, self.every, self.window = Path(path), every, window
        self.done, self.total, self.written = 0, 0, 0.0
        self.samples: deque[tuple[float, int]] = deque()  # (time, done) in the window

    @classmethod
    def from_env(cls) -> "ProgressFile | None":
        path = os.environ.get(PROGRESS_ENV)
        return cls(path) if path else None

    def stage(self, name: str, total: int | None, done: int = 0) -> None:
        if name == "encoded":
            self.done, self.total = done, total or 0
            self.samples = deque([(time.perf_counter(), done)])

    def advance(self, name: str, n: int = 1) -> None:
        if name != "encoded":
            return
        self.done += n
        now = time.perf_counter()
        self.samples.append((now, self.done))
        while len(self.samples) > 2 and self.samples[1][0] < now - self.window:
            self.samples.popleft()
        if now - self.written > self.every or self.done >= self.total:
            self.written = now
            (first, before), (last, after) = self.samples[0], self.samples[-1]
            fps = (after - before) / max(1e-6, last - first)
            atomic_write(self.path, json.dumps({"done": self.done, "total": self.total,
                                                "fps": fps}))


def read_progress(paths: list) -> dict:
    """What renders left in their progress files: frames done and total and fps, summed over
    the files (the parts of a split job run at once); {} before any report."""
    reports = []
    for path in paths:
        try:
            reports.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError):
            continue
    if not reports:
        return {}
    return {key: sum(r[key] for r in reports) for key in ("done", "total", "fps")}
