"""The plan of a video render: segments that advance in lockstep, and parts of a split render.

The clip is cut into B segments that advance together, one frame of each per batch step. Two
chains that started at different frames paint different dream patterns on the same content, so
a hard cut between segments would show. Each segment therefore starts `warmup` frames early and
its warm-up frames are cross-faded (smoothstep) into the previous segment's last frames: the
hand-over is spread over `warmup` frames. A split render gives each part a run of consecutive
segments; the part boundaries are handed over the same way when the parts are assembled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from renderer.curves import crossfade_weight
from renderer.render.checkpoints import work_dir

PART_BATCH = 8  # segments per part of a split render unless --batch says otherwise


@dataclass(frozen=True)
class Segment:
    """One lockstep chain of frames: dreamed from `start`, written from `keep`."""
    index: int
    start: int  # first frame dreamed (warm-up included)
    keep: int  # first frame written
    end: int  # one past the last frame

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_segments(count: int, batch: int, warmup: int) -> list[Segment]:
    """Split `count` frames into at most `batch` segments, each at least 4x warm-up long
    (so warm-up frames add at most a quarter to the work)."""
    n = max(1, min(batch, count // max(4, 4 * warmup)))
    bounds = [round(i * count / n) for i in range(n + 1)]
    return [Segment(i, max(0, bounds[i] - warmup), bounds[i], bounds[i + 1]) for i in range(n)]


def fade_weight(segment: Segment, frame: int) -> float:
    """Weight of `segment`'s warm-up frame in the cross-fade with the previous segment."""
    return crossfade_weight(frame - segment.start, segment.keep - segment.start)


def seam_ranges(segments: list[Segment]) -> list[tuple[int, int]]:
    """The frames over which each segment after the first takes over from the one before."""
    return [(s.start, s.keep) for s in segments[1:]]


@dataclass(frozen=True)
class Part:
    """Part `number` (0-based) of a render split into `count` parts, each a run of consecutive
    segments that one machine renders alone; `assemble_parts` joins them."""
    number: int
    count: int

    def span(self, segments: int) -> tuple[int, int]:
        """The segments [first, last) this part renders (empty when there are fewer segments
        than parts)."""
        return (round(self.number * segments / self.count),
                round((self.number + 1) * segments / self.count))

    def folder(self, output: Path) -> Path:
        return work_dir(output) / f"part_{self.number + 1}of{self.count}"

    def __str__(self) -> str:
        return f"{self.number + 1}/{self.count}"


WHOLE = Part(0, 1)


@dataclass(frozen=True)
class PartPlan:
    """One part's share of a split render (a whole render is part 1 of 1)."""
    segments: list[Segment]  # the whole render's
    mine: list[Segment]  # the ones this part dreams
    tail_from: int | None  # where this part's last frames start to hand over to the next part

    @property
    def kept(self) -> int:
        """Frames this part writes itself (its hand-over tail is written at assembly)."""
        if not self.mine:
            return 0
        handed_over = 0 if self.tail_from is None else self.mine[-1].end - self.tail_from
        return sum(s.end - s.keep for s in self.mine) - handed_over

    @property
    def dreamed(self) -> int:
        """Frames this part dreams, warm-ups included."""
        return sum(s.length for s in self.mine)

    def kept_before(self, step: int) -> int:
        """Frames this part has written once `step` lockstep steps are done (a resume's
        count, so that its progress is the whole render's)."""
        ends = [min(s.end, s.start + step) for s in self.mine]
        if self.tail_from is not None and ends:
            ends[-1] = min(ends[-1], self.tail_from)
        return sum(max(0, end - s.keep) for s, end in zip(self.mine, ends))

    def dreamed_before(self, step: int) -> int:
        return sum(min(step, s.length) for s in self.mine)


def part_plan(count: int, batch: int, warmup: int, part: Part = WHOLE) -> PartPlan:
    segments = plan_segments(count, batch * part.count, warmup)
    first, last = part.span(len(segments))
    return PartPlan(segments, segments[first:last],
                    segments[last].start if last < len(segments) else None)


def default_batch(device: torch.device, size: tuple[int, int]) -> int:
    """Segments per batch: 2 on the CPU; on CUDA what a quarter of free memory holds."""
    if device.type != "cuda":
        return 2
    free, _ = torch.cuda.mem_get_info(device)
    # MobileNetV2 up to features.12 writes ~40x the input's fp32 bytes in conv outputs; bf16
    # halves that, autograd keeps ~3 tensors per conv: ~80x the input, rounded up for safety
    per_frame = size[0] * size[1] * 3 * 4 * 80
    return int(max(1, min(16, free * 0.25 // per_frame)))
