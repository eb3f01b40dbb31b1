#!/usr/bin/env python3
"""Cost of the timestamp index (PyAV demux, no decoding) on a long 1080p clip.

    python scripts/index_bench.py [--minutes 10] [--keep /tmp/long.mp4]

Generates a low-bitrate 1080p H.264 clip with B-frames and AAC audio (once; --keep reuses it),
then times `index_video` and reports its peak memory, beside the old OpenCV scan (grab every
frame) for comparison.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from renderer.media.decode import index_video  # noqa: E402
from renderer.media.probe import ffmpeg_exe  # noqa: E402


def make_clip(path: Path, minutes: float) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc2=size=1920x1080:rate=30", "-f", "lavfi", "-i",
                    "sine=frequency=440", "-t", str(minutes * 60), "-c:v", "libx264",
                    "-preset", "ultrafast", "-b:v", "300k", "-bf", "3", "-c:a", "aac", str(path)],
                   check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--keep", default="/tmp/dream_index_bench.mp4")
    parser.add_argument("--opencv", action="store_true", help="also time the old OpenCV scan")
    args = parser.parse_args()
    clip = Path(args.keep)
    if not clip.exists():
        t = time.perf_counter()
        make_clip(clip, args.minutes)
        print(f"generated {clip} in {time.perf_counter() - t:.1f} s")
    tracemalloc.start()
    t = time.perf_counter()
    index = index_video(clip)
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"index_video: {index.count} frames, {seconds:.2f} s, peak Python memory "
          f"{peak / 2**20:.1f} MiB, max RSS {rss:.0f} MiB (the process, torch included)")
    if args.opencv:
        import cv2

        cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
        t = time.perf_counter()
        frames = 0
        while cap.grab():
            frames += 1
        print(f"OpenCV grab scan (the old index): {frames} frames, {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
