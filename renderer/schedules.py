"""Schedules made in other tools: Deforum keyframe strings, Deforum settings files, Parseq
manifests.

A Deforum keyframe string (`"0:(1.0), 30:(1.02+0.02*sin(1.25*3.14*t/30))"`) is read as
Deforum reads it (its own regular expression, then its in-betweens): a number key is
interpolated linearly to the next known value, an expression key is evaluated on every frame
until the next key, with `t` the frame, `max_f` the last frame and `s` the seed, and numexpr's
functions in radians. It is evaluated in its own namespace: in a preset expression `sin(2)` is
an oscillator of 2 seconds and `t` is in seconds, in Deforum `sin` takes radians and `t` counts
frames.

A settings file (Deforum's JSON of schedule strings) or a Parseq manifest (`rendered_frames`,
one evaluated object per frame) becomes per-frame curves of our targets (`Imported`): zoom,
angle, translation and the transform centre move a zoom's camera, strength sets how much of
the last frame is carried (`flow.persistence`) and how hard a zoom dreams anew
(`zoom.strength`), and the preset's `schedule.fields` maps any other numeric field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from renderer.errors import UserError, read_json
from renderer.expressions import Expression, ExpressionError, Grammar

NUMEXPR = {name: getattr(np, name) for name in (
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh",
    "arcsinh", "arccosh", "arctanh", "log", "log10", "log1p", "exp", "expm1", "sqrt", "abs",
    "floor", "ceil", "where")}
DEFORUM = Grammar(("t", "max_f", "s"), NUMEXPR, {}, units=False)

# Deforum's own pattern (animation_key_frames.parse_key_frames): the value is everything up to
# the first ')' that is followed by a comma or the end
_KEY = re.compile(r"((?P<frame>[0-9]+):[\s]*\((?P<param>[\S\s]*?)\)([,][\s]?|[\s]?$))")
_STARTS = re.compile(r"\s*\d+\s*:\s*\(")
_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def is_keyframe_string(value) -> bool:
    """Whether a preset value is written as Deforum keyframes (`0:(...)`)."""
    return isinstance(value, str) and _STARTS.match(value) is not None


class KeyframeString:
    """A checked Deforum keyframe string; `evaluate(names)` gives its value at the frames in
    `names["frame"]` (see the module's docstring)."""

    names: frozenset = frozenset()  # reads no music

    def __init__(self, text: str):
        self.text = text
        self.keys: dict[int, float | Expression] = {}
        at = 0
        for match in _KEY.finditer(text):
            if text[at:match.start()].strip():
                break
            value = match.group("param")
            try:
                self.keys[int(match.group("frame"))] = float(value) \
                    if _NUMBER.fullmatch(value) else Expression(value, DEFORUM)
            except ExpressionError as exc:
                raise ExpressionError(f"Deforum keyframes, frame {match.group('frame')}: "
                                      f"{exc}") from None
            at = match.end()
        if not self.keys or text[at:].strip():
            raise ExpressionError(
                f"Deforum keyframes '{_short(text)}' cannot be read from character {at + 1} "
                f"('{_short(text[at:].strip(), 20)}'): write frame:(value) pairs separated by "
                "commas, e.g. 0:(0.5), 24:(0.5+0.1*sin(t/4))")

    def series(self, count: int, last: int, seed: int) -> np.ndarray:
        """The value of frames 0 .. count - 1, as Deforum's in-betweens make them: number keys
        interpolated linearly (held before the first and after the last), expression keys
        evaluated on every frame up to the next key; `last` is `max_f`."""
        values = np.full(count, np.nan)
        frames = sorted(k for k in self.keys if k < count)
        for frame, end in zip(frames, [*frames[1:], count]):
            key = self.keys[frame]
            if isinstance(key, Expression):
                t = np.arange(frame, end, dtype=float)
                result = key.evaluate({"t": t, "max_f": float(last), "s": float(seed)})
                values[frame:end] = np.broadcast_to(np.asarray(result, float), t.shape)
            else:
                values[frame] = key
        known = np.flatnonzero(~np.isnan(values))
        if not len(known):
            return values
        return np.interp(np.arange(count), known, values[known])

    def evaluate(self, names: dict) -> np.ndarray:
        at = np.asarray(names["frame"], float)
        last = float(names.get("last_frame", at.max(initial=0.0)))
        count = int(max(at.max(initial=0.0), max(self.keys))) + 2
        values = self.series(count, int(last), int(names.get("seed", 0)))
        return np.interp(at, np.arange(count), values)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def value_expression(text: str) -> KeyframeString | Expression:
    """A preset's string value: Deforum keyframes, else one of our expressions."""
    return KeyframeString(text) if is_keyframe_string(text) else Expression(text)


# ---------------------------------------------------------------- settings files and manifests
@dataclass
class Imported:
    """Per-frame curves of our targets read from another tool's file, at that file's rate."""
    fps: float
    curves: dict[str, np.ndarray]  # target -> one value per frame of the file
    notes: list[str] = field(default_factory=list)

    def at(self, target: str, times: np.ndarray) -> np.ndarray:
        """The curve at song `times` (the file's frame 0 at 0 s; its last value holds)."""
        curve = self.curves[target]
        return np.interp(np.asarray(times, float) * self.fps, np.arange(len(curve)), curve)


DEFORUM_STRENGTH = 0.65  # Deforum's default strength: dreams as hard as our zoom.strength 1


def _targets(zoom, angle, tx, ty, cx, cy, strength, fps: float, size) -> dict[str, np.ndarray]:
    """Our targets from Deforum's per-frame 2D motion: a zoom factor and degrees (counter-
    clockwise, OpenCV's way) per frame, a translation in pixels of a `size` picture per frame
    (moving the picture, where our pan moves the camera), a centre in fractions, and the share
    of the last frame kept."""
    out = {}
    if zoom is not None:
        out["zoom.zoom"] = np.clip(zoom, 1e-6, None) ** fps
    if angle is not None:
        out["zoom.rotate"] = 0.0 - angle * fps
    if tx is not None:
        out["zoom.pan.x"] = 0.0 - tx * fps / size[0]
    if ty is not None:
        out["zoom.pan.y"] = 0.0 - ty * fps / size[1]
    if cx is not None:
        out["zoom.center.x"] = cx
    if cy is not None:
        out["zoom.center.y"] = cy
    if strength is not None:
        out["flow.persistence"] = np.clip(strength, 0.0, 1.0)
        out["zoom.strength"] = np.clip((1 - strength) / (1 - DEFORUM_STRENGTH), 0.0, 10.0)
    return out


def read_schedule_file(path: str | Path, fields: dict[str, str] | None = None,
                       size: tuple[int, int] = (512, 512)) -> Imported:
    """A Parseq manifest or a Deforum settings file as curves of our targets (see the
    module's docstring); `fields` maps other numeric fields to targets, `size` is the picture
    Parseq's translations are in pixels of (a settings file names its own W and H)."""
    path = Path(path)
    data = read_json(path, "schedule file", "give a Parseq manifest or a Deforum settings file")
    if isinstance(data, dict) and isinstance(data.get("rendered_frames"), list):
        return _parseq(path, data, fields or {}, size)
    if isinstance(data, dict) and any(is_keyframe_string(data.get(k)) for k in
                                      ("zoom", "angle", "translation_x", "strength_schedule")):
        return _deforum(path, data, fields or {})
    raise UserError(f"schedule file '{path}' is neither a Parseq manifest (no "
                    "'rendered_frames') nor a Deforum settings file (no 'zoom', 'angle', "
                    "'translation_x' or 'strength_schedule' keyframes)")


def _positive(path, name: str, value, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1e6:
        raise UserError(f"schedule file '{path}': '{name}' is {value!r}: it must be a number "
                        "above 0")
    return float(value)


PARSEQ_MOTION = ("zoom", "angle", "translation_x", "translation_y")
PARSEQ_FIELDS = (*PARSEQ_MOTION, "transform_center_x", "transform_center_y", "strength")


def _parseq(path: Path, data: dict, fields: dict[str, str], size) -> Imported:
    """Parseq's rendered frames, read as Deforum reads them: motion from the `_delta` fields
    (a zoom's delta is `1 + z[f] - z[f-1]`), the rest from the values; a missing frame repeats
    the last one."""
    options = data.get("options") if isinstance(data.get("options"), dict) else {}
    fps = _positive(path, "options.output_fps", options.get("output_fps"), 20.0)
    frames = data["rendered_frames"]
    numbers: dict[str, dict[int, float]] = {}
    for position, row in enumerate(frames):
        if not isinstance(row, dict) or not isinstance(row.get("frame"), int) \
                or isinstance(row.get("frame"), bool) or not 0 <= row["frame"] <= 10_000_000:
            raise UserError(f"schedule file '{path}': rendered_frames[{position}] has no "
                            "whole 'frame' number: export the manifest from Parseq again")
        for name, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if not np.isfinite(value):
                    raise UserError(f"schedule file '{path}': rendered_frames[{position}]."
                                    f"{name} is not a finite number")
                numbers.setdefault(name, {})[row["frame"]] = float(value)
    if not frames:
        raise UserError(f"schedule file '{path}' has no rendered frames: render it in Parseq "
                        "first")
    count = max(int(row["frame"]) for row in frames) + 1

    def curve(name: str) -> np.ndarray | None:
        known = numbers.get(name)
        if not known:
            return None
        at = np.array(sorted(known))
        values = np.array([known[k] for k in at])
        held = np.searchsorted(at, np.arange(count), side="right") - 1
        return values[np.clip(held, 0, None)]

    def motion(name: str) -> np.ndarray | None:
        return curve(f"{name}_delta") if f"{name}_delta" in numbers else curve(name)

    curves = _targets(motion("zoom"), motion("angle"), motion("translation_x"),
                      motion("translation_y"), curve("transform_center_x"),
                      curve("transform_center_y"), curve("strength"), fps, size)
    mapped = _mapped(path, fields, {name: curve(name) for name in numbers})
    curves.update(mapped)
    ignored = sorted({n for n in numbers if not n.endswith("_delta")} - {"frame"}
                     - set(PARSEQ_FIELDS) - set(fields))
    notes = [f"Parseq manifest '{path.name}': {count} frames at {fps:g} fps"]
    if ignored:
        notes.append(f"Parseq fields not used: {', '.join(ignored)} (map one with "
                     "schedule.fields: {FIELD: TARGET})")
    return Imported(fps, curves, notes)


DEFORUM_SCHEDULES = {"zoom": "zoom", "angle": "angle", "translation_x": "translation_x",
                     "translation_y": "translation_y", "transform_center_x": "transform_center_x",
                     "transform_center_y": "transform_center_y", "strength_schedule": "strength"}


def _deforum(path: Path, data: dict, fields: dict[str, str]) -> Imported:
    """A Deforum settings file's schedules over its `max_frames` at its `fps`, its 2D motion in
    pixels of its W x H."""
    fps = _positive(path, "fps", data.get("fps"), 15.0)
    count = int(_positive(path, "max_frames", data.get("max_frames"), 120.0))
    size = (_positive(path, "W", data.get("W"), 512.0), _positive(path, "H", data.get("H"), 512.0))
    seed = data.get("seed") if isinstance(data.get("seed"), int) and data["seed"] >= 0 else 0
    series = {}
    for name, text in data.items():
        if not is_keyframe_string(text):
            continue
        try:
            series[name] = KeyframeString(text).series(count, count - 1, seed)
        except ExpressionError as exc:
            raise UserError(f"schedule file '{path}': '{name}': {exc}") from None
    known = {ours: series.get(theirs) for theirs, ours in DEFORUM_SCHEDULES.items()}
    curves = _targets(known["zoom"], known["angle"], known["translation_x"],
                      known["translation_y"], known["transform_center_x"],
                      known["transform_center_y"], known["strength"], fps, size)
    curves.update(_mapped(path, fields, series))
    notes = [f"Deforum settings '{path.name}': {count} frames at {fps:g} fps"]
    mode = data.get("animation_mode")
    if mode not in (None, "2D", "None", "Video Input"):
        notes.append(f"Deforum's animation_mode is {mode}: only its 2D motion is used")
    ignored = sorted(set(series) - set(DEFORUM_SCHEDULES) - set(fields))
    if ignored:
        notes.append(f"Deforum schedules not used: {', '.join(ignored)} (map one with "
                     "schedule.fields: {NAME: TARGET})")
    return Imported(fps, curves, notes)


def _mapped(path: Path, fields: dict[str, str], found: dict) -> dict[str, np.ndarray]:
    """The fields a preset maps to targets, each one required."""
    out = {}
    for name, target in fields.items():
        if found.get(name) is None:
            known = ", ".join(sorted(n for n, v in found.items() if v is not None))
            raise UserError(f"schedule file '{path}' has no numeric field '{name}' for "
                            f"schedule.fields (it has: {known})")
        out[target] = found[name]
    return out
