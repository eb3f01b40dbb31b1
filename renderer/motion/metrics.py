"""Coherence measures from coherence.md: warping error ratio, dream strength and seam ratio."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from renderer.motion.flow import FlowEstimator, consistency_mask, flow_to_tensor, warping_error
from renderer.media.images import to_tensor


def consecutive_errors(sources: list[np.ndarray], outputs: list[np.ndarray],
                       quality: str = "medium") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E(t) for t >= 1 for the source and the output (the source's flow and mask), and the
    share of reliable pixels (near 0 at a scene cut)."""
    estimator = FlowEstimator(quality)  # full size: the reference flow
    src_err, out_err, coverage = [], [], []
    for t in range(1, len(sources)):
        backward, forward = estimator.pair(sources[t - 1], sources[t])
        wb, wf = flow_to_tensor([backward]), flow_to_tensor([forward])
        mask = consistency_mask(wb, wf, blur=0)
        coverage.append(float(mask.mean()))
        src_err.append(warping_error(to_tensor(sources[t]), to_tensor(sources[t - 1]), wb, mask))
        out_err.append(warping_error(to_tensor(outputs[t]), to_tensor(outputs[t - 1]), wb, mask))
    return torch.cat(src_err).numpy(), torch.cat(out_err).numpy(), np.array(coverage)


@dataclass
class Coherence:
    ratio: float  # E(output) / E(source): flicker added by dreaming (1 = none)
    strength: float  # mean |output - source| in [0, 1] units
    seam: float  # error at segment boundaries / median consecutive error (1 = invisible)


def measure(sources: list[np.ndarray], outputs: list[np.ndarray],
            seams: list[tuple[int, int]], quality: str = "medium") -> Coherence:
    """Coherence of an output clip against its source.

    `seams` are the frame ranges [first, last] over which one segment hands over to the next
    (the cross-fade and the first frame after it); their mean error is compared with the median
    error of all other consecutive frames. Scene cuts (under half the pixels reliable) are left
    out of the seam comparison: there the source itself jumps.
    """
    src_err, out_err, coverage = consecutive_errors(sources, outputs, quality)
    strength = float(np.mean([np.abs(o.astype(np.float32) - s.astype(np.float32)).mean() / 255
                              for s, o in zip(sources, outputs)]))
    seam = float("nan")
    # E(t) is stored at t - 1: it compares frame t with frame t - 1
    cuts = set(np.flatnonzero(coverage < 0.5).tolist())
    at_seams = sorted({t - 1 for first, last in seams for t in range(max(first, 1), last + 1)}
                      - cuts)
    if at_seams:
        elsewhere = np.delete(out_err, sorted(set(at_seams) | cuts))
        seam = float(out_err[at_seams].mean() / np.median(elsewhere if elsewhere.size else out_err))
    return Coherence(float(out_err.mean() / src_err.mean()), strength, seam)
