"""Does the dream move with the music? A render and a zoom over a generated test song.

    python scripts/music_bench.py [--seconds 16] [--size 160x90] [--device cpu] [--song FILE ...]

The song (scripts/make_test_song.py) has drums on a known grid, a bass line and a chord pad, a
tempo change (120 -> 140 BPM) and a breakdown. Printed:
- the beat tracker against the known grid: tempo per section, beat error (median, worst, share
  within 30 ms);
- for `dream render -p music-pulse --audio SONG` with react on and off: the correlation between
  each frame's dream strength (mean |output - source|) and the song's percussive envelope at
  that frame, and the lag (frames) of the strength's peaks against the drum beats;
- for `dream zoom -p zoom-beat`: the same correlation for the zoom's per-frame step (the scale
  it zooms by), and its peaks' lag against the beats;
- for music-pulse over the generated song and each `--song` (real recordings: game soundtracks
  Debian packages, e.g. extremetuxracer-data, frozen-bubble-data, warzone2100-music): the
  correlation between each frame's strength and a spectral flux computed here, independently
  of the presets' features, at the best lag of -1..2 frames.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from make_test_song import make_song  # noqa: E402

from renderer.media.decode import FrameReader, index_video  # noqa: E402
from renderer.music.analysis import analyse_file  # noqa: E402


def dream(*args) -> None:
    result = subprocess.run([sys.executable, "-m", "renderer.cli", *map(str, args)], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"dream {' '.join(map(str, args[:2]))} failed: {result.stderr.strip()}")


def beat_table(analysis, grid: dict) -> list[str]:
    rows = []
    truth = np.array(grid["beats"])
    errors = np.array([np.min(np.abs(analysis.beats - b)) for b in truth])
    for k, section in enumerate(grid["sections"]):
        if not section["drums"]:
            continue
        end = grid["sections"][k + 1]["start"] if k + 1 < len(grid["sections"]) else 1e9
        mine = analysis.beats[(analysis.beats >= section["start"] - 0.05) &
                              (analysis.beats < end - 0.05)]
        tempo = 60 / np.median(np.diff(mine))
        rows.append(f"| tempo from {section['start']:.1f} s | {tempo:.2f} BPM (true "
                    f"{section['bpm']:.0f}, error {abs(tempo / section['bpm'] - 1) * 100:.2f}%) |")
    rows.append(f"| beat error vs grid | median {np.median(errors) * 1000:.1f} ms, worst "
                f"{errors.max() * 1000:.1f} ms, {np.mean(errors <= 0.03) * 100:.0f}% within "
                f"30 ms ({len(truth)} beats) |")
    return rows


def strength_per_frame(source: Path, output: Path, size) -> np.ndarray:
    out_index, src_index = index_video(output), index_video(source, 0, None)
    out = list(FrameReader(out_index, 0, out_index.count, size))
    src = list(FrameReader(src_index, 0, len(out), size))
    return np.array([np.abs(o.astype(np.float32) - s.astype(np.float32)).mean()
                     for o, s in zip(out, src)])


def spectral_flux(song: Path, times: np.ndarray, fps: float) -> np.ndarray:
    """An onset measure that shares no code with the presets' features: the rectified rise of
    the log magnitude spectrum (2048-sample frames, every 256 samples at 22.05 kHz) summed
    over its bins, the strongest within each video frame's interval."""
    from numpy.lib.stride_tricks import sliding_window_view

    from renderer.media.audio import RATE, read_audio

    samples = read_audio(song)
    size, hop = 2048, 256
    frames = sliding_window_view(np.pad(samples, size // 2), size)[::hop] * np.hanning(size)
    magnitude = np.log1p(100 * np.abs(np.fft.rfft(frames, axis=1)))
    flux = np.maximum(np.diff(magnitude, axis=0), 0).sum(axis=1)
    at = np.arange(1, len(magnitude)) * hop / RATE
    edges = np.searchsorted(at, np.append(times, times[-1] + 1 / fps))
    return np.array([flux[a:b].max() if b > a else 0.0 for a, b in zip(edges, edges[1:])])


def best_correlation(strength: np.ndarray, flux: np.ndarray) -> tuple[float, int]:
    """The correlation at the best lag of the strength behind the flux, -1..2 frames."""
    best = (-1.0, 0)
    for lag in range(-1, 3):
        a, b = (strength[lag:], flux[:len(flux) - lag]) if lag >= 0 else \
            (strength[:lag], flux[-lag:])
        best = max(best, (float(np.corrcoef(a, b)[0, 1]), lag))
    return best


def songs_table(songs: list[Path], start: float, clip: Path, size, args, cheap,
                preset: str = "music-pulse") -> None:
    """`preset` over the clip with each song from `start`: strength against the flux."""
    index = index_video(clip)
    times = start + np.asarray(index.pts) - index.pts[0]
    print(f"\n| song (from {start:g} s) | tempo | corr(strength, flux) | lag (frames) | mean "
          "strength |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for song in songs:
            out = Path(tmp) / f"{song.stem}.mp4"
            dream("render", clip, "-o", out, "-p", preset, "--audio", song,
                  "--audio-start", start, "--device", args.device, *cheap)
            strength = strength_per_frame(clip, out, size)
            flux = spectral_flux(song, times[:len(strength)], args.fps)
            corr, lag = best_correlation(strength, flux)
            print(f"| {song.name} | {analyse_file(song).tempo:.0f} BPM | {corr:.3f} | {lag:+d} | "
                  f"{strength.mean():.2f} |", flush=True)


def peak_lag(signal: np.ndarray, times: np.ndarray, beats: np.ndarray) -> float:
    """Median distance (frames) from each beat to the strongest value within half a beat."""
    fps = 1 / (times[1] - times[0])
    lags = []
    for beat in beats:
        lo, hi = np.searchsorted(times, [beat - 0.2, beat + 0.2])
        if hi - lo < 3:
            continue
        lags.append((times[lo + int(np.argmax(signal[lo:hi]))] - beat) * fps)
    return float(np.median(lags)) if lags else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=16.0,
                        help="length of the render (16 s: the first section, the breakdown and "
                             "the faster section)")
    parser.add_argument("--size", default="160x90")
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fast", action="store_true", help="fewer steps (a smoke test)")
    parser.add_argument("--song", type=Path, action="append", default=[],
                        help="also render music-pulse over a real song (repeat for several): "
                             "its strength against an independent spectral flux")
    parser.add_argument("--song-start", type=float, default=20.0,
                        help="where in each --song the render starts (seconds)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    cheap = ["--set", "dream.octaves=2", "--set", "dream.steps=4", "--set", "flow.steps=2"] \
        if args.fast else []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        song = tmp / "song.wav"
        grid = make_song(song)
        analysis = analyse_file(song)
        print("| beat tracker | |\n|---|---|")
        print("\n".join(beat_table(analysis, grid)))
        clip = tmp / "clip.mp4"
        subprocess.run([sys.executable, ROOT / "scripts/make_sample_clip.py", "--out", clip,
                        "--seconds", str(args.seconds), "--size", args.size, "--fps",
                        f"{args.fps:g}"], check=True, capture_output=True, cwd=ROOT)
        songs_table([song, *args.song], 0.0, clip, size, args, cheap)
        if args.song:
            songs_table(args.song, args.song_start, clip, size, args, cheap)
        index = index_video(clip)
        times = np.asarray(index.pts) - index.pts[0]
        drums = np.array(grid["beats"])
        drums = drums[drums < times[-1]]
        percussive = analysis.curve("percussive", times)
        print("\n| render (music-pulse) | corr(strength, percussive) | peak lag vs beats "
              "(frames) | mean strength |\n|---|---|---|---|")
        for label, extra in (("react on", []), ("react off", ["--set", "react=[]"])):
            out = tmp / f"{label.replace(' ', '_')}.mp4"
            dream("render", clip, "-o", out, "-p", "music-pulse", "--audio", song, "--device",
                  args.device, *cheap, *extra)
            strength = strength_per_frame(clip, out, size)
            n = min(len(strength), len(percussive))
            corr = float(np.corrcoef(strength[:n], percussive[:n])[0, 1])
            lag = peak_lag(strength[:n], times[:n], drums)
            print(f"| {label} | {corr:.3f} | {lag:+.1f} | {strength.mean():.2f} |")
        zoom = tmp / "zoom.mp4"
        dream("zoom", "-o", zoom, "-p", "zoom-beat", "--audio", song, "--seconds", args.seconds,
              "--fps", args.fps, "--size", args.size, "--device", args.device,
              *(["--set", "dream.octaves=1", "--set", "zoom.steps=1"] if args.fast else []))
        from renderer.music.schedule import Schedule
        from renderer.presets import load
        from renderer.music.schedule import keyframe_values

        preset = load("zoom-beat")
        frames = np.arange(int(args.seconds * args.fps))
        zoom_times = frames / args.fps
        step = Schedule(preset, analysis, args.fps).values(
            zoom_times, frames, keyframe_values(preset, frames, args.fps))["zoom.zoom"]
        corr = float(np.corrcoef(step, analysis.curve("percussive", zoom_times))[0, 1])
        lag = peak_lag(step, zoom_times, drums)
        print("\n| zoom (zoom-beat) | corr(zoom step, percussive) | peak lag vs beats (frames) |"
              f"\n|---|---|---|\n| react on | {corr:.3f} | {lag:+.1f} |")
        summary = {"seconds": args.seconds, "size": args.size, "fps": args.fps}
        print(f"\n{json.dumps(summary)}; bench took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
