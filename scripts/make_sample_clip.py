"""Make samples/pan.mp4: a short clip with audio, from public-domain/CC0 photos only.

The picture is a slow camera pan and zoom across scikit-image's sample photos (astronaut: NASA,
public domain; coffee and chelsea: CC0 by Rachel Michetti and Stefan van der Walt), cut together
so the clip has both smooth motion and hard scene changes. The audio is a synthesised chord
(ffmpeg's aevalsrc), so nothing in it is anyone's recording.

    python scripts/make_sample_clip.py [--out samples/pan.mp4] [--seconds 4] [--size 320x180]
"""

import argparse
import subprocess
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from renderer.media.probe import ffmpeg_exe
from renderer.motion.truth import write_motion


def pan_affines(photo: np.ndarray, count: int, size: tuple[int, int], zoom: float = 1.15):
    """Photo -> frame affines of a crop window moving left to right while zooming in slowly."""
    h, w = photo.shape[:2]
    out_w, out_h = size
    for i in range(count):
        f = i / max(1, count - 1)
        scale = (out_w / (w * 0.7)) * (1 + (zoom - 1) * f)
        cx = w * (0.35 + 0.3 * f)
        cy = h * 0.5
        yield np.array([[scale, 0, out_w / 2 - scale * cx], [0, scale, out_h / 2 - scale * cy]])


def pan_frames(photo: np.ndarray, count: int, size: tuple[int, int]):
    """The pan's frames (sub-pixel, via warpAffine)."""
    for m in pan_affines(photo, count, size):
        yield cv2.warpAffine(photo, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def write_truth(out: str, photos: list, per_scene: list[int], size: tuple[int, int]):
    """The clip's ground-truth motion (renderer.motion.truth): one layer per shot."""
    layers, first = [], 0
    for k, (photo, count) in enumerate(zip(photos, per_scene)):
        frames = [None] * sum(per_scene)
        for i, m in enumerate(pan_affines(photo, count, size)):
            frames[first + i] = cv2.invertAffineTransform(m)  # frame -> photo
        layers.append({"name": f"shot {k + 1}", "frames": frames})
        first += count
    return write_motion(Path(out), size, layers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="samples/pan.mp4")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--fps", default="24")
    parser.add_argument("--motion-only", action="store_true",
                        help="write only the ground-truth motion file (OUT.motion.json)")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    num, _, den = args.fps.partition("/")
    fps = int(num) / int(den or 1)
    total = round(args.seconds * fps)
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    per_scene = [total // 2, total - total // 2 - total // 4, total // 4]
    truth = write_truth(args.out, photos, per_scene, (w, h))
    if args.motion_only:
        print(f"wrote {truth}")
        return
    ff = ffmpeg_exe()
    chord = "0.2*sin(2*PI*220*t)+0.15*sin(2*PI*277.18*t)+0.12*sin(2*PI*329.63*t)"
    cmd = [ff, "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", args.fps, "-i", "-",
           "-f", "lavfi", "-i", f"aevalsrc={chord}:s=44100:d={args.seconds}",
           "-c:v", "libx264", "-crf", "20", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k",
           "-shortest", "-movflags", "+faststart", args.out]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for photo, count in zip(photos, per_scene):
        for frame in pan_frames(photo, count, (w, h)):
            proc.stdin.write(frame.tobytes())
    proc.stdin.close()
    if proc.wait():
        raise SystemExit("ffmpeg failed")
    print(f"wrote {args.out}: {total} frames {w}x{h} at {args.fps} fps with audio")


if __name__ == "__main__":
    main()
