"""The ffmpeg binary and what it says about a media file (no ffprobe needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .errors import UserError


def ffmpeg_exe(configured: str | None = None) -> str:
    """A configured system ffmpeg, else the static binary that imageio-ffmpeg ships."""
    if configured:
        found = shutil.which(configured) or (configured if Path(configured).is_file() else None)
        if not found:
            raise UserError(f"ffmpeg binary '{configured}' not found: fix 'encode.ffmpeg' "
                            "or leave it empty to use the bundled one")
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        system = shutil.which("ffmpeg")
        if system:
            return system
        raise UserError("no ffmpeg binary: run 'pip install imageio-ffmpeg' or install ffmpeg") \
            from None


@dataclass(frozen=True)
class MediaInfo:
    duration: float | None
    has_video: bool
    audio_codec: str | None  # None when there is no audio stream

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


def probe(path: str | Path, exe: str | None = None) -> MediaInfo:
    """Streams and duration, read from `ffmpeg -i` (the bundled ffmpeg has no ffprobe)."""
    result = subprocess.run([exe or ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                            capture_output=True, text=True, errors="replace")
    text = result.stderr
    duration = None
    if m := re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", text):
        h, mi, s = m.groups()
        duration = int(h) * 3600 + int(mi) * 60 + float(s)
    audio = re.search(r"Stream #\S+.*?: Audio: (\w+)", text)
    video_lines = re.findall(r"Stream #\S+.*?: Video: .*", text)
    has_video = any("attached pic" not in line for line in video_lines)  # cover art is no video
    return MediaInfo(duration, has_video, audio.group(1) if audio else None)


def as_rate(fps: float) -> Fraction:
    """A frame rate as an exact fraction: 23.976... -> 24000/1001, never int(fps)."""
    return Fraction(fps).limit_denominator(1001)
