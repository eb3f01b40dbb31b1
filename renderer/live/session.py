"""A live dream: the newest camera frame, dreamed along the flow from the last one, as JPEG.

Latency beats completeness: the capture thread keeps only the newest frame (the dream takes it
when it is ready and the frames in between are counted as dropped), and the dream thread runs
one small slice per frame: few steps, the dream carried along optical flow between frames by
the render path's own `Carry`. Parameters change between frames (`LiveParams`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from renderer.engine.dream import Dreamer, dreamer_for
from renderer.engine.models import load_network
from renderer.errors import UserError
from renderer.media.decode import FrameReader, index_video
from renderer.media.images import to_tensor, to_uint8
from renderer.motion.carry import Carry
from renderer.motion.flow import FlowEstimator, flow_to_tensor, resize_flow
from renderer.live.record import Recording
from renderer.presets import Preset, load, locate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveParams:
    """What the page may change: a preset by name, a layer of its model by name and numbers in
    range, nothing else."""
    preset: str = "live"
    strength: float = 1.0  # multiplies dream.step_size
    steps: int = 2  # ascent steps per frame
    octaves: int = 2
    persistence: float = 0.9  # share of the last dream carried into the next frame
    layer: str = ""  # dream this layer instead of the preset's objective ("": the preset's)

    LIMITS = {"strength": (0.0, 4.0), "steps": (0, 20), "octaves": (1, 6),
              "persistence": (0.0, 1.0)}

    @classmethod
    def of(cls, name: str, preset: Preset) -> "LiveParams":
        """The sliders where the preset puts them: a frame's steps are its carried steps."""
        return cls(name, 1.0, Carry.of(preset).carried_steps, preset.dream.octaves,
                   preset.flow.persistence)

    def applied(self, preset: Preset) -> Preset:
        """The preset as it looks on screen, for `dream render` to reproduce: every frame
        takes `steps` steps at `octaves` octaves, as it does live."""
        dream = preset.dream.model_copy(update={
            "octaves": self.octaves, "steps": self.steps,
            "step_size": preset.dream.step_size * self.strength})
        flow = preset.flow.model_copy(update={"persistence": self.persistence,
                                              "steps": self.steps})
        objective = [self.layer] if self.layer else preset.objective
        return Preset.model_validate({**preset.model_dump(by_alias=True), "objective": objective,
                                      "dream": dream.model_dump(by_alias=True),
                                      "flow": flow.model_dump(by_alias=True)})

    def with_changes(self, changes: dict, presets: list[str],
                     layers: list[str] = ()) -> "LiveParams":
        """A copy with `changes` applied; UserError names a key, value, preset or layer that
        is not allowed (the page can only pick from the lists and numbers in range)."""
        out = {}
        for key, value in changes.items():
            if key in ("preset", "layer"):
                allowed = presets if key == "preset" else ["", *layers]
                if value not in allowed:
                    raise UserError(f"unknown {key} '{value}': pick one of the list")
                out[key] = value
                continue
            if key not in self.LIMITS:
                raise UserError(f"'{key}' cannot be changed live: use one of "
                                f"preset, layer, {', '.join(self.LIMITS)}")
            low, high = self.LIMITS[key]
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise UserError(f"{key} must be a number from {low} to {high}") from None
            if not low <= number <= high:
                raise UserError(f"{key} {number:g} is out of range: use {low} to {high}")
            out[key] = int(round(number)) if isinstance(getattr(self, key), int) else number
        return replace(self, **out)


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


@dataclass
class Shown:
    """The latest dreamed frame as the page gets it (and as a snapshot saves it)."""
    jpeg: bytes = b""
    source_jpeg: bytes = b""
    seq: int = 0
    latency_ms: float = 0.0  # capture to ready-to-send
    rgb: np.ndarray | None = None


@dataclass
class Stats:
    cpu_percent: float = 0.0  # this process, of all cores
    fps: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    dropped: int = 0
    frames: int = 0


def jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, quality])
    return data.tobytes()


class LiveSession:
    """Dreams the newest captured frame, carrying the dream along the flow between frames.

    The preset's file is watched: an edit applies at the next frame (its values become the
    sliders'); an edit that does not validate is shown as the error and the last good preset
    stays."""

    def __init__(self, capture: Capture, preset: str, presets: list[str],
                 device: str | None = None, record_dir: Path = Path(".")):
        self.capture, self.presets, self.device = capture, presets, device
        self.record_dir = record_dir
        self.lock = threading.Condition()  # what the page reads: never held while dreaming
        self.dream_lock = threading.Lock()  # the preset and dreamer: changed between frames
        self.record_lock = threading.Lock()
        self.shown = Shown()
        self.stats = Stats()
        self.error = ""
        self.recording: Recording | None = None
        self._load(preset)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True, name="live-dream")
        self.thread.start()

    def _load(self, name: str, preset: Preset | None = None,
              mtime: float | None = None) -> None:
        """Load preset `name` (or take `preset`, read from its file when it had `mtime`). The
        file's time is taken before it is read, so an edit made while loading is seen next."""
        self.preset_file = locate(name)
        self.watched = self._mtime() if preset is None else mtime
        self.checked = time.monotonic()
        self.preset: Preset = preset or load(name)
        self.layers = load_network(self.preset.model.name, self.preset.model.weights).layer_names
        self.dreamer: Dreamer = dreamer_for(self.preset, self.device)
        self.flow = FlowEstimator.of(self.preset.flow)
        self.carry = Carry.of(self.preset)
        self.previous = None  # (rgb, source tensor, dream tensor) of the last frame
        self.params = LiveParams.of(name, self.preset)

    def _mtime(self) -> float | None:
        try:
            return self.preset_file.stat().st_mtime
        except OSError:
            return None

    def _reload_if_edited(self) -> None:
        """At most twice a second: one stat of the preset's file."""
        if time.monotonic() - self.checked < 0.5:
            return
        self.checked = time.monotonic()
        mtime = self._mtime()
        if mtime is None or mtime == self.watched:
            return
        self.watched = mtime
        try:
            preset = load(self.params.preset)
        except UserError as exc:
            self.error = f"the edited preset is not valid, still using the last good one: {exc}"
            return
        self._load(self.params.preset, preset, mtime)
        self.error = ""
        log.info(f"preset {self.params.preset} reloaded")

    def update(self, changes: dict) -> LiveParams:
        """Apply the page's changes (validated) from the next frame on; picking another preset
        puts the sliders where it has them, then applies the other changes."""
        with self.dream_lock:
            params = self.params.with_changes(changes, self.presets, self.layers)
            if params.preset != self.params.preset:
                self._load(params.preset)
                params = self.params.with_changes(
                    {k: v for k, v in changes.items() if k != "preset"}, self.presets,
                    self.layers)
            if params.layer != self.params.layer:
                self.dreamer = dreamer_for(params.applied(self.preset), self.device)
            self.params = params
            return params

    def record(self, on: bool, dreamed: bool = False) -> dict:
        """Start (raw frames, and the dreamed ones if asked) or stop a recording. Its own lock:
        a dream in progress must not delay the start or the end."""
        with self.record_lock:
            if on and self.recording is None:
                self.recording = Recording(self.record_dir, self.capture.size,
                                           self.params.applied(self.preset), dreamed)
                self.capture.recording = self.recording
                return {"recording": self.recording.stem}
            if not on and self.recording is not None:
                recording, self.recording = self.recording, None
                self.capture.recording = None
                return {"files": [str(p) for p in recording.close()]}
            return {"recording": self.recording.stem if self.recording else None}

    def _dream(self, rgb: np.ndarray) -> np.ndarray:
        params, dreamer = self.params, self.dreamer
        source = to_tensor(rgb).to(dreamer.device)
        carry = self.carry
        start, anchor = source, None
        if self.previous is not None and carry.needs_flow:
            prev_rgb, prev_source, prev_dream = self.previous
            backward, forward = (resize_flow(flow_to_tensor([f]).to(dreamer.device),
                                             source.shape[-2:])
                                 for f in self.flow.pair(prev_rgb, rgb))
            begun = carry.start(source, prev_source, prev_dream, backward, forward,
                                np.array([params.persistence]))
            start, anchor = begun.image, begun.anchor
        dreamed = carry.settle(start, dreamer.dream(
            start, seed=self.preset.seed, steps=params.steps, octaves=params.octaves,
            step_scale=params.strength, anchor=anchor))
        self.previous = (rgb, source, dreamed)
        return to_uint8(dreamed)[0]

    def _run(self) -> None:
        last = time.monotonic()
        cpu_mark, cpu_wall = time.process_time(), last
        while self.running:
            taken = self.capture.take()
            if taken is None:
                if self.capture.stopped:
                    break
                continue
            rgb, stamp = taken
            try:
                with self.dream_lock:
                    self._reload_if_edited()
                    out = self._dream(rgb)
                if (recording := self.recording) is not None:
                    recording.add_dreamed(out, stamp)
            except Exception as exc:  # shown on the page; the capture goes on
                self.error = f"{type(exc).__name__}: {exc}"
                log.error(self.error)
                time.sleep(0.5)
                continue
            dreamed_jpeg, source_jpeg = jpeg(out), jpeg(rgb)
            now = time.monotonic()
            latency = (now - stamp) * 1000
            with self.lock:
                self.shown = Shown(dreamed_jpeg, source_jpeg, self.shown.seq + 1, latency, out)
                s = self.stats
                s.fps = 0.8 * s.fps + 0.2 / max(1e-6, now - last) if s.frames else \
                    1 / max(1e-6, now - last)
                s.latency_ms = (s.latency_ms + [latency])[-200:]
                s.dropped = self.capture.dropped
                s.frames += 1
                if now - cpu_wall >= 1.0:
                    s.cpu_percent = round(100 * (time.process_time() - cpu_mark)
                                          / (now - cpu_wall) / (os.cpu_count() or 1), 1)
                    cpu_mark, cpu_wall = time.process_time(), now
                self.lock.notify_all()
            last = now
        self.running = False

    def next_shown(self, after: int, timeout: float = 5.0) -> Shown:
        """The first shown frame newer than `after` (or the current one after `timeout`)."""
        with self.lock:
            self.lock.wait_for(lambda: self.shown.seq > after or not self.running, timeout)
            return self.shown

    def state(self) -> dict:
        with self.lock:
            lat = sorted(self.stats.latency_ms)
            pick = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 1)) if lat \
                else (lambda q: None)
            return {"params": {k: getattr(self.params, k) for k in
                               ("preset", "layer", *LiveParams.LIMITS)},
                    "limits": LiveParams.LIMITS, "presets": self.presets, "layers": self.layers,
                    "fps": round(self.stats.fps, 2), "frames": self.stats.frames,
                    "dropped": self.stats.dropped, "latency_p50_ms": pick(0.5),
                    "latency_p95_ms": pick(0.95), "error": self.error,
                    "device": str(self.dreamer.device), "cpu_percent": self.stats.cpu_percent,
                    "recording": self.recording.stem if self.recording else None}

    def close(self) -> None:
        """Stop capturing and dreaming; a recording in progress is finished (playable)."""
        self.running = False
        self.capture.close()
        self.thread.join(timeout=10)
        self.record(False)
