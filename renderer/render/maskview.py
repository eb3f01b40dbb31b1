"""`dream mask`: the mask of a clip or an image drawn over the picture, before a render.

The dreamed region is tinted (its strength shown as the tint's opacity) with its edge outlined,
as a still, a contact sheet of a clip, or a video with the clip's timing and audio.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np

from renderer.errors import UserError
from renderer.media import encode
from renderer.media.decode import FrameReader, VideoIndex, slot_counts
from renderer.media.images import contact_sheet, label, read_rgb, save_image
from renderer.media.masks import MaskMaker, mask_maker
from renderer.presets import Preset
from renderer.progress import SILENT, ProgressSink
from renderer.render.video import clip_times, source_audio

TINT = np.array([255, 40, 200], np.float32)  # magenta: rare in footage, so the region reads
SHEET_FRAMES = 6


def overlay(rgb: np.ndarray, mask: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """The picture with the region a dream may change tinted by how much (`mask`: (H, W)
    uint8), and the region's edge (half way up the mask) drawn in white."""
    alpha = (mask.astype(np.float32) / 255 * strength * 0.55)[..., None]
    out = rgb.astype(np.float32) * (1 - alpha) + TINT * alpha
    edge = cv2.morphologyEx((mask >= 128).astype(np.uint8), cv2.MORPH_GRADIENT,
                            np.ones((3, 3), np.uint8)) > 0
    out[edge] = 255
    return out.astype(np.uint8)


def share(mask: np.ndarray) -> float:
    """The share of the picture the mask dreams (its mean, 0..1)."""
    return float(mask.mean()) / 255


def image_preview(path: Path, preset: Preset, output: Path, size=None) -> float:
    """An image's mask drawn over it; returns the share of the picture it dreams."""
    rgb = read_rgb(path)
    if size is not None:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    maker = _maker(preset, (rgb.shape[1], rgb.shape[0]), [0.0])
    mask = maker.cursor(0)(0, rgb)
    save_image(overlay(rgb, mask, preset.mask.strength), output)
    return share(mask)


def clip_preview(index: VideoIndex, preset: Preset, output: Path, size: tuple[int, int],
                 progress: ProgressSink = SILENT) -> float:
    """A clip's masks drawn over it: a video (with the clip's timing and audio) or, for an
    image output, a contact sheet of SHEET_FRAMES frames across the clip; returns the mean
    share of the picture dreamed."""
    maker = _maker(preset, size, clip_times(index))
    fit = preset.video.fit
    if output.suffix.lower() in (".mp4", ".mov", ".mkv", ".webm"):
        return _video(index, preset, maker, output, size, progress)
    picks = np.unique(np.linspace(0, index.count - 1, SHEET_FRAMES).round().astype(int))
    cells, shares = [], []
    progress.stage("masked", len(picks))
    for frame in picks:
        reader, cursor = FrameReader(index, int(frame), 1, size, fit=fit), maker.cursor(frame)
        try:
            rgb = next(reader)
            mask = cursor(frame, rgb)
        finally:
            reader.close()
            cursor.close()
        shares.append(share(mask))
        cells.append(label(overlay(rgb, mask, preset.mask.strength),
                           f"{index.pts[frame] - index.pts[0]:.2f} s  {shares[-1]:.0%}"))
        progress.advance("masked")
    save_image(contact_sheet(cells, min(3, len(cells))), output)
    return float(np.mean(shares))


def _video(index: VideoIndex, preset: Preset, maker: MaskMaker, output: Path,
           size: tuple[int, int], progress: ProgressSink) -> float:
    settings = preset.encode.model_copy(update={"codec": "h264", "speed": "veryfast"})
    repeats = slot_counts(index)
    reader, cursor = FrameReader(index, 0, index.count, size, fit=preset.video.fit), \
        maker.cursor(0)
    shares = []
    progress.stage("masked", index.count)
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent) as folder:
        writer = encode.ChunkWriter(Path(folder) / "preview.nut", size, index.rate, settings)
        try:
            for frame in range(index.count):
                rgb = next(reader)
                mask = cursor(frame, rgb)
                shares.append(share(mask))
                writer.write(overlay(rgb, mask, preset.mask.strength), repeats[frame])
                progress.advance("masked")
            writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            reader.close()
            cursor.close()
        encode.finalize([writer.path], output, settings, source_audio(index), index.rate,
                        sum(repeats))
    return float(np.mean(shares))


def _maker(preset: Preset, size: tuple[int, int], times) -> MaskMaker:
    maker = mask_maker(preset.mask, size, times, preset.video.fit)
    if maker is None:
        raise UserError("no mask to show: give --mask FILE, or a preset with a 'mask:' section "
                        "(e.g. --set mask.key=chroma)")
    return maker
