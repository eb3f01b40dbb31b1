#!/usr/bin/env python3
"""How much does a render's flow slow the thread that launches a GPU's kernels? (issue 31)

    python scripts/gil_bench.py [--size 1920x1080] [--workers 1] [--seconds 4] [--repeat 3]
                                [--rate 12]
                                [-p video] [--set KEY=VALUE ...]

On a GPU the dream loop's thread spends its time in torch's Python bindings, launching kernels:
each op lets the GIL go while it runs and takes it back on return. The "launcher" here does the
same with tiny CPU ops (a few microseconds each, as a kernel launch), and its rate is measured
alone, then beside the preset's flow (`motion.flowpool`) estimating pairs of generated frames
of `--size` at `--rate` pairs a second (0: as fast as it can), on `--workers` threads, then on as many worker processes. A
launcher that keeps its rate beside the flow loses nothing to it; what it loses beside threads
and not beside processes is the GIL. On a machine with few cores, keep workers below the cores:
the launcher needs one of its own.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchkit  # noqa: E402
from renderer import load_preset  # noqa: E402
from renderer.media.images import parse_size  # noqa: E402
from renderer.motion.flowpool import FlowProcesses, FlowThreads  # noqa: E402


def frames(size: tuple[int, int], count: int = 6) -> list[np.ndarray]:
    """A textured picture panning 2 px right and 1 px down a frame, with a little noise."""
    w, h = size
    rng = np.random.default_rng(0)
    picture = cv2.GaussianBlur(rng.integers(0, 256, (h + 3 * count, w + 3 * count, 3),
                                            dtype=np.uint8), (0, 0), 3)
    return [np.ascontiguousarray(picture[k:k + h, 2 * k:2 * k + w]) for k in range(count)]


def launch_rate(seconds: float) -> float:
    """Tiny torch ops a second on this thread (each releases and retakes the GIL)."""
    x, ops, start = torch.zeros(4), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            x = x.add(1.0).mul(0.5)
        ops += 200
    return ops / (time.perf_counter() - start)


def beside(pool, clip: list[np.ndarray], workers: int, seconds: float, rate: float
           ) -> tuple[float, float]:
    """The launch rate while `pool` estimates batches of `workers` pairs, `rate` pairs a second
    (as a render asks for them; 0: back to back), and the pairs it estimated a second."""
    stop, pairs = threading.Event(), [0]
    batch = [(clip[k], clip[k + 1]) for k in range(workers)]
    pool.flows(batch)  # started and warm

    def keep_busy():
        start = time.perf_counter()
        while not stop.is_set():
            pool.flows(batch)
            pairs[0] += len(batch)
            if rate:
                stop.wait(max(0.0, start + pairs[0] / rate - time.perf_counter()))

    feeder = threading.Thread(target=keep_busy, name="flow-feed")
    feeder.start()
    time.sleep(0.2)
    done = pairs[0]
    rate = launch_rate(seconds)
    estimated = (pairs[0] - done) / seconds
    stop.set()
    feeder.join()
    return rate, estimated


def main() -> None:
    p = benchkit.parser(__doc__, clip=False)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rate", type=float, default=12.0,
                   help="flow pairs a second, as a render asks for them (0: as fast as it can)")
    args = p.parse_args()
    preset = load_preset(args.preset, args.overrides)
    size = parse_size(args.size or "1920x1080")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    clip = frames(size, args.workers + 1)
    report = benchkit.Report("GIL bench", "cpu", args.out)
    flow = preset.flow
    report.emit(f"{size[0]}x{size[1]}, flow {flow.quality}, max_width {flow.max_width}, align "
                f"{flow.align}; {args.workers} flow worker(s) asked for {args.rate:g} pairs/s, "
                f"{args.seconds:g} s a run, one OpenCV thread each", "",
                "| run | launcher alone ops/s | beside threads | beside processes | pairs/s "
                "threads / processes |", "|---|---|---|---|---|")
    pools = {"threads": FlowThreads(flow, args.workers),
             "processes": FlowProcesses(flow, size[::-1], args.workers, args.workers)}
    ratios = {name: [] for name in pools}
    try:
        for run in range(1, args.repeat + 1):
            alone = launch_rate(args.seconds)
            cells, rates = [], []
            for name, pool in pools.items():
                rate, pairs = beside(pool, clip, args.workers, args.seconds, args.rate)
                ratios[name].append(rate / alone)
                cells.append(f"{rate:,.0f} ({rate / alone:.3f}x)")
                rates.append(f"{pairs:.1f}")
            report.emit(f"| {run} | {alone:,.0f} | {' | '.join(cells)} | {' / '.join(rates)} |")
    finally:
        for pool in pools.values():
            pool.close()
    report.emit("", "median launcher rate beside the flow: " + ", ".join(
        f"{name} {statistics.median(r):.3f}x" for name, r in ratios.items()))


if __name__ == "__main__":
    main()
