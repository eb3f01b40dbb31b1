"""Start-up: how long a user waits for the first output frame, on a fresh machine or a warm one.

    python scripts/startup_bench.py CLIP [-p video] [--set K=V ...] [--cache-dir DIR]
                                    [--label NAME] [--out table.md]

Renders the whole clip the way `dream render` does (same defaults, same library call) and
times everything from the process start: imports, loading the network, the first dreamed
batch, the first encoded frame (what a user waits for) and the end of the render, audio muxed;
and says whether the render compiled its step (`dream.compile: auto` decides by its length).
`--cache-dir` points Inductor's cache somewhere (an empty folder: a fresh machine; the same
folder again: a warm one).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402  (the clock starts before the imports it measures)
import os  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402


class Clock:
    """A ProgressSink that notes when each stage first advanced."""

    def __init__(self):
        self.first: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def stage(self, name, total, done=0):
        pass

    def advance(self, name, n=1):
        self.first.setdefault(name, time.perf_counter() - STARTED)
        self.counts[name] = self.counts.get(name, 0) + n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip")
    parser.add_argument("-p", "--preset", default="video")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--device", default=None)
    parser.add_argument("--cache-dir", default=None, help="Inductor's cache folder")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", default=None, help="also append the table row here")
    args = parser.parse_args()
    if args.cache_dir:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(args.cache_dir).resolve())

    import torch

    from renderer.engine.dream import dreamer_for
    from renderer.media.decode import index_video
    from renderer.presets import load
    from renderer.render.video import render_video

    imported = time.perf_counter() - STARTED
    preset = load(args.preset, args.overrides)
    index = index_video(args.clip)
    dreamer = dreamer_for(preset, args.device)
    loaded = time.perf_counter() - STARTED
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        render_video(index, preset, dreamer, Path(tmp) / "out.mp4", (index.width, index.height),
                     progress=clock)
    if dreamer.device.type == "cuda":
        torch.cuda.synchronize()
    done = time.perf_counter() - STARTED
    frames = clock.counts.get("dreamed", 0)
    compiled = "yes" if dreamer.static_shapes else "no"
    card = torch.cuda.get_device_name(dreamer.device) if dreamer.device.type == "cuda" else "CPU"
    row = (f"| {args.label or args.preset} | {card} | {imported:.1f} | {loaded:.1f} | "
           f"{clock.first.get('dreamed', float('nan')):.1f} | "
           f"{clock.first.get('encoded', float('nan')):.1f} | {compiled} | {done:.1f} | "
           f"{frames} | {frames / done:.2f} |")
    header = ("| run | device | imports s | network loaded s | first batch dreamed s | "
              "first frame encoded s | compiled | render done s | frames dreamed | fps |\n"
              "|---|---|---|---|---|---|---|---|---|---|")
    print(header, row, sep="\n", flush=True)
    if args.out:
        out = Path(args.out)
        with out.open("a") as f:
            if not out.stat().st_size:
                f.write(header + "\n")
            f.write(row + "\n")


if __name__ == "__main__":
    main()
