"""Optical flow as tensors and temporal coherence: warping, reliability masks, the still map.

Flow is estimated by DIS on the CPU (`motion.dis`, numpy in and out); scaling it back to full
size, warping and the forward-backward consistency mask are pure batched tensor functions
(Kornia-style), so they run wherever the dreams live. Conventions follow Ruder et al. 2016: the
backward flow w_b maps frame t to t-1, W(x)(p) = x(p + w_b(p)).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from renderer.motion.dis import batched


def flow_to_tensor(flows: list[np.ndarray]) -> torch.Tensor:
    """N HxWx2 numpy flows -> (N, 2, H, W) tensor. The transpose is numpy's: this runs on the
    producer thread, and a torch op there would start a second OpenMP team beside the dream's
    (on two cores that made every coherent dream call 1.9x slower)."""
    return torch.from_numpy(batched(flows))


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, 2, h, w) flow in pixels of that size -> (N, 2, H, W) in full-size pixels."""
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow
    out = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    out[:, 0] *= size[1] / w  # Python scalars: no host-to-device copy, so no wait on the GPU
    out[:, 1] *= size[0] / h
    return out


def pixel_grid(h: int, w: int, device, offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """x and y coordinates of every pixel, (H, W) each; `offset` 0.5 gives pixel centres in
    continuous coordinates (pixel i covers [i, i + 1))."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32) + offset,
                            torch.arange(w, device=device, dtype=torch.float32) + offset,
                            indexing="ij")
    return xs, ys


def warp(images: torch.Tensor, flow: torch.Tensor, padding: str = "border") -> torch.Tensor:
    """W(x)(p) = x(p + flow(p)), bilinear; images (N, C, H, W), flow (N, 2, H, W) in pixels."""
    n, _, h, w = images.shape
    coords = torch.stack(pixel_grid(h, w, images.device)).unsqueeze(0) + \
        flow.to(images.device, torch.float32)
    grid = torch.stack([2 * coords[:, 0] / max(w - 1, 1) - 1,
                        2 * coords[:, 1] / max(h - 1, 1) - 1], dim=-1)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode=padding,
                         align_corners=True)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur of every channel of an (N, C, H, W) batch (edges replicated).
    On the CPU OpenCV's, 7x faster than a 1-channel conv2d there (0.20 against 1.43 ms for
    320x180x3: the carried frame takes a dozen blurs a frame), equal to it within 2e-7."""
    if sigma <= 0:
        return images
    n, c, h, w = images.shape
    if images.device.type == "cpu" and images.dtype == torch.float32 and n * c <= 512:
        stack = images.detach().reshape(n * c, h, w).permute(1, 2, 0).contiguous().numpy()
        size = 2 * _radius(sigma) + 1
        out = cv2.GaussianBlur(stack, (size, size), sigma, borderType=cv2.BORDER_REPLICATE)
        return torch.from_numpy(out.reshape(h, w, n * c)).permute(2, 0, 1).reshape(n, c, h, w)
    return _blur_channel(images.reshape(n * c, 1, h, w), sigma).reshape(n, c, h, w)


def _radius(sigma: float) -> int:
    return max(1, int(round(2.5 * sigma)))


def _blur_channel(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = _radius(sigma)
    x = torch.arange(-radius, radius + 1, device=mask.device, dtype=mask.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(mask, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(out, kernel.view(1, 1, -1, 1))


STILL_FLOW = 0.5  # px: a pixel whose flow is under this (and whose source is still) is still
STILL_CAMERA = 0.3  # px a frame: a camera that pans slower than this (~9 px a second) is still


def _textured(images: torch.Tensor, levels: float) -> torch.Tensor:
    """(N, 1, H, W) 0..1: where the picture has detail that motion would show (a local
    gradient over `levels` per pixel, full at twice that); DIS fills flat areas with the
    motion of their neighbours, so its flow says nothing there."""
    light = gaussian_blur(images.mean(1, keepdim=True), 1.0) * 255
    dy, dx = torch.gradient(light, dim=(2, 3))
    grad = gaussian_blur((dx.square() + dy.square()).sqrt(), 2.0)
    return ((grad - levels) / levels).clamp(0, 1)


def still_weight(current: torch.Tensor, previous: torch.Tensor, flow: torch.Tensor | None,
                 levels: float, sigma: float = 1.5, reliable: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """(N, 1, H, W) in 0..1: 1 where nothing moved between two frames ((N, 3, H, W) in 0..1):
    the source's local change (the difference under a Gaussian of `sigma` px, so that sensor
    noise averages out and a moving edge does not) is at most `levels` (0-255) and the flow
    under STILL_FLOW px; ramping to 0 at twice each. Measured on the pixels rather than trusted
    to the flow alone: on a still, noisy wall DIS reports sub-pixel motion, and every warp by
    it re-samples the dream. The camera's pan (`camera_shift`) moves every pixel; beyond it,
    only flow that is reliable (`reliable`, (N, 1, H, W) 0..1: the consistency mask) over
    textured picture can say a pixel moved: DIS fills a flat sky with the motion of the object
    crossing it."""
    change = gaussian_blur(current - previous, sigma).abs().mean(1, keepdim=True) * 255
    still = ((2 * levels - change) / levels).clamp(0, 1)
    if flow is not None:
        trusted = _textured(current, levels)
        if reliable is not None:  # flow that forward and backward disagree on says nothing
            trusted = trusted * reliable
        # a pan moves flat picture too: the camera's shift, measured on the pixels (phase
        # correlation: the dominant translation, where DIS spreads an object's motion around
        # it), kept only where the frame's outer band agrees (a subject before a plain wall is
        # the dominant translation, and does not move the camera)
        camera = background_camera(current, previous, levels)
        moving = torch.maximum(_moving(camera, STILL_CAMERA), _moving(flow - camera) * trusted)
        still = still * (1 - moving)
    return still


def _moving(flow: torch.Tensor, limit: float = STILL_FLOW) -> torch.Tensor:
    """0 under `limit` px of motion, 1 from twice that."""
    speed = flow.square().sum(1, keepdim=True).sqrt()
    return 1 - ((2 * limit - speed) / limit).clamp(0, 1)


def camera_shift(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """(N, 2, 1, 1): the backward flow (x, y) of each row's dominant translation, by phase
    correlation of the two frames' luma (Hann-windowed), refined to a fraction of a pixel."""
    n, _, h, w = current.shape
    window = torch.outer(torch.hann_window(h, periodic=False, device=current.device),
                         torch.hann_window(w, periodic=False, device=current.device))
    a, b = (torch.fft.rfft2(x.mean(1) * window) for x in (previous, current))
    cross = a * b.conj()
    surface = torch.fft.irfft2(cross / cross.abs().clamp_min(1e-12), s=(h, w))
    flat = surface.flatten(1).argmax(1)
    rows, cols = flat // w, flat % w
    # the peak's neighbours (wrapping round), gathered on the device: no value comes back to
    # the host, so a GPU never waits here
    near = torch.arange(-1, 2, device=current.device)
    at = torch.arange(n, device=current.device)[:, None]
    ys = surface[at, (rows[:, None] + near) % h, cols[:, None]]
    xs = surface[at, rows[:, None], (cols[:, None] + near) % w]
    dy = rows + _vertex(ys) - torch.where(rows > h // 2, h, 0)
    dx = cols + _vertex(xs) - torch.where(cols > w // 2, w, 0)
    return torch.stack([dx, dy], 1).to(current.dtype).view(n, 2, 1, 1)


BAND = 0.15  # of each side: the frame's outer band, where the background shows round a subject


def background_camera(current: torch.Tensor, previous: torch.Tensor, levels: float
                      ) -> torch.Tensor:
    """(N, 2, 1, 1): `camera_shift`, where the frame's outer band bears it out, else 0.

    The band is compared with the previous frame unmoved and moved by the shift (each pixel's
    difference capped at twice `levels`, 0-255, so no few pixels decide). The shift stands
    where it explains the band clearly better than no motion (SHIFT_GAIN) and its flat part
    does not say otherwise (FLAT_GAIN): a subject swinging before a plain wall is the dominant
    translation and may reach into the band, but the wall round it, its shading and noise,
    matches itself unmoved; a pan or a shaking hand moves the band's picture, flat parts with
    their shading, with the rest. A band without a level of shading is taken as still."""
    camera = camera_shift(current, previous)
    n, _, h, w = current.shape
    band = _band(h, w, current.device)
    flat = band * (1 - _textured(current, levels))
    moved = warp(previous, camera.expand(n, 2, h, w))

    def misfit(before: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) each: the capped difference summed over the band, and over its flat part."""
        error = gaussian_blur(current - before, 1.5).abs().mean(1, keepdim=True) * 255
        error = error.clamp(max=2 * levels)
        return (error * band).flatten(1).sum(1), (error * flat).flatten(1).sum(1)

    (shifted, shifted_flat), (unmoved, unmoved_flat) = misfit(moved), misfit(previous)
    explains = shifted < SHIFT_GAIN * unmoved
    uncontradicted = shifted_flat < FLAT_GAIN * unmoved_flat + 1e-6
    return camera * (explains & uncontradicted).to(camera.dtype).view(n, 1, 1, 1)


SHIFT_GAIN = 0.75  # the shift must leave under this share of the unmoved band's difference
FLAT_GAIN = 0.9  # ... and of its flat part's (a still wall's shading matches only unmoved)


def _band(h: int, w: int, device) -> torch.Tensor:
    """(1, 1, H, W): 1 in the frame's outer band (BAND of each side), 0 inside it."""
    ys = torch.arange(h, device=device).view(-1, 1)
    xs = torch.arange(w, device=device).view(1, -1)
    inner = ((ys >= BAND * h) & (ys < (1 - BAND) * h)) & ((xs >= BAND * w) & (xs < (1 - BAND) * w))
    return (~inner).float().view(1, 1, h, w)


def _vertex(values: torch.Tensor) -> torch.Tensor:
    """(N,): where a parabola through each row's three samples at -1, 0, 1 peaks (within half
    a sample; 0 where they do not bend down)."""
    left, mid, right = values.unbind(1)
    bend = left - 2 * mid + right
    offset = (0.5 * (left - right) / torch.where(bend < 0, bend, -1.0)).clamp(-0.5, 0.5)
    return torch.where(bend < 0, offset, 0.0)


def consistency_mask(backward: torch.Tensor, forward: torch.Tensor, blur: float = 1.0):
    """Reliability c in [0, 1] per pixel of frame t, shape (N, 1, H, W).

    Zero where p + w_b(p) leaves the frame, where forward and backward flow do not cancel
    (disocclusion: p was not visible in frame t-1), and at motion boundaries; then softened.
    """
    _, _, h, w = backward.shape
    xs, ys = pixel_grid(h, w, backward.device)
    tx, ty = xs + backward[:, 0], ys + backward[:, 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    v = warp(forward, backward)  # w_f sampled at q = p + w_b(p)
    cancel = (backward + v).pow(2).sum(1)
    magnitude = backward.pow(2).sum(1) + v.pow(2).sum(1)
    occluded = cancel > 0.01 * magnitude + 0.5
    du_dy, du_dx = torch.gradient(backward[:, 0], dim=(1, 2))
    dv_dy, dv_dx = torch.gradient(backward[:, 1], dim=(1, 2))
    gradient = du_dx**2 + du_dy**2 + dv_dx**2 + dv_dy**2
    boundary = gradient > 0.01 * backward.pow(2).sum(1) + 0.002
    reliable = (inside & ~occluded & ~boundary).float().unsqueeze(1)
    return gaussian_blur(reliable, blur).clamp(0, 1) if blur else reliable


def warping_error(current: torch.Tensor, previous: torch.Tensor, backward: torch.Tensor,
                  mask: torch.Tensor) -> torch.Tensor:
    """Mean |O_t - W(O_{t-1})| over reliable pixels, per image: the flicker measure."""
    diff = (current - warp(previous, backward)).abs().mean(1, keepdim=True)
    return (diff * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1.0)
