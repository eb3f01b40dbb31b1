#!/usr/bin/env python3
"""Peak memory and time of `dream audio` on a long WAV (issue 33: a 3-hour WAV took 11.1 GB).

    python scripts/long_audio_bench.py --minutes 180 [--out scripts/BENCHMARKS.md]

The WAV (44.1 kHz, 16-bit mono: a click every half second over a tone that changes every two
seconds) is made with the bundled ffmpeg; the analysis cache is left out (a fresh cache), and
the peak is the kernel's (RUSAGE_CHILDREN maxrss) for the whole command.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from renderer.media.probe import ffmpeg_exe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=180.0)
    parser.add_argument("--out", type=Path, help="append the result line to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="long-audio-") as work:
        song, plot = Path(work) / "long.wav", Path(work) / "plot.png"
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                        "aevalsrc='(0.1+0.9*lt(mod(t,0.5),0.04))*sin(2*PI*(110+880*lt(mod(t,2),1)"
                        f")*t)':s=44100:d={args.minutes * 60:g}", "-c:a", "pcm_s16le", str(song)],
                       check=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "renderer.cli", "audio", str(song), "-o",
                                 str(plot)], cwd=ROOT, capture_output=True, text=True,
                                env=dict(os.environ, XDG_CACHE_HOME=work))
        took = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if result.returncode != 0:
            sys.exit(f"dream audio failed: {result.stderr.strip()}")
        line = (f"| dream audio, {args.minutes:g} min WAV ({song.stat().st_size / 2**20:.0f} MB) "
                f"| {peak:.0f} MB peak | {took:.0f} s | {result.stdout.strip()} |")
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
