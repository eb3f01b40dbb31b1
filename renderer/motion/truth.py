"""Ground-truth motion of generated clips: a flicker measure that no estimated flow can flatter.

A warping-error measure is only as good as its reference flow. On a clip whose motion is a
fraction of a pixel per frame, or flat, every estimated flow is off by about as much as the
motion itself (DIS and Farneback by 0.2-0.5 px on the hand-held generator's clip), and each
flatters renders whose flow resembles it. Clips made by `scripts/make_sample_clip.py` and
`scripts/make_handheld_clip.py` therefore come with `CLIP.motion.json`: the scene as layers,
back to front, each with one 2x3 affine per frame (null where the layer is not in the frame)
taking frame pixels to the layer's own coordinates (pixel centres on integers, OpenCV's
convention), and optionally a `radius`: the layer is then a disc of that radius around its
origin. `Truth.reference` gives, for a frame, the exact backward flow and where it is valid:
the pixel's layer was there, on top and inside the frame one frame earlier, and the pixel is
not on a layer's soft edge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from renderer.errors import UserError

EDGE = 2.0  # pixels (of the clip) either side of a disc's outline left out: its edge is soft


def motion_path(clip: Path) -> Path:
    clip = Path(clip)
    return clip.with_name(clip.stem + ".motion.json")


def write_motion(clip: Path, size: tuple[int, int], layers: list[dict]) -> Path:
    """Write a clip's ground truth next to it: `layers` as {"name", "frames": [2x3 affine or
    None per frame], "radius" (optional)}, back to front."""
    path = motion_path(clip)
    rows = [{"name": layer["name"], "radius": layer.get("radius"),
             "frames": [None if a is None else np.asarray(a, float)[:2].round(9).tolist()
                        for a in layer["frames"]]} for layer in layers]
    path.write_text(json.dumps({"width": size[0], "height": size[1], "layers": rows}))
    return path


@dataclass
class Truth:
    width: int
    height: int
    layers: list[dict]

    @classmethod
    def load(cls, clip: Path) -> "Truth":
        path = motion_path(clip)
        if not path.is_file():
            raise UserError(f"{clip} has no ground-truth motion ({path.name}): only clips made "
                            f"by scripts/make_sample_clip.py or make_handheld_clip.py have one")
        data = json.loads(path.read_text())
        return cls(data["width"], data["height"], data["layers"])

    def reference(self, t: int, size: tuple[int, int], earlier: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame t's exact backward flow (1, 2, h, w) in pixels of `size` (w, h), and its
        validity (1, 1, h, w) as 0/1: to frame t - 1, or to frame `earlier`."""
        before_t = t - 1 if earlier is None else earlier
        w, h = size
        sx, sy = self.width / w, self.height / h
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        here = np.stack([(xs + 0.5) * sx - 0.5, (ys + 0.5) * sy - 0.5], -1)  # clip pixels
        owner, edge = self._owner(here, t)
        back = np.full(here.shape, np.nan)
        for k, layer in enumerate(self.layers):
            now, before = layer["frames"][t], layer["frames"][before_t]
            mine = owner == k
            if now is None or before is None or not mine.any():
                continue
            scene = _apply(np.asarray(now), here[mine])
            back[mine] = _apply(_invert(np.asarray(before)), scene)
        found = ~np.isnan(back[..., 0])
        was, edge_before = self._owner(np.nan_to_num(back), before_t)
        valid = found & ~edge & ~edge_before & (was == owner) & \
            (back[..., 0] >= -0.5) & (back[..., 0] <= self.width - 0.5) & \
            (back[..., 1] >= -0.5) & (back[..., 1] <= self.height - 0.5)
        previous = np.stack([(back[..., 0] + 0.5) / sx - 0.5, (back[..., 1] + 0.5) / sy - 0.5], -1)
        flow = np.where(valid[..., None], previous - np.stack([xs, ys], -1), 0.0)
        return (torch.from_numpy(flow.transpose(2, 0, 1)[None].astype(np.float32)),
                torch.from_numpy(valid[None, None].astype(np.float32)))

    def _owner(self, points: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Which layer is on top at each point of frame t (-1: none), and whether the point
        lies on a disc's soft edge."""
        owner = np.full(points.shape[:-1], -1)
        edge = np.zeros(points.shape[:-1], bool)
        for k, layer in enumerate(self.layers):
            affine = layer["frames"][t]
            if affine is None:
                continue
            if layer.get("radius") is None:
                owner[:] = k
                continue
            distance = np.linalg.norm(_apply(np.asarray(affine), points), axis=-1)
            owner[distance < layer["radius"]] = k
            edge |= np.abs(distance - layer["radius"]) < EDGE
        return owner, edge


def _apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ affine[:, :2].T + affine[:, 2]


def _invert(affine: np.ndarray) -> np.ndarray:
    full = np.vstack([affine, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]
