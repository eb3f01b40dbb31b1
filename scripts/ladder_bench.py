"""The speed ladder: each rung's frames/s end to end and its look, on one clip (issue 42).

    python scripts/ladder_bench.py CLIP [--size 320x180] [--seconds 6]
        [--rung draft --rung preview --rung video --rung final] [--set KEY=VALUE ...]
        [--repeat 3]

Per rung (a preset, or `NAME:KEY=VALUE,...` for a preset with overrides, e.g.
`video:flow.octaves=all` for today's default before the change): `dream render CLIP -p RUNG
--size S --end SECONDS` timed from launch to exit (start-up, decode, flow, dream and encode:
what a user waits for), frames/s = frames / wall seconds (with --repeat, the median of that
many runs, the rungs interleaved: a shared machine's speed drifts); then the look of the same
rung on the same frames, rendered in one segment as coherence_bench.py renders them: flicker
(warping error ratio against DIS medium flow, 1.0 = the source's own), strength (mean
|output - source|), hold, pop, and the flow-free stillness (mean, p95, max change a frame on
the source's still pixels). The first rung is the reference the others' speed-up and strength
are given against.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchkit
from coherence_bench import run_mode
from renderer.engine.dream import pick_device
from renderer.media.decode import FrameReader, index_video
from renderer.media.images import parse_size
from renderer.motion.metrics import measure, stillness

ROOT = Path(__file__).resolve().parent.parent


def rung_preset(rung: str) -> tuple[str, list[str]]:
    """'video:flow.octaves=all,flow.steps=3' -> ('video', ['flow.octaves=all', ...])."""
    name, _, rest = rung.partition(":")
    return name, [o for o in rest.split(",") if o]


def wall_fps(clip: str, rung: str, size: str, seconds: float, device: str, overrides,
             tmp: Path) -> float:
    name, own = rung_preset(rung)
    out = tmp / "out.mp4"
    sets = [a for o in [*own, *overrides] for a in ("--set", o)]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "renderer.cli", "render", clip, "-o", out,
                             "-p", name, "--size", size, "--end", str(seconds), "--device",
                             device, "--overwrite", *sets], cwd=ROOT, capture_output=True,
                            text=True)
    wall = time.perf_counter() - started
    if result.returncode:
        sys.exit(f"rung {rung} failed: {result.stderr.strip()}")
    return index_video(out).count / wall


def main() -> int:
    parser = benchkit.parser(__doc__, preset=None)
    parser.add_argument("--rung", action="append", default=None)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    rungs = args.rung or ["video:flow.octaves=all", "draft", "preview", "video", "final"]
    size_text = args.size or "320x180"
    size = parse_size(size_text)
    device = str(pick_device(args.device))
    report = benchkit.Report("ladder bench", device, args.out)
    index = index_video(args.clip, end=args.seconds)
    sources = list(FrameReader(index, 0, index.count, size))
    fps = float(index.rate)
    report.emit(f"clip {args.clip}: {index.count} frames at {size_text}, first "
                f"{args.seconds:g} s", "",
                "| rung | frames/s end to end | vs first | flicker | strength | vs first | "
                "hold | pop | still mean | still p95 | still max |",
                "|---|---|---|---|---|---|---|---|---|---|---|")
    first = None
    with tempfile.TemporaryDirectory() as tmp:
        runs = {rung: [] for rung in rungs}
        for _ in range(args.repeat):
            for rung in rungs:
                runs[rung].append(wall_fps(args.clip, rung, size_text, args.seconds, device,
                                           args.overrides, Path(tmp)))
        for rung in rungs:
            speed = statistics.median(runs[rung])
            name, own = rung_preset(rung)
            outputs, seams, _ = run_mode(index, name, "consistent", size, 1,
                                         [*own, *args.overrides], device)
            look = measure(sources, outputs, seams, "medium", fps=fps)
            still = stillness(sources, outputs)
            first = first or (speed, look.strength)
            report.emit(f"| {rung} | {speed:.2f} | {speed / first[0]:.2f}x | {look.ratio:.3f} "
                        f"| {look.strength:.4f} | {look.strength / first[1]:.2f}x | "
                        f"{look.hold:.2f} | {look.pop:.2f} | {still.mean:.2f} | "
                        f"{still.p95:.2f} | {still.max:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
