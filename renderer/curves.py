"""The easing curves every fade, ease and interpolation shares (pure functions of 0..1)."""

from __future__ import annotations


def smoothstep(x: float) -> float:
    """0 -> 1 with zero slope at both ends: fades and eases start and stop without a kink."""
    return x * x * (3 - 2 * x)


def crossfade_weight(k: int, length: int) -> float:
    """Weight of the incoming picture at frame k (0-based) of a `length`-frame cross-fade."""
    return smoothstep((k + 1) / (length + 1))
