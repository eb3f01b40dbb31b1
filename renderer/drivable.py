"""What music may drive: one registry of the drivable targets (how each varies inside a batch
and its valid range), and `Driven`, the typed values one batch step of a video takes.

The preset loader checks targets against `TARGETS`, the schedule clamps to their ranges,
`music.schedule.driven_rows` makes a `Driven` and the carried-frame chain
(`motion.chain.Chain`) is the one place that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Target:
    varies: str  # "per row" (each batch row its own value), "per step" (the first row's), "zoom"
    low: float
    high: float


TERM_WEIGHT = "objective.N.weight"  # stands for objective.0.weight, objective.1.weight, ...
TARGETS = {
    "dream.step_size": Target("per row", 0.0, 1.0),
    "flow.persistence": Target("per row", 0.0, 1.0),
    "flow.temporal_weight": Target("per row", 0.0, 1.0),
    TERM_WEIGHT: Target("per row", -100.0, 100.0),
    "mask.strength": Target("per row", 0.0, 1.0),
    "dream.steps": Target("per step", 0, 1000),
    "zoom.zoom": Target("zoom", 0.01, 100.0),
    "zoom.rotate": Target("zoom", -3600.0, 3600.0),
    "zoom.pan.x": Target("zoom", -100.0, 100.0),
    "zoom.pan.y": Target("zoom", -100.0, 100.0),
    "zoom.center.x": Target("zoom", 0.0, 1.0),
    "zoom.center.y": Target("zoom", 0.0, 1.0),
    "zoom.strength": Target("zoom", 0.0, 10.0),
    "zoom.layer_mix": Target("zoom", 0.0, 1.0),
    "zoom.steps": Target("zoom", 0, 100),
}


# not targets a preset drives (music.shots): SHOT_CUT is 1 on the first frame of a shot whose
# transition is a `cut` or a `crossfade`, which starts afresh as a scene cut does; SHOT_FADE is
# how much of the last look's picture a crossfade still shows over it (1 -> 0)
SHOT_CUT = "shot.cut"
SHOT_FADE = "shot.fade"


def term_index(target: str) -> int | None:
    """K of 'objective.K.weight' (None for any other target)."""
    parts = target.split(".")
    if len(parts) == 3 and parts[0] == "objective" and parts[2] == "weight" and \
            parts[1].isdigit():
        return int(parts[1])
    return None


def target_of(name: str) -> Target:
    return TARGETS[TERM_WEIGHT if term_index(name) is not None else name]


def _longer(values: np.ndarray, pad: int) -> np.ndarray:
    return np.concatenate([values, np.repeat(values[-1:], pad)])


@dataclass(frozen=True)
class Driven:
    """One batch step's music-driven values, one per row (None: the preset's own value).
    `steps` is one number for the whole step (the first row's); `term_weights` maps an
    objective term's index to its per-row weights; `cuts` marks rows that start afresh (a
    shot's `cut` or `crossfade` transition); `fade` is the share of the last look's picture a
    crossfade still shows; `mask_strength` replaces `mask.strength`."""
    step_size: np.ndarray | None = None
    steps: int | None = None
    persistence: np.ndarray | None = None
    temporal_weight: np.ndarray | None = None
    term_weights: dict[int, np.ndarray] = field(default_factory=dict)
    cuts: np.ndarray | None = None  # (N,) bool
    mask_strength: np.ndarray | None = None
    fade: np.ndarray | None = None  # (N,) 0..1

    def padded(self, pad: int) -> "Driven":
        """`pad` more rows, each the last one repeated (compiled code keeps one batch shape
        when a shorter segment has ended)."""
        if pad <= 0:
            return self
        grow = lambda v: None if v is None else _longer(v, pad)  # noqa: E731
        return replace(self, step_size=grow(self.step_size),
                       persistence=grow(self.persistence),
                       temporal_weight=grow(self.temporal_weight),
                       term_weights={k: grow(v) for k, v in self.term_weights.items()},
                       cuts=grow(self.cuts), mask_strength=grow(self.mask_strength),
                       fade=grow(self.fade))


NOTHING = Driven()
