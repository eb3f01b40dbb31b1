"""The temporal carry, named once: how a video frame starts from the dream of the frame before.

`flow.mode` decides it: `independent` dreams every frame from its source; `blend` mixes in the
last dream; `warp` carries the last dream's residual (dream - source) along the backward flow;
`consistent` does so only where forward and backward flow agree, and may add a temporal pull
towards the carried picture at every ascent step (an `Anchor`). A carried frame already holds
most of its dream, so it takes `flow.steps` ascent steps; a frame that starts afresh (the first
of a segment, or any frame in `independent` mode) takes the preset's full `dream.steps`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from renderer.engine.dream import Anchor, row_values
from renderer.motion.flow import consistency_mask, warp
from renderer.presets import FlowSection, Preset


@dataclass(frozen=True)
class Carry:
    settings: FlowSection
    fresh_steps: int  # steps of a frame dreamed from its source alone
    carried_steps: int  # steps of a frame that starts from the previous dream

    @classmethod
    def of(cls, preset: Preset) -> "Carry":
        flow = preset.flow
        carried = preset.dream.steps if flow.steps is None or flow.mode == "independent" \
            else flow.steps
        return cls(flow, preset.dream.steps, carried)

    @property
    def needs_flow(self) -> bool:
        return self.settings.mode in ("warp", "consistent")

    def steps(self, first: bool, fresh: int | None = None) -> int:
        """Steps of a first (fresh) or carried frame; `fresh` replaces `dream.steps` (a
        driven value), and so a carried frame's too unless `flow.steps` sets those."""
        if fresh is None:
            return self.fresh_steps if first else self.carried_steps
        own_carried = self.settings.steps is not None and self.settings.mode != "independent"
        return self.carried_steps if own_carried and not first else fresh

    def start(self, source: torch.Tensor, prev_source: torch.Tensor, prev_dream: torch.Tensor,
              backward: torch.Tensor | None, forward: torch.Tensor | None,
              persistence=None, temporal_weight=None) -> tuple[torch.Tensor, Anchor | None]:
        """The image a carried frame starts dreaming from, and its temporal anchor (if any);
        all (N, C, H, W) batches on one device, flows at the frame's size. `persistence` and
        `temporal_weight` replace the preset's with one value per image (driven by music)."""
        s = self.settings
        rows = source.shape[0]
        keep = s.persistence if persistence is None else row_values(persistence, rows,
                                                                    source.device)
        pull = s.temporal_weight if temporal_weight is None else \
            row_values(temporal_weight, rows, source.device)
        if s.mode == "independent":
            return source, None
        if s.mode == "blend":
            return (1 - s.blend) * source + s.blend * prev_dream, None
        residual = warp(prev_dream - prev_source, backward)
        if s.mode == "warp":
            return (source + keep * residual).clamp(0, 1), None
        mask = consistency_mask(backward, forward, s.mask_blur)
        start = (source + keep * mask * residual).clamp(0, 1)
        # the temporal loss pulls towards the carried dream (persistence applied, so it can fade)
        pulling = bool((pull > 0).any()) if isinstance(pull, torch.Tensor) else pull > 0
        return start, Anchor(start, mask, pull) if pulling else None
