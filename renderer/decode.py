"""Decoding: an index of frame timestamps, and bounded background readers of frame ranges.

Timing comes from each frame's own timestamp (CAP_PROP_POS_MSEC), never from the nominal fps or
the container's frame count, which are wrong for variable-frame-rate recordings. OpenCV applies
rotation metadata itself (CAP_PROP_ORIENTATION_AUTO), so frames arrive upright.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # decode errors are ours to report

import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .errors import UserError
from .media import MediaInfo, as_rate, probe


@dataclass
class VideoIndex:
    path: Path
    pts: list[float]  # seconds, one per decodable frame in the selected range
    first: int  # index in the file of pts[0]
    width: int  # as decoded (rotation applied)
    height: int
    rate: Fraction  # output frame rate
    end: float  # end time of the selection, seconds
    info: MediaInfo
    warning: str | None = None

    @property
    def count(self) -> int:
        return len(self.pts)

    @property
    def duration(self) -> float:
        return self.end - self.pts[0]


def open_capture(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise UserError(f"input '{path}' is not a video OpenCV can decode "
                        "(mp4, mov, mkv, webm, avi)")
    return cap


def check_input(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise UserError(f"input '{path}' does not exist: check the path")
    if path.is_dir():
        raise UserError(f"input '{path}' is a folder: give a video file")
    if path.stat().st_size == 0:
        raise UserError(f"input '{path}' is empty (0 bytes): give a video file")
    return path


def check_video(path: str | Path) -> tuple[Path, MediaInfo]:
    """A readable file with a video stream (not a still image), and what ffmpeg says of it."""
    from .images import IMAGE_SUFFIXES

    path = check_input(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise UserError(f"input '{path}' is a still image: use 'dream image' for it")
    info = probe(path)
    if not info.has_video:
        what = "an audio-only file" if info.has_audio else "not a video"
        raise UserError(f"input '{path}' is {what}: give a file with a video stream")
    return path, info


def index_video(path: str | Path, start: float = 0.0, end: float | None = None) -> VideoIndex:
    """Scan the file once (decode without conversion) for the timestamps of [start, end)."""
    path, info = check_video(path)
    cap = open_capture(path)
    nominal = cap.get(cv2.CAP_PROP_FPS)
    pts, first, total, last_seen = [], None, 0, None
    while cap.grab():
        t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        last_seen = t
        if t + 1e-6 >= start and (end is None or t < end - 1e-6):
            if first is None:
                first = total
            pts.append(t)
        elif end is not None and t >= end:
            break
        total += 1
    ok, frame = (False, None)
    if first is not None:
        cap.set(cv2.CAP_PROP_POS_FRAMES, first)
        ok, frame = cap.read()
    cap.release()
    if not pts or not ok:
        if total == 0:
            raise UserError(f"input '{path}' has no decodable video frames")
        raise UserError(f"no frames between --start {start:g}s and --end {end}s "
                        f"(the video ends at {last_seen:.3f}s)")
    rate = _output_rate(nominal, pts)
    step = pts[-1] - pts[-2] if len(pts) > 1 else 1.0 / float(rate)  # the last frame's duration
    container_end = info.duration
    stop = end if end is not None else pts[-1] + step
    if end is not None and container_end is not None:
        stop = min(end, max(container_end, pts[-1] + step))
    warning = None
    if end is None and container_end and pts[-1] + 2 * step < container_end * 0.98:
        warning = (f"'{path}' stops decoding at {pts[-1]:.3f}s of {container_end:.3f}s "
                   f"(frame {first + len(pts)} is corrupt or missing): rendering the "
                   f"{len(pts)} good frames, the output ends there")
        stop = pts[-1] + step
    h, w = frame.shape[:2]
    return VideoIndex(path, pts, first, w, h, rate, stop, info, warning)


def _output_rate(nominal: float, pts: list[float]) -> Fraction:
    """The container's nominal rate when plausible, else the mean rate of the timestamps."""
    if 1.0 <= nominal <= 240.0:
        return as_rate(nominal)
    if len(pts) > 1 and pts[-1] > pts[0]:
        return as_rate((len(pts) - 1) / (pts[-1] - pts[0]))
    return Fraction(25)


def slot_counts(index: VideoIndex) -> list[int]:
    """How many constant-rate output frames each source frame fills (0 drops, >1 repeats).

    Output frame k shows the source frame on screen at time t0 + k / rate, so the output keeps
    the source's duration to within one frame and audio stays in sync, even for VFR input.
    """
    t0, rate = index.pts[0], index.rate
    total = max(1, round((index.end - t0) * rate))
    starts = [min(total, round((t - t0) * rate)) for t in index.pts] + [total]
    return [max(0, b - a) for a, b in zip(starts, starts[1:])]


_DONE = object()


class FrameReader:
    """Decodes frames [first, first + count) of the index on a thread into a bounded queue."""

    def __init__(self, index: VideoIndex, first: int, count: int, size: tuple[int, int],
                 depth: int = 8):
        self.index, self.first, self.count, self.size = index, first, count, size
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _first_frame(self, cap: cv2.VideoCapture, file_frame: int):
        """Seek to `file_frame` and decode it; if the seek lands elsewhere (some codecs only
        seek to keyframes), walk there from the start instead. Checked by timestamp."""
        expected = self.index.pts[file_frame - self.index.first]
        if file_frame > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, file_frame)
            if cap.grab() and abs(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 - expected) < 1e-3:
                return cap.retrieve()
            cap.open(str(self.index.path), cv2.CAP_FFMPEG)
            for _ in range(file_frame):
                cap.grab()
        return cap.read()

    def _run(self) -> None:
        try:
            cap = open_capture(self.index.path)
            w, h = self.size
            for n in range(self.count):
                if self.stop.is_set():
                    break
                ok, bgr = self._first_frame(cap, self.index.first + self.first) if n == 0 \
                    else cap.read()
                if not ok:
                    raise UserError(f"'{self.index.path}' stopped decoding early")
                if (bgr.shape[1], bgr.shape[0]) != (w, h):
                    bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
                self.queue.put(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            cap.release()
        except BaseException as exc:  # surfaced to the consumer by next()
            self.error = exc
        finally:
            self.queue.put(_DONE)

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        item = self.queue.get()
        if item is _DONE:
            if self.error is not None:
                raise self.error
            raise StopIteration
        return item

    def close(self) -> None:
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.queue.get_nowait()
            except queue.Empty:
                self.thread.join(0.05)
