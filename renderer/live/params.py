"""What the live page may change between frames (`LiveParams`): a preset by name, a layer of
its model, a mask, one of the preset's shots and numbers in range, validated; and the preset
as it then looks on screen."""

from __future__ import annotations

from dataclasses import dataclass, replace

from renderer.controls import MASKS, MIN_STEP
from renderer.errors import UserError
from renderer.motion.carry import Carry
from renderer.presets import MaskSection, Preset


@dataclass(frozen=True)
class LiveParams:
    """What the page may change: a preset by name, a layer of its model by name and numbers in
    range, nothing else."""
    preset: str = "live"
    strength: float = 1.0  # multiplies dream.step_size
    steps: int = 2  # ascent steps per frame
    octaves: int = 2
    persistence: float = 0.9  # share of the last dream carried into the next frame
    layer: str = ""  # dream this layer instead of the preset's objective ("": the preset's)
    mask: str = ""  # a region of MASKS instead of the preset's own mask ("": the preset's)
    shot: int = 0  # the look of the preset's shot this is (0: the preset's own)

    LIMITS = {"strength": (0.0, 4.0), "steps": (0, 20), "octaves": (1, 6),
              "persistence": (0.0, 1.0)}

    @classmethod
    def of(cls, name: str, preset: Preset, shot: int = 0) -> "LiveParams":
        """The sliders where the preset (as its shot `shot` shows it) puts them: a frame's
        steps are its carried steps."""
        return cls(name, 1.0, Carry.of(preset).carried_steps, preset.dream.octaves,
                   preset.flow.persistence, shot=shot)

    def applied(self, preset: Preset) -> Preset:
        """The preset as it looks on screen, for `dream render` to reproduce: every frame
        takes `steps` steps at `octaves` octaves, as it does live."""
        dream = preset.dream.model_copy(update={
            "octaves": self.octaves, "steps": self.steps,
            "step_size": max(preset.dream.step_size * self.strength, MIN_STEP)})
        flow = preset.flow.model_copy(update={"persistence": self.persistence,
                                              "steps": self.steps})
        objective = [self.layer] if self.layer else preset.objective
        mask = preset.mask if MASKS[self.mask] is None else MaskSection(**MASKS[self.mask])
        return Preset.model_validate({**preset.model_dump(by_alias=True), "objective": objective,
                                      "dream": dream.model_dump(by_alias=True),
                                      "flow": flow.model_dump(by_alias=True),
                                      "mask": mask.model_dump(by_alias=True)})

    def with_changes(self, changes: dict, presets: list[str],
                     layers: list[str] = (), shots: int = 0) -> "LiveParams":
        """A copy with `changes` applied; UserError names a key, value, preset, layer, mask
        or shot that is not allowed (the page can only pick from the lists and numbers in
        range; `shots`: how many the preset has)."""
        out = {}
        for key, value in changes.items():
            if key == "shot":
                if not isinstance(value, int) or isinstance(value, bool) or \
                        not 0 <= value <= shots:
                    raise UserError(f"shot {value!r} is not one of the preset's: give 0 (its "
                                    f"own look) to {shots}")
                out[key] = value
                continue
            if key in ("preset", "layer", "mask"):
                allowed = {"preset": presets, "layer": ["", *layers], "mask": list(MASKS)}[key]
                if value not in allowed:
                    raise UserError(f"unknown {key} '{value}': pick one of the list")
                out[key] = value
                continue
            if key not in self.LIMITS:
                raise UserError(f"'{key}' cannot be changed live: use one of "
                                f"preset, layer, mask, shot, {', '.join(self.LIMITS)}")
            low, high = self.LIMITS[key]
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise UserError(f"{key} must be a number from {low} to {high}") from None
            if not low <= number <= high:
                raise UserError(f"{key} {number:g} is out of range: use {low} to {high}")
            out[key] = int(round(number)) if isinstance(getattr(self, key), int) else number
        return replace(self, **out)
