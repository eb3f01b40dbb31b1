#!/usr/bin/env python3
"""CPU renders: does a coherent dream call cost what an independent one does?

    python scripts/cpu_threads_bench.py [--clip samples/pan.mp4] [--end 2] [--size 320x180]

Renders the clip with the default `video` preset, once per flow mode at the same steps per
frame (`flow.steps` = `dream.steps` = 8), timing every `Dreamer.dream` call, and prints the
median call, the end-to-end rate and the thread budget used. Also the default preset as it is
(its own carried steps), the figure a user gets.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from renderer import load_preset  # noqa: E402
from renderer.media.decode import index_video  # noqa: E402
from renderer.engine.dream import dreamer_for  # noqa: E402
from renderer.media.images import parse_size  # noqa: E402
from renderer.render.video import render_video  # noqa: E402


def run(clip: Path, end: float, size, overrides: list[str]) -> tuple[float, float, int]:
    """(median dream call in s, end-to-end frames/s, frames)."""
    preset = load_preset("video", overrides)
    index = index_video(clip, 0.0, end)
    dreamer = dreamer_for(preset, "cpu")
    calls = []
    dream = dreamer.dream

    def timed(*args, **kwargs):
        t = time.perf_counter()
        out = dream(*args, **kwargs)
        calls.append(time.perf_counter() - t)
        return out

    dreamer.dream = timed
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        render_video(index, preset, dreamer, Path(folder) / "out.mp4", size)
        elapsed = time.perf_counter() - started
    return statistics.median(calls), index.count / elapsed, index.count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=str(Path(__file__).resolve().parent.parent /
                                              "samples" / "pan.mp4"))
    parser.add_argument("--end", type=float, default=2.0)
    parser.add_argument("--size", default="320x180")
    args = parser.parse_args()
    size = parse_size(args.size)
    try:
        from renderer.render.threads import describe

        print(f"thread budget: {describe()}")
    except ImportError:  # a checkout from before the budget, for comparison
        print("thread budget: none (every pool sized for the whole machine)")
    print("| mode | dream call, median | end to end |")
    print("|---|---|---|")
    for label, overrides in (
            ("independent, flow.steps=8", ["flow.mode=independent", "flow.steps=8"]),
            ("consistent, flow.steps=8", ["flow.mode=consistent", "flow.steps=8"]),
            ("default video preset", [])):
        call, fps, frames = run(Path(args.clip), args.end, size, overrides)
        print(f"| {label} | {call:.3f} s | {fps:.2f} fps ({frames} frames) |", flush=True)


if __name__ == "__main__":
    main()
