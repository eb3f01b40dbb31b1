"""Frames for `dream live`: a camera, or a file played at its own timestamps in a loop. Only
the newest frame is kept (latency beats completeness); the frames a slow dream misses are
counted as dropped, and a recording gets every captured frame."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from renderer.errors import UserError
from renderer.live.record import Recording
from renderer.media.decode import FrameReader, index_video

log = logging.getLogger(__name__)


class Capture:
    """Frames from a camera (an index) or a file played at its own timestamps, in a loop.
    Only the newest frame is kept: `take` returns it with its capture time, or waits."""

    def __init__(self, source: str | int, size: tuple[int, int]):
        self.size = size
        self.lock = threading.Condition()
        self.frame: np.ndarray | None = None
        self.stamp = 0.0
        self.seq = 0
        self.taken = 0
        self.dropped = 0
        self.stopped = False
        self.recording: Recording | None = None  # gets every captured frame while set
        if isinstance(source, int):
            self.camera = cv2.VideoCapture(source)
            if not self.camera.isOpened():
                raise UserError(f"camera {source} is missing or busy: check --camera (0 is the "
                                "first one) and that no other program uses it")
            frames = self._camera_frames()
        else:
            self.camera = None
            if not Path(source).is_file():
                raise UserError(f"--input '{source}' does not exist: give a video file")
            frames = self._file_frames(index_video(source))
        self.thread = threading.Thread(target=self._run, args=(frames,), daemon=True,
                                       name="capture")
        self.thread.start()

    def _camera_frames(self):
        while not self.stopped:
            ok, bgr = self.camera.read()
            if not ok:
                raise UserError("the camera stopped delivering frames")
            yield cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.size,
                             interpolation=cv2.INTER_AREA)

    def _file_frames(self, index):
        while not self.stopped:  # a demo loops
            started = time.monotonic()
            reader = FrameReader(index, 0, index.count, self.size)
            try:
                for pts, rgb in zip(index.pts, reader):
                    wait = float(pts - index.pts[0]) - (time.monotonic() - started)
                    if wait > 0:
                        time.sleep(wait)
                    if self.stopped:
                        return
                    yield rgb
            finally:
                reader.close()

    def _run(self, frames) -> None:
        try:
            for rgb in frames:
                stamp = time.monotonic()
                if (recording := self.recording) is not None:
                    recording.add_raw(rgb, stamp)
                with self.lock:
                    if self.frame is not None and self.taken < self.seq:
                        self.dropped += 1
                    self.frame, self.stamp = rgb, stamp
                    self.seq += 1
                    self.lock.notify_all()
        except Exception as exc:
            log.error(f"capture stopped: {exc}")
        finally:
            with self.lock:
                self.stopped = True
                self.lock.notify_all()

    def take(self, timeout: float = 5.0) -> tuple[np.ndarray, float] | None:
        """The newest frame not yet taken and when it was captured (None once stopped)."""
        with self.lock:
            self.lock.wait_for(lambda: self.seq > self.taken or self.stopped, timeout)
            if self.seq <= self.taken:
                return None
            self.taken = self.seq
            return self.frame, self.stamp

    def close(self) -> None:
        self.stopped = True
        if self.camera is not None:
            self.camera.release()
