"""A live dream's state: the newest captured frame (`live.capture`), dreamed along the flow
from the last one, published as JPEG with its statistics.

The dream thread runs one small slice per frame: few steps, the dream carried along optical
flow between frames by the render path's own `motion.chain.Chain`. Parameters change between
frames (`live.params.LiveParams`), a preset's shots are stepped through by hand
(`music.shots.shot_preset`); the preset's file is watched and reloaded.
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
import torch

from renderer.controls import FIELDS
from renderer.engine.dream import Dreamer, dreamer_for
from renderer.engine.models import load_network
from renderer.engine.objectives import classic_term
from renderer.errors import UserError
from renderer.live.capture import Capture
from renderer.live.params import MASKS, LiveParams
from renderer.live.record import Recording
from renderer.media.images import to_tensor, to_uint8
from renderer.media.masks import mask_maker
from renderer.motion.chain import Chain
from renderer.motion.dis import FlowEstimator
from renderer.motion.flow import flow_to_tensor
from renderer.music.shots import describe_shots, shot_preset
from renderer.presets import MaskSection, Preset, load, locate

log = logging.getLogger(__name__)


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
                 device: str | None = None, record_dir: Path = Path("."),
                 mask_file: str | None = None):
        self.capture, self.presets, self.device = capture, presets, device
        self.mask_file = mask_file  # --mask: every preset's own mask is this file
        self.record_dir = record_dir
        self.lock = threading.Condition()  # what the page reads: never held while dreaming
        self.dream_lock = threading.Lock()  # the preset and dreamer: changed between frames
        self.waiters = threading.Lock()
        self.waiting = 0  # changes waiting for the dream lock: the next frame waits for them
        self.record_lock = threading.Lock()
        self.shown = Shown()
        self.stats = Stats()
        self.error = ""
        self.recording: Recording | None = None
        self.midi = None  # live.midi.MidiControl, when a MIDI port is open
        self.inputs: list[str] = []  # what else talks to the session or takes its stream
        self._load(preset)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True, name="live-dream")
        self.thread.start()

    def _load(self, name: str, preset: Preset | None = None,
              mtime: float | None = None, shot: int = 0) -> None:
        """Load preset `name` (or take `preset`, read from its file when it had `mtime`) as
        its shot `shot` shows it (0: its own look; one it no longer has: its own look). The
        file's time is taken before it is read, so an edit made while loading is seen next."""
        self.preset_file = locate(name)
        self.watched = self._mtime() if preset is None else mtime
        self.checked = time.monotonic()
        self.preset: Preset = preset or load(name)
        if self.mask_file:
            self.preset.mask = MaskSection.model_validate(
                {**self.preset.mask.model_dump(), "file": self.mask_file, "key": None})
        shot = shot if shot <= len(self.preset.shots) else 0
        self.look = shot_preset(self.preset, shot, classic_term)  # the shot on screen
        self.layers = self._layers(self.look)
        self.dreamer: Dreamer = dreamer_for(self.look, self.device)
        self.flow = FlowEstimator.of(self.preset.flow)
        self.previous = None  # the last frame's RGB, for the flow to the next one
        self.turn = 0  # frames dreamed: which octave a carried frame dreams (flow.octaves)
        self.params = LiveParams.of(name, self.look, shot)
        self.chain = Chain(self.params.applied(self.look), self.dreamer)
        self._masks(self.chain.preset)

    @staticmethod
    def _layers(preset: Preset) -> list[str]:
        return load_network(preset.model.name, preset.model.weights).layer_names

    def _masks(self, preset: Preset) -> None:
        """The mask of each camera frame, as the shown preset says (None: all of it)."""
        maker = mask_maker(preset.mask, self.capture.size, [0.0], preset.video.fit)
        self.mask = None if maker is None else maker.cursor(0)

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
        try:
            self._load(self.params.preset, preset, mtime, self.params.shot)
        except UserError as exc:
            self.error = f"the edited preset cannot be shown, still using the last good one: {exc}"
            return
        self.error = ""
        log.info(f"preset {self.params.preset} reloaded")

    def update(self, changes: dict) -> LiveParams:
        """Apply the page's (or OSC's, or MIDI's) changes, validated, from the next frame on;
        picking another preset or stepping to another of its shots puts the sliders where that
        look has them, then applies the other changes. The dream thread lets a waiting change
        in between two frames (a lock alone would let it take the next frame first)."""
        with self.waiters:
            self.waiting += 1
        try:
            with self.dream_lock:
                return self._update(changes)
        finally:
            with self.waiters:
                self.waiting -= 1

    def _update(self, changes: dict) -> LiveParams:
        params = self.params.with_changes(changes, self.presets, self.layers,
                                          len(self.preset.shots))
        rest = {k: v for k, v in changes.items() if k not in ("preset", "shot")}
        look, layers = self.look, self.layers
        if params.preset != self.params.preset:
            self._load(params.preset)
            look, layers = self.look, self.layers
            params = self.params.with_changes(rest, self.presets, layers,
                                              len(self.preset.shots))
        elif params.shot != self.params.shot:
            look = shot_preset(self.preset, params.shot, classic_term)
            layers = self._layers(look)  # a shot may switch the model
            params = replace(LiveParams.of(params.preset, look, params.shot),
                             layer=params.layer if params.layer in layers else "",
                             mask=params.mask).with_changes(rest, self.presets, layers,
                                                            len(self.preset.shots))
        applied = params.applied(look)
        if params.layer != self.params.layer or look is not self.look:
            self.dreamer = dreamer_for(applied, self.device)
        self.look, self.layers = look, layers
        if params.mask != self.params.mask:
            self._masks(applied)
        self.chain = self.chain.retuned(applied, self.dreamer)
        self.params = params
        if (recording := self.recording) is not None:
            recording.control(self.controls())
        return params

    def check(self, changes: dict) -> None:
        """UserError if `changes` would be refused now (OSC checks each message before it
        merges them)."""
        self.params.with_changes(changes, self.presets, self.layers, len(self.preset.shots))

    def next_shot(self) -> dict:
        """The change to the preset's next shot (after its last: its own look again)."""
        return {"shot": (self.params.shot + 1) % (len(self.preset.shots) + 1)}

    def controls(self) -> dict:
        """Every live control's value now (what a recording's controls file holds)."""
        return {name: getattr(self.params, name) for name in FIELDS}

    def record(self, on: bool, dreamed: bool = False) -> dict:
        """Start (raw frames, and the dreamed ones if asked) or stop a recording. Its own lock:
        a dream in progress must not delay the start or the end."""
        with self.record_lock:
            if on and self.recording is None:
                self.recording = Recording(self.record_dir, self.capture.size,
                                           self.params.applied(self.look), dreamed,
                                           self.controls())
                self.capture.recording = self.recording
                return {"recording": self.recording.stem}
            if not on and self.recording is not None:
                recording, self.recording = self.recording, None
                self.capture.recording = None
                return {"files": [str(p) for p in recording.close()]}
            return {"recording": self.recording.stem if self.recording else None}

    def _dream(self, rgb: np.ndarray) -> np.ndarray:
        """The next frame, carried along the flow from the last one by the render's chain."""
        source = to_tensor(rgb).to(self.dreamer.device)
        flows = None
        if self.previous is not None and self.chain.carry.needs_flow:
            flows = tuple(flow_to_tensor([f]) for f in self.flow.pair(self.previous, rgb))
        masks = None
        if self.mask is not None:
            masks = torch.from_numpy(self.mask(0, rgb)).to(source.device).float()[None, None] / 255
        dreamed = self.chain.frame([0], source, flows, masks=masks, turn=self.turn)
        self.previous, self.turn = rgb, self.turn + 1
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
            while self.waiting and self.running:
                time.sleep(0.001)
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
                               ("preset", "layer", "mask", "shot", *LiveParams.LIMITS)},
                    "limits": LiveParams.LIMITS, "presets": self.presets, "layers": self.layers,
                    "masks": list(MASKS),
                    "shots": ["the preset's own look", *describe_shots(self.preset)],
                    "fps": round(self.stats.fps, 2), "frames": self.stats.frames,
                    "dropped": self.stats.dropped, "latency_p50_ms": pick(0.5),
                    "latency_p95_ms": pick(0.95), "error": self.error,
                    "device": str(self.dreamer.device), "cpu_percent": self.stats.cpu_percent,
                    "recording": self.recording.stem if self.recording else None,
                    "midi": self.midi.state() if self.midi is not None else None,
                    "inputs": self.inputs}

    def close(self) -> None:
        """Stop capturing and dreaming; a recording in progress is finished (playable)."""
        self.running = False
        self.capture.close()
        self.thread.join(timeout=10)
        self.record(False)
