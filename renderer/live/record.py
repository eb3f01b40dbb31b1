"""Recording a live session: the camera's frames at their capture times, losslessly, so that
`dream render` can make the full-quality version later; optionally the dreamed stream as it
was seen; the preset exactly as it was on screen at the start, as a YAML file beside them; and
every change of the controls with its time (`renderer.controls`), which `dream render
STEM.mkv --controls STEM.controls.json` replays.

FFV1 in Matroska through PyAV: lossless, fast to encode on the capture thread, and each frame
keeps its own timestamp (a camera's rate wanders; a fixed rate would stretch the recording).
Files are written under temporary names and renamed when the recording stops, so an
interrupted one leaves no half-named file, and no existing file is ever replaced.
"""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from renderer.controls import Change, Controls
from renderer.outputs import atomic_write, publish
from renderer.presets import Preset, to_yaml

TIME_BASE = Fraction(1, 1000)


class _Track:
    """One FFV1 stream in its own Matroska file, frames stamped in ms from `origin`."""

    def __init__(self, path: Path, size: tuple[int, int], origin: float):
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        self.container = av.open(str(self.partial), "w", format="matroska")
        self.stream = self.container.add_stream("ffv1", rate=1000)
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv444p"
        self.stream.time_base = TIME_BASE
        self.origin = origin
        self.last = -1
        self.frames = 0

    def add(self, rgb: np.ndarray, stamp: float) -> None:
        pts = max(self.last + 1, round((stamp - self.origin) * 1000))  # strictly increasing
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(format="yuv444p")
        frame.pts, frame.time_base = pts, TIME_BASE
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.last = pts
        self.frames += 1

    def close(self) -> Path | None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        if not self.frames:
            self.partial.unlink()
            return None
        publish(self.partial, self.path, fence=False)
        return self.path


def free_stem(folder: Path, prefix: str = "live") -> str:
    """A name no file in `folder` starts with: live-YYYYmmdd-HHMMSS[-N]."""
    base = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    stem, n = base, 1
    while any(folder.glob(f"{stem}.*")) or any(folder.glob(f".{stem}.*")):
        n += 1
        stem = f"{base}-{n}"
    return stem


class Recording:
    """Raw frames to STEM.mkv, dreamed ones (if asked) to STEM.dream.mkv, the preset to
    STEM.yaml, the controls (`state`: every live control at the start, then each change) to
    STEM.controls.json; `close` finishes and names the files."""

    def __init__(self, folder: Path, size: tuple[int, int], preset: Preset, dreamed: bool,
                 state: dict):
        folder.mkdir(parents=True, exist_ok=True)
        self.stem = free_stem(folder)
        origin = time.monotonic()
        self.lock = threading.Lock()
        self.raw = _Track(folder / f"{self.stem}.mkv", size, origin)
        self.dream = _Track(folder / f"{self.stem}.dream.mkv", size, origin) if dreamed else None
        self.preset_file = folder / f"{self.stem}.yaml"
        self.preset_text = to_yaml(preset)
        self.origin = origin
        self.changes = [Change(0.0, dict(state))]
        self.closed = False

    def control(self, state: dict) -> None:
        """The controls after a change, at its time (the frames' clock)."""
        with self.lock:
            if not self.closed:
                self.changes.append(Change(time.monotonic() - self.origin, dict(state)))

    def add_raw(self, rgb: np.ndarray, stamp: float) -> None:
        with self.lock:
            if not self.closed:
                self.raw.add(rgb, stamp)

    def add_dreamed(self, rgb: np.ndarray, stamp: float) -> None:
        with self.lock:
            if not self.closed and self.dream is not None:
                self.dream.add(rgb, stamp)

    def close(self) -> list[Path]:
        with self.lock:
            if self.closed:
                return []
            self.closed = True
            files = [p for p in (self.raw.close(), self.dream and self.dream.close()) if p]
        if files:
            atomic_write(self.preset_file, self.preset_text, fence=False)
            controls = self.preset_file.with_suffix(".controls.json")
            atomic_write(controls, Controls(files[0].name, self.raw.frames,
                                            self.changes).to_json(), fence=False)
            files += [self.preset_file, controls]
        return files
