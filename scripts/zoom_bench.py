"""Zoom feedback figures: colour stability over a long run, and the seam of a loop.

    python scripts/zoom_bench.py [--frames 2000] [--size 96x96] [--loop-seconds 4]

Colour: a zoom-classic run of --frames frames at low resolution; per frame the mean and the
spread (std over pixels) of each channel. Printed: the first and last 10% averaged, and the
extremes over the run. A drift to grey shows as a falling spread, a drift to saturated noise as
a rising one. Loop: zoom-loop rendered for --loop-seconds with each `zoom.loop_close`; the
last-to-first difference over the median consecutive-frame difference (target <= 1.5), the
closing stretch's contrast and detail dips, and its most mixed frame: the share of its detail
patches that are a visible mix of the two pictures it is made from (`metrics.mixed_area`).
"""

import argparse
import time

import numpy as np

from renderer.engine.dream import pick_device
from renderer.media.images import contact_sheet, label, parse_size, save_image, to_uint8
from renderer.motion.metrics import closing_dip, mixed_area
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


class Recording(ZoomRenderer):
    """A zoom renderer that also keeps each closing frame's two pictures: the chain's
    continuation and the original frame it turns into."""

    def close(self, j, blend, continuation, original):
        self.pictures.append((continuation[0], original[0]))
        return super().close(j, blend, continuation, original)


def loop_seam(seconds, size, fps, device, close):
    renderer = make("zoom-loop", fps, device, [f"zoom.loop_close={close}"])
    renderer.__class__, renderer.pictures = Recording, []
    frames, store = [], FrameStore()
    zoom_frames(renderer, noise_image(size, [0]), round(seconds * fps),
                lambda i, b: frames.append(b[0].astype(np.float32)), store)
    store.close()
    clip = np.stack(frames)
    consecutive = np.abs(np.diff(clip, axis=0)).mean(axis=(1, 2, 3))
    wrap = float(np.abs(clip[-1] - clip[0]).mean())
    closing = clip[-renderer.blend:]
    continuation, original = (np.stack(p) for p in zip(*renderer.pictures))
    mixed = mixed_area(closing, continuation, original)
    return wrap, float(np.median(consecutive)), float(consecutive.max()), \
        closing_dip(clip, renderer.blend), float(mixed.max()), closing


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--size", default="96x96")
    parser.add_argument("--fps", type=float, default=30)
    parser.add_argument("--loop-seconds", type=float, default=4)
    parser.add_argument("--close", default="grow,fade",
                        help="zoom.loop_close values to measure, comma-separated")
    parser.add_argument("--strip", help="write the closing frames of each close here (an image)")
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
    print("\n| zoom-loop close | seam ratio (<= 1.5) | contrast dip | detail dip (>= 0.9) | "
          "largest step / median | most mixed area |")
    print("|---|---|---|---|---|---|")
    cells, closes = [], args.close.split(",")
    for close in closes:
        wrap, median, worst, (contrast, detail), mixed, closing = loop_seam(
            args.loop_seconds, size, args.fps, device, close)
        print(f"| {close} | {wrap / median:.2f} | {contrast:.2f} | {detail:.2f} | "
              f"{worst:.2f} / {median:.2f} | {mixed:.2f} |")
        for k in np.linspace(0, len(closing) - 1, 6).round().astype(int):
            cells.append(label(closing[k].astype(np.uint8), f"{close} {k + 1}/{len(closing)}"))
    if args.strip:
        save_image(contact_sheet(cells, len(cells) // len(closes)), args.strip)
        print(f"closing frames of each: {args.strip}")


if __name__ == "__main__":
    main()
