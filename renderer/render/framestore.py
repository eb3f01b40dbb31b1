"""Frames parked on disk until they are needed (cross-fades), so memory stays flat, written and
read off the dream loop's thread."""

from __future__ import annotations

import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from renderer.errors import UserError
from renderer.outputs import atomic_path


class FrameStore:
    """npy files keyed by tuples; in `folder` (kept for a resumed render) or a temporary one."""

    def __init__(self, folder: Path | None = None):
        self._temp = None if folder else tempfile.TemporaryDirectory(prefix="dream-frames-")
        self.folder = Path(folder) if folder else Path(self._temp.name)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key) -> Path:
        return self.folder / f"{'_'.join(map(str, key))}.npy"

    def put(self, key: tuple, rgb: np.ndarray) -> None:
        with atomic_path(self._path(key), fence=False) as tmp:  # never a half-written frame
            np.save(tmp, rgb)

    def get(self, key: tuple) -> np.ndarray | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            raise UserError(f"the parked frame '{path}' is damaged: run again without "
                            "--resume") from None

    def pop(self, key: tuple) -> np.ndarray | None:
        rgb = self.get(key)
        if rgb is not None:
            self._path(key).unlink()
        return rgb

    def close(self) -> None:
        if self._temp is not None:
            self._temp.cleanup()


class AsyncFrameStore:
    """A FrameStore's reads and writes on one background thread, in submission order, so the
    dream loop never waits on the disk (a 1080p frame is 6 MB) and a read submitted after a
    write of the same key sees it. `get` hands back a Future for the thread that needs it."""

    def __init__(self, store: FrameStore, backlog: int = 16):
        self.store, self.backlog = store, backlog
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-store")
        self.writes: deque[Future] = deque()

    def put(self, key: tuple, rgb: np.ndarray) -> None:
        while len(self.writes) >= self.backlog:  # a slow disk holds the loop, not the memory
            self.writes.popleft().result()
        self.writes.append(self.pool.submit(self.store.put, key, rgb))

    def get(self, key: tuple) -> Future:
        return self.pool.submit(self.store.get, key)

    def written(self) -> Future:
        """Completes once every write submitted so far has, raising the first that failed."""
        earlier = list(self.writes)

        def check() -> None:  # runs after them on the same thread: they are all done
            for write in earlier:
                write.result()

        return self.pool.submit(check)

    def flush(self) -> None:
        """Wait for every write so far; raises the first one that failed (a full disk)."""
        while self.writes:
            self.writes.popleft().result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
