"""Save a strip of evenly spaced frames of a video as one image (for READMEs and quick looks).

    python scripts/frame_strip.py VIDEO OUT.jpg [--frames 6 | --at 0,12,24] [--height 180]
"""

import argparse

import cv2
import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("out")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--at", default=None, help="these frame numbers instead (0,12,24)")
    parser.add_argument("--height", type=int, default=180)
    args = parser.parse_args()
    cap = cv2.VideoCapture(args.video)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    if not frames:
        raise SystemExit(f"error: no frames in {args.video}")
    picks = [int(v) for v in args.at.split(",")] if args.at else \
        np.linspace(0, len(frames) - 1, args.frames).round().astype(int)
    scale = args.height / frames[0].shape[0]
    size = (round(frames[0].shape[1] * scale), args.height)
    strip = np.hstack([cv2.resize(frames[i], size, interpolation=cv2.INTER_AREA) for i in picks])
    cv2.imwrite(args.out, strip, [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
