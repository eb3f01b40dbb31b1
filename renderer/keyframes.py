"""Keyframed camera moves of a zoom, as plain numbers (no tensors: `dream audio` plots them
without loading torch).

Motion is keyframed in seconds (rates per second), so a preset gives the same motion at 24, 30
or 60 fps: a zoom of z per second is a scale of z ** (1 / fps) per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from renderer.curves import smoothstep
from renderer.presets import Keyframe


@dataclass(frozen=True)
class Motion:
    zoom: float  # scale per second
    rotate: float  # degrees per second
    pan: tuple[float, float]  # (x, y) fractions of the frame per second
    center: tuple[float, float]
    strength: float
    layer_mix: float | None
    steps: float | None


def _ease(x: float, easing: str) -> float:
    return x if easing == "linear" else smoothstep(x)


def motion_at(t: float, keyframes: list[Keyframe], easing: str = "smooth") -> Motion:
    """Keyframe values at time t (seconds); zoom is interpolated in log space."""
    if t <= keyframes[0].t or len(keyframes) == 1:
        a = b = keyframes[0]
        w = 0.0
    elif t >= keyframes[-1].t:
        a = b = keyframes[-1]
        w = 0.0
    else:
        i = max(j for j, k in enumerate(keyframes) if k.t <= t)
        a, b = keyframes[i], keyframes[i + 1]
        w = _ease((t - a.t) / (b.t - a.t), easing)

    def lerp(u, v):
        return u + (v - u) * w

    def optional(u, v):  # a value set on one side only holds on the other
        if u is None and v is None:
            return None
        return lerp(u if u is not None else v, v if v is not None else u)

    return Motion(math.exp(lerp(math.log(a.zoom), math.log(b.zoom))), lerp(a.rotate, b.rotate),
                  (lerp(a.pan[0], b.pan[0]), lerp(a.pan[1], b.pan[1])),
                  (lerp(a.center[0], b.center[0]), lerp(a.center[1], b.center[1])),
                  lerp(a.strength, b.strength), optional(a.layer_mix, b.layer_mix),
                  optional(a.steps, b.steps))


def frame_motion(frame: int, fps: float, keyframes, easing) -> tuple[Motion, float]:
    """The motion over the step into `frame` (rates taken at the step's midpoint) and dt."""
    dt = 1.0 / fps
    return motion_at((frame - 0.5) * dt, keyframes, easing), dt
