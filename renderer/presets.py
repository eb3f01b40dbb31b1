"""YAML presets: a validated schema with defaults, line-numbered errors and `--set` overrides.

Precedence: defaults < preset file (< the preset it `extends`) < `--set section.key=value`.
"""

from __future__ import annotations

import copy
import os
from importlib import resources
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from renderer.drivable import TARGETS, term_index
from renderer.errors import UserError, close_matches


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelSection(Section):
    name: str = "mobilenet_v2"
    weights: Optional[str] = None  # a .pth file to load instead of the zoo's own


class ObjectiveTerm(Section):
    """One term: a layer, a channel of a layer, an ImageNet class, or a guide image at a layer;
    of the preset's model, or of another (`model:`, e.g. a shot's: both networks are dreamed
    together)."""
    layer: Optional[str] = None
    channel: Optional[int] = Field(None, ge=0)
    class_: Optional[str | int] = Field(None, alias="class")
    guide: Optional[str] = None
    weight: float = Field(1.0, ge=-100, le=100)
    model: Optional[str] = None  # None: the preset's

    @model_validator(mode="after")
    def _one_target(self):
        if (self.layer is None) == (self.class_ is None):
            raise ValueError("give exactly one of 'layer' or 'class'")
        if self.class_ is not None and (self.channel is not None or self.guide is not None):
            raise ValueError("'class' takes no 'channel' or 'guide'")
        return self


class DreamSection(Section):
    octaves: int = Field(4, ge=1, le=12)
    octave_scale: float = Field(1.4, gt=1.0, le=4.0)
    steps: int = Field(10, ge=0, le=1000)
    step_size: float = Field(0.012, gt=0.0, le=1.0)
    jitter: int = Field(32, ge=0, le=1024)
    lap_levels: int = Field(4, ge=0, le=8)  # Laplacian-pyramid levels for gradient normalisation
    tile_size: int = Field(2048, ge=32, le=16384)  # larger images are dreamed in tiles
    tile_batch: int = Field(4, ge=1, le=4096)  # tiles per forward pass (bounds memory)
    tile_margin: int = Field(64, ge=0, le=1024)  # context around each tile, discarded on merge
    min_octave_size: int = Field(48, ge=16, le=4096)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on CUDA, fp32 on the CPU
    # auto: on for CUDA and the CPU (oneDNN convolutions run 1.2-1.5x faster in NHWC there)
    channels_last: Literal["auto"] | bool = "auto"
    fold_bn: bool = True  # fold batch-norm into the convolutions (same result, fewer bytes)
    # auto: on CUDA, torch.compile for long renders (from ~2 min of 1080p), where it repays its
    # one-off compile (26-92 s); shorter ones start at once, eagerly; off on the CPU (Inductor's
    # code was slower there). true: always. graphs: compiled and replayed as CUDA graphs
    compile: Literal["auto", "graphs"] | bool = "auto"

    @model_validator(mode="after")
    def _tile_core(self):
        if self.tile_size - 2 * self.tile_margin < 16:
            raise ValueError(f"tile_margin {self.tile_margin} leaves no tile core: it must be "
                             f"below tile_size / 2 - 8 = {self.tile_size // 2 - 8}")
        return self


class FlowSection(Section):
    mode: Literal["independent", "blend", "warp", "consistent"] = "consistent"
    quality: Literal["ultrafast", "fast", "medium"] = "fast"
    max_width: int = Field(960, ge=0, le=8192)  # flow of wider frames at this width (0: full)
    # take the camera's motion out first (a robust affine fit), then DIS on what is left
    align: bool = False
    persistence: float = Field(0.9, ge=0.0, le=1.0)  # share of the warped dream carried over
    blend: float = Field(0.5, ge=0.0, le=1.0)  # 'blend' mode: weight of the previous dream
    temporal_weight: float = Field(0.0, ge=0.0, le=1.0)  # pull towards the warped dream per step
    mask_blur: float = Field(1.0, ge=0.0, le=20.0)  # Gaussian sigma softening the mask edges
    steps: Optional[int] = Field(None, ge=0, le=1000)  # steps per frame once a dream is carried
    # which octaves a carried frame dreams: all of them, or one a frame in turn (coarse to
    # fine): it starts from a finished dream, so a third of the work keeps the look
    octaves: Literal["all", "rotate"] = "all"
    # keep the carried dream at its shot's first strength (0: off; 0..1: how much of the lost
    # fine detail is given back too); cuts start afresh
    hold: float = Field(0.0, ge=0.0, le=1.0)
    # Gaussian sigma (pixels) applied to what each frame's dream adds: detail at the scale of a
    # pixel cannot follow motion (any warp re-samples it) and reads as flicker (0: off)
    band_limit: float = Field(0.0, ge=0.0, le=4.0)
    # still things stay still: where the source changes less than this many levels (0-255,
    # a neighbourhood's mean) and the flow is under half a pixel, the dream is kept exactly as
    # it was and takes no ascent step; only what moves or comes into view is dreamed (0: off)
    still: float = Field(0.0, ge=0.0, le=64.0)


class VideoSection(Section):
    # a --size of another aspect: scale to cover and centre-crop, fit inside with black bars,
    # or stretch
    fit: Literal["crop", "pad", "stretch"] = "crop"
    batch: Optional[int] = Field(None, ge=1, le=256)  # segments per GPU batch; None: from memory
    warmup: int = Field(8, ge=0, le=500)  # frames dreamed before a segment, faded into the last
    checkpoint_every: int = Field(48, ge=1, le=100000)  # lockstep steps between checkpoints
    threads: Optional[int] = Field(None, ge=1, le=1024)  # cores to use (None: all available)
    # where DIS flow runs: beside the dream loop on threads, or in worker processes (off the
    # interpreter that launches a GPU's kernels); auto: processes on a GPU, threads on the CPU
    flow_workers: Literal["auto", "threads", "processes"] = "auto"


class EncodeSection(Section):
    # prores4444 (10-bit, alpha), png16 (16-bit RGBA frames), exr (half-float, linear light,
    # with alpha) are compositing masters: their alpha is where the dream shows (the mask's
    # strength; opaque without a mask)
    codec: Literal["h264", "h265", "prores", "prores4444", "png", "png-rgba", "png16", "exr"] = "h264"
    crf: int = Field(18, ge=0, le=51)
    speed: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                   "slower", "veryslow"] = "medium"
    audio: Literal["auto", "copy", "aac", "none"] = "auto"
    ffmpeg: Optional[str] = None  # a system ffmpeg binary instead of imageio-ffmpeg's
    # x264/x265 tuning for the content (grain: keep fine, moving detail as it is)
    tune: Optional[Literal["film", "animation", "grain", "stillimage"]] = None
    keyint: Optional[int] = Field(None, ge=1, le=10000)  # frames between keyframes
    # h264/h265 colour resolution: 420 plays everywhere; 444 keeps the dream's fine colour
    # detail, which 4:2:0 re-samples differently every frame (+12% flicker on the sample clip),
    # at the same file size, but browsers and QuickTime do not play 4:4:4 H.264
    chroma: Literal["420", "444"] = "420"

    @field_validator("chroma", mode="before")
    @classmethod
    def _chroma_text(cls, value):
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Keyframe(Section):
    """Motion and dream settings at time `t` (seconds); values in between are interpolated."""
    t: float = Field(0.0, ge=0.0)
    zoom: float = Field(1.1, gt=0.0, le=100.0)  # scale factor per second (1 = still)
    rotate: float = Field(0.0, ge=-3600, le=3600)  # degrees per second
    pan: tuple[float, float] = (0.0, 0.0)  # (x, y) in image widths/heights per second
    center: tuple[float, float] = (0.5, 0.5)  # zoom centre, fractions of width and height
    strength: float = Field(1.0, ge=0.0, le=10.0)  # multiplies dream.step_size
    layer_mix: Optional[float] = Field(None, ge=0.0, le=1.0)  # 0: first objective, 1: second
    steps: Optional[int] = Field(None, ge=0, le=100)  # dream steps per frame (default zoom.steps)


class ZoomSection(Section):
    keyframes: list[Keyframe] = Field(default_factory=lambda: [Keyframe()])
    easing: Literal["linear", "smooth"] = "smooth"
    steps: int = Field(3, ge=0, le=100)  # dream steps per frame
    octaves: int = Field(1, ge=1, le=8)
    color_hold: float = Field(0.5, ge=0.0, le=1.0)  # per second: pull back to the start colours
    loop: bool = False
    loop_blend: float = Field(1.0, gt=0.0, le=60.0)  # seconds over which a loop closes
    # how: the next picture grows out of the zoom's centre, or a (contrast-kept) cross-fade
    loop_close: Literal["grow", "fade"] = "grow"
    checkpoint_every: int = Field(120, ge=1, le=100000)  # frames between checkpoints

    @field_validator("keyframes")
    @classmethod
    def _ordered(cls, frames):
        if not frames:
            raise ValueError("give at least one keyframe")
        times = [k.t for k in frames]
        if any(b <= a for a, b in zip(times, times[1:])):
            raise ValueError(f"keyframe times must increase strictly (got {times})")
        return frames


class MaskSection(Section):
    """Which pixels the dream may change (`renderer.media.masks`): a file or a key computed from
    each source frame, shaped, then carried along the flow with the dream."""
    # an image (every frame; its alpha channel if it has one, else its brightness), a video
    # (frame-matched by timestamp) or a folder of images (one per frame, in name order)
    file: Optional[str] = None
    # or a key computed from each source frame: a luma range, a chroma key (green screen),
    # edges, or a person (a segmentation model)
    key: Optional[Literal["luma", "chroma", "edges", "person"]] = None
    luma: tuple[float, float] = (0.0, 0.5)  # key luma: the range of brightness (0..1) dreamed
    color: str = "#00ff00"  # key chroma: the screen's colour, '#rrggbb'
    tolerance: float = Field(0.15, gt=0.0, le=1.0)  # key chroma: colour distance still keyed
    softness: float = Field(0.05, ge=0.0, le=1.0)  # luma and chroma keys: their graded edge
    invert: bool = False  # dream what the mask leaves out
    grow: int = Field(0, ge=-512, le=512)  # pixels; below 0 shrinks
    feather: float = Field(0.0, ge=0.0, le=512.0)  # width in pixels of the graded edge
    strength: float = Field(1.0, ge=0.0, le=1.0)  # 0..1: how much of the dream shows inside
    # how much of the last frame's mask is carried along the flow into the next, so a key's
    # edge holds still on a moving subject (default: 0 for a file, 0.5 for a key)
    follow: Optional[float] = Field(None, ge=0.0, lt=1.0)
    hold_last: bool = False  # a mask video or sequence shorter than the clip holds its last frame

    @model_validator(mode="after")
    def _one_source(self):
        if self.file is not None and self.key is not None:
            raise ValueError("give either 'file' or 'key', not both")
        lo, hi = self.luma
        if not 0 <= lo < hi <= 1:
            raise ValueError(f"luma ({lo:g}, {hi:g}) must satisfy 0 <= low < high <= 1")
        return self

    @field_validator("color")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not (len(value) == 7 and value[0] == "#" and
                all(c in "0123456789abcdefABCDEF" for c in value[1:])):
            raise ValueError(f"'{value}' is not a colour: write '#rrggbb', e.g. '#00ff00'")
        return value

    @property
    def active(self) -> bool:
        return self.file is not None or self.key is not None

    @property
    def carried(self) -> float:
        """The share of the last mask that follows the flow into the next frame."""
        if self.follow is not None:
            return self.follow
        return 0.0 if self.file is not None else 0.5


# ---------------------------------------------------------------- music: timeline and react
EASES = ("linear", "smooth", "cubic", "ease-in", "ease-out", "step", "hold")
SOURCES = ("onset", "percussive", "harmonic", "rms", "low", "mid", "high", "beat", "section")


def _check_target(target: str, terms: int | None = None) -> str:
    """A parameter music may drive (`terms`: the preset's objective terms, once known)."""
    term = term_index(target)
    if term is not None:
        if terms is not None and term >= max(terms, 1):
            raise ValueError(f"'{target}': objective terms are numbered 0..{max(terms, 1) - 1}")
        return target
    if target not in TARGETS:
        raise ValueError(f"'{target}' cannot be driven{close_matches(target, TARGETS)}; "
                         f"these can: {', '.join(TARGETS)}")
    return target


class TimelineKey(Section):
    """A value at a time; `ease` shapes the way from this key to the next."""
    at: float | str
    value: float | str
    ease: Literal["linear", "smooth", "cubic", "ease-in", "ease-out", "step", "hold"] = "linear"

    @field_validator("at")
    @classmethod
    def _time(cls, value):
        return _check_time(value)

    @field_validator("value")
    @classmethod
    def _expression(cls, value):
        if isinstance(value, str):
            check_expression(value)
        return value


def check_expression(text: str) -> None:
    """One of our expressions, or Deforum keyframes (`renderer.schedules`)."""
    from renderer.expressions import ExpressionError
    from renderer.schedules import value_expression

    try:
        value_expression(text)
    except ExpressionError as exc:
        raise ValueError(str(exc)) from None


class ReactRow(Section):
    """An audio feature (or a MIDI file's notes or controller) driving a parameter: normalised
    source -> threshold -> power curve -> attack/release envelope (milliseconds: the same at any
    frame rate) -> times `amount`, added to the parameter's own (or timeline) value."""
    source: Literal["onset", "percussive", "harmonic", "rms", "low", "mid", "high", "beat",
                    "section", "midi"]
    target: str
    # source midi: the file, and which of its messages: note-ons (`note: 36`, a range
    # `note: 36-40`, or every note) pulse at their velocity; a controller (`cc: 1`) is a curve
    # 0..127 -> 0..1; `channel` 1-16 keeps one channel
    file: Optional[str] = None
    note: Optional[int | str] = None
    cc: Optional[int] = Field(None, ge=0, le=127)
    channel: Optional[int] = Field(None, ge=1, le=16)
    amount: float = Field(ge=-1000, le=1000)
    threshold: float = Field(0.0, ge=0.0, lt=1.0)
    curve: float = Field(1.0, gt=0.0, le=10.0)  # power: > 1 keeps only the peaks
    attack: float = Field(5.0, ge=0.0, le=10_000.0)  # ms to rise
    release: float = Field(200.0, ge=0.0, le=60_000.0)  # ms to fall back

    @field_validator("target")
    @classmethod
    def _drivable(cls, target):
        return _check_target(target)

    @field_validator("note")
    @classmethod
    def _notes(cls, note):
        if note is not None:
            note_range(note)
        return note

    @model_validator(mode="after")
    def _midi(self):
        if self.source == "midi" and not self.file:
            raise ValueError("a react row with source midi needs 'file: SONG.mid'")
        if self.source != "midi" and (self.file or self.note is not None or self.cc is not None
                                      or self.channel is not None):
            raise ValueError(f"'file', 'note', 'cc' and 'channel' belong to source midi, not "
                             f"source {self.source}")
        if self.note is not None and self.cc is not None:
            raise ValueError("a midi row reads notes or a controller: give 'note' or 'cc', "
                             "not both")
        return self


def note_range(note) -> tuple[int, int]:
    """A MIDI note (36) or range ('36-40') as (lowest, highest)."""
    text = str(note).strip()
    low, _, high = text.partition("-")
    try:
        if isinstance(note, bool):
            raise ValueError
        lowest, highest = int(low), int(high or low)
    except ValueError:
        raise ValueError(f"note '{note}' is not a MIDI note: give a number 0-127 (36) or a "
                         "range (36-40)") from None
    if not 0 <= lowest <= highest <= 127:
        raise ValueError(f"note '{note}' must be 0-127, the lower first (36-40)")
    return lowest, highest


class ScheduleSection(Section):
    """Curves made in another tool (`renderer.schedules`): a Parseq manifest or a Deforum
    settings file; the preset's own `timeline:` wins where both drive a target."""
    file: Optional[str] = None
    # other numeric fields of the file -> the target each drives, as written there
    fields: dict[str, str] = Field(default_factory=dict)
    # the picture a Parseq manifest's translations are in pixels of (Deforum's default)
    size: tuple[int, int] = (512, 512)

    @field_validator("fields")
    @classmethod
    def _targets(cls, fields):
        for target in fields.values():
            _check_target(target)
        return fields

    @field_validator("size")
    @classmethod
    def _size(cls, size):
        if not all(1 <= side <= 100_000 for side in size):
            raise ValueError(f"size {size} must be two sides of 1 to 100000 pixels")
        return size


def _check_time(value, markers=()):
    """A time a preset places something at (see `expressions.TimeSpec`), or one of `markers`."""
    from renderer.expressions import ExpressionError, TimeSpec

    if value in markers:
        return value
    try:
        TimeSpec.parse(value)
    except ExpressionError as exc:
        raise ValueError(str(exc)) from None
    return value


class ShotTransition(Section):
    """How a shot's look takes over: `carry` keeps the carried dream and eases the new look's
    values in over `length` along the flow; `cut` starts the new look fresh; `crossfade`
    starts it fresh and fades the last look's picture, carried along the flow, out over it."""
    kind: Literal["carry", "cut", "crossfade"] = "carry"
    length: float | str = "8f"  # seconds, beats (2b) or frames (8f); not for a cut

    @field_validator("length")
    @classmethod
    def _time(cls, value):
        return _check_time(value)


class ShotDream(Section):
    step_size: Optional[float] = Field(None, gt=0.0, le=1.0)
    steps: Optional[int] = Field(None, ge=0, le=1000)


class ShotFlow(Section):
    persistence: Optional[float] = Field(None, ge=0.0, le=1.0)
    temporal_weight: Optional[float] = Field(None, ge=0.0, le=1.0)


class Shot(Section):
    """A look from a time on: `at` a time (12.5, 1:04, 16b, 4bar, 48f), the next scene cut of
    the clip (`cut`) or section change of the song (`section`); or `section: N` (the song's
    Nth section, 0 first). It takes the objective and values of the preset it `extends`, then
    its own."""
    at: Optional[float | str] = None
    section: Optional[int] = Field(None, ge=0, le=1000)
    extends: Optional[str] = None
    objective: Optional[list[ObjectiveTerm]] = None
    dream: ShotDream = Field(default_factory=ShotDream)
    flow: ShotFlow = Field(default_factory=ShotFlow)
    transition: ShotTransition = Field(default_factory=ShotTransition)

    @field_validator("at")
    @classmethod
    def _time(cls, value):
        return None if value is None else _check_time(value, ("cut", "section"))

    @field_validator("objective", mode="before")
    @classmethod
    def _terms(cls, value):
        return None if value is None else parse_terms(value)

    @model_validator(mode="after")
    def _one_start(self):
        if (self.at is None) == (self.section is None):
            raise ValueError("give a shot exactly one of 'at' or 'section'")
        return self


class MusicSection(Section):
    bpm: Optional[float] = Field(None, gt=0.0, le=400.0)  # a fixed tempo when there is no song
    low: tuple[float, float] = (20.0, 250.0)  # band edges in Hz
    mid: tuple[float, float] = (250.0, 2000.0)
    high: tuple[float, float] = (2000.0, 11025.0)

    @model_validator(mode="after")
    def _bands(self):
        for name in ("low", "mid", "high"):
            lo, hi = getattr(self, name)
            if not 0 <= lo < hi <= 48000:
                raise ValueError(f"band {name} ({lo:g}, {hi:g}) Hz must satisfy 0 <= low < high")
        return self

    @property
    def bands(self) -> dict:
        return {"low": self.low, "mid": self.mid, "high": self.high}


class Preset(Section):
    # where each timeline target was written ("file:line"), for errors found only once the
    # song is known (a value that is not finite or leaves its range)
    _origins: dict = PrivateAttr(default_factory=dict)
    # the YAML files it was read from, itself and those it extends (resolved paths)
    _sources: tuple = PrivateAttr(default=())
    name: str = "custom"
    description: str = ""
    extends: Optional[str] = None
    seed: int = Field(0, ge=0, le=2**63 - 1)
    model: ModelSection = Field(default_factory=ModelSection)
    objective: list[ObjectiveTerm] = Field(default_factory=list)  # empty: the model's classic layer
    dream: DreamSection = Field(default_factory=DreamSection)
    flow: FlowSection = Field(default_factory=FlowSection)
    video: VideoSection = Field(default_factory=VideoSection)
    encode: EncodeSection = Field(default_factory=EncodeSection)
    zoom: ZoomSection = Field(default_factory=ZoomSection)
    music: MusicSection = Field(default_factory=MusicSection)
    # parameter -> keys over time (one expression or number alone: the whole song)
    timeline: dict[str, list[TimelineKey]] = Field(default_factory=dict)
    react: list[ReactRow] = Field(default_factory=list)
    # looks that take over at times, beats, sections or scene cuts (`renderer.music.shots`)
    shots: list[Shot] = Field(default_factory=list)
    mask: MaskSection = Field(default_factory=MaskSection)  # dream a region only
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    _imported: tuple = PrivateAttr(default=(None, None))  # (the section read, its curves)

    @field_validator("timeline", mode="before")
    @classmethod
    def _single_values(cls, timeline):
        if not isinstance(timeline, dict):
            return timeline
        return {target: [{"at": 0, "value": keys}] if isinstance(keys, (str, int, float))
                and not isinstance(keys, bool) else keys for target, keys in timeline.items()}

    @field_validator("timeline")
    @classmethod
    def _some_keys(cls, timeline):
        for target, keys in timeline.items():
            _check_target(target)
            if not keys:
                raise ValueError(f"'{target}' has no keys: give at least one")
        return timeline

    @model_validator(mode="after")
    def _targets(self):
        for target in self.timeline:
            _check_target(target, len(self.objective))
        for row in self.react:
            _check_target(row.target, len(self.objective))
        for target in self.schedule.fields.values():
            _check_target(target, len(self.objective))
        return self

    def imported(self):
        """The curves of `schedule.file` (`renderer.schedules.Imported`), or None; read once
        for the section as it is (a section replaced by --schedule is read anew)."""
        if self.schedule.file is None:
            return None
        if self._imported[0] != self.schedule:
            from renderer.schedules import read_schedule_file

            self._imported = (self.schedule.model_copy(), read_schedule_file(
                self.schedule.file, self.schedule.fields, self.schedule.size))
        return self._imported[1]

    def origin(self, target: str) -> str:
        """Where the timeline of `target` was written: 'file:line', or the preset's name."""
        return self._origins.get(target, f"preset '{self.name}'")

    @property
    def modulated(self) -> bool:
        return bool(self.timeline or self.react or self.schedule.file)

    @property
    def driven_targets(self) -> set[str]:
        """Every target its `timeline:`, `react:` or `schedule:` file drives."""
        imported = self.imported()
        return {*self.timeline, *(row.target for row in self.react),
                *(imported.curves if imported is not None else ())}

    def files(self, _seen: frozenset = frozenset()) -> list[str]:
        """Every file the preset reads besides the built-in presets: the YAML files it was
        loaded from, its weights, guide images (its own and its shots'), the preset files its
        shots extend (and what those read), its mask. What an output must never replace and a
        worker's --root must hold."""
        named = [*self._sources, self.model.weights, self.mask.file, self.schedule.file,
                 *(row.file for row in self.react),
                 *(t.guide for t in self.objective),
                 *(t.guide for shot in self.shots for t in shot.objective or [])]
        for shot in self.shots:
            if shot.extends and is_file_name(shot.extends) and shot.extends not in _seen:
                named += [shot.extends, *load(shot.extends).files(_seen | {shot.extends})]
        return list(dict.fromkeys(str(f) for f in named if f))

    @property
    def mixes_layers(self) -> bool:
        """Whether a zoom's keyframes or its music move `layer_mix` between two terms."""
        return any(k.layer_mix is not None for k in self.zoom.keyframes) or \
            "zoom.layer_mix" in self.driven_targets

    @field_validator("objective", mode="before")
    @classmethod
    def _terms(cls, value):
        return parse_terms(value)


def parse_terms(value) -> list:
    """An `objective:` as written: one term or a list, each a string or a mapping."""
    if isinstance(value, (str, dict)):
        value = [value]
    return [parse_term(v) if isinstance(v, str) else v for v in value or []]


def parse_term(text: str) -> dict:
    """'layer', 'layer:channel', 'class:NAME' or 'guide:IMAGE@layer' as an ObjectiveTerm dict."""
    kind, _, rest = text.partition(":")
    if kind == "class" and rest:
        return {"class": rest}
    if kind == "guide" and "@" in rest:
        image, _, layer = rest.rpartition("@")
        return {"guide": image, "layer": layer}
    if rest:
        if not rest.isdigit():
            raise ValueError(f"'{text}': a channel after ':' must be a number")
        return {"layer": kind, "channel": int(rest)}
    return {"layer": text}


def to_yaml(preset: Preset) -> str:
    """The preset fully resolved, as a YAML file that `load` reads back."""
    return yaml.safe_dump(preset.model_dump(mode="json", by_alias=True), sort_keys=False)


# ---------------------------------------------------------------- where presets live
def builtin_dir() -> Path:
    """The repo's presets/ in a checkout; the packaged copy (renderer.presets) in a wheel."""
    checkout = Path(__file__).resolve().parent.parent / "presets"
    return checkout if checkout.is_dir() else Path(str(resources.files("renderer.builtin")))


def user_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "dream" / "presets"


def available() -> dict[str, Path]:
    """Preset name -> file; the user's own presets shadow built-in ones of the same name."""
    found = {}
    for folder in (builtin_dir(), user_dir()):
        if folder.is_dir():
            found.update({p.stem: p for p in sorted(folder.glob("*.yaml"))})
    return found


def is_file_name(name_or_path: str) -> bool:
    """Whether a preset is named by its file (else by its name, built-in or the user's)."""
    return Path(name_or_path).suffix in (".yaml", ".yml") or os.sep in name_or_path


def locate(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if is_file_name(name_or_path):
        if not path.is_file():
            raise UserError(f"preset file '{name_or_path}' does not exist")
        return path
    presets = available()
    if name_or_path not in presets:
        raise UserError(f"unknown preset '{name_or_path}'{close_matches(name_or_path, presets)}; "
                        "'dream presets list' shows them")
    return presets[name_or_path]


# ---------------------------------------------------------------- loading with line numbers
def _key_lines(node, prefix=(), out=None) -> dict[tuple, int]:
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = prefix + (key.value,)
            out[path] = key.start_mark.line + 1
            _key_lines(value, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out[prefix + (i,)] = value.start_mark.line + 1
            _key_lines(value, prefix + (i,), out)
    return out


MAX_BYTES = 1 << 20  # a preset is a page of settings: a megabyte is far beyond any real one
MAX_VALUES = 100_000  # values after alias expansion (a "billion laughs" file has 10^9)
MAX_DEPTH = 64


def _expanded_size(node, depth: int = 0, sizes: dict | None = None) -> int:
    """How many values the node stands for once every alias is expanded (memoised: shared
    nodes are counted without being walked again)."""
    sizes = {} if sizes is None else sizes
    if depth > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    if id(node) in sizes:
        return sizes[id(node)]
    children = []
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    size = 1 + sum(_expanded_size(c, depth + 1, sizes) for c in children)
    if size > MAX_VALUES:
        raise ValueError(f"expands to more than {MAX_VALUES} values (aliases)")
    sizes[id(node)] = size
    return size


def _read_yaml(path: Path) -> tuple[dict, dict[tuple, int]]:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise UserError(f"preset file '{path}' is larger than {MAX_BYTES >> 20} MB: a preset "
                            "is a short YAML file of settings")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"preset file '{path}' cannot be read: {exc}") from None
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _expanded_size(node)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
        lines = _key_lines(node) if node is not None else {}
    except (ValueError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise UserError(f"preset file '{path}' is refused: {reason}; a preset is a short YAML "
                        "file of settings") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}{where}: invalid YAML: {problem}; fix the syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}:1: a preset must be a mapping of sections (like 'dream:'), "
                        f"not a {type(data).__name__}")
    return data, lines


def _merge(base: dict, top: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _set_override(data: dict, assignment: str) -> tuple:
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set '{assignment}' must look like section.key=value "
                        "(for example dream.octaves=5)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts = tuple(key.strip().split("."))
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {key}: '{part}' is not a section")
    node[parts[-1]] = value
    return parts


def _field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys at the mapping that holds `loc`'s last element."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        inner = getattr(annotation, "__args__", (annotation,))
        model = next((t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)), model)
    return [f.alias or name for name, f in model.model_fields.items()]


def _explain(error: dict, source: str, lines: dict, overridden: set) -> str:
    loc = tuple(error["loc"])
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    origin = "--set" if any(loc[:len(o)] == o for o in overridden) else None
    line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
    where = f"{source} ({origin} {dotted})" if origin else f"{source}:{line}" if line else source
    if error["type"] == "extra_forbidden":
        hint = close_matches(str(loc[-1]), _field_names(Preset, loc))
        return f"{where}: unknown key '{dotted}'{hint}"
    got = error.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
    return f"{where}: {dotted}: {error['msg']}{shown}"


def load(name_or_path: str, overrides: list[str] = (), _seen: tuple = ()) -> Preset:
    """Load, merge and validate a preset; every problem is a UserError naming file, line and key."""
    path = locate(name_or_path)
    if path.resolve() in _seen:
        raise UserError(f"{path}: 'extends' makes a cycle through '{path}'")
    data, lines = _read_yaml(path)
    for shot in data.get("shots") or []:  # a shot's preset file is read from this folder too
        if isinstance(shot, dict) and isinstance(shot.get("extends"), str):
            beside = path.parent / shot["extends"]
            if beside.suffix in (".yaml", ".yml") and beside.is_file():
                shot["extends"] = str(beside)
    mask = data.get("mask")  # a mask file is read from this folder too
    if isinstance(mask, dict) and isinstance(mask.get("file"), str) and \
            (path.parent / mask["file"]).exists() and not Path(mask["file"]).is_absolute():
        mask["file"] = str(path.parent / mask["file"])
    parent = data.get("extends")
    if parent:
        if not isinstance(parent, str):
            raise UserError(f"{path}: 'extends' must name a preset or a .yaml file")
        beside = path.parent / parent  # a relative file path is read from the preset's folder
        if beside.suffix in (".yaml", ".yml") and beside.is_file():
            parent = str(beside)
        inherited = load(parent, (), _seen + (path.resolve(),))
        origins = dict(inherited._origins)
        data = _merge(inherited.model_dump(by_alias=True, exclude={"name"}), data)
    else:
        origins = {}
    origins.update({key[1]: f"{path}:{line}" for key, line in lines.items()
                    if len(key) == 2 and key[0] == "timeline"})
    overridden = {_set_override(data, item) for item in overrides}
    origins.update({".".join(key[1:]): f"--set {'.'.join(key)}" for key in overridden
                    if len(key) >= 2 and key[0] == "timeline"})
    try:
        preset = Preset.model_validate(data)
    except ValidationError as exc:
        raise UserError(_explain(exc.errors()[0], str(path), lines, overridden)) from None
    if preset.name == "custom":
        preset.name = path.stem
    preset._origins = origins
    preset._sources = (*(inherited._sources if parent else ()),
                       *((str(path.resolve()),) if is_file_name(name_or_path) else ()))
    return preset


def defaults(overrides: list[str] = ()) -> Preset:
    """The built-in defaults (no preset named), with `overrides` (--set KEY=VALUE) applied."""
    return from_data({}, "the defaults", overrides)


def from_data(data: dict, source: str, overrides: list[str] = ()) -> Preset:
    """A preset made in code (a replayed live set), with `overrides` applied; an error names
    `source` and the key."""
    data = copy.deepcopy(data)
    overridden = {_set_override(data, item) for item in overrides}
    try:
        return Preset.model_validate(data)
    except ValidationError as exc:
        raise UserError(_explain(exc.errors()[0], source, {}, overridden)) from None
