"""The one owner of a carried frame: `Chain.frame(rows, sources, flows, driven) -> dreamed`.

A chain is a set of segments (batch rows) advancing frame by frame, each starting from the
dream of its last frame carried along the flow (`motion.carry`). It owns everything that
protocol needs between frames, so that the video loop, `dream live` and the benches cannot
assemble it differently: each row's last source and dream, the hold's reference strength,
the ascent steps and step scale of fresh, carried and cut frames, the cut's fresh re-dream,
the band limit (`Carry.settle`), music-driven values (`drivable.Driven`), the region a
mask lets it dream (the ascent's step weighted by it, the source kept outside, the mask carried
along the flow), a shot's crossfade (the last look's picture carried along the flow and faded
out over the new one's, which is what the row carries on), and the padding that keeps a
compiled step at one batch shape.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from renderer.drivable import NOTHING, Driven
from renderer.engine.dream import Anchor, Dreamer, row_values, to_device
from renderer.motion.carry import Carry, strength
from renderer.motion.flow import resize_flow, warp
from renderer.presets import Preset


@dataclass(frozen=True)
class Link:
    """What a row carries into its next frame (and what a checkpoint saves of it)."""
    source: torch.Tensor  # (3, H, W) the last frame's source, in [0, 1]
    dream: torch.Tensor  # (3, H, W) its dream (as shown, but for a crossfade's fading look)
    reference: torch.Tensor | None = None  # flow.hold: (2,) the strength of its shot's start
    age: torch.Tensor | None = None  # flow.still: (1, H, W) how fully each pixel is dreamed
    mask: torch.Tensor | None = None  # mask: (1, H, W) 0..1, the region it was dreamed in
    fading: torch.Tensor | None = None  # crossfade: (3, H, W) the last look's dream - source


# the optional tensors of a Link, by name (what a checkpoint saves of a row besides its frames)
LINK_MAPS = ("reference", "age", "mask", "fading")


class Chain:
    """Dreams each next frame of a set of rows (segments) from the last one's dream.

    `preset` says how frames are carried and dreamed (its `flow` and `dream` sections; its
    `dream.step_size` over the dreamer's is a step scale, so a live preset with the strength
    slider applied dreams at that strength). `width`: the rows of every batch when the
    dreamer keeps its shapes fixed (compiled), so a batch with fewer rows is padded."""

    def __init__(self, preset: Preset, dreamer: Dreamer, links: dict[int, Link] | None = None,
                 width: int | None = None):
        self.preset, self.dreamer, self.width = preset, dreamer, width
        self.carry = Carry.of(preset)
        self.links: dict[int, Link] = dict(links or {})
        self.coverage: torch.Tensor | None = None  # the last frames' shown region (a mask's)

    def retuned(self, preset: Preset, dreamer: Dreamer | None = None) -> "Chain":
        """The same rows carried on with another preset (live's sliders): the hold's reference
        follows the step size, so a stronger setting is held at its own strength."""
        gain = preset.dream.step_size / self.preset.dream.step_size
        links = {i: link if link.reference is None else replace(link,
                 reference=link.reference * gain) for i, link in self.links.items()}
        return Chain(preset, dreamer or self.dreamer, links, self.width)

    def _scale(self, driven: Driven, rows: int, device) -> torch.Tensor:
        """(N,) on the device: each row's step size over the dreamer's (1.0: the preset's
        own)."""
        own = self.preset.dream.step_size
        scale = 1.0 if driven.step_size is None else driven.step_size / own
        ratio = own / self.dreamer.settings.step_size
        return row_values(scale if ratio == 1.0 else scale * ratio, rows, device).view(rows)

    def frame(self, rows: list[int], sources: torch.Tensor,
              flows: tuple[torch.Tensor, torch.Tensor] | None = None,
              driven: Driven = NOTHING, masks: torch.Tensor | None = None,
              turn: int = 0) -> torch.Tensor:
        """The dreams (N, 3, H, W) of the next frame of `rows`: `sources` (N, 3, H, W) in
        [0, 1] on the dreamer's device, `flows` (backward, forward) from each row's last
        frame to this one at any size (None for the first frame of rows, or a carry that
        needs no flow), `masks` (N, 1, H, W) in 0..1 the region each row may dream (None:
        all of it). Rows of one call are all first frames or all carried. `turn`: the frame's
        place in its rows' run (the lockstep step), which picks the octave a carried frame
        dreams with `flow.octaves: rotate` (from the step, so a resumed render dreams the
        same)."""
        carry, dreamer = self.carry, self.dreamer
        n = len(rows)
        carried = [i in self.links for i in rows]
        first = not any(carried)
        if not first and not all(carried):
            raise ValueError("the rows of one batch step must all be first or all carried")
        step_scale = self._scale(driven, n, sources.device)
        start, anchor, fresh, step_map, begun = sources, None, None, None, None
        backward = None
        if not first:
            links = [self.links[i] for i in rows]
            forward = None
            if flows is not None:
                backward, forward = (resize_flow(f.to(sources.device, non_blocking=True),
                                                 sources.shape[-2:]) for f in flows)
            begun = carry.start(sources, torch.stack([link.source for link in links]),
                                torch.stack([link.dream for link in links]), backward, forward,
                                driven.persistence, driven.temporal_weight,
                                _stacked([link.reference for link in links]),
                                _stacked([link.age for link in links]), driven.cuts)
            start, anchor, step_map = begun.image, begun.anchor, begun.step_map
            step_scale = step_scale * begun.step_scale(carry)
            if begun.fresh is not None:
                # the one value a carried frame reads back from the device: which rows are cuts
                # (dreamed again as first frames)
                fresh = begun.fresh.cpu().numpy()
        mask = shown = None
        if masks is not None:
            # the ascent steps where the mask is; how much of that shows is its strength
            mask, shown = self._region(rows, masks, backward, driven, fresh)
            step_map = mask if step_map is None else step_map * mask
            if begun is not None:
                begun.step_map = step_map  # what the mask left alone has not aged
        pad = (self.width or n) - n if dreamer.static_shapes else 0
        if pad > 0:
            start, anchor, driven = _longer(start, pad), _padded(anchor, pad), driven.padded(pad)
            step_map = None if step_map is None else _longer(step_map, pad)
            mask = None if mask is None else _longer(mask, pad)
            step_scale = _longer(step_scale, pad)
        if driven.term_weights:  # music's and shots' term weights, one row per image
            self.dreamer.objective.set_driven(driven.term_weights)
        steps = carry.steps(first, driven.steps)
        rotate = not first and carry.settings.octaves == "rotate"
        raw = self._dream(start, steps, step_scale, anchor, step_map,
                          turn if rotate else None)[:n]
        if fresh is not None and fresh.any():
            # a cut dreams as a first frame does (fewer, larger steps dream a stronger, finer
            # picture, which a later segment's first frame would not match)
            again = self._dream(start, carry.steps(True, driven.steps), step_scale,
                                step_map=mask)[:n]
            raw = torch.where(to_device(fresh, raw.device, torch.bool).view(-1, 1, 1, 1), again,
                              raw)
        hold = carry.settings.hold
        begins = (np.ones(n, bool) if first else fresh) if hold else None
        dreamed = carry.settle(start[:n], raw, begins)
        self.coverage = shown
        if shown is not None:  # outside the mask the source, whatever was carried there
            dreamed = torch.lerp(sources, dreamed, shown)
        ages = begun.aged(carry, steps, step_scale[:n]) if begun is not None else None
        fading = None if first or driven.fade is None else self._fading(rows, backward)
        for row, i in enumerate(rows):
            reference = self.links[i].reference if i in self.links else None
            if hold and (first or (fresh is not None and fresh[row])):
                reference = strength((dreamed[row] - sources[row])[None])[0]
            self.links[i] = Link(sources[row], dreamed[row], reference,
                                 None if ages is None else ages[row],
                                 None if mask is None else mask[row],
                                 None if fading is None or driven.fade[row] <= 0 else
                                 fading[row])
        if fading is None:
            return dreamed
        old = (sources + fading).clamp(0, 1)
        return torch.lerp(dreamed, old, row_values(driven.fade, n, dreamed.device))

    def _fading(self, rows: list[int], backward: torch.Tensor | None) -> torch.Tensor:
        """The last look's picture over each row's new source (a crossfade's fading look): what
        its dream added to its source, carried along the flow as a carried frame is."""
        added = torch.stack([link.fading if link.fading is not None else
                             link.dream - link.source for link in map(self.links.get, rows)])
        return added if backward is None else warp(added, backward)

    def _region(self, rows: list[int], masks: torch.Tensor, backward: torch.Tensor | None,
                driven: Driven, fresh: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Where each row dreams, as carried on (the mask) and as dreamed (at `mask.strength`,
        or the driven one). `mask.follow` of the last frame's mask is carried along the flow,
        so a key's edge holds still on a moving subject; a first frame or a cut takes its
        mask as it is."""
        settings = self.preset.mask
        mask = masks.float()
        follow = settings.carried
        if follow and all(i in self.links and self.links[i].mask is not None for i in rows):
            last = torch.stack([self.links[i].mask for i in rows]).to(mask)
            if backward is not None:
                last = warp(last, backward)
            keep = row_values(follow if fresh is None else np.where(fresh, 0.0, follow),
                              len(rows), mask.device)
            mask = (1 - keep) * mask + keep * last
        gain = row_values(settings.strength if driven.mask_strength is None else
                          driven.mask_strength, len(rows), mask.device)
        return mask, (mask * gain).clamp(0, 1)

    def _dream(self, start, steps: int, step_scale, anchor: Anchor | None = None,
               step_map: torch.Tensor | None = None, turn: int | None = None):
        return self.dreamer.dream(start, seed=self.preset.seed, steps=steps,
                                  octaves=self.preset.dream.octaves, step_scale=step_scale,
                                  anchor=anchor, step_map=step_map, turn=turn)


def _stacked(maps: list) -> torch.Tensor | None:
    """The rows' tensors (references, age maps) as one batch (None unless every row has
    one)."""
    return torch.stack(maps) if maps and all(m is not None for m in maps) else None


def _longer(t: torch.Tensor, pad: int) -> torch.Tensor:
    """`pad` more rows, each the last one repeated."""
    return torch.cat([t, t[-1:].expand(pad, *t.shape[1:])])


def _padded(anchor: Anchor | None, pad: int) -> Anchor | None:
    if anchor is None:
        return None
    weight = anchor.weight if isinstance(anchor.weight, float | int) else \
        _longer(anchor.weight, pad)
    return Anchor(_longer(anchor.target, pad), _longer(anchor.mask, pad), weight)
