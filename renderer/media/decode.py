"""Decoding with PyAV: an index of presentation timestamps from the container, and bounded
background readers of frame ranges.

Timing comes from the demuxer (every packet's timestamp, read without decoding, sorted into
presentation order), never from a nominal fps or OpenCV's position property, which reports
decode order on B-frame files and 0 for the last frames of many AVIs. The k-th frame the decoder
puts out is the k-th timestamp: that holds even where a container (AVI) stores decode times
only. Rotation metadata is applied, so frames arrive upright.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from renderer.background import Producer
from renderer.errors import UserError
from renderer.media.images import IMAGE_SUFFIXES, framing, place
from renderer.media.probe import MediaInfo, as_rate, probe

logging.getLogger("libav").setLevel(logging.CRITICAL)  # decode errors are ours to report
SEEKABLE = {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "mpegts", "flv"}  # pts we seek by


@dataclass
class VideoIndex:
    path: Path
    pts: list[float]  # seconds from the container's start, one per frame of the selection
    first: int  # presentation index in the file of pts[0]
    width: int  # as shown (rotation applied)
    height: int
    rate: Fraction  # output frame rate
    end: float  # end time of the selection, seconds
    info: MediaInfo
    warning: str | None = None
    stamps: tuple[int, ...] = ()  # the stream's own pts of the selection (for seeking)
    rotation: int = 0  # quarter turns counter-clockwise that make frames upright
    seekable: bool = True  # the container's pts are presentation times (not AVI's decode times)
    hold: bool = True  # every frame gets its own output slot (gaps hold); False: --fps picks

    @property
    def count(self) -> int:
        return len(self.pts)

    @property
    def duration(self) -> float:
        return self.end - self.pts[0]


def check_input(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise UserError(f"input '{path}' does not exist: check the path")
    if path.is_dir():
        raise UserError(f"input '{path}' is a folder: give a video file")
    if not path.is_file():
        raise UserError(f"input '{path}' is not a regular file (a pipe or a device): give a "
                        "video file")
    if path.stat().st_size == 0:
        raise UserError(f"input '{path}' is empty (0 bytes): give a video file")
    return path


def check_video(path: str | Path) -> tuple[Path, MediaInfo]:
    """A readable file with a video stream (not a still image), and what ffmpeg says of it."""
    path = check_input(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise UserError(f"input '{path}' is a still image: use 'dream image' for it")
    info = probe(path)
    if not info.has_video:
        what = "an audio-only file" if info.has_audio else "not a video"
        raise UserError(f"input '{path}' is {what}: give a file with a video stream")
    return path, info


def open_video(path: Path):
    """The container and its video stream, decoding on the codec's own threads."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise UserError(f"input '{path}' is not a video that can be decoded ({exc})") from None
    if not container.streams.video:
        container.close()
        raise UserError(f"input '{path}' is not a video: give a file with a video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _decoded(container, stream, packets=None):
    """Frames in output order; a packet that fails to decode is skipped (it shows as a
    missing frame, which the index accounts for)."""
    for packet in packets if packets is not None else container.demux(stream):
        try:
            yield from packet.decode()
        except av.FFmpegError:
            continue


def _packet_times(container, stream) -> tuple[list[tuple[int, bool, int]], bool, str | None]:
    """(timestamp, keyframe, duration) of every packet that carries a frame, whether every
    packet had a timestamp, and where demuxing stopped early (a damaged file), if it did."""
    packets, complete, stopped = [], True, None
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue  # a flush packet, or AVI's empty chunk for a dropped frame
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                complete = False
                ts = (packets[-1][0] + 1) if packets else 0
            packets.append((ts, packet.is_keyframe, packet.duration or 0))
    except av.FFmpegError as exc:
        stopped = str(exc)
    return packets, complete, stopped


def _decodable_tail(path: Path, stamps: list[int], keyframes: list[int]) -> int:
    """How many of the last GOP's frames decode: a file cut off mid-packet loses its last
    frames, and the index must not promise them."""
    container, stream = open_video(path)
    try:
        last_key = keyframes[-1] if keyframes else stamps[0]
        container.seek(last_key, stream=stream, backward=True)
        return sum(1 for _ in _decoded(container, stream))
    except av.FFmpegError:
        return 0
    finally:
        container.close()


def index_video(path: str | Path, start: float = 0.0, end: float | None = None,
                fps: float | None = None) -> VideoIndex:
    """Read the presentation timestamps of [start, end) from the demuxer (no decoding but the
    first frame and the last GOP); `fps` forces an output rate (frames picked by timestamp)."""
    path, info = check_video(path)
    container, stream = open_video(path)
    try:
        fmt = container.format.name
        origin = (container.start_time or 0) / av.time_base
        packets, complete, stopped = _packet_times(container, stream)
        first_frame = None
        if packets:
            container.seek(0, stream=stream, backward=True)
            first_frame = next(_decoded(container, stream), None)
        nominal = stream.guessed_rate or stream.average_rate
        time_base = stream.time_base
    finally:
        container.close()
    if first_frame is None:
        raise UserError(f"input '{path}' has no decodable video frames")
    stamps = sorted(ts for ts, _, _ in packets)
    keyframes = sorted(ts for ts, key, _ in packets if key)
    last_duration = float(max(packets)[2] * time_base)
    tail = len([ts for ts in stamps if ts >= (keyframes[-1] if keyframes else stamps[0])])
    lost = tail - _decodable_tail(path, stamps, keyframes)
    if lost > 0:
        stamps = stamps[:-lost]
    times = [float(ts * time_base) - origin for ts in stamps]
    if not times:
        raise UserError(f"input '{path}' has no decodable video frames")
    chosen = [i for i, t in enumerate(times) if t + 1e-6 >= start and (end is None
                                                                         or t < end - 1e-6)]
    if not chosen:
        raise UserError(f"--start {start:g} s is past the end of the clip "
                        f"({times[-1] + _frame_step(times, 0.0, nominal):.3f} s)" if start > 0 else
                        f"--end {end:g} s is before the first frame of the clip "
                        f"({times[0]:.3f} s)")
    first, last = chosen[0], chosen[-1] + 1
    pts = times[first:last]
    rate, hold = (as_rate(fps), False) if fps else (_source_rate(nominal, times), True)
    step = _frame_step(times, last_duration if not lost else 0.0, nominal)
    stop = end if end is not None else pts[-1] + step
    if end is not None and info.duration is not None:
        stop = min(end, max(info.duration, pts[-1] + step))
    warning = None
    broken = stopped or lost > 0
    if end is None and (broken or info.duration and pts[-1] + 2 * step < info.duration * 0.98):
        of = f" of {info.duration:.3f}s" if info.duration else ""
        warning = (f"'{path}' stops decoding at {pts[-1]:.3f}s{of} (frame {last + 1} is corrupt "
                   f"or missing): rendering the {len(pts)} good frames, the output ends there")
        stop = pts[-1] + step
    rotation = (int(getattr(first_frame, "rotation", 0) or 0) // 90) % 4
    w, h = first_frame.width, first_frame.height
    if rotation % 2:
        w, h = h, w
    return VideoIndex(path, pts, first, w, h, rate, stop, info, warning,
                      tuple(stamps[first:last]), rotation,
                      complete and fmt in SEEKABLE, hold)


def _frame_step(times: list[float], stored: float, nominal) -> float:
    """How long the last frame lasts: as long as the one before it (a VFR clip's last stretch
    keeps its own rate), else the duration its packet stores, else one nominal frame."""
    if len(times) > 1 and times[-1] > times[-2]:
        return times[-1] - times[-2]
    if stored > 0:
        return stored
    return 1.0 / float(nominal) if nominal and 1 <= nominal <= 240 else 1 / 25


def _source_rate(nominal, times: list[float]) -> Fraction:
    """The source's own rate: the container's nominal (guessed) rate when frames are not denser
    than it; else the rate of its shortest typical interval, so that every frame still gets a
    slot of its own (a VFR clip's slower stretches are held, never its faster ones dropped)."""
    gaps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
    dense = gaps[len(gaps) // 10] if gaps else None  # the 10th percentile: jitter aside
    if nominal and 1 <= nominal <= 240 and (dense is None or dense * float(nominal) > 0.9):
        return as_rate(float(nominal))
    if dense:
        return as_rate(min(240.0, 1.0 / dense))
    return Fraction(25)


def slot_counts(index: VideoIndex) -> list[int]:
    """How many constant-rate output frames each source frame fills.

    By default every source frame gets at least one slot, placed by its timestamp; a frame
    followed by a gap fills the gap (held), so nothing is dropped and the duration stays that of
    the source. With a forced rate (`hold` False) output frame k shows the source frame on
    screen at t0 + k / rate, dropping frames where the source is denser.
    """
    t0, rate = index.pts[0], index.rate
    total = max(1, round((index.end - t0) * rate))
    if index.hold:
        starts, previous = [], -1
        for t in index.pts:
            previous = max(previous + 1, round((t - t0) * rate))
            starts.append(previous)
        starts.append(max(total, previous + 1))
    else:
        starts = [min(total, math.ceil((t - t0) * rate - 1e-6)) for t in index.pts] + [total]
    return [max(0, b - a) for a, b in zip(starts, starts[1:])]


def screen_times(index: VideoIndex) -> tuple[np.ndarray, np.ndarray]:
    """When each source frame is on screen in the output (seconds from its first frame) and
    for how long: what music must be read at. With a forced rate a frame shows at the slot
    after its own timestamp (25 fps picked for 24: up to a frame later), and one held over
    several slots shows everything those slots hold; a dropped frame gets its next frame's."""
    counts = np.asarray(slot_counts(index))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return starts / float(index.rate), np.maximum(counts, 1) / float(index.rate)


# sub-sampled colour, and the format that holds it at full size
_FULL_CHROMA = {"yuv420p": "yuv444p", "yuvj420p": "yuvj444p", "yuv422p": "yuv444p",
                "yuvj422p": "yuvj444p", "nv12": "yuv444p", "yuv420p10le": "yuv444p10le"}


def frame_rgb(frame: av.VideoFrame, shape: tuple[int, int]) -> np.ndarray:
    """A decoded frame as RGB, its colour up-sampled bilinearly as players show it.

    swscale's direct 4:2:0 -> RGB conversion repeats each colour sample over 2x2 pixels, a
    staircase that stays put while the picture moves: on the sample clip's delivered file that
    read as 1.78 against 1.37 flicker (scripts/BENCHMARKS.md), and the dream saw blocky colour
    edges. Going through 4:4:4 costs 15 ms a 1080p frame, so frames shrunk to half size or
    less (OpenCV's area resize then averages the staircase away) skip it."""
    full = _FULL_CHROMA.get(frame.format.name)
    if full and (2 * shape[0] > frame.width or 2 * shape[1] > frame.height):
        frame = frame.reformat(format=full, interpolation="BILINEAR")
    return frame.to_ndarray(format="rgb24")


class FrameReader:
    """Decodes frames [first, first + count) of the index on a background thread, `depth`
    frames ahead; iterate over it for HxWx3 uint8 frames of `size`."""

    def __init__(self, index: VideoIndex, first: int, count: int, size: tuple[int, int],
                 depth: int = 8, threads: int = 0, fit: str = "crop"):
        self.index, self.first, self.count, self.size = index, first, count, size
        self.fit = fit
        self.threads = threads
        self.worker = Producer(self._decode, depth, name="decode")

    def _frames(self, container, stream):
        """Decoded frames from the first one asked for: by seeking to its keyframe where the
        container's timestamps are presentation times, else by counting from the start."""
        if self.index.seekable and self.index.first + self.first > 0:
            target = self.index.stamps[self.first]
            container.seek(target, stream=stream, backward=True)
            frames = _decoded(container, stream)
            for frame in frames:
                if frame.pts is not None and frame.pts >= target:
                    if frame.pts != target:
                        break  # the keyframe seek landed past it: count from the start instead
                    yield frame
                    yield from frames
                    return
            container.seek(0, stream=stream, backward=True)
        skip = self.index.first + self.first
        for n, frame in enumerate(_decoded(container, stream)):
            if n >= skip:
                yield frame

    def _decode(self):
        container, stream = open_video(self.index.path)
        try:
            if self.threads:
                stream.thread_count = self.threads
            w, h = framing((self.index.width, self.index.height), self.size, self.fit)
            turns = self.index.rotation
            shape = (h, w) if turns % 2 else (w, h)
            frames = self._frames(container, stream)
            for _ in range(self.count):
                frame = next(frames, None)
                if frame is None:
                    raise UserError(f"'{self.index.path}' stopped decoding early")
                rgb = frame_rgb(frame, shape)  # resized by OpenCV: 1.4x swscale
                if (rgb.shape[1], rgb.shape[0]) != shape:
                    rgb = cv2.resize(rgb, shape, interpolation=cv2.INTER_AREA)
                upright = np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb
                yield place(upright, self.size)
        finally:
            container.close()

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        return next(self.worker)

    def close(self) -> None:
        self.worker.close()
