"""Scene cuts of a clip, found by PySceneDetect's content detector (the change of hue,
saturation and luma between frames), read through PyAV so their times are the container's."""

from __future__ import annotations

from pathlib import Path


def scene_cuts(path: str | Path, start: float = 0.0, end: float | None = None) -> list[float]:
    """The times (seconds, the clip's own clock) where a new scene begins, in order."""
    from scenedetect import ContentDetector, detect

    scenes = detect(str(path), ContentDetector(), start_time=start or None, end_time=end,
                    backend="pyav")
    return [float(first.seconds) for first, _ in scenes[1:]]
