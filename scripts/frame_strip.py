"""Save a strip of evenly spaced frames of a video as one image (for READMEs and quick looks);
with several videos, one labelled row each, at the same frame numbers.

    python scripts/frame_strip.py VIDEO [VIDEO ...] OUT.jpg [--frames 6 | --at 0,12,24]
                                  [--height 180] [--labels before,after] [--difference 4]

With `--difference K` and two frames (`--at 30,31`), each row ends with their absolute
difference times K: what changed from one frame to the next (a still wall reads black).

Frames are read by their timestamps (PyAV), as renders read them.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderer.errors import UserError  # noqa: E402
from renderer.media.decode import FrameReader, index_video  # noqa: E402
from renderer.media.images import label, save_image  # noqa: E402


def strip(video: str, picks: list[int], height: int, caption: str | None,
          difference: float = 0) -> np.ndarray:
    """The picked frames of one video side by side, each captioned with its number (and,
    with `difference`, the two frames' |difference| times it)."""
    index = index_video(video)
    if max(picks) >= index.count:
        raise UserError(f"{video} has {index.count} frames: pick frames below that")
    size = (round(index.width * height / index.height), height)
    frames = list(FrameReader(index, 0, max(picks) + 1, size))
    cells = [label(frames[i], f"{caption}, frame {i}" if caption else f"frame {i}")
             for i in picks]
    if difference:
        a, b = (frames[i].astype(np.float32) for i in picks)
        change = np.clip(np.abs(b - a) * difference, 0, 255).astype(np.uint8)
        cells.append(label(change, f"|difference| x{difference:g}"))
    return np.hstack(cells)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="videos, then the image to write")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--at", default=None, help="these frame numbers instead (0,12,24)")
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--labels", default=None, help="a caption per video, comma-separated")
    parser.add_argument("--difference", type=float, default=0, metavar="K",
                        help="with two frames (--at A,B): add their |difference| x K")
    args = parser.parse_args()
    if len(args.paths) < 2:
        parser.error("give at least one video and the image to write")
    *videos, out = args.paths
    labels = args.labels.split(",") if args.labels else None
    if labels and len(labels) != len(videos):
        parser.error(f"--labels has {len(labels)} captions for {len(videos)} videos")
    try:
        first = index_video(videos[0])
        picks = [int(v) for v in args.at.split(",")] if args.at else \
            np.linspace(0, first.count - 1, args.frames).round().astype(int).tolist()
        if args.difference and len(picks) != 2:
            parser.error("--difference needs two frames: --at A,B")
        save_image(np.vstack([strip(v, picks, args.height, text, args.difference)
                              for v, text in zip(videos, labels or [None] * len(videos))]), out)
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
