"""Frames parked on disk until they are needed (cross-fades), so memory stays flat, and the
weight curve every cross-fade uses."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def smoothstep(x: float) -> float:
    """0 -> 1 with zero slope at both ends: fades and eases start and stop without a kink."""
    return x * x * (3 - 2 * x)


def crossfade_weight(k: int, length: int) -> float:
    """Weight of the incoming picture at frame k (0-based) of a `length`-frame cross-fade."""
    return smoothstep((k + 1) / (length + 1))


class FrameStore:
    """npy files keyed by tuples; in `folder` (kept for a resumed render) or a temporary one."""

    def __init__(self, folder: Path | None = None):
        self._temp = None if folder else tempfile.TemporaryDirectory(prefix="dream-frames-")
        self.folder = Path(folder) if folder else Path(self._temp.name)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key) -> Path:
        return self.folder / f"{'_'.join(map(str, key))}.npy"

    def put(self, key: tuple, rgb: np.ndarray) -> None:
        tmp = self._path(key).with_suffix(".part.npy")
        np.save(tmp, rgb)
        tmp.replace(self._path(key))  # a kill never leaves a half-written frame

    def get(self, key: tuple) -> np.ndarray | None:
        path = self._path(key)
        return np.load(path) if path.exists() else None

    def pop(self, key: tuple) -> np.ndarray | None:
        rgb = self.get(key)
        if rgb is not None:
            self._path(key).unlink()
        return rgb

    def close(self) -> None:
        if self._temp is not None:
            self._temp.cleanup()
