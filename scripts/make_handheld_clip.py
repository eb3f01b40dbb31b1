"""Turn a photo into hand-held-like footage: what users film, made reproducibly.

    python scripts/make_handheld_clip.py --out handheld.mp4 [--seconds 4] [--size 320x180]
                                         [--fps 30] [--photo astronaut] [--seed 0]
                                         [--shake 1] [--noise 2] [--flicker 1] [--crf 26]
                                         [--walkers N] [--wall]

The camera shakes (rotation, scale and translation with 5-15 Hz jitter over a slow drift), a
foreground object (a textured disc cut from another photo) crosses the frame and occludes the
background, each frame is motion-blurred along the camera path (4 sub-frame exposures), the
exposure flickers, sensor noise is added, and the clip is compressed with x264 as a phone would
(crf 26). Photos are scikit-image's public-domain / CC0 samples. The clip's ground-truth
motion is written beside it (CLIP.motion.json, see renderer.motion.truth).

`--photo rocket --shake 0.25 --size 640x480 --fps 26.78`, benched at 160x120, flickers like the
real hand-held clip of issue 20 (independent 18.0, consistent 2.27): a steady hand in front of
a flat background, where the source itself barely changes and any dream flicker shows.

`--shake 0 --noise 3 --flicker 0 --crf 12` is a tripod in front of a still wall with a phone's
noise (the source changes 0.6-0.7 levels a frame on its still pixels), the object a hand
crossing it; `--walkers 4` makes it a fixed street camera with people walking (issue 28).
`--wall --noise 3 --flicker 0 --crf 18` is a webcam before a plain wall with a subject that
swings (issue 40).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from renderer.motion.truth import write_motion

SUBFRAMES = 4  # exposures averaged per frame: the motion blur of a 1/fps shutter


def camera(t: float, rng_phases: np.ndarray, amount: float = 1.0
           ) -> tuple[float, float, float, float]:
    """(dx, dy, degrees, scale) of the camera at time t: a slow drift plus 5-15 Hz shake,
    `amount` times the default (0: a tripod)."""
    shake = [np.sin(2 * np.pi * f * t + p) for f, p in zip((5.3, 8.9, 13.7), rng_phases)]
    dx = 14 * np.sin(0.4 * t) + 2.5 * shake[0] + 1.2 * shake[2]
    dy = 8 * np.sin(0.3 * t + 1.0) + 2.0 * shake[1] + 0.8 * shake[0]
    degrees = 1.5 * np.sin(0.5 * t) + 0.4 * shake[2]
    scale = 0.03 * np.sin(0.25 * t) + 0.004 * shake[1]
    return amount * dx, amount * dy, amount * degrees, 1.0 + amount * scale


class Shot:
    """Where the camera and the object are at time t: the photo -> frame affine of the view,
    and the object's centre in the frame."""

    def __init__(self, photo_shape, size: tuple[int, int], fps: float, count: int, seed: int,
                 shake: float, walkers: int = 0, swing: bool = False):
        self.phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)
        self.ph, self.pw = photo_shape[:2]
        self.size, self.fps, self.count, self.shake = size, fps, count, shake
        w, h = size
        self.base = min(self.pw / (w * 1.3), self.ph / (h * 1.3))  # room to shake, no edge
        self.walkers, self.swing = walkers, swing
        self.radius = h // 10 if walkers else h // 3 if swing else h // 4
        # each walker's lane (height), pace (frame widths a second, signed) and start
        lanes = np.random.default_rng(seed + 1)
        self.lanes = [(lanes.uniform(0.35, 0.85), lanes.uniform(0.12, 0.3) * lanes.choice([-1, 1]),
                       lanes.uniform(0, 1)) for _ in range(walkers)]

    @property
    def objects(self) -> int:
        return self.walkers or 1

    def view(self, t: float) -> np.ndarray:
        (w, h), pw, ph, base = self.size, self.pw, self.ph, self.base
        dx, dy, degrees, scale = camera(t, self.phases, self.shake)
        m = cv2.getRotationMatrix2D((pw / 2 + dx * base, ph / 2 + dy * base), degrees,
                                    1 / (base * scale))
        m[:, 2] += (w / 2 - pw / 2 - dx * base, h / 2 - ph / 2 - dy * base)
        return m

    def centre(self, t: float, k: int = 0) -> tuple[int, int]:
        """Object `k` crosses the frame on its own path (it occludes, then reveals): the one
        object once over the clip; walkers back and forth in their lanes, a little bob."""
        (w, h), radius = self.size, self.radius
        if self.swing:  # held near the middle: drifts for 40% of the clip, then swings
            slow = 0.4 * self.count / self.fps
            drift = w * 0.02 * np.sin(1.5 * min(t, slow))
            # from 2 up to 5 px a frame at 160 px wide (peak speed of the swing)
            amp = w / 160 * (2 + 3 * min(1.0, max(0.0, t - slow) / max(1e-6, slow))) \
                * self.fps / (2 * np.pi * 1.2)
            swing = amp * np.sin(2 * np.pi * 1.2 * max(0.0, t - slow))
            return (int(round(w * 0.45 + drift + swing)),
                    int(round(h * 0.55 + 0.3 * swing * np.sin(2 * np.pi * 0.6 * t))))
        if not self.walkers:
            return (int(-radius + (w + 2 * radius) * (t * self.fps / max(1, self.count - 1))),
                    int(h * 0.55 + h * 0.15 * np.sin(2.0 * t)))
        lane, pace, start = self.lanes[k]
        span = w + 2 * radius
        x = (start + pace * t * w / span) % 1.0 * span - radius
        return int(x), int(h * lane + 0.02 * h * np.sin(2 * np.pi * 1.8 * t + k))

    def times(self, k: int) -> list[float]:
        return [(k + s / SUBFRAMES) / self.fps for s in range(SUBFRAMES)]


def frames(photo: np.ndarray, thing: np.ndarray, shot: Shot, seed: int, noise: float = 2.0,
           flicker: float = 1.0):
    rng = np.random.default_rng(seed)
    rng.uniform(0, 2 * np.pi, 3)  # the camera's phases (Shot's): the noise is drawn after them
    (w, h), fps = shot.size, shot.fps
    radius = shot.radius
    disc = cv2.resize(thing, (2 * radius, 2 * radius), interpolation=cv2.INTER_AREA)
    mask = np.zeros((2 * radius, 2 * radius), np.float32)
    cv2.circle(mask, (radius, radius), radius - 1, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.0)[..., None]
    for k in range(shot.count):
        exposure = np.zeros((h, w, 3), np.float32)
        for t in shot.times(k):
            view = cv2.warpAffine(photo, shot.view(t), (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT).astype(np.float32) \
                if photo.shape[:2] != (h, w) else photo.astype(np.float32)
            for j in range(shot.objects):
                cx, cy = shot.centre(t, j)
                x0, y0 = cx - radius, cy - radius
                xs, ys = max(0, x0), max(0, y0)
                xe, ye = min(w, x0 + 2 * radius), min(h, y0 + 2 * radius)
                if xe > xs and ye > ys:
                    part = mask[ys - y0:ye - y0, xs - x0:xe - x0]
                    view[ys:ye, xs:xe] = (1 - part) * view[ys:ye, xs:xe] + \
                        part * disc[ys - y0:ye - y0, xs - x0:xe - x0]
            exposure += view / SUBFRAMES
        gain = 1.0 + flicker * (0.04 * np.sin(2 * np.pi * 1.3 * k / fps) + rng.normal(0, 0.01))
        noisy = exposure * gain + rng.normal(0, noise, exposure.shape)
        yield np.clip(noisy, 0, 255).astype(np.uint8)


def make_clip(out: Path, seconds: float = 4.0, size=(320, 180), fps: float = 30.0,
              photo: str = "astronaut", seed: int = 0, noise: float = 2.0,
              flicker: float = 1.0, shake: float = 1.0, crf: int = 26, walkers: int = 0,
              wall: bool = False) -> Path:
    from skimage import data

    from renderer.media.probe import ffmpeg_exe

    count = max(2, round(seconds * fps))
    w, h = size
    picture = plain_wall(size) if wall else getattr(data, photo)()
    other = data.coffee() if photo != "coffee" else data.chelsea()
    proc = subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f",
                             "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}",
                             "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
                             "-pix_fmt", "yuv420p", str(out)], stdin=subprocess.PIPE)
    shot = Shot(picture.shape, size, fps, count, seed, shake, walkers, swing=wall)
    for rgb in frames(picture, other, shot, seed, noise, flicker):
        proc.stdin.write(rgb.tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit(f"error: ffmpeg could not write {out}")
    write_truth(out, shot)
    return out


def plain_wall(size: tuple[int, int]) -> np.ndarray:
    """A painted wall in a room's light: off-white, a soft gradient from the window and a
    vignette, no texture (the webcam recording of issue 40)."""
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 1.0 - 0.12 * xs / w - 0.2 * ((xs / w - 0.5) ** 2 + (ys / h - 0.5) ** 2)
    return np.clip(np.array([196, 188, 172], np.float32) * light[..., None], 0, 255
                   ).astype(np.uint8)


def write_truth(out: Path, shot: Shot) -> Path:
    """The clip's ground-truth motion (renderer.motion.truth): where each frame's blurred
    picture is centred, the mean over its exposures (not the view at the exposure's middle
    time: a 13.7 Hz shake turns a third of a cycle in one exposure). The background's frame ->
    photo affine, and the object as a disc layer."""
    background, things = [], [[] for _ in range(shot.objects)]
    for k in range(shot.count):
        times = shot.times(k)
        background.append(np.mean([cv2.invertAffineTransform(shot.view(t)) for t in times],
                                  axis=0))
        for j, thing in enumerate(things):
            cx, cy = np.mean([shot.centre(t, j) for t in times], axis=0)
            thing.append([[1.0, 0.0, -cx], [0.0, 1.0, -cy]])
    names = ["object"] if not shot.walkers else [f"walker {j}" for j in range(shot.walkers)]
    return write_motion(out, shot.size, [{"name": "background", "frames": background}] + [
        {"name": name, "frames": thing, "radius": shot.radius - 1}
        for name, thing in zip(names, things)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--photo", default="astronaut", help="a scikit-image sample photo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=2.0, help="sensor noise sigma (0-255)")
    parser.add_argument("--shake", type=float, default=1.0,
                        help="camera motion, x the default (0: a tripod)")
    parser.add_argument("--flicker", type=float, default=1.0,
                        help="exposure flicker, x the default (4%% at 1.3 Hz + 1%% per frame)")
    parser.add_argument("--crf", type=int, default=26,
                        help="x264's quality (a phone at full bitrate keeps its noise: ~18)")
    parser.add_argument("--walkers", type=int, default=0,
                        help="instead of the one large object, this many small ones walking "
                             "back and forth in lanes (a street camera)")
    parser.add_argument("--wall", action="store_true",
                        help="a tripod webcam before a plain wall: the object (a third of the "
                             "frame high) drifts, then swings at 2-5 px a frame (at 160 wide)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    make_clip(args.out, args.seconds, size, args.fps, args.photo, args.seed, args.noise,
              args.flicker, 0.0 if args.wall else args.shake, args.crf, args.walkers,
              args.wall)
    print(f"wrote {args.out}: {round(args.seconds * args.fps)} frames {size[0]}x{size[1]} at "
          f"{args.fps:g} fps, hand-held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
