"""Live speed: frames per second and capture-to-display latency of `dream live`.

    python scripts/live_bench.py CLIP [--sizes 320x180,640x360] [--seconds 20] [-p live]
                                 [--device cpu|cuda] [--out table.md]

CLIP plays as the camera, at its own timestamps (a 30 fps clip is a 30 fps camera), through the
same capture, dream and JPEG path the page gets (coherence on: the dream is carried along the
flow). Latency is capture to JPEG ready to send, p50 and p95 over the run after a 3 s warm-up;
fps counts dreamed frames; dropped are camera frames the dream was too slow to take.
"""

from __future__ import annotations

import time

import numpy as np

import benchkit
from renderer import presets
from renderer.engine.dream import pick_device
from renderer.live.capture import Capture
from renderer.live.session import LiveSession
from renderer.media.images import parse_size


def run(clip: str, size: tuple[int, int], preset: str, device, seconds: float) -> dict:
    session = LiveSession(Capture(clip, size), preset, sorted(presets.available()), device)
    try:
        time.sleep(3.0)  # network load, first frames
        first = session.state()
        start = time.monotonic()
        time.sleep(seconds)
        last = session.state()
        elapsed = time.monotonic() - start
        with session.lock:
            latencies = list(session.stats.latency_ms)[-(last["frames"] - first["frames"]):]
    finally:
        session.close()
    frames = last["frames"] - first["frames"]
    return {"fps": frames / elapsed, "p50": float(np.percentile(latencies, 50)),
            "p95": float(np.percentile(latencies, 95)),
            "dropped": last["dropped"] - first["dropped"], "frames": frames}


def main():
    parser = benchkit.parser(__doc__, preset="live", size=False)
    parser.add_argument("--sizes", default="320x180,640x360")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    device = pick_device(args.device)
    report = benchkit.Report("live bench", device, args.out)
    report.emit("| size | fps | latency p50 ms | latency p95 ms | frames | camera frames dropped |",
                "|---|---|---|---|---|---|")
    for text in args.sizes.split(","):
        r = run(args.clip, parse_size(text), args.preset, str(device), args.seconds)
        row = (f"| {text} | {r['fps']:.2f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['frames']} | "
               f"{r['dropped']} |")
        report.emit(row)


if __name__ == "__main__":
    main()
