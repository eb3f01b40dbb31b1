"""Write a test song with a known beat grid: drums, a bass line and a chord pad, a tempo change
and a breakdown (pad only). Used by the music tests and scripts/music_bench.py.

    python scripts/make_test_song.py --out song.wav [--bars 4,2,4] [--bpm 120,140]

Beside the song it writes SONG.grid.json: the time of every drum beat, every bar's downbeat and
the tempo of each section. Any container ffmpeg writes works (.wav, .mp3, .m4a, .flac).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

RATE = 44100


def _decay(seconds: float, tau: float) -> np.ndarray:
    return np.exp(-np.arange(int(seconds * RATE)) / (tau * RATE))


def _place(track: np.ndarray, sound: np.ndarray, at: float, gain: float = 1.0) -> None:
    i = int(round(at * RATE))
    n = min(len(sound), len(track) - i)
    if n > 0:
        track[i:i + n] += gain * sound[:n]


def make_song(out: Path, bars=(4, 2, 4), bpms=(120.0, 140.0), seed: int = 0) -> dict:
    """Section A (drums, bass, pad) at bpms[0], a breakdown (pad only) at bpms[0], section B
    at bpms[1]; 4/4. Returns the grid (also written beside the song)."""
    rng = np.random.default_rng(seed)
    plan = [(bars[0], bpms[0], True), (bars[1], bpms[0], False), (bars[2], bpms[1], True)]
    length = sum(b * 4 * 60.0 / bpm for b, bpm, _ in plan) + 1.0
    drums, bass, pad = (np.zeros(int(length * RATE)) for _ in range(3))
    t = np.arange(int(0.2 * RATE)) / RATE
    kick = np.sin(2 * np.pi * (50 * t + 90 * 0.03 * (1 - np.exp(-t / 0.03)))) * _decay(0.2, 0.05)
    snare = rng.standard_normal(int(0.15 * RATE)) * _decay(0.15, 0.04)
    snare = np.diff(snare, prepend=0.0)  # brighter
    hat = np.diff(rng.standard_normal(int(0.04 * RATE)), prepend=0.0) * _decay(0.04, 0.008)
    roots = [55.0, 43.65, 65.41, 49.0]  # A1 F1 C2 G1
    beats, downbeats, sections, now = [], [], [], 0.0
    for count, bpm, with_drums in plan:
        beat = 60.0 / bpm
        sections.append({"start": now, "bpm": bpm, "drums": with_drums})
        for bar in range(count):
            root = roots[bar % 4]
            chord = sum(np.sin(2 * np.pi * root * 4 * r * np.arange(int(4 * beat * RATE)) / RATE)
                        for r in (1.0, 1.26, 1.5))
            swell = np.minimum(1.0, np.arange(len(chord)) / (0.3 * RATE))
            _place(pad, chord * swell / 3, now, 0.12)
            for k in range(4):
                at = now + k * beat
                if with_drums:
                    beats.append(round(at, 6))
                    if k == 0:
                        downbeats.append(round(at, 6))
                    _place(drums, kick, at, 0.9)
                    if k in (1, 3):
                        _place(drums, snare, at, 0.35)
                    for half in (0.0, 0.5):
                        _place(drums, hat, at + half * beat, 0.12)
                    note = np.sin(2 * np.pi * root * np.arange(int(0.9 * beat * RATE)) / RATE)
                    _place(bass, note * _decay(0.9 * beat, 0.25 * beat), at, 0.3)
            now += 4 * beat
    song = np.clip(drums + bass + pad, -1, 1).astype(np.float32)
    ffmpeg = _ffmpeg()
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "f32le", "-ar",
                    str(RATE), "-ac", "1", "-i", "-", str(out)], input=song.tobytes(), check=True)
    grid = {"beats": beats, "downbeats": downbeats, "sections": sections, "duration": length}
    Path(f"{out}.grid.json").write_text(json.dumps(grid, indent=1))
    return grid


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--bars", default="4,2,4", help="bars of section A, breakdown, B")
    parser.add_argument("--bpm", default="120,140", help="tempo of A (and the breakdown), of B")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bars = tuple(int(v) for v in args.bars.split(","))
    bpms = tuple(float(v) for v in args.bpm.split(","))
    grid = make_song(args.out, bars, bpms, args.seed)
    print(f"wrote {args.out} ({grid['duration']:.1f} s, {len(grid['beats'])} drum beats)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
