"""Per-frame parameter values from a preset's `timeline:` and `react:` sections.

A frame's value is its song time's value, whatever the frame rate: timeline keys are placed in
seconds, beats or frames and eased between; react rows add an audio feature shaped by threshold,
power curve and an attack/release envelope computed on a fixed 100 Hz control grid. The same
`Schedule` draws the `dream audio` plot and drives the render, so the plot is the render.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from renderer.curves import smoothstep
from renderer.drivable import SHOT_CUT, SHOT_FADE, Driven, target_of, term_index
from renderer.errors import UserError
from renderer.expressions import ExpressionError, TimeSpec
from renderer.keyframes import frame_motion
from renderer.media.midi import read_midi
from renderer.music.analysis import GRID_HZ, Analysis
from renderer.presets import Preset, note_range
from renderer.schedules import value_expression

log = logging.getLogger(__name__)

EASE = {"linear": lambda u: u, "smooth": smoothstep, "cubic": lambda u: u,
        "ease-in": lambda u: u * u, "ease-out": lambda u: 1 - (1 - u) ** 2,
        "step": lambda u: 0 * u, "hold": lambda u: 0 * u}


def value_range(target: str) -> tuple[float, float]:
    """Where a driven value must stay (a sum of rows may leave it; it is clamped back)."""
    found = target_of(target)
    return found.low, found.high


@dataclass
class Clock:
    """Where times sit in the music: beats from the song's grid, or a fixed `music.bpm`."""
    beats: np.ndarray  # beat times (empty: no beat)
    bpm: float | None  # a fixed tempo, when there is no song
    fps: float
    downbeat: int = 0  # index of the first bar's first beat

    @property
    def has_beat(self) -> bool:
        return len(self.beats) >= 2 or bool(self.bpm)

    def beat(self, times: np.ndarray) -> np.ndarray:
        """Beats since the song's first beat (fractional), extrapolated at the edge tempos."""
        if len(self.beats) < 2:
            return np.asarray(times, float) * (self.bpm or 0.0) / 60.0
        index = np.arange(len(self.beats), dtype=float)
        first = (self.beats[1] - self.beats[0])
        last = (self.beats[-1] - self.beats[-2])
        return np.where(times < self.beats[0], (times - self.beats[0]) / first,
                        np.where(times > self.beats[-1],
                                 index[-1] + (times - self.beats[-1]) / last,
                                 np.interp(times, self.beats, index)))

    def time_of_beat(self, beat: float) -> float:
        if len(self.beats) < 2:
            return beat * 60.0 / self.bpm
        if beat <= len(self.beats) - 1:
            return float(np.interp(beat, np.arange(len(self.beats)), self.beats))
        return float(self.beats[-1] + (beat - len(self.beats) + 1) *
                     (self.beats[-1] - self.beats[-2]))

    def bpm_at(self, times: np.ndarray) -> np.ndarray:
        if len(self.beats) < 2:
            return np.full(np.shape(times), self.bpm or 0.0)
        mids = (self.beats[1:] + self.beats[:-1]) / 2
        return np.interp(times, mids, 60.0 / np.diff(self.beats))


class Schedule:
    """The driven values of a preset over song time (see the module's docstring)."""

    def __init__(self, preset: Preset, analysis: Analysis | None, fps: float):
        self.preset, self.analysis, self.fps = preset, analysis, fps
        beats = analysis.beats if analysis is not None else np.array([])
        downbeat = 0
        if analysis is not None and len(analysis.downbeats) and len(beats):
            downbeat = int(np.argmin(np.abs(beats - analysis.downbeats[0])))
        self.clock = Clock(beats, preset.music.bpm, fps, downbeat)
        self.targets = sorted(preset.driven_targets)
        self._check()

    def _check(self) -> None:
        """Everything a song must provide, checked before any frame is dreamed."""
        listens = [row for row in self.preset.react if row.source != "midi"]
        if listens and self.analysis is None:
            raise UserError(f"preset '{self.preset.name}' reacts to audio ('react:'): give a "
                            "song with --audio SONG (or a clip with sound)")
        for target, keys in self.preset.timeline.items():
            for key in keys:
                value = key.value
                names = value_expression(value).names if isinstance(value, str) else set()
                uses_beats = names & {"beat", "bar", "phase", "bpm"}
                at = TimeSpec.parse(key.at)
                if (uses_beats or at.unit in ("b", "bar")) and not self.clock.has_beat:
                    what = f"key at '{key.at}'" if at.unit in ("b", "bar") else \
                        f"value '{value}'"
                    raise UserError(f"timeline '{target}' {what} counts beats, but there is no "
                                    "beat: give a song with a beat (--audio SONG) or set "
                                    "music.bpm in the preset")
                if names & {"onset", "percussive", "harmonic", "rms", "low", "mid", "high",
                            "section"} and self.analysis is None:
                    raise UserError(f"timeline '{target}' value '{value}' reads the audio: give "
                                    "a song with --audio SONG (or a clip with sound)")

    # ------------------------------------------------------------ what expressions read
    def names(self, times: np.ndarray, frames: np.ndarray) -> dict:
        beat = self.clock.beat(times) if self.clock.has_beat else np.zeros_like(times)
        names = {"t": times, "frame": frames.astype(float), "beat": beat,
                 "bar": (beat - self.clock.downbeat) / 4.0, "phase": np.mod(beat, 1.0),
                 "bpm": self.clock.bpm_at(times)}
        a = self.analysis
        for name in ("onset", "percussive", "harmonic", "rms", "low", "mid", "high"):
            names[name] = a.curve(name, times) if a is not None else np.zeros_like(times)
        names["section"] = np.searchsorted(a.sections, times, side="right").astype(float) \
            if a is not None else np.zeros_like(times)
        # what Deforum keyframes read besides the frame (`renderer.schedules`)
        names["seed"], names["last_frame"] = self.preset.seed, float(np.max(frames, initial=0))
        return names

    def seconds(self, spec: TimeSpec) -> float:
        if spec.unit == "s":
            return spec.value
        if spec.unit == "f":
            return spec.value / self.clock.fps
        if spec.unit == "bar":
            return self.clock.time_of_beat(self.clock.downbeat + 4 * spec.value)
        return self.clock.time_of_beat(spec.value)

    # ------------------------------------------------------------ the values
    def values(self, times, frames, base: dict[str, np.ndarray], spans=None
               ) -> dict[str, np.ndarray]:
        """Every driven target at song `times` (frame numbers `frames`, each on screen for its
        `spans`, one frame at the schedule's rate by default): its timeline value (else
        `base[target]`) plus its react rows, clamped to the target's range."""
        times = np.asarray(times, float)
        frames = np.asarray(frames)
        names = self.names(times, frames)
        imported = self.preset.imported()
        out = {}
        for target in self.targets:
            if target in self.preset.timeline:
                value = self._timeline(target, times, names)
                self._check_range(target, value, times)
            elif imported is not None and target in imported.curves:
                value = imported.at(target, times)
            else:
                value = np.broadcast_to(np.asarray(base[target], float), times.shape).copy()
            for row in self.preset.react:
                if row.target == target:
                    value = value + self.react(row, times, spans)
            out[target] = np.clip(value, *value_range(target))
        return out

    def _check_range(self, target: str, value: np.ndarray, times: np.ndarray) -> None:
        """A timeline's value must be a number in its target's range at every time (react rows
        added to it are clamped): an overflow, a division by zero or a value out of range is
        an error naming where the timeline was written, before any frame is dreamed."""
        low, high = value_range(target)
        bad = ~np.isfinite(value) | (value < low) | (value > high)
        if not bad.any():
            return
        first = int(np.flatnonzero(bad)[0])
        what = "not a finite number" if not np.isfinite(value[first]) else \
            f"{value[first]:g}, outside {low:g}..{high:g}"
        written = ", ".join(f"'{k.value}'" for k in self.preset.timeline[target])
        raise UserError(f"{self.preset.origin(target)}: timeline '{target}' ({written}) gives "
                        f"{what} at {float(times[first]):.2f} s: keep it within {low:g}..{high:g}")

    def _evaluate(self, value, names) -> np.ndarray:
        shape = names["t"].shape
        if not isinstance(value, str):
            return np.full(shape, float(value))
        try:
            result = value_expression(value).evaluate(names)
        except ExpressionError as exc:
            raise UserError(f"preset '{self.preset.name}': {exc}") from None
        return np.broadcast_to(np.asarray(result, float), shape).astype(float)

    def _timeline(self, target: str, times: np.ndarray, names: dict) -> np.ndarray:
        keys = self.preset.timeline[target]
        placed = [(self.seconds(TimeSpec.parse(k.at)), k) for k in keys]
        if any(b[0] < a[0] for a, b in zip(placed, placed[1:])):
            log.warning(f"timeline '{target}': keys are out of order; they are used in time "
                        "order")
        placed.sort(key=lambda pair: pair[0])
        duration = self.analysis.duration if self.analysis is not None else None
        if duration is not None and placed[-1][0] > duration:
            log.warning(f"timeline '{target}': a key at {placed[-1][0]:.2f} s is past the "
                        f"song's end ({duration:.2f} s); the last value holds")
        at = np.array([p[0] for p in placed])
        values = [self._evaluate(k.value, names) for _, k in placed]
        if len(placed) == 1:
            return values[0]
        out = np.where(times < at[0], values[0], values[-1])
        for i in range(len(placed) - 1):
            inside = (times >= at[i]) & (times < at[i + 1])
            if not inside.any() or at[i + 1] <= at[i]:
                continue
            u = (times[inside] - at[i]) / (at[i + 1] - at[i])
            a, b = values[i][inside], values[i + 1][inside]
            ease = placed[i][1].ease
            if ease == "cubic":  # Catmull-Rom through the neighbouring keys
                p0 = values[max(0, i - 1)][inside]
                p3 = values[min(len(values) - 1, i + 2)][inside]
                out[inside] = 0.5 * (2 * a + (b - p0) * u + (2 * p0 - 5 * a + 4 * b - p3) * u ** 2
                                     + (3 * a - p0 - 3 * b + p3) * u ** 3)
            else:
                out[inside] = a + (b - a) * EASE[ease](u)
        return out

    def react(self, row, times: np.ndarray, spans=None) -> np.ndarray:
        """One react row's contribution at `times` (each on screen for `spans`): source ->
        threshold -> curve -> attack/release on the control grid -> amount."""
        a = self.analysis
        at, first, where = np.unique(times, return_index=True, return_inverse=True)
        span = 1.0 / self.fps if spans is None else np.asarray(spans, float)[first]
        span = np.broadcast_to(np.asarray(span, float), at.shape)
        # the attack/release runs frame by frame, in song time (a loop's frames that repeat
        # a time get its value), on what each frame shows: a hit is in its own frame in full
        # (a tracked one split with its neighbour near their cut), the next frames fall back
        # by the release
        if row.source == "midi":
            held = self._midi(row, at, span)
        else:
            end = max(float(np.max(times, initial=0.0)), a.duration) + 1.0
            grid = np.arange(int(np.ceil(end * GRID_HZ)) + 1) / GRID_HZ
            if row.source in ("beat", "section"):
                marks = np.asarray(a.beats if row.source == "beat" else a.sections)
                # a beat pulses as hard as it is played (a tracked beat through a breakdown
                # with no drums barely moves); a section change is a full pulse
                height = a.curve("onset", marks) if row.source == "beat" else np.ones(len(marks))
                if height.size and height.max() > 0:
                    height = height / height.max()
                signal = np.zeros_like(grid)
                signal[np.clip(np.round(marks * GRID_HZ).astype(int), 0, len(grid) - 1)] = height
            else:
                signal = a.curve(row.source, grid)
                if row.source == "onset":
                    signal = hits(signal)
            latency = ONSET_LATENCY if row.source == "onset" else 0.0
            held = shown(_shaped(row, signal), grid - latency, at, span,
                         "hits" if row.source in ("onset", "beat", "section") else "curve")
        steps = np.diff(at, prepend=at[0] - 1.0 / self.fps) * GRID_HZ
        return row.amount * follow(held, row.attack, row.release, steps)[where.ravel()]

    @staticmethod
    def _midi(row, at: np.ndarray, span: np.ndarray) -> np.ndarray:
        """A MIDI row at frames starting `at` (sorted), each on screen for `span`: a
        controller's value (0..1) at the frame's middle, held from each change to the next;
        or the loudest of the note-ons (velocity 0..1) whose exact time falls in the frame's
        own time (a note on a frame's first instant is that frame's, in full)."""
        midi = read_midi(row.file)
        if row.cc is not None:
            changes = midi.control(row.cc, row.channel)
            if not len(changes):
                return np.zeros(len(at))
            held = np.searchsorted(changes[:, 0], at + span / 2, side="right") - 1
            return np.where(held >= 0, _shaped(row, changes[np.clip(held, 0, None), 1]), 0.0)
        low, high = note_range(row.note) if row.note is not None else (0, 127)
        notes = midi.hits(low, high, row.channel)
        frame = np.searchsorted(at, notes[:, 0], side="right") - 1
        inside = (frame >= 0) & (notes[:, 0] < at[np.clip(frame, 0, None)] +
                                 span[np.clip(frame, 0, None)])
        out = np.zeros(len(at))
        np.maximum.at(out, frame[inside], _shaped(row, notes[inside, 1]))
        return out


def _shaped(row, signal: np.ndarray) -> np.ndarray:
    """A source (0..1) through a react row's threshold and power curve."""
    return np.clip((signal - row.threshold) / (1.0 - row.threshold), 0.0, 1.0) ** row.curve


def hits(onset: np.ndarray) -> np.ndarray:
    """The onset envelope as a train of hits: each peak (the highest point within HIT_REACH
    either side, the first of a flat top) keeps its height, everything else is 0. The
    envelope itself is some 50 ms wide, so a frame after a hit still held most of it and the
    dream peaked a frame late; the react row's release shapes the fall instead."""
    reach = int(round(HIT_REACH * GRID_HZ))
    peak = np.lib.stride_tricks.sliding_window_view(np.pad(onset, reach, mode="edge"),
                                                    2 * reach + 1).max(axis=1)
    rising = onset > np.concatenate([[0.0], onset[:-1]])  # a flat top (clipped at 1) is one hit
    return np.where((onset >= peak) & rising, onset, 0.0)


HIT_REACH = 0.05  # s: two onsets closer than this are one hit

ONSET_LATENCY = 0.01  # s: the onset envelope peaks 10-20 ms after the attack (a difference of
# 2048-sample spectra 512 apart; a click track and the generated test song); taking off more
# put hits played on a frame's first instant into the frame before


def shown(signal: np.ndarray, grid: np.ndarray, times: np.ndarray, span, window: str = "hits"
          ) -> np.ndarray:
    """What each frame shows of a signal on the control grid.

    `hits`: its strongest value within a span of the frame's middle (`times` + span / 2),
    weighted down linearly with the distance from it. A hit in the middle of a frame's time is
    that frame's alone; one near the cut between two frames shows in both, at half or more in
    the frame whose time holds it. A flux of the sound read at the frames (windows at their
    middles or at their starts) puts such a hit in either frame: taking the frame's start alone
    (the old reading) was a frame late on those, and the frame's span alone a frame early on
    some (scripts/BENCHMARKS.md).

    `curve`: the value at the frame's middle (a loudness or a controller: a window's maximum
    would ripple with where the grid's points fall in each frame)."""
    span = np.broadcast_to(np.asarray(span, float), np.shape(times))
    middle = np.asarray(times, float) + span / 2
    if window == "curve":
        return np.interp(middle, grid, signal)
    nearest = np.searchsorted(grid, middle)
    reach = int(np.ceil(span.max(initial=0.0) * GRID_HZ)) + 1
    out = np.zeros(len(middle))
    for step in range(-reach, reach + 1):
        at = np.clip(nearest + step, 0, len(grid) - 1)
        weight = np.clip(1.0 - np.abs(grid[at] - middle) / span, 0.0, None)
        out = np.maximum(out, signal[at] * weight)
    return out


def follow(signal: np.ndarray, attack_ms: float, release_ms: float,
           steps: np.ndarray | None = None) -> np.ndarray:
    """A one-pole envelope follower: rises with `attack_ms`, falls with `release_ms` (0: at
    once); `steps` (control-grid points, 10 ms each) between samples, one each by default."""
    dt = 1000.0 / GRID_HZ * (np.ones(len(signal)) if steps is None else np.asarray(steps))
    up = np.ones_like(dt) if attack_ms <= 0 else 1.0 - np.exp(-dt / attack_ms)
    down = np.ones_like(dt) if release_ms <= 0 else 1.0 - np.exp(-dt / release_ms)
    out = np.empty(len(signal))
    level = 0.0
    for i, x in enumerate(np.asarray(signal, float).tolist()):
        level += (up[i] if x > level else down[i]) * (x - level)
        out[i] = level
    return out


def base_values(preset: Preset) -> dict[str, float]:
    """The preset's own value of every target a video render can drive."""
    base = {"dream.step_size": preset.dream.step_size, "dream.steps": preset.dream.steps,
            "flow.persistence": preset.flow.persistence,
            "flow.temporal_weight": preset.flow.temporal_weight}
    for k, term in enumerate(preset.objective):
        base[f"objective.{k}.weight"] = term.weight
    return base


def keyframe_values(preset: Preset, frames: np.ndarray, fps: float) -> dict[str, list]:
    """What the keyframes (and the preset) give each driven target at `frames`: the base that
    a timeline replaces and react rows add to."""
    s = preset.zoom
    motions = [frame_motion(int(f), fps, s.keyframes, s.easing)[0] for f in frames]
    return {"zoom.zoom": [m.zoom for m in motions], "zoom.rotate": [m.rotate for m in motions],
            "zoom.pan.x": [m.pan[0] for m in motions], "zoom.pan.y": [m.pan[1] for m in motions],
            "zoom.center.x": [m.center[0] for m in motions],
            "zoom.center.y": [m.center[1] for m in motions],
            "zoom.strength": [m.strength for m in motions],
            "zoom.layer_mix": [m.layer_mix or 0.0 for m in motions],
            "zoom.steps": [s.steps if m.steps is None else m.steps for m in motions],
            **base_values(preset)}


def driven_rows(values: dict[str, np.ndarray], frames) -> Driven:
    """The typed values of one batch step: `values` (target -> one value per frame of the
    clip, as `Schedule.values` gives them) at each row's frame number."""
    if not values:
        return Driven()
    at = {target: np.asarray(v, float)[list(frames)] for target, v in values.items()}
    steps, cuts, fade = at.get("dream.steps"), at.get(SHOT_CUT), at.get(SHOT_FADE)
    return Driven(step_size=at.get("dream.step_size"),
                  steps=None if steps is None else int(round(float(steps[0]))),
                  persistence=at.get("flow.persistence"),
                  temporal_weight=at.get("flow.temporal_weight"),
                  term_weights={term_index(t): v for t, v in at.items()
                                if term_index(t) is not None},
                  cuts=None if cuts is None or not cuts.any() else cuts > 0.5,
                  mask_strength=at.get("mask.strength"),
                  fade=None if fade is None or not fade.any() else fade)


def schedule_for(preset: Preset, song, fps: float, offset: float = 0.0,
                 length: float | None = None) -> Schedule | None:
    """The schedule of a preset that has `timeline:` or `react:` (None otherwise), with the
    song analysed (cached) when there is one. `offset` is where the render starts in the song
    and `length` how long it runs: a song that ends first is warned about (react goes flat)."""
    from renderer.music.analysis import analyse_file

    if not preset.modulated:
        return None
    analysis = analyse_file(song, preset.music.bands) if song is not None else None
    if analysis is not None and length is not None and offset + length > analysis.duration + 0.05:
        log.warning(f"the song ends {offset + length - analysis.duration:.1f} s before the "
                    "picture: after its end, react rows are flat and beats continue at the "
                    "last tempo")
    if analysis is not None and analysis.tempo == 0 and preset.react:
        log.warning("no beat or sound found in the song: react rows stay flat")
    return Schedule(preset, analysis, fps)


def describe_targets(preset: Preset) -> list[str]:
    """How each driven parameter varies inside a batch (for `dream presets show`)."""
    lines = []
    for target in sorted(preset.driven_targets):
        how = {"per row": "per frame (each batch row its own value)",
               "per step": "per batch step (the first row's value for the whole batch)",
               "zoom": "per frame"}[target_of(target).varies]
        lines.append(f"{target}: {how}")
    return lines
