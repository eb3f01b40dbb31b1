"""Listen to a song: tempo and beats, bars, onsets, the percussive and harmonic parts, loudness,
band energies and sections, with librosa (the field's standard), cached per file.

Every envelope is resampled onto one control grid (`GRID_HZ` points a second) and normalised per
song between its 5th and 95th percentiles, so a quiet and a loud master drive a preset alike and
the values at a frame do not depend on the frame rate. Times are seconds from the file's start.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from renderer.errors import UserError
from renderer.media.audio import RATE, stream_audio
from renderer.media.probe import probe
from renderer.progress import SILENT, ProgressSink

GRID_HZ = 100  # control points per second: 10 ms, finer than any frame rate's step
HOP = 256  # analysis hop at RATE: 11.6 ms
FINE_HOP = 64  # 2.9 ms: where the beats are placed once tracked
BANDS = {"low": (20.0, 250.0), "mid": (250.0, 2000.0), "high": (2000.0, 11025.0)}
CURVES = ("onset", "percussive", "harmonic", "rms", "low", "mid", "high")
VERSION = 2  # of the cached analysis format
SILENCE = 1e-4  # peak RMS below this is silence: flat curves, no beats


@dataclass
class Analysis:
    duration: float
    tempo: float  # beats per minute (0: no beat found)
    beats: np.ndarray  # beat times
    downbeats: np.ndarray  # first beat of each bar (4/4 assumed)
    sections: np.ndarray  # section start times after the first (structural boundaries)
    curves: dict[str, np.ndarray] = field(default_factory=dict)  # name -> 0..1 on the grid

    @property
    def grid(self) -> np.ndarray:
        return np.arange(len(self.curves["onset"])) / GRID_HZ

    def curve(self, name: str, times) -> np.ndarray:
        """A normalised envelope at `times` (seconds; outside the song: 0)."""
        values = self.curves[name]
        return np.interp(np.asarray(times, float), self.grid, values, left=0.0, right=0.0)

    def to_json(self) -> dict:
        return {"duration": self.duration, "tempo": self.tempo, "beats": self.beats.tolist(),
                "downbeats": self.downbeats.tolist(), "sections": self.sections.tolist(),
                "grid_hz": GRID_HZ, "curves": {k: np.round(v, 5).tolist()
                                               for k, v in self.curves.items()}}


def _normalised(values: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(values, [5, 95])
    if hi - lo < 1e-9:
        return np.zeros_like(values)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def _on_grid(values: np.ndarray, hop_seconds: float, points: int) -> np.ndarray:
    times = np.arange(len(values)) * hop_seconds
    return np.interp(np.arange(points) / GRID_HZ, times, values)


def _refined_beats(beats: np.ndarray, onset: np.ndarray, hop: float) -> np.ndarray:
    """Each beat moved to the strongest onset within 50 ms of it, on a fine onset envelope
    (the tracker works on a coarse one, whose peaks lag the attacks by 15-25 ms)."""
    reach = max(1, int(round(0.05 / hop)))
    out = []
    for b in beats:
        i = int(round(b / hop))
        lo, hi = max(0, i - reach), min(len(onset), i + reach + 1)
        out.append((lo + int(np.argmax(onset[lo:hi]))) * hop if hi > lo else b)
    return np.array(out)


def _pulsing(beats: np.ndarray, onset: np.ndarray, hop: float) -> bool:
    """Whether the tracked beats are a beat: at least 4 of them, most on a real onset (the
    tracker places a grid on anything, a lone beep or noise included)."""
    if len(beats) < 4:
        return False
    at = onset[np.clip(np.round(beats / hop).astype(int), 0, len(onset) - 1)]
    return float(np.mean(at > 2 * np.median(onset) + 1e-9)) >= 0.5


def _local_tempo(beats: np.ndarray) -> float:
    if len(beats) < 3:
        return 0.0
    return float(60.0 / np.median(np.diff(beats)))


def analyse(samples: np.ndarray, rate: int = RATE, bands: dict = BANDS) -> Analysis:
    """The analysis of mono samples (see the module's docstring)."""
    return analyse_blocks(np.array_split(samples, max(1, len(samples) // WINDOW)), rate, bands)


def analyse_blocks(blocks: Iterable[np.ndarray], rate: int = RATE, bands: dict = BANDS
                   ) -> Analysis:
    """The analysis of mono samples that arrive in blocks of any size (a song of hours is
    analysed a minute at a time: memory stays flat)."""
    with warnings.catch_warnings():  # librosa's notes on near-silent stretches are not ours
        warnings.simplefilter("ignore")
        return _analyse(blocks, rate, bands)


WINDOW = 646 * 1024  # samples analysed at a time (30 s), a whole number of every hop
MARGIN = 16 * 1024  # context either side of a window: the STFTs' and HPSS's reach
MFCC_HOP = HOP * 4
MAX_SECTION_FRAMES = 16384  # MFCC frames the section clustering sees (longer songs: pooled)


def _windows(blocks: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, int, bool]]:
    """(samples, lead, last): `WINDOW` new samples (fewer in the last) starting `lead` samples
    in, with up to `MARGIN` of the song either side, so features computed on them equal those
    of the whole song."""
    buffer, lead = np.zeros(0, np.float32), 0
    for block in blocks:
        buffer = np.concatenate([buffer, np.asarray(block, np.float32)])
        while len(buffer) >= lead + WINDOW + MARGIN:
            yield buffer[:lead + WINDOW + MARGIN], lead, False
            buffer, lead = buffer[lead + WINDOW - MARGIN:], MARGIN
    yield buffer, lead, True


class _Features:
    """Per-frame features of a song, gathered window by window: each window's frames are
    those of its new samples (frame j is centred on sample j * hop)."""

    def __init__(self, rate: int, bands: dict):
        self.rate, self.bands, self.samples = rate, bands, 0
        self.parts: dict[str, list[np.ndarray]] = {}

    def add(self, window: np.ndarray, lead: int, last: bool) -> None:
        import librosa

        rate, hop = self.rate, HOP

        def keep(name: str, values: np.ndarray, step: int = hop) -> None:
            stop = None if last else (lead + WINDOW) // step
            self.parts.setdefault(name, []).append(values[..., lead // step:stop])

        self.samples += len(window) - lead - (0 if last else MARGIN)
        keep("rms", librosa.feature.rms(y=window, hop_length=hop)[0])
        keep("onset", librosa.onset.onset_strength(y=window, sr=rate, hop_length=hop))
        keep("fine", librosa.onset.onset_strength(y=window, sr=rate, hop_length=FINE_HOP,
                                                  n_fft=512), FINE_HOP)
        harmonic, percussive = librosa.effects.hpss(window)
        keep("percussive", librosa.feature.rms(y=percussive, hop_length=hop)[0])
        keep("harmonic", librosa.feature.rms(y=harmonic, hop_length=hop)[0])
        keep("chroma", librosa.feature.chroma_stft(y=harmonic, sr=rate, hop_length=hop))
        power = np.abs(librosa.stft(window, hop_length=hop)) ** 2
        freqs = librosa.fft_frequencies(sr=rate)
        for name, (lo, hi) in self.bands.items():
            keep(name, np.sqrt(power[(freqs >= lo) & (freqs < hi)].sum(axis=0)))
        keep("mfcc", librosa.feature.mfcc(y=window, sr=rate, hop_length=MFCC_HOP), MFCC_HOP)

    def __getitem__(self, name: str) -> np.ndarray:
        return np.concatenate(self.parts[name], axis=-1)


def _analyse(blocks: Iterable[np.ndarray], rate: int, bands: dict) -> Analysis:
    import librosa

    features = _Features(rate, bands)
    for window, lead, last in _windows(blocks):
        features.add(window, lead, last)
    duration = features.samples / rate
    hop = HOP / rate
    points = int(np.ceil(duration * GRID_HZ)) + 1
    rms = features["rms"]
    if rms.max() < SILENCE:  # silence: flat curves, no beat (react stays flat, never NaN)
        flat = {name: np.zeros(points) for name in CURVES}
        return Analysis(duration, 0.0, np.array([]), np.array([]), np.array([]), flat)
    onset = features["onset"]
    _, frames = librosa.beat.beat_track(onset_envelope=onset, sr=rate, hop_length=HOP,
                                        trim=False, bpm=_tempo(onset, rate))
    tracked = librosa.frames_to_time(frames, sr=rate, hop_length=HOP)
    # whether they are a beat is asked of the envelope they were tracked on: the refined times
    # sit 15-25 ms before its peaks, and every real song (5 of 5) was refused from there
    beats = _refined_beats(tracked, features["fine"], FINE_HOP / rate) \
        if _pulsing(tracked, onset, hop) else np.array([])
    raw = {name: features[name] for name in ("onset", "rms", "percussive", "harmonic",
                                             *bands)}
    curves = {name: _normalised(_on_grid(values, hop, points)) for name, values in raw.items()}
    downbeats = _downbeats(beats, features["chroma"], hop)  # the harmonic part: no drums
    return Analysis(duration, _local_tempo(beats), beats, downbeats,
                    _sections(features["mfcc"], rate, duration), curves)


def _tempo(onset: np.ndarray, rate: int) -> float:
    """The song's tempo: librosa's estimate from the mean tempogram, with the tempogram made a
    stretch of the onset envelope at a time (whole, it is 689 values a frame: GBs for an
    hour)."""
    import librosa

    reach = librosa.time_to_frames(8.0, sr=rate, hop_length=HOP).item()  # as tempo() does
    size, margin, total = 4096, reach // 2 + 1, None
    for start in range(0, len(onset), size):
        lo, hi = max(0, start - margin), min(len(onset), start + size + margin)
        gram = librosa.feature.tempogram(onset_envelope=onset[lo:hi], sr=rate, hop_length=HOP,
                                         win_length=reach)
        part = gram[:, start - lo:start - lo + min(size, len(onset) - start)].sum(axis=1)
        total = part if total is None else total + part
    mean = (total / len(onset))[:, None]
    return float(librosa.feature.tempo(tg=mean, sr=rate, hop_length=HOP)[0])


def _downbeats(beats: np.ndarray, chroma: np.ndarray, hop: float) -> np.ndarray:
    """Every fourth beat (4/4), at the phase where the harmony changes most: chords change on
    the bar line far more often than inside a bar."""
    if len(beats) < 8:
        return beats[:1]
    frames = np.clip(np.round(beats / hop).astype(int), 0, chroma.shape[1] - 1)
    per_beat = np.stack([chroma[:, a:max(a + 1, b)].mean(axis=1)
                         for a, b in zip(frames, np.append(frames[1:], chroma.shape[1]))])
    unit = per_beat / (np.linalg.norm(per_beat, axis=1, keepdims=True) + 1e-9)
    change = np.concatenate([[0.0], 1 - (unit[1:] * unit[:-1]).sum(axis=1)])
    strength = [change[k::4].mean() for k in range(4)]
    return beats[int(np.argmax(strength))::4]


def _sections(mfcc: np.ndarray, rate: int, duration: float) -> np.ndarray:
    """Structural boundaries (agglomerative clustering of MFCC frames), one per ~15 s; a long
    song's frames are averaged in runs first, so the clustering stays small."""
    import librosa

    count = int(np.clip(round(duration / 15), 1, 12))
    if count < 2:
        return np.array([])
    pool = int(np.ceil(mfcc.shape[1] / MAX_SECTION_FRAMES))
    if pool > 1:
        whole = mfcc.shape[1] // pool * pool
        mfcc = mfcc[:, :whole].reshape(mfcc.shape[0], -1, pool).mean(axis=2)
    bounds = librosa.segment.agglomerative(mfcc, count)
    return librosa.frames_to_time(bounds, sr=rate, hop_length=MFCC_HOP * pool)[1:]


def _heard(blocks: Iterator[np.ndarray], duration: float | None, progress: ProgressSink
           ) -> Iterator[np.ndarray]:
    """The blocks, with the seconds read so far told to `progress`."""
    progress.stage("listening", round(duration) if duration else None)
    heard, told = 0, 0
    for block in blocks:
        heard += block.size
        progress.advance("listening", heard // RATE - told)
        told = heard // RATE
        yield block
    progress.stage("beats", None)


# ---------------------------------------------------------------- the cache
def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dream" / "audio"


def file_key(path: Path, bands: dict) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
    sha.update(json.dumps([VERSION, RATE, HOP, GRID_HZ, bands], sort_keys=True).encode())
    return sha.hexdigest()


def analyse_file(path: str | Path, bands: dict = BANDS, exe: str | None = None,
                 progress: ProgressSink = SILENT) -> Analysis:
    """The analysis of a file's audio, from the cache when this file was analysed before.
    `progress` hears the seconds of the song listened to (`listening`), then `beats` (the
    tempo, beats and sections of the whole song: no count)."""
    from renderer.outputs import atomic_path

    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file '{path}' does not exist: check the path")
    cached = cache_dir() / f"{file_key(path, bands)}.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as data:
                return Analysis(float(data["duration"]), float(data["tempo"]), data["beats"],
                                data["downbeats"], data["sections"],
                                {name: data[f"curve_{name}"] for name in CURVES})
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is analysed again and replaced
    analysis = analyse_blocks(_heard(stream_audio(path, exe=exe), probe(path, exe).duration,
                                     progress), bands=bands)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached, fence=False) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, duration=analysis.duration, tempo=analysis.tempo,
                         beats=analysis.beats, downbeats=analysis.downbeats,
                         sections=analysis.sections,
                         **{f"curve_{k}": v for k, v in analysis.curves.items()})
    except OSError:
        pass  # no cache (a read-only home): the next run analyses again
    return analysis
