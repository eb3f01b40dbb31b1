#!/usr/bin/env python3
"""How much do a render's side stages slow the thread that launches a GPU's kernels? (issue 31)

    python scripts/gil_bench.py [--stages flow,decode,encode] [--size 1920x1080] [--workers 1]
                                [--rate 12] [--seconds 4] [--repeat 3] [-p video] [--set K=V]

On a GPU the dream loop's thread spends its time in torch's Python bindings, launching kernels:
each op lets the GIL go while it runs and takes it back on return. The "launcher" here does the
same with tiny CPU ops (a few microseconds each, as a kernel launch), and its rate is measured
alone, then beside each stage doing a render's work at `--rate` items a second (0: as fast as it
can), first on threads of this process, then in worker processes:

- flow: the preset's DIS flow (`motion.flowpool`) on pairs of generated frames of `--size`,
  `--workers` pairs at a time: `FlowThreads` against `FlowProcesses` (what a GPU render uses);
- decode: PyAV decoding an H.264 clip of `--size` into RGB frames (`media.decode.FrameReader`);
- encode: frames piped into x264 at the preset's settings (`media.encode.ChunkWriter`).

What the launcher loses beside a thread and not beside the same work in a process is the GIL;
what it loses beside both is the machine's cores. On a machine with few cores keep the work
below the cores: the launcher needs one of its own.
"""

from __future__ import annotations

import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchkit  # noqa: E402
from renderer import load_preset  # noqa: E402
from renderer.media.decode import FrameReader, index_video  # noqa: E402
from renderer.media.encode import ChunkWriter, ffmpeg_exe  # noqa: E402
from renderer.media.images import parse_size  # noqa: E402
from renderer.motion.flowpool import FlowProcesses, FlowThreads  # noqa: E402


def frames(size: tuple[int, int], count: int) -> list[np.ndarray]:
    """A textured picture panning 2 px right and 1 px down a frame."""
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


def paced(unit, rate: float, stop, done) -> None:
    """Call `unit()` (which does some items and returns how many) until `stop`, `rate` items a
    second (0: back to back), counting them in `done` (a multiprocessing Value); then
    `unit.close()`, where it has one."""
    start, items = time.perf_counter(), 0
    try:
        while not stop.is_set():
            items += unit()
            with done.get_lock():
                done.value = items
            if rate:
                stop.wait(max(0.0, start + items / rate - time.perf_counter()))
    finally:
        getattr(unit, "close", lambda: None)()


def decoding(clip: str, size: tuple[int, int]):
    """One decoded RGB frame a call, from the start again at the clip's end."""
    index = index_video(clip)
    state = {"reader": None}

    def unit() -> int:
        try:
            next(state["reader"])
        except (StopIteration, TypeError):  # the clip's end, or no reader yet
            unit.close()
            state["reader"] = FrameReader(index, 0, index.count, size, threads=1)
            next(state["reader"])
        return 1

    unit.close = lambda: state["reader"] is not None and state["reader"].close()
    return unit


def encoding(folder: str, size: tuple[int, int], settings):
    """One frame a call into x264, a new chunk every 240 frames."""
    picture = frames(size, 1)[0]
    state = {"writer": None, "count": 0}

    def unit() -> int:
        if state["count"] % 240 == 0:
            unit.close()
            state["writer"] = ChunkWriter(Path(folder) / f"chunk{state['count']}.mp4", size,
                                          Fraction(24), settings, threads=1)
        state["writer"].write(picture)
        state["count"] += 1
        return 1

    unit.close = lambda: state["writer"] is not None and state["writer"].close()
    return unit


def _in_process(stage: str, args: tuple, rate: float, stop, done) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    paced({"decode": decoding, "encode": encoding}[stage](*args), rate, stop, done)


def beside(start_work, seconds: float) -> tuple[float, float]:
    """The launch rate while `start_work(stop, done)` runs (it returns a join function), and
    the items it did a second."""
    context = multiprocessing.get_context("spawn")
    stop, done = context.Event(), context.Value("l", 0)
    join = start_work(stop, done)
    started = time.perf_counter()
    while done.value == 0 and time.perf_counter() - started < 60:  # a process imports first
        time.sleep(0.05)
    time.sleep(0.5)  # and warm
    before = done.value
    rate = launch_rate(seconds)
    items = (done.value - before) / seconds
    stop.set()
    join()
    return rate, items


def on_thread(unit, rate: float):
    def start(stop, done):
        worker = threading.Thread(target=paced, args=(unit, rate, stop, done), daemon=True)
        worker.start()
        return worker.join
    return start


def in_process(stage: str, args: tuple, rate: float):
    def start(stop, done):
        worker = multiprocessing.get_context("spawn").Process(
            target=_in_process, args=(stage, args, rate, stop, done), daemon=True)
        worker.start()
        return worker.join
    return start


def flow_pools(pool, clip: list[np.ndarray], workers: int, rate: float):
    batch = [(clip[k], clip[k + 1]) for k in range(workers)]
    pool.flows(batch)  # started and warm

    def unit() -> int:
        pool.flows(batch)
        return len(batch)
    return on_thread(unit, rate)


def make_clip(path: Path, size: tuple[int, int]) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={size[0]}x{size[1]}:rate=24", "-t", "10", "-c:v", "libx264",
                    "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)], check=True)


def main() -> None:
    p = benchkit.parser(__doc__, clip=False)
    p.add_argument("--stages", default="flow,decode,encode")
    p.add_argument("--workers", type=int, default=1, help="flow pairs at a time")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rate", type=float, default=12.0,
                   help="items a second, as a render asks for them (0: as fast as it can)")
    args = p.parse_args()
    preset = load_preset(args.preset, args.overrides)
    size = parse_size(args.size or "1920x1080")
    stages = args.stages.split(",")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    report = benchkit.Report("GIL bench", "cpu", args.out)
    flow = preset.flow
    report.emit(f"{size[0]}x{size[1]}, {args.rate:g} items/s asked, {args.seconds:g} s a run, "
                f"one OpenCV thread each; flow {flow.quality}, max_width {flow.max_width}, align "
                f"{flow.align}, {args.workers} pair(s) at a time; encode {preset.encode.codec} "
                f"{preset.encode.speed} crf {preset.encode.crf}", "",
                "| run | stage | launcher alone ops/s | beside a thread | beside a process | "
                "items/s thread / process |", "|---|---|---|---|---|---|")
    work = tempfile.TemporaryDirectory(prefix="gil-bench-")
    pools = []
    variants = {}
    if "flow" in stages:
        clip = frames(size, args.workers + 1)
        pools = [FlowThreads(flow, args.workers),
                 FlowProcesses(flow, size[::-1], args.workers, args.workers)]
        variants["flow"] = [flow_pools(pool, clip, args.workers, args.rate) for pool in pools]
    if "decode" in stages:
        clip_file = Path(work.name) / "clip.mp4"
        make_clip(clip_file, size)
        decode_args = (str(clip_file), size)
        variants["decode"] = [on_thread(decoding(*decode_args), args.rate),
                              in_process("decode", decode_args, args.rate)]
    if "encode" in stages:
        encode_args = (work.name, size, preset.encode)
        variants["encode"] = [on_thread(encoding(*encode_args), args.rate),
                              in_process("encode", encode_args, args.rate)]
    ratios = {(stage, kind): [] for stage in variants for kind in ("thread", "process")}
    try:
        for run in range(1, args.repeat + 1):
            for stage, (threaded, separate) in variants.items():
                alone = launch_rate(args.seconds)
                cells, rates = [], []
                for kind, start in (("thread", threaded), ("process", separate)):
                    rate, items = beside(start, args.seconds)
                    ratios[stage, kind].append(rate / alone)
                    cells.append(f"{rate:,.0f} ({rate / alone:.3f}x)")
                    rates.append(f"{items:.1f}")
                report.emit(f"| {run} | {stage} | {alone:,.0f} | {' | '.join(cells)} | "
                            f"{' / '.join(rates)} |")
    finally:
        for pool in pools:
            pool.close()
        work.cleanup()
    report.emit("", "median launcher rate beside each stage: " + "; ".join(
        f"{stage} on a {kind} {statistics.median(r):.3f}x" for (stage, kind), r in ratios.items()))


if __name__ == "__main__":
    main()
