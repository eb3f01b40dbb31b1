"""Do the built-in zoom presets keep natural colour over a long zoom? Each one runs its
feedback chain from its default start (the noise `dream zoom` uses) and every frame is measured.

    python scripts/looks_bench.py [--frames 2000] [--size 128x72] [--presets zoom-loop ...]

Printed per preset: the share of pixels clipped to a pure channel (a channel at 0 or 255), mean
and worst frame, the worst over the last half; the mean HSV saturation (0-255); the
colourfulness (a pixel's mean distance from its grey, RGB 0..1: photos measure 0.11-0.31, a
rainbow poster 0.5); and seconds.
The target (issue 46): no zoom preset clips more than 5% of its pixels over 2,000 frames.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from renderer import presets  # noqa: E402
from renderer.media.images import parse_size, to_uint8  # noqa: E402
from renderer.motion.zoom import noise_image  # noqa: E402
from renderer.render.zoom import ZoomRenderer  # noqa: E402

ZOOMS = ["zoom-classic", "zoom-loop", "zoom-spiral", "zoom-beat"]


def clipped(rgb: np.ndarray) -> float:
    """The share of pixels with a channel at 0 or 255."""
    return float(((rgb == 0) | (rgb == 255)).any(axis=-1).mean())


def colourfulness(rgb: np.ndarray) -> float:
    """Mean distance of a pixel from its grey, RGB 0..1 (`motion.zoom.chroma`)."""
    rgb = rgb / 255.0
    return float(np.linalg.norm(rgb - rgb.mean(-1, keepdims=True), axis=-1).mean())


def saturation(rgb: np.ndarray) -> float:
    return float(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1].mean())


def measure(name: str, frames: int, size: tuple[int, int], overrides: list[str],
            keep: Path | None = None) -> dict:
    preset = presets.load(name, overrides)
    renderer = ZoomRenderer.of(preset, 30.0, device="cpu")
    init = noise_image(size, renderer.seeds)
    clips, sats, chromas = [], [], []
    started = time.perf_counter()
    for _, batch in renderer.frames(init, frames):
        rgb = to_uint8(batch)[0]
        clips.append(clipped(rgb))
        sats.append(saturation(rgb))
        chromas.append(colourfulness(rgb))
    if keep is not None:  # the last frame, to look at
        cv2.imwrite(str(keep / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    clips = np.array(clips)
    return {"preset": name, "clipped_mean": clips.mean(), "clipped_max": clips.max(),
            "clipped_late_max": clips[len(clips) // 2:].max(), "saturation": np.mean(sats),
            "chroma": np.mean(chromas), "chroma_max": np.max(chromas),
            "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--size", default="128x72")
    parser.add_argument("--presets", nargs="*", default=ZOOMS)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--keep", type=Path, default=None, help="write each last frame here")
    args = parser.parse_args()
    print("| preset | clipped px, mean | worst frame | worst, 2nd half | HSV saturation | "
          "colourfulness, mean / max | s |")
    print("|---|---|---|---|---|---|---|")
    for name in args.presets:
        r = measure(name, args.frames, parse_size(args.size), args.overrides, args.keep)
        print(f"| {r['preset']} | {100 * r['clipped_mean']:.2f}% | {100 * r['clipped_max']:.2f}% "
              f"| {100 * r['clipped_late_max']:.2f}% | {r['saturation']:.0f} | "
              f"{r['chroma']:.3f} / {r['chroma_max']:.3f} | "
              f"{r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
