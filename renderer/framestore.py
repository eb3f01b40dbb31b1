"""Frames parked on disk until they are needed (cross-fades), so memory stays flat."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


class FrameStore:
    def __init__(self):
        self.folder = tempfile.TemporaryDirectory(prefix="dream-frames-")

    def _path(self, key) -> Path:
        return Path(self.folder.name) / f"{'_'.join(map(str, key))}.npy"

    def put(self, key: tuple, rgb: np.ndarray) -> None:
        np.save(self._path(key), rgb)

    def pop(self, key: tuple) -> np.ndarray | None:
        path = self._path(key)
        if not path.exists():
            return None
        rgb = np.load(path)
        path.unlink()
        return rgb

    def close(self) -> None:
        self.folder.cleanup()
