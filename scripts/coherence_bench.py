"""Compare temporal-coherence modes on a clip: warping-error ratio, dream strength, seam ratio.

    python scripts/coherence_bench.py samples/pan.mp4 -p video [--batch 4] [--size 320x180]

For each mode (independent, blend, warp, consistent) the clip is dreamed in `--batch` segments
advanced in lockstep, then measured against the source as in shared/research/coherence.md:
ratio = E(output) / E(source) (1.0 = no flicker added), strength = mean |output - source|, and
seam = error at segment boundaries / median consecutive error.
"""

import argparse
import time

from renderer.decode import FrameReader, index_video
from renderer.dream import dreamer_for
from renderer.images import parse_size
from renderer.metrics import FrameCollector, measure, seam_ranges
from renderer.presets import load
from renderer.video import StageTimes, plan_segments, render_frames

MODES = ("independent", "blend", "warp", "consistent")


def run_mode(index, preset_name, mode, size, batch, overrides, device):
    preset = load(preset_name, [f"flow.mode={mode}", *overrides])
    dreamer = dreamer_for(preset, device)
    segments = plan_segments(index.count, batch, preset.video.warmup)
    writers = [FrameCollector() for _ in segments]
    started = time.perf_counter()
    render_frames(index, preset, dreamer, size, segments, writers, StageTimes())
    outputs = [f for w in writers for f in w.frames]
    return outputs, seam_ranges(segments), time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip")
    parser.add_argument("-p", "--preset", default="video")
    parser.add_argument("--batch", type=int, default=4, help="segments (seams = batch - 1)")
    parser.add_argument("--size", default=None, help="WxH (default: the clip's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    index = index_video(args.clip)
    if args.frames and args.frames < index.count:
        index.pts = index.pts[:args.frames]
    size = parse_size(args.size) if args.size else (index.width, index.height)
    sources = list(FrameReader(index, 0, index.count, size))
    segments = plan_segments(index.count, args.batch, load(args.preset, args.overrides).video.warmup)
    print(f"clip {args.clip}: {index.count} frames {size[0]}x{size[1]}, preset {args.preset}, "
          f"{len(segments)} segments (--batch {args.batch})")
    print("| mode | ratio E(out)/E(src) | strength | vs independent | seam ratio | s |")
    print("|---|---|---|---|---|---|")
    base = None
    for mode in args.modes.split(","):
        outputs, seams, seconds = run_mode(index, args.preset, mode, size, args.batch,
                                           args.overrides, args.device)
        c = measure(sources, outputs, seams)
        base = base or (c.strength if mode == "independent" else None)
        rel = f"{c.strength / base:.2f}x" if base else "-"
        print(f"| {mode} | {c.ratio:.3f} | {c.strength:.4f} | {rel} | {c.seam:.3f} | "
              f"{seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
