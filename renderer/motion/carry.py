"""The temporal carry, named once: how a video frame starts from the dream of the frame before.

`flow.mode` decides it: `independent` dreams every frame from its source; `blend` mixes in the
last dream; `warp` carries the last dream's residual (dream - source) along the backward flow;
`consistent` does so only where forward and backward flow agree, and may add a temporal pull
towards the carried picture at every ascent step (an `Anchor`). A carried frame already holds
most of its dream, so it takes `flow.steps` ascent steps; a frame that starts afresh (the first
of a segment, or any frame in `independent` mode) takes the preset's full `dream.steps`.

With `flow.hold` (0..1, 0: off) the carried dream keeps its shot's strength: warping,
persistence and the occlusion mask each lose a little of it every frame (30% in two seconds on
the sample clip), so the carried residual's coarse band is scaled back to the strength of the
shot's first dream and its fine band (which bilinear warping blurs) by `hold` of its loss; a
scene cut (under a quarter of the frame carried: hand-held shake alone can leave half) starts a
new shot, dreamed as a fresh frame, with no pull back towards its bare source.

With `flow.band_limit` (a Gaussian sigma in pixels) what each frame's dream adds is band-limited
before it is shown and carried: detail at the scale of a pixel cannot follow motion, since every
warp re-samples it, and a dream locked exactly to the picture still reads as flicker through it
(scripts/BENCHMARKS.md: 1.46 on the sample clip under its exact motion, 1.10 band-limited, at
0.93x the strength). Band-limited, the carried dream also loses less to bilinear warping, and
holding it costs less flicker. A held shot's first frame keeps its dream's strength through the
limit (its energy moved into coarser shapes): what the limit took from it, the hold would take
from the whole shot.

With `flow.still` (levels, 0-255) still things stay still. Where the source did not change
(measured on the pixels: on a noisy still wall DIS reports sub-pixel motion, and each warp by
it re-samples the dream; in a flat sky it spreads a moving object's motion around it), the
camera did not pan (phase correlation) and no reliable flow over textured picture says it
moved, the last dream is kept unwarped (fading by
`persistence` only where no hold gives it back),
no hold rescales it, and once fully dreamed (an `age` per pixel, carried along the flow like the
dream) it takes no ascent step; picture that moves or comes into view is dreamed as before, and
not pulled back until it is fully dreamed. Without it, the whole picture took every carried
frame's steps and the hold's picture-wide gain: a still wall behind a moving object shimmered
and pumped (scripts/BENCHMARKS.md, issue 28).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from renderer.engine.dream import Anchor, row_values, to_device
from renderer.motion.flow import consistency_mask, gaussian_blur, still_weight, warp
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

    def settle(self, start: torch.Tensor, dreamed: torch.Tensor, begins=None) -> torch.Tensor:
        """A frame's dream as it is shown and carried: with `flow.band_limit`, what dreaming
        added to `start` this frame loses its pixel-scale detail (the first frame of a shot
        starts from its source, so by induction the whole carried dream is band-limited).

        `begins` ((N,) bools) marks rows that begin a shot which `flow.hold` holds at their
        strength: those keep their dream's mean magnitude through the band limit, its energy
        moved into the shapes that motion can carry. Whatever the limit took from a first frame
        the hold would take from its whole shot (a tripod shot held 0.89x the strength of
        independent frames; scripts/BENCHMARKS.md)."""
        sigma = self.settings.band_limit
        if not sigma or self.settings.mode == "independent":
            return dreamed
        added = dreamed - start
        limited = gaussian_blur(added, sigma)
        if begins is not None:
            gain = (_magnitude(added) / _magnitude(limited).clamp_min(1e-8)).clamp(1.0, KEPT_GAIN)
            begins = to_device(begins, gain.device, torch.bool)
            limited = limited * torch.where(begins, gain, 1.0).view(-1, 1, 1, 1)
        return (start + limited).clamp(0, 1)

    def start(self, source: torch.Tensor, prev_source: torch.Tensor, prev_dream: torch.Tensor,
              backward: torch.Tensor | None, forward: torch.Tensor | None,
              persistence=None, temporal_weight=None, reference: torch.Tensor | None = None,
              age: torch.Tensor | None = None, cuts=None) -> "Start":
        """Where a carried frame starts dreaming; all (N, C, H, W) batches on one device, flows
        at the frame's size. `persistence` and `temporal_weight` replace the preset's with one
        value per image (driven by music). With `flow.hold`, `reference` (one strength per
        image: its shot's first dream) is the energy the carried dream is held at. With
        `flow.still`, `age` ((N, 1, H, W), 0..1) is how fully each pixel of the last frame was
        dreamed (1: as much as a first frame). `cuts` ((N,) bools) are rows that start afresh
        whatever the flow says (a shot's cut)."""
        s = self.settings
        rows = source.shape[0]
        keep = s.persistence if persistence is None else row_values(persistence, rows,
                                                                    source.device)
        pull = s.temporal_weight if temporal_weight is None else \
            row_values(temporal_weight, rows, source.device)
        if s.mode == "independent":
            return Start(source)
        if s.mode == "blend":
            last = prev_dream if cuts is None else torch.where(
                to_device(cuts, source.device, torch.bool).view(-1, 1, 1, 1), source, prev_dream)
            return Start((1 - s.blend) * source + s.blend * last)
        residual = warp(prev_dream - prev_source, backward)
        mask = consistency_mask(backward, forward, s.mask_blur) if s.mode == "consistent" \
            else torch.ones_like(residual[:, :1])
        carried = keep * mask * residual
        fresh = new = None
        if s.hold and reference is not None:
            cover = mask.flatten(1).mean(1)
            carried, fresh = _held(carried, cover, reference, s.hold)
            new = 1 - cover
        if cuts is not None:
            cut = to_device(cuts, source.device, torch.bool)
            fresh = cut if fresh is None else fresh | cut
            carried = carried * (~cut).to(carried.dtype).view(-1, 1, 1, 1)
        step_map = carried_age = None
        if s.still:
            # what did not move keeps its dream, unwarped (no warp re-samples it, no hold
            # rescales it); once fully dreamed it takes no ascent step either: only what moves,
            # comes into view or is still being dreamed in is dreamed
            still = still_weight(source, prev_source, backward, s.still, reliable=mask)
            if fresh is not None:
                still = still * (~fresh).to(still.dtype).view(-1, 1, 1, 1)
            # persistence lets a dream fade; with a hold, the hold would give it back
            stay = 1.0 if s.hold and reference is not None else keep
            age = torch.ones_like(mask) if age is None else age
            carried_age = still * stay * age + (1 - still) * warp(age, backward) * mask
            frozen = still * carried_age.clamp(0, 1)
            carried = frozen * stay * (prev_dream - prev_source) + (1 - frozen) * carried
            step_map = 1 - frozen
        start = (source + carried).clamp(0, 1)
        if s.mode == "warp":
            return Start(start, fresh=fresh, new=new, step_map=step_map, age=carried_age)
        # the temporal loss pulls towards the carried dream (a cut has none: nothing pulls it
        # back towards its bare source)
        pulling = bool(np.any(np.asarray(s.temporal_weight if temporal_weight is None
                                         else temporal_weight) > 0))  # from the host's values
        if fresh is not None:
            mask = mask * (~fresh).to(mask.dtype).view(-1, 1, 1, 1)
        if carried_age is not None:  # what is still being dreamed in is not pulled back
            mask = mask * carried_age.clamp(0, 1)
        return Start(start, Anchor(start, mask, pull) if pulling else None, fresh, new, step_map,
                     carried_age)


@dataclass
class Start:
    """A frame's starting image, its temporal anchor, which rows start a new shot (a scene
    cut: too little of the last dream could be carried) and are dreamed as fresh frames,
    (with a hold) the share of each row that starts undreamed: picture that came into view,
    and (with `flow.still`) how far each pixel may move: 0 where nothing moved."""
    image: torch.Tensor
    anchor: Anchor | None = None
    fresh: torch.Tensor | None = None  # (N,) bool
    new: torch.Tensor | None = None  # (N,) 0..1
    step_map: torch.Tensor | None = None  # (N, 1, H, W) 0..1
    age: torch.Tensor | None = None  # (N, 1, H, W): how fully each pixel is dreamed already

    def aged(self, carry: "Carry", steps: int, step_scale) -> torch.Tensor | None:
        """Each pixel's age after this frame's ascent: grown by the steps it took (scaled per
        pixel and row) over MATURE first frames' steps; a cut's rows are dreamed as first
        frames (1)."""
        if self.age is None:
            return None
        scale = row_values(step_scale, self.age.shape[0], self.age.device)
        share = steps / (MATURE * max(1, carry.fresh_steps))
        grown = self.age + self.step_map * scale * share
        if self.fresh is not None:
            grown = torch.where(self.fresh.view(-1, 1, 1, 1), torch.ones_like(grown), grown)
        return grown.clamp(0, 1)

    def step_scale(self, carry: "Carry") -> torch.Tensor | float:
        """A carried frame's step size, (N,) on the device, grown with its share of new picture
        towards what a fresh frame's steps would add, so what comes into view is dreamed
        sooner (1.0 without a hold, and for a cut, which is dreamed as a first frame)."""
        if self.new is None:
            return 1.0
        new = self.new if self.fresh is None else self.new * (~self.fresh)
        more = carry.fresh_steps / max(1, carry.carried_steps) - 1
        return 1 + more * new


# flow.still: a pixel that came into view is dreamed (and not pulled back) until it has taken
# the steps of this many first frames; then, while still, it is left as it is. Fewer (1, 2)
# freeze the trail of a moving object weak: 0.91x, 0.93x the strength on a still wall
# against 0.97x (scripts/BENCHMARKS.md)
MATURE = 4
CUT = 0.25  # a frame where under a quarter of the last frame could be followed starts a new shot
KEPT_GAIN = 2.0  # the most a first frame's band-limited dream is scaled up to keep its strength


def _magnitude(images: torch.Tensor) -> torch.Tensor:
    """(N,): each row's mean absolute value."""
    return images.abs().flatten(1).mean(1)


def bands(residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A dream residual as its coarse shapes and its fine detail (what bilinear warping blurs
    away first)."""
    coarse = gaussian_blur(residual, 1.0)
    return coarse, residual - coarse


def strength(residual: torch.Tensor) -> torch.Tensor:
    """(N, 2): the mean magnitude of each band of every row's residual."""
    return _band_strength(*bands(residual))


def _band_strength(coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    return torch.stack([_magnitude(coarse), _magnitude(fine)], dim=1)


def _held(carried: torch.Tensor, cover: torch.Tensor, reference: torch.Tensor, detail: float):
    """The carried dream scaled back, band by band, to its shot's strength (`reference`: (N, 2)
    per row): what warping and persistence lost is given back (the fine band's loss in the
    proportion `detail`, 0..1: given back in full it flickers), so the look of a shot's first
    frame lasts; and which rows are cuts (they start afresh). The strength is compared over
    the area the mask carried (`cover`: (N,), 0..1 of each row): picture that came into view
    is not made up for by a stronger dream elsewhere (on fast hand-held footage that
    flickered: 1.29 -> 1.23)."""
    coarse, fine = bands(carried)
    have = _band_strength(coarse, fine) / cover.clamp_min(CUT)[:, None]
    gain = (reference.to(have) / have.clamp_min(1e-6)).clamp(0.0, 4.0)
    gain = torch.stack([gain[:, 0], gain[:, 1] ** detail], 1)  # fine detail: `detail` of it
    fresh = cover < CUT
    gain = torch.where(fresh.unsqueeze(1), torch.zeros_like(gain), gain)
    return coarse * gain[:, :1, None, None] + fine * gain[:, 1:, None, None], fresh
