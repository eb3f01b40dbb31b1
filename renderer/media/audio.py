"""Audio samples from any file ffmpeg reads (mp3, wav, flac, m4a, ogg, a video's soundtrack):
mono float32 at a fixed rate, decoded by the ffmpeg binary through a pipe."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import numpy as np

from renderer.errors import UserError
from renderer.media.probe import ffmpeg_exe, probe

log = logging.getLogger(__name__)

RATE = 22050  # librosa's default analysis rate: plenty for beats, onsets and bands
CUT_SHORT = 0.9  # decoded audio shorter than this share of the container's duration is damaged


def read_audio(path: str | Path, rate: int = RATE, exe: str | None = None) -> np.ndarray:
    """The whole audio track of `path`, mixed to mono, as float32 in [-1, 1]."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file '{path}' does not exist: check the path")
    info = probe(path, exe)
    if not info.has_audio:
        raise UserError(f"'{path}' has no audio stream: give a song or a video with sound")
    samples = _decode(path, rate, exe)
    if info.duration and samples.size < CUT_SHORT * info.duration * rate:
        log.warning(f"only {samples.size / rate:.1f} s of the {info.duration:.1f} s of audio in "
                    f"'{path.name}' could be decoded (a damaged file?): the rest is silent")
    return samples


def has_samples(path: str | Path, exe: str | None = None) -> bool:
    """Whether the first audio stream decodes to any sample (a stream can be empty)."""
    try:
        return _decode(Path(path), 8000, exe, seconds=2.0).size > 0
    except UserError:
        return False


def _decode(path: Path, rate: int, exe: str | None, seconds: float | None = None
            ) -> np.ndarray:
    """Mono float32 samples at `rate` (the first `seconds` only, if given)."""
    limit = ["-t", f"{seconds:g}"] if seconds else []
    result = subprocess.run([exe or ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
                             "-nostdin", "-i", str(path), *limit, "-map", "0:a:0", "-ac", "1",
                             "-ar", str(rate), "-f", "f32le", "-"], capture_output=True)
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(f"ffmpeg cannot decode the audio of '{path}': "
                        f"{lines[-1] if lines else f'exit {result.returncode}'}")
    samples = np.frombuffer(result.stdout, np.float32)
    if samples.size == 0:
        raise UserError(f"the audio of '{path}' is empty: give a song with sound")
    return np.nan_to_num(samples).copy()
