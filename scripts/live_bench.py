"""Live speed: frames per second and capture-to-display latency of `dream live`.

    python scripts/live_bench.py CLIP [--sizes 320x180,640x360] [--seconds 20] [-p live]
                                 [--device cpu|cuda] [--out table.md]

CLIP plays as the camera, at its own timestamps (a 30 fps clip is a 30 fps camera), through the
same capture, dream and JPEG path the page gets (coherence on: the dream is carried along the
flow). Latency is capture to JPEG ready to send, p50 and p95 over the run after a 3 s warm-up;
fps counts dreamed frames; dropped are camera frames the dream was too slow to take.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np
import torch

from renderer import presets
from renderer.engine.dream import pick_device
from renderer.live.session import Capture, LiveSession
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip")
    parser.add_argument("--sizes", default="320x180,640x360")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("-p", "--preset", default="live")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({os.cpu_count()} cores, {platform.machine()})"
    lines = [f"# live bench {datetime.date.today()} on {card}, torch {torch.__version__}",
             f"command: python {' '.join(sys.argv)}", "",
             "| size | fps | latency p50 ms | latency p95 ms | frames | camera frames dropped |",
             "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for text in args.sizes.split(","):
        r = run(args.clip, parse_size(text), args.preset, str(device), args.seconds)
        row = (f"| {text} | {r['fps']:.2f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['frames']} | "
               f"{r['dropped']} |")
        print(row, flush=True)
        lines.append(row)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
