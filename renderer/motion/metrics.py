"""Coherence measures from coherence.md: warping error ratio, dream strength and seam ratio;
what a viewer sees over a shot: whether the dream holds its strength (hold), whether a shot's
first frame pops out of it (pop); and, flow-free, whether still things stay still
(`stillness`: the output's change where the source does not change)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from renderer.motion.dis import FlowEstimator
from renderer.motion.flow import consistency_mask, flow_to_tensor, warping_error
from renderer.media.images import to_tensor
from renderer.motion.truth import Truth


def farneback_pair(previous: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(backward, forward) Farneback flow: a reference independent of the DIS flow that renders
    use, so that a render estimating flow the way the metric does cannot score itself."""
    prev, cur = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (previous, current))
    args = (None, 0.5, 3, 15, 3, 5, 1.2, 0)
    return (cv2.calcOpticalFlowFarneback(cur, prev, *args),
            cv2.calcOpticalFlowFarneback(prev, cur, *args))


def consecutive_errors(sources: list[np.ndarray], outputs: list[np.ndarray],
                       quality: "str | Truth" = "medium"
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E(t) for t >= 1 for the source and the output (the source's flow and mask), and the
    share of reliable pixels (near 0 at a scene cut). `quality`: a DIS preset, farneback, or
    the clip's ground truth (a `Truth`: its exact flow and visibility)."""
    if isinstance(quality, Truth):
        size = sources[0].shape[1::-1]
        reference = lambda t: quality.reference(t, size)  # noqa: E731
    else:
        pair = farneback_pair if quality == "farneback" else FlowEstimator(quality).pair

        def reference(t):
            backward, forward = pair(sources[t - 1], sources[t])
            wb, wf = flow_to_tensor([backward]), flow_to_tensor([forward])
            return wb, consistency_mask(wb, wf, blur=0)
    src_err, out_err, coverage = [], [], []
    for t in range(1, len(sources)):  # the reference flow, at full size
        wb, mask = reference(t)
        coverage.append(float(mask.mean()))
        src_err.append(warping_error(to_tensor(sources[t]), to_tensor(sources[t - 1]), wb, mask))
        out_err.append(warping_error(to_tensor(outputs[t]), to_tensor(outputs[t - 1]), wb, mask))
    return torch.cat(src_err).numpy(), torch.cat(out_err).numpy(), np.array(coverage)


@dataclass
class Coherence:
    ratio: float  # E(output) / E(source): flicker added by dreaming (1 = none)
    strength: float  # mean |output - source| in [0, 1] units
    seam: float  # error at segment boundaries / median consecutive error (1 = invisible)
    shots: list = None  # ShotHold of every shot (frames between scene cuts)

    @property
    def hold(self) -> float:
        """The worst hold of the shots longer than 2 s (nan: none that long)."""
        held = [s.hold for s in self.shots or [] if not np.isnan(s.hold)]
        return min(held) if held else float("nan")

    @property
    def pop(self) -> float:
        pops = [s.pop for s in self.shots or [] if not np.isnan(s.pop)]
        return max(pops) if pops else float("nan")


@dataclass
class ShotHold:
    """A shot's dream strength over time: mean |output - source| (and the mean |Laplacian| of
    that residual, its fine detail) per second, relative to the shot's median."""
    first: int  # frame numbers [first, end)
    end: int
    per_second: list[float]  # strength of each whole second / the shot's median
    detail_per_second: list[float]  # the same for the residual's fine detail
    hold: float  # lowest second after the first / the first second (nan: shot under 2 s)
    pop: float  # first frame / median of the next 24 (nan: shot under 25 frames)


def residual_strength(sources, outputs) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: mean |output - source| and mean |Laplacian(output - source)| (0..1 units)."""
    import cv2

    strength, detail = [], []
    for s, o in zip(sources, outputs):
        residual = (o.astype(np.float32) - s.astype(np.float32)) / 255
        strength.append(np.abs(residual).mean())
        detail.append(np.abs(cv2.Laplacian(residual, cv2.CV_32F)).mean())
    return np.array(strength), np.array(detail)


def shot_holds(strength: np.ndarray, detail: np.ndarray, cuts: set, fps: float) -> list:
    """Hold and pop of every shot; `cuts` are frames that start a new shot."""
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(strength)), len(strength)]
    second = max(1, round(fps))
    shots = []
    for first, end in zip(bounds, bounds[1:]):
        s, d = strength[first:end], detail[first:end]
        whole = (end - first) // second
        per = [s[k * second:(k + 1) * second].mean() for k in range(whole)]
        per_detail = [d[k * second:(k + 1) * second].mean() for k in range(whole)]
        median, median_detail = np.median(s) or 1.0, np.median(d) or 1.0
        hold = min(min(per[1:]) / per[0], min(per_detail[1:]) / per_detail[0]) \
            if whole >= 2 and end - first > 2 * fps else float("nan")
        pop = float(s[0] / np.median(s[1:25])) if end - first >= 25 else float("nan")
        shots.append(ShotHold(first, end, [v / median for v in per],
                              [v / median_detail for v in per_detail], float(hold), pop))
    return shots


def measure(sources: list[np.ndarray], outputs: list[np.ndarray],
            seams: list[tuple[int, int]], quality: "str | Truth" = "medium", fps: float = 24.0
            ) -> Coherence:
    """Coherence of an output clip against its source.

    `seams` are the frame ranges [first, last] over which one segment hands over to the next
    (the cross-fade and the first frame after it); their mean error is compared with the median
    error of all other consecutive frames. Scene cuts (under half the pixels reliable) are left
    out of the seam comparison: there the source itself jumps.
    """
    src_err, out_err, coverage = consecutive_errors(sources, outputs, quality)
    per_frame, detail = residual_strength(sources, outputs)
    strength = float(per_frame.mean())
    seam = float("nan")
    # E(t) is stored at t - 1: it compares frame t with frame t - 1
    cuts = set(np.flatnonzero(coverage < 0.5).tolist())
    at_seams = sorted({t - 1 for first, last in seams for t in range(max(first, 1), last + 1)}
                      - cuts)
    if at_seams:
        elsewhere = np.delete(out_err, sorted(set(at_seams) | cuts))
        seam = float(out_err[at_seams].mean() / np.median(elsewhere if elsewhere.size else out_err))
    shots = shot_holds(per_frame, detail, {t + 1 for t in cuts}, fps)
    return Coherence(float(out_err.mean() / src_err.mean()), strength, seam, shots)


STILL_LEVELS = 6  # a pixel is still when the source changes at most this much (0-255) ...
STILL_WINDOW = 9  # ... anywhere in its 9x9 neighbourhood between two frames


@dataclass
class Stillness:
    """How much the output changes where the source does not, measured without any flow (so
    no flow error can flatter or blame it), in 0-255 levels: per frame pair, the mean over
    the still pixels of the mean |output change| over the channels."""
    per_frame: np.ndarray  # output change on still pixels, frame t vs t - 1, t >= 1
    source: np.ndarray  # the source's own change there (noise, compression)
    share: np.ndarray  # the share of pixels that are still

    @property
    def mean(self) -> float:
        return float(self.per_frame.mean()) if self.per_frame.size else float("nan")

    @property
    def p95(self) -> float:
        return float(np.percentile(self.per_frame, 95)) if self.per_frame.size else float("nan")

    @property
    def max(self) -> float:
        return float(self.per_frame.max()) if self.per_frame.size else float("nan")

    @property
    def source_mean(self) -> float:
        return float(self.source.mean()) if self.source.size else float("nan")


def still_pixels(previous: np.ndarray, current: np.ndarray, levels: float = STILL_LEVELS,
                 window: int = STILL_WINDOW) -> np.ndarray:
    """H x W bools: where the source changes at most `levels` (any channel) anywhere in the
    `window` x `window` neighbourhood between two frames."""
    change = np.abs(current.astype(np.int16) - previous.astype(np.int16)).max(axis=2)
    return cv2.dilate(change.astype(np.uint8), np.ones((window, window), np.uint8)) <= levels


def stillness(sources: list[np.ndarray], outputs: list[np.ndarray],
              levels: float = STILL_LEVELS) -> Stillness:
    """The output's change on the pixels the source does not change (see `Stillness`); a
    frame pair with no still pixel (a cut) is left out."""
    per_frame, source, share = [], [], []
    for t in range(1, min(len(sources), len(outputs))):
        still = still_pixels(sources[t - 1], sources[t], levels)
        share.append(still.mean())
        if not still.any():
            continue
        change = np.abs(outputs[t].astype(np.int16) - outputs[t - 1].astype(np.int16)).mean(2)
        own = np.abs(sources[t].astype(np.int16) - sources[t - 1].astype(np.int16)).mean(2)
        per_frame.append(change[still].mean())
        source.append(own[still].mean())
    return Stillness(np.array(per_frame), np.array(source), np.array(share))


def luma(frames: np.ndarray) -> np.ndarray:
    """... x H x W x 3 RGB -> ... x H x W luma (Rec. 601 weights), float32."""
    return np.asarray(frames, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def closing_dip(clip: np.ndarray, closing: int) -> tuple[float, float]:
    """The lowest contrast (std of luma) and detail (mean |Laplacian| of luma) over a loop's
    closing stretch (its last `closing` frames), relative to the loop's median: a cross-fade of
    two pictures, or one into a chain's immature first frames, shows as a dip in both."""
    import cv2

    light = luma(clip)
    contrast = light.std(axis=(1, 2))
    detail = np.array([np.abs(cv2.Laplacian(frame, cv2.CV_32F)).mean() for frame in light])
    tail = slice(len(light) - closing, len(light))
    return (float(contrast[tail].min() / np.median(contrast)),
            float(detail[tail].min() / np.median(detail)))


MIXED = 0.25  # a patch is a visible mix when the weaker picture carries this share of its detail


def mixed_area(frames: np.ndarray, first: np.ndarray, second: np.ndarray, patch: int = 8
               ) -> np.ndarray:
    """Per frame, the share of its detail patches that are a visible mix of two pictures.

    Each frame (N x H x W x 3, as are `first` and `second`, the two pictures it was made from)
    is explained patch by patch as a*first + b*second in the luma detail band, where ghosting
    shows as double edges; a patch is mixed when the weaker of a and b's contributions carries
    at least MIXED of the two. A cross-fade reads about 1 half-way; a switch made region by
    region reads only along its front."""
    def detail(x):
        return np.stack([y - cv2.GaussianBlur(y, (0, 0), 1.5) for y in luma(x)])

    out, a, b = (detail(x) for x in (frames, first, second))
    n, h, w = out.shape
    rows, cols = h // patch, w // patch

    def patches(x):
        x = x[:, :rows * patch, :cols * patch].reshape(n, rows, patch, cols, patch)
        return x.transpose(0, 1, 3, 2, 4).reshape(n, rows * cols, patch * patch)

    out, a, b = patches(out), patches(a), patches(b)
    aa, bb, ab = (a * a).sum(-1), (b * b).sum(-1), (a * b).sum(-1)
    ao, bo = (a * out).sum(-1), (b * out).sum(-1)
    det = np.maximum(aa * bb - ab * ab, 1e-6)
    ca = np.clip((bb * ao - ab * bo) / det, 0, None)
    cb = np.clip((aa * bo - ab * ao) / det, 0, None)
    share_a, share_b = ca * np.sqrt(aa), cb * np.sqrt(bb)
    weaker = np.minimum(share_a, share_b) / np.maximum(share_a + share_b, 1e-6)
    textured = (out * out).sum(-1) > 0.1 * np.median((out * out).sum(-1))
    return ((weaker >= MIXED) & textured).sum(-1) / np.maximum(textured.sum(-1), 1)
