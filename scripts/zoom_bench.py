"""Zoom feedback figures: colour stability over a long run, and the seam of a loop.

    python scripts/zoom_bench.py [--frames 2000] [--size 96x96] [--loop-seconds 4]

Colour: a zoom-classic run of --frames frames at low resolution; per frame the mean and the
spread (std over pixels) of each channel. Printed: the first and last 10% averaged, and the
extremes over the run. A drift to grey shows as a falling spread, a drift to saturated noise as
a rising one. Loop: zoom-loop rendered for --loop-seconds; the last-to-first difference over the
median consecutive-frame difference (target <= 1.5).
"""

import argparse
import time

import numpy as np

from renderer.engine.dream import pick_device
from renderer.media.images import parse_size, to_uint8
from renderer.motion.metrics import closing_dip
from renderer.motion.zoom import noise_image
from renderer.presets import load
from renderer.render.framestore import FrameStore
from renderer.render.zoom import ZoomRenderer, zoom_frames

FAST = ["dream.octaves=1", "dream.steps=4", "zoom.octaves=1", "zoom.steps=2"]


def make(preset_name, fps, device, overrides=()):
    return ZoomRenderer.of(load(preset_name, [*FAST, *overrides]), fps, 1, device)


def colour_run(frames, size, fps, device):
    renderer = make("zoom-classic", fps, device)
    stats = []
    started = time.perf_counter()
    for _, batch in renderer.frames(noise_image(size, [0]), frames):
        rgb = to_uint8(batch)[0].astype(np.float32) / 255
        stats.append(np.concatenate([rgb.mean((0, 1)), rgb.std((0, 1))]))
    return np.array(stats), time.perf_counter() - started


def loop_seam(seconds, size, fps, device):
    renderer = make("zoom-loop", fps, device)
    frames, store = [], FrameStore()
    zoom_frames(renderer, noise_image(size, [0]), round(seconds * fps),
                lambda i, b: frames.append(b[0].astype(np.float32)), store)
    store.close()
    clip = np.stack(frames)
    consecutive = np.abs(np.diff(clip, axis=0)).mean(axis=(1, 2, 3))
    wrap = float(np.abs(clip[-1] - clip[0]).mean())
    return wrap, float(np.median(consecutive)), float(consecutive.max()), \
        closing_dip(clip, renderer.blend)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--size", default="96x96")
    parser.add_argument("--fps", type=float, default=30)
    parser.add_argument("--loop-seconds", type=float, default=4)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    size, device = parse_size(args.size), pick_device(args.device)
    stats, seconds = colour_run(args.frames, size, args.fps, device)
    tenth = max(1, len(stats) // 10)
    first, last = stats[:tenth].mean(0), stats[-tenth:].mean(0)
    print(f"colour over {args.frames} frames at {size[0]}x{size[1]} ({seconds:.0f} s, "
          f"{args.frames / seconds:.1f} fps, {device}):")
    print("| | mean R | mean G | mean B | spread R | spread G | spread B |")
    print("|---|---|---|---|---|---|---|")
    for name, row in (("first 10%", first), ("last 10%", last), ("min", stats.min(0)),
                      ("max", stats.max(0))):
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    wrap, median, worst, (contrast, detail) = loop_seam(args.loop_seconds, size, args.fps,
                                                        device)
    print(f"loop seam: last->first {wrap:.2f}, median consecutive {median:.2f}, "
          f"max consecutive {worst:.2f}, ratio {wrap / median:.2f} (target <= 1.5)")
    print(f"loop closing stretch: contrast dip {contrast:.2f}, detail dip {detail:.2f} "
          "(lowest / the loop's median; target >= 0.9)")


if __name__ == "__main__":
    main()
