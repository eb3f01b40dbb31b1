"""Where a render's frames go: the `FrameSink` interface of the loops, and the two ways of
feeding sinks to a render (fixed sinks for a run in memory, or chunk files rotated at every
checkpoint so that a killed render resumes without re-encoding what it had committed)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from renderer.render.checkpoints import Checkpoints, RenderState


class FrameSink(Protocol):
    """What the loops write frames to: an encoder (`media.encode.ChunkWriter`) or memory."""
    frames: int

    def write(self, rgb: np.ndarray, repeats: int = 1) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class MemorySink:
    """Keeps the frames in a list: a render for measuring, previewing or showing live."""

    def __init__(self):
        self.frames_written: list[np.ndarray] = []
        self.files: list[Path] = []

    @property
    def frames(self) -> int:
        return len(self.frames_written)

    def write(self, rgb: np.ndarray, repeats: int = 1) -> None:
        self.frames_written.extend([rgb] * repeats)

    def close(self) -> None:
        pass

    abort = close


class FixedSinks:
    """The same sinks for the whole render, never checkpointed."""
    every = 0  # steps between checkpoints: never

    def __init__(self, sinks: list):
        self.sinks = sinks

    def open(self, step: int) -> list:
        return self.sinks

    def commit(self, state: RenderState, closed: list) -> None:
        pass


class ChunkedOutput:
    """A checkpointed render's encoders, one stretch at a time: each stretch writes a new chunk
    file per stream (a segment of a video, a variant of a zoom) into that stream's folder, and
    a checkpoint in `store` names every chunk finished so far. A resumed render starts a new
    stretch after the last commit."""

    def __init__(self, store: Checkpoints, folders: list[Path],
                 open_writer: Callable[[int, int], object], every: int,
                 chunks: list[list[str]] | None = None):
        self.store, self.folders, self.open_writer, self.every = store, folders, open_writer, every
        self.chunks = chunks or [[] for _ in folders]
        self.current: list = []

    def open(self, step: int) -> list:
        """Encoders for the stretch that starts at step `step` (a new list: the previous
        stretch's may still be closing on another thread)."""
        self.current = [self.open_writer(k, step) for k in range(len(self.chunks))]
        return self.current

    def _record(self, closed: list) -> None:
        for names, writer in zip(self.chunks, closed):
            if writer.chunk is not None:
                names.append(writer.chunk)

    def commit(self, state: RenderState, closed: list) -> None:
        """Once `closed` (the last stretch's encoders) are closed: a checkpoint that names them."""
        self._record(closed)
        self.store.save(state, self.chunks, [f for w in closed for f in w.files])

    def finish(self) -> list[list[Path]]:
        """After the last stretch is closed: every chunk file of each stream, in order."""
        self._record(self.current)
        self.current = []
        return [[folder / name for name in names] for folder, names in zip(self.folders,
                                                                             self.chunks)]
