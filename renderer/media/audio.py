"""Audio samples from any file ffmpeg reads (mp3, wav, flac, m4a, ogg, a video's soundtrack):
mono float32 at a fixed rate, decoded by the ffmpeg binary through a pipe."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from renderer.errors import UserError
from renderer.media.probe import ffmpeg_exe, probe

RATE = 22050  # librosa's default analysis rate: plenty for beats, onsets and bands


def read_audio(path: str | Path, rate: int = RATE, exe: str | None = None) -> np.ndarray:
    """The whole audio track of `path`, mixed to mono, as float32 in [-1, 1]."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file '{path}' does not exist: check the path")
    if not probe(path, exe).has_audio:
        raise UserError(f"'{path}' has no audio stream: give a song or a video with sound")
    result = subprocess.run([exe or ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
                             "-nostdin", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar",
                             str(rate), "-f", "f32le", "-"], capture_output=True)
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(f"ffmpeg cannot decode the audio of '{path}': "
                        f"{lines[-1] if lines else f'exit {result.returncode}'}")
    samples = np.frombuffer(result.stdout, np.float32)
    if samples.size == 0:
        raise UserError(f"the audio of '{path}' is empty: give a song with sound")
    return np.nan_to_num(samples).copy()
