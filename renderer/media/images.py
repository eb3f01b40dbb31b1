"""Still images: load and save (atomically), tensor conversion, and labelled contact sheets."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from renderer.curves import smoothstep
from renderer.errors import UserError
from renderer.outputs import atomic_path, check_name, check_output

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
# the largest picture a user may hand in: about 8000x8000, 512 MB decoded as 16-bit RGBA
MAX_PICTURE_PIXELS = 64_000_000
FORMATS = "PNG, JPEG, WebP, BMP or TIFF"


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"size '{text}' must look like WIDTHxHEIGHT, for example 640x360") from None
    if not (8 <= w <= 16384 and 8 <= h <= 16384):
        raise UserError(f"size '{text}' is out of range: each side must be 8..16384 pixels")
    return w, h


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 (or a list of them) -> (N, 3, H, W) float in [0, 1]."""
    arr = np.stack(rgb) if isinstance(rgb, (list, tuple)) else rgb[None]
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) float -> N x H x W x C uint8 (rounded, so 8-bit round trips are exact)."""
    frames = images.detach().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).contiguous()
    if frames.device.type != "cuda":
        return frames.cpu().numpy()
    # into page-locked memory: a pageable copy of a 1080p batch crawls at ~1.4 GB/s
    host = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True)
    host.copy_(frames, non_blocking=True)
    torch.cuda.current_stream(frames.device).synchronize()
    return host.numpy()


def to_frames(images: torch.Tensor, alpha: torch.Tensor | None = None, deep: bool = False
              ) -> np.ndarray:
    """(N, 3, H, W) float -> N x H x W x C frames for an encoder: uint8 (`to_uint8`), or
    uint16 when `deep` (the dream's float picture, not 8-bit levels); `alpha` (N, 1, H, W) in
    0..1 becomes a fourth channel."""
    if alpha is not None:
        images = torch.cat([images, alpha.to(images)], dim=1)
    if not deep:
        return to_uint8(images)
    return np.ascontiguousarray(images.detach().clamp(0, 1).mul(65535).round().to(
        torch.int32).permute(0, 2, 3, 1).cpu().numpy(), dtype=np.uint16)


def crossfade(rgb: np.ndarray, incoming: np.ndarray, weight: float) -> np.ndarray:
    """Frames (uint8 or uint16, any channels) blended: `weight` of `incoming` over `rgb`."""
    return ((1 - weight) * rgb + weight * incoming).round().astype(rgb.dtype)


def contrast_kept_crossfade(rgb: np.ndarray, incoming: np.ndarray,
                            weight: "float | np.ndarray") -> np.ndarray:
    """A blend of two different pictures whose contrast and detail stay theirs: averaging
    uncorrelated pictures flattens both (by up to 1/sqrt(2) half-way), so the blend's coarse
    and fine bands are each scaled back, per channel, to the weighted spread of the two.
    `weight` (of `incoming`) is one number or an HxWx1 map. Frames are HxWx3, or a batch."""
    if rgb.ndim == 4:
        return np.stack([contrast_kept_crossfade(x, y, weight) for x, y in zip(rgb, incoming)])
    a, b = rgb.astype(np.float32), incoming.astype(np.float32)
    share = float(np.mean(weight))
    coarse_a, coarse_b = (cv2.GaussianBlur(x, (0, 0), 1.5) for x in (a, b))
    out = np.zeros_like(a)
    for band_a, band_b in ((coarse_a, coarse_b), (a - coarse_a, b - coarse_b)):
        mixed = (1 - weight) * band_a + weight * band_b
        mean = mixed.mean(axis=(0, 1), keepdims=True)
        wanted = (1 - share) * band_a.std(axis=(0, 1), keepdims=True) + \
            share * band_b.std(axis=(0, 1), keepdims=True)
        out += mean + (mixed - mean) * wanted / np.maximum(mixed.std(axis=(0, 1),
                                                                     keepdims=True), 1e-6)
    return np.clip(out, 0, 255).round().astype(np.uint8)


def grown_in(rgb: np.ndarray, incoming: np.ndarray, progress: float,
             centre: tuple[float, float]) -> np.ndarray:
    """`incoming` grown out of `centre` (fractions of width and height) over `rgb`: inside a
    soft-edged disc that covers `progress` of the frame (all of it at 1), contrast kept. A
    zoom's picture is born at its centre and flows outwards, so the new picture arrives the way
    the motion brings everything, and each place switches over a few frames instead of the
    whole frame being a mix of two. Frames are HxWx3, or a batch of them."""
    h, w = rgb.shape[-3:-1]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    radius = np.hypot(xs - centre[0] * w, ys - centre[1] * h)
    edge = 0.08 * np.hypot(w, h)
    # the same share of the frame turns over each frame: the disc's edge at that quantile
    reach = np.quantile(radius, progress) + progress * edge / 2
    inside = smoothstep(np.clip((reach - radius) / edge + 0.5, 0, 1))
    return contrast_kept_crossfade(rgb, incoming, inside[..., None])


def check_picture(path: str | Path, what: str = "input", verify: bool = False
                  ) -> tuple[int, int]:
    """A picture a user hands in, checked before anything decodes it: a regular file (a FIFO
    or a device would block or never end), whose header names a size of at most
    MAX_PICTURE_PIXELS (a small file can hold a huge picture). `verify` also reads it through,
    so that a truncated file is found now and not mid-render. Its (width, height)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if not path.exists():
            raise UserError(f"{what} '{path}' does not exist: check the path") from None
        raise UserError(f"{what} '{path}' cannot be read ({exc.strerror}): check it") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{what} '{path}' is a folder: give an image file")
    if not stat.S_ISREG(mode):
        raise UserError(f"{what} '{path}' is not a regular file (a pipe or a device): give an "
                        "image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's own decompression-bomb warning
            with Image.open(path) as picture:
                size = picture.size
                if verify:
                    picture.verify()
    except Image.DecompressionBombError:
        size = None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = "damaged or cut short" if verify and "cannot identify" not in str(exc) \
            else f"not an image OpenCV can read (use {FORMATS})"
        raise UserError(f"{what} '{path}' is {reason}") from None
    if size is None or size[0] * size[1] > MAX_PICTURE_PIXELS:
        shown = f"{size[0]}x{size[1]}" if size else "over 178 megapixels"
        raise UserError(f"{what} '{path}' is {shown}: dream reads pictures up to "
                        f"{MAX_PICTURE_PIXELS // 10**6} megapixels; scale it down first")
    return size


def decode_picture(path: str | Path, flags: int, what: str = "input") -> np.ndarray:
    """A picture a user hands in (`check_picture` first), as OpenCV decodes it with `flags`."""
    check_picture(path, what)
    picture = cv2.imread(str(path), flags)
    if picture is None:
        raise UserError(f"{what} '{path}' is not an image OpenCV can read (use {FORMATS})")
    return picture


def read_rgb(path: str | Path) -> np.ndarray:
    return cv2.cvtColor(decode_picture(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def fit_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def framing(source: tuple[int, int], size: tuple[int, int], fit: str) -> tuple[int, int]:
    """The size a (W, H) source is scaled to before `place` crops or pads it to `size`: the
    aspect is kept (cover for 'crop', inside for 'pad') unless `fit` is 'stretch'."""
    (sw, sh), (w, h) = source, size
    if fit == "stretch" or sw * h == sh * w:
        return w, h
    scale = max(w / sw, h / sh) if fit == "crop" else min(w / sw, h / sh)
    return max(1, round(sw * scale)), max(1, round(sh * scale))


def place(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre `rgb` in a (W, H) frame: cropped where it is larger, black bars where smaller."""
    w, h = size
    ih, iw = rgb.shape[:2]
    if (iw, ih) == (w, h):
        return rgb
    out = np.zeros((h, w, 3), np.uint8)
    sy, sx, dy, dx = max(0, (ih - h) // 2), max(0, (iw - w) // 2), max(0, (h - ih) // 2), \
        max(0, (w - iw) // 2)
    ch, cw = min(h, ih), min(w, iw)
    out[dy:dy + ch, dx:dx + cw] = rgb[sy:sy + ch, sx:sx + cw]
    return out


def load_image(path, size: tuple[int, int] | None = None, max_side: int | None = None):
    """An image file as a (1, 3, H, W) tensor, resized to `size` (W, H) or to fit `max_side`."""
    rgb = read_rgb(path)
    w, h = size or fit_size(rgb.shape[1], rgb.shape[0], max_side)
    if (w, h) != (rgb.shape[1], rgb.shape[0]):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    return to_tensor(rgb)


def check_image_output(path: str | Path, overwrite: bool = False, inputs=()) -> Path:
    """An image output: a plain name with an image extension, then the checks of every
    output."""
    path = check_name(Path(path))
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"output '{path}' needs an image extension "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    return check_output(path, overwrite, inputs)


def save_image(rgb: np.ndarray, path: str | Path) -> None:
    path = Path(path)
    ok, data = cv2.imencode(path.suffix.lower(), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise UserError(f"OpenCV cannot encode '{path}': use .png or .jpg")
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data.tobytes())
    except OSError as exc:
        raise UserError(f"could not write '{path}' ({exc.strerror or exc}): free some disk "
                        "space or choose another folder") from None


def label(rgb: np.ndarray, text: str) -> np.ndarray:
    """A copy of the image with a caption bar under it."""
    h, w = rgb.shape[:2]
    scale = max(0.4, w / 400)
    bar = int(28 * scale)
    out = np.full((h + bar, w, 3), 20, np.uint8)
    out[:h] = rgb
    cv2.putText(out, text, (6, h + int(20 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale,
                (235, 235, 235), max(1, int(scale)), cv2.LINE_AA)
    return out


def contact_sheet(cells: list[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
    """Equal-sized cells in a grid, row by row."""
    h, w = cells[0].shape[:2]
    rows = -(-len(cells) // columns)
    sheet = np.full((rows * h + (rows + 1) * gap, columns * w + (columns + 1) * gap, 3), 10,
                    np.uint8)
    for i, cell in enumerate(cells):
        r, c = divmod(i, columns)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        sheet[y:y + h, x:x + w] = cell
    return sheet
