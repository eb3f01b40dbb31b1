"""Audio samples from any file ffmpeg reads (mp3, wav, flac, m4a, ogg, a video's soundtrack):
mono float32 at a fixed rate, decoded by the ffmpeg binary through a pipe."""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from renderer.errors import UserError
from renderer.media.probe import ffmpeg_exe, probe

log = logging.getLogger(__name__)

RATE = 22050  # librosa's default analysis rate: plenty for beats, onsets and bands
CUT_SHORT = 0.9  # decoded audio shorter than this share of the container's duration is damaged


BLOCK = 1 << 20  # samples per block read from ffmpeg (4 MB)


def stream_audio(path: str | Path, rate: int = RATE, exe: str | None = None
                 ) -> Iterator[np.ndarray]:
    """The whole audio track of `path`, mixed to mono, as float32 blocks in [-1, 1], as ffmpeg
    decodes it: a song of hours never sits in memory whole. Warns at the end when much less
    decoded than the container says (a damaged file)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file '{path}' does not exist: check the path")
    info = probe(path, exe)
    if not info.has_audio:
        raise UserError(f"'{path}' has no audio stream: give a song or a video with sound")
    decoded = 0
    for block in _decode(path, rate, exe):
        decoded += block.size
        yield block
    if info.duration and decoded < CUT_SHORT * info.duration * rate:
        log.warning(f"only {decoded / rate:.1f} s of the {info.duration:.1f} s of audio in "
                    f"'{path.name}' could be decoded (a damaged file?): the rest is silent")


def read_audio(path: str | Path, rate: int = RATE, exe: str | None = None) -> np.ndarray:
    """The whole audio track of `path` in one array (see `stream_audio`)."""
    return np.concatenate(list(stream_audio(path, rate, exe)))


def waveform(path: str | Path, points: int = 10000, rate: int = RATE, exe: str | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, lowest, highest) of the samples in about `points` equal spans: what a waveform
    picture draws, read in one pass with flat memory."""
    duration = probe(path, exe).duration or 600.0
    span = max(1, int(np.ceil(duration * rate / points)))
    lows, highs, carry = [], [], np.zeros(0, np.float32)
    for block in stream_audio(path, rate, exe):
        block = np.concatenate([carry, block])
        whole = block.size // span * span
        lows.append(block[:whole].reshape(-1, span).min(axis=1))
        highs.append(block[:whole].reshape(-1, span).max(axis=1))
        carry = block[whole:]
    if carry.size:
        lows.append(carry.min(keepdims=True))
        highs.append(carry.max(keepdims=True))
    low, high = np.concatenate(lows), np.concatenate(highs)
    return np.arange(low.size) * span / rate, low, high


def has_samples(path: str | Path, exe: str | None = None) -> bool:
    """Whether the first audio stream decodes to any sample (a stream can be empty)."""
    try:
        return any(block.size for block in _decode(Path(path), 8000, exe, seconds=2.0))
    except UserError:
        return False


def _decode(path: Path, rate: int, exe: str | None, seconds: float | None = None
            ) -> Iterator[np.ndarray]:
    """Mono float32 samples at `rate` in blocks (the first `seconds` only, if given)."""
    limit = ["-t", f"{seconds:g}"] if seconds else []
    proc = subprocess.Popen([exe or ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
                             "-nostdin", "-i", str(path), *limit, "-map", "0:a:0", "-ac", "1",
                             "-ar", str(rate), "-f", "f32le", "-"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
    reader.start()
    total, rest = 0, b""
    try:
        while data := proc.stdout.read(BLOCK * 4):
            data, rest = rest + data, b""
            if len(data) % 4:
                data, rest = data[:len(data) // 4 * 4], data[len(data) // 4 * 4:]
            total += len(data) // 4
            yield np.nan_to_num(np.frombuffer(data, np.float32))
        proc.wait()
    finally:
        if proc.poll() is None:  # the reader stopped early
            proc.kill()
            proc.wait()
        reader.join()
    if proc.returncode != 0:
        lines = b"".join(errors).decode(errors="replace").strip().splitlines()
        raise UserError(f"ffmpeg cannot decode the audio of '{path}': "
                        f"{lines[-1] if lines else f'exit {proc.returncode}'}")
    if total == 0:
        raise UserError(f"the audio of '{path}' is empty: give a song with sound")
