"""The ffmpeg binary and what it says about a media file (no ffprobe needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from renderer.errors import UserError


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
    result = subprocess.run([exe or ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            errors="replace")  # a render in a shell's background must not stop
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


def describe_output(path: Path) -> str:
    """What a written file holds, read back from it: frames, size, rate, duration, audio."""
    import av

    if path.suffix.lower() == ".webp":  # FFmpeg cannot read animated WebP back: its chunks
        return _describe_webp(path.read_bytes())
    if path.is_dir():  # a sequence of frame files
        audio = " + FLAC audio" if (path / "audio.flac").exists() else ""
        exr = sorted(path.glob("frame_*.exr"))
        if exr:
            return f"{len(exr)} EXR frames, half-float RGBA, linear, premultiplied alpha{audio}"
        frames = sorted(path.glob("frame_*.png"))
        return f"{len(frames)} PNG frames{_png_format(frames[0]) if frames else ''}{audio}"
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        rate = video.guessed_rate or video.average_rate
        frames = sum(1 for p in container.demux(video) if p.size)
        audio = container.streams.audio[0].codec_context.name if container.streams.audio \
            else "no audio"
        seconds = (container.duration or 0) / av.time_base
        pixels = video.codec_context.pix_fmt or "?"
        alpha = " with alpha" if pixels.startswith(("yuva", "rgba", "bgra", "gbrap")) else ""
        if video.codec_context.name == "gif":  # decoded as BGRA whatever the palette holds
            pixels, alpha = "palette", ""
        return (f"{frames} frames, {video.codec_context.width}x{video.codec_context.height}, "
                f"{float(rate):.3f} fps, {seconds:.2f} s, {pixels}{alpha}, {audio}")


def _png_format(path: Path) -> str:
    """', 16-bit RGBA' and the like, from the PNG's header (bit depth and colour type)."""
    header = path.read_bytes()[:26]
    depth, kind = header[24], header[25]
    return f", {depth}-bit {({2: 'RGB', 6: 'RGBA', 0: 'grey', 4: 'grey + alpha'}).get(kind, 'RGB')}"


def _describe_webp(data: bytes) -> str:
    """Frames, canvas size and duration of an animated WebP, from its RIFF chunks."""
    frames, millis, size, at = 0, 0, (0, 0), 12
    while at + 8 <= len(data):
        kind, length = data[at:at + 4], int.from_bytes(data[at + 4:at + 8], "little")
        body = data[at + 8:at + 8 + length]
        if kind == b"VP8X" and len(body) >= 10:
            size = tuple(int.from_bytes(body[k:k + 3], "little") + 1 for k in (4, 7))
        elif kind == b"ANMF" and len(body) >= 15:
            frames += 1
            millis += int.from_bytes(body[12:15], "little")
        at += 8 + length + (length & 1)
    rate = frames / (millis / 1000) if millis else 0.0
    return f"{frames} frames, {size[0]}x{size[1]}, {rate:.3f} fps, {millis / 1000:.2f} s, no audio"
