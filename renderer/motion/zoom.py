"""Zoom motion on tensors: the affine step between frames (the keyframed moves it follows are
in `renderer.keyframes`), and the colour hold that keeps a feedback loop from drifting."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from renderer.keyframes import Motion
from renderer.motion.flow import pixel_grid


# ---------------------------------------------------------------- the transform
def affine_step(images: torch.Tensor, scale: float, degrees: float, pan_px: tuple[float, float],
                center_px: tuple[float, float]) -> torch.Tensor:
    """Zoom by `scale` and rotate about `center_px`, then move the camera by `pan_px`.

    Coordinates are continuous pixels (pixel i covers [i, i + 1)), so the centre maps exactly
    onto itself: no drift, however many frames. Edges are filled by reflection.
    """
    n, _, h, w = images.shape
    device = images.device
    xs, ys = pixel_grid(h, w, device, offset=0.5)
    cx, cy = center_px
    theta = math.radians(degrees)
    cos, sin = math.cos(theta) / scale, math.sin(theta) / scale
    dx, dy = xs - cx, ys - cy
    src_x = cx + cos * dx + sin * dy + pan_px[0]
    src_y = cy - sin * dx + cos * dy + pan_px[1]
    grid = torch.stack([src_x / w * 2 - 1, src_y / h * 2 - 1], dim=-1)
    grid = grid.unsqueeze(0).expand(n, -1, -1, -1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def transform(images: torch.Tensor, motion: Motion, dt: float) -> torch.Tensor:
    h, w = images.shape[-2:]
    return affine_step(images, motion.zoom ** dt, motion.rotate * dt,
                       (motion.pan[0] * dt * w, motion.pan[1] * dt * h),
                       (motion.center[0] * w, motion.center[1] * h))


# ---------------------------------------------------------------- colour hold
def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = images.flatten(2)
    return flat.mean(2, keepdim=True).unsqueeze(-1), flat.std(2, keepdim=True).unsqueeze(-1)


def colour_reference(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a zoom's colour is held to: the start's channel means and spreads, and the most
    colourfulness allowed (CHROMA_LIMIT, or the start's own where it is more colourful)."""
    return (*channel_stats(images), chroma(images).clamp(min=CHROMA_LIMIT))


def hold_colour(images: torch.Tensor,
                reference: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                amount: float) -> torch.Tensor:
    """Move each channel's mean and spread `amount` of the way back to the reference's, and
    bring a colourfulness above the reference's limit down to it (`colour_reference`).

    Feedback loops otherwise drift to grey (repeated resampling averages) or to saturated noise
    (dreaming amplifies contrast); matching each channel alone lets the channels part from one
    another, into a poster of pure red, yellow and blue bands.
    """
    if amount <= 0:
        return images
    mean, std = channel_stats(images)
    ref_mean, ref_std, limit = reference
    matched = (images - mean) / (std + 1e-6) * ref_std + ref_mean
    held = images + amount * (matched - images)
    grey = held.mean(1, keepdim=True)
    now = chroma(held)
    return (grey + (held - grey) * (torch.minimum(now, limit) / (now + 1e-6))).clamp(0, 1)


CHROMA_LIMIT = 0.22  # RGB 0..1; the sample photos measure 0.11-0.31, a rainbow-poster zoom 0.54


def chroma(images: torch.Tensor) -> torch.Tensor:
    """Each image's colourfulness: its pixels' mean distance from their grey, (N, 1, 1, 1)."""
    return (images - images.mean(1, keepdim=True)).norm(dim=1).mean((1, 2)).view(-1, 1, 1, 1)


def per_frame(rate_per_second: float, fps: float) -> float:
    """A fraction applied per second, as the fraction per frame that compounds to it."""
    return 1.0 - (1.0 - rate_per_second) ** (1.0 / fps)


def noise_image(size: tuple[int, int], seeds: list[int]) -> torch.Tensor:
    """Soft coloured noise around mid-grey: a neutral start for a dream from nothing."""
    w, h = size
    out = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(1, 3, max(2, h // 16), max(2, w // 16), generator=g)
        fine = torch.rand(1, 3, h, w, generator=g)
        smooth = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
        out.append((0.5 + 0.35 * (smooth - 0.5) + 0.08 * (fine - 0.5)).clamp(0, 1))
    return torch.cat(out)
