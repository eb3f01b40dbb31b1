"""DIS optical flow on the CPU: OpenCV and numpy only, no torch, so that it runs as well in a
worker process (`motion.flowpool`) as on a thread of the render.

Numpy in, numpy out, at a reduced size for wide frames; the tensor side (scaling the flow back
to full size, warping, the reliability masks) is `motion.flow`.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

_DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


class FlowEstimator:
    """Backward and forward DIS flow between two RGB frames. One instance per thread.

    Frames wider than `max_width` are estimated at reduced size: at 1080p this cuts the cost
    3x, and the smooth motion that carries a dream loses little. The flow stays at that size
    (a quarter of the bytes to stage and copy); `resize_flow` scales it up on the device.

    With `align`, the camera's motion is taken out first: a robust affine fit (OpenCV's RANSAC)
    to a first flow aligns the previous frame with the current one, DIS estimates only what is
    left (parallax, moving things, the fit's error), and the two are composed. DIS is most
    accurate on small motion: on pans and hand-held shake this halves its error (0.16 -> 0.07
    px on the sample clip against its exact motion), and nothing is assumed flat: the residual
    is estimated in full.
    """

    def __init__(self, quality: str = "fast", max_width: int = 0, align: bool = False):
        self.dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[quality])
        self.max_width, self.align = max_width, align

    @classmethod
    def of(cls, settings) -> "FlowEstimator":
        """The estimator a preset's `flow` section asks for."""
        return cls(settings.quality, settings.max_width, settings.align)

    def gray(self, rgb: np.ndarray) -> np.ndarray:
        """The luma DIS works on, at the estimation size (`size_for`)."""
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        if (w, h) != (size := self.size_for(h, w)):
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        return gray

    def size_for(self, height: int, width: int) -> tuple[int, int]:
        """(width, height) at which the flow of frames of this size is estimated."""
        if self.max_width and width > self.max_width:
            return self.max_width, max(8, round(height * self.max_width / width))
        return width, height

    def pair(self, previous: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(w_b, w_f): flow current -> previous and previous -> current, each hxwx2 float32 at
        the estimation size, in pixels of that size."""
        return self.pair_gray(self.gray(previous), self.gray(current))

    def pair_gray(self, prev_gray: np.ndarray, cur_gray: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """`pair` of two frames already made `gray`."""
        backward = self.dis.calc(cur_gray, prev_gray, None)
        camera = global_affine(backward) if self.align else None
        if camera is not None and _mean_move(camera, cur_gray.shape) >= ALIGN_FROM:
            aligned = self._residual(cur_gray, prev_gray, camera)
            # a fit to a flat or noisy picture can be wrong: keep what explains the frames
            if _mismatch(cur_gray, prev_gray, aligned) < _mismatch(cur_gray, prev_gray, backward):
                return aligned, self._residual(prev_gray, cur_gray,
                                               cv2.invertAffineTransform(camera))
        return backward, self.dis.calc(prev_gray, cur_gray, None)

    def _residual(self, image: np.ndarray, other: np.ndarray, camera: np.ndarray) -> np.ndarray:
        """Flow image -> other, given `camera`, the affine taking image's pixels to other's:
        other is aligned to image by it, DIS finds what is left, and the two are composed."""
        h, w = image.shape
        aligned = cv2.warpAffine(other, camera, (w, h), flags=cv2.INTER_LINEAR |
                                 cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        grid = _grid(h, w)
        return cv2.transform(grid + self.dis.calc(image, aligned, None), camera) - grid


ALIGN_FROM = 1.0  # px: DIS is accurate on smaller moves, and a fit to them is mostly its noise


@functools.lru_cache(maxsize=4)
def _grid(h: int, w: int) -> np.ndarray:
    """Each pixel's (x, y), HxWx2 float32 (read-only: shared between threads)."""
    grid = np.dstack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
    grid.flags.writeable = False
    return grid


def _mismatch(image: np.ndarray, other: np.ndarray, flow: np.ndarray) -> float:
    """Mean |image - other moved back along flow|: how well a flow explains a pair."""
    moved = cv2.remap(other, _grid(*image.shape) + flow, None, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REPLICATE)
    return float(cv2.absdiff(image, moved).mean())


def _mean_move(camera: np.ndarray, shape: tuple[int, int]) -> float:
    """How far the affine moves the frame's pixels on average (over a 5x5 grid), in pixels."""
    h, w = shape
    ys, xs = np.mgrid[0:h:complex(0, 5), 0:w:complex(0, 5)]
    grid = np.stack([xs.ravel(), ys.ravel(), np.ones(25)], 1).astype(np.float32)
    return float(np.linalg.norm(grid @ camera.T - grid[:, :2], axis=1).mean())


def global_affine(flow: np.ndarray, points: int = 4000, tolerance: float = 0.5
                  ) -> np.ndarray | None:
    """The 2x3 affine that most of a flow field follows (RANSAC over about `points` of its
    vectors, inliers within `tolerance` px, refined), or None where no fit is found."""
    h, w = flow.shape[:2]
    step = max(1, int(np.sqrt(h * w / points)))
    ys, xs = np.mgrid[0:h:step, 0:w:step].astype(np.float32)
    here = np.stack([xs.ravel(), ys.ravel()], 1)
    there = here + flow[::step, ::step].reshape(-1, 2)
    camera, inliers = cv2.estimateAffine2D(here, there, method=cv2.RANSAC,
                                           ransacReprojThreshold=tolerance, refineIters=10)
    if camera is None or inliers is None or inliers.mean() < 0.25:
        return None
    return camera.astype(np.float32)


def batched(flows: list[np.ndarray]) -> np.ndarray:
    """N (h, w, 2) flows as one contiguous (N, 2, h, w) batch (the layout of a flow tensor)."""
    return np.ascontiguousarray(np.stack(flows).transpose(0, 3, 1, 2))
