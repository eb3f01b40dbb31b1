"""The README's sheet of every built-in preset on a real photo, made by the code it shows.

    python scripts/preset_sheet.py [-o docs/presets.jpg] [--photo samples/coffee.jpg]
                                   [--size 320x180] [--zoom-seconds 3] [--device cpu]

Still and video presets dream the photo once, as the first frame of a render would be dreamed
(a music preset at its strength on a beat, its `react` rows at their peak); zoom presets run
their feedback chain from the photo for `--zoom-seconds` and show the last frame. Each panel
is labelled with the preset's name; the command for a preset is `dream ... -p NAME`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from renderer import presets  # noqa: E402
from renderer.engine.dream import dreamer_for  # noqa: E402
from renderer.media import images  # noqa: E402
from renderer.render.zoom import ZoomRenderer  # noqa: E402


def on_a_beat(preset):
    """A music preset as it dreams on a hit: each react row on the step size at its peak."""
    peak = sum(row.amount for row in preset.react if row.target == "dream.step_size")
    if not peak:
        return preset
    return preset.model_copy(update={"dream": preset.dream.model_copy(
        update={"step_size": preset.dream.step_size + peak})})


def panel(name: str, photo, zoom_seconds: float, fps: float, device) -> "np.ndarray":
    preset = presets.load(name)
    if name.startswith("zoom"):
        renderer = ZoomRenderer.of(preset, fps, device=device)
        for _, batch in renderer.frames(photo, max(1, round(zoom_seconds * fps))):
            last = batch
        return images.to_uint8(last)[0]
    preset = on_a_beat(preset)
    return images.to_uint8(dreamer_for(preset, device).dream(photo, seed=preset.seed))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "presets.jpg")
    parser.add_argument("--photo", type=Path, default=ROOT / "samples" / "coffee.jpg")
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--zoom-seconds", type=float, default=3.0)
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("--presets", nargs="*", default=None, help="default: every built-in")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    photo = images.load_image(args.photo, size=images.parse_size(args.size))
    names = args.presets or sorted(name for name, path in presets.available().items()
                                   if path.parent == presets.builtin_dir())
    cells = [images.label(images.to_uint8(photo)[0], "the photo")]
    for name in names:
        started = time.perf_counter()
        cells.append(images.label(panel(name, photo, args.zoom_seconds, args.fps, args.device),
                                  name))
        print(f"{name}: {time.perf_counter() - started:.1f} s", flush=True)
    images.save_image(images.contact_sheet(cells, args.columns), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
