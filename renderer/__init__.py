"""DeepDream renderer: a small scripting API beside the `dream` CLI.

    from renderer import load_preset

    from renderer import dream_image
    out = dream_image("photo.jpg", load_preset("classic"), seed=3)   # HxWx3 uint8
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_preset(name_or_path: str, overrides: list[str] = ()):
    """A validated preset by built-in name or file path, with `section.key=value` overrides."""
    from renderer.presets import load

    return load(name_or_path, overrides)


def dream_batch(images, preset, seed: int | None = None, device=None):
    """Dream an (N, 3, H, W) float tensor in [0, 1] in one batch; returns the same shape."""
    from renderer.engine.dream import dreamer_for

    return dreamer_for(preset, device).dream(images, seed=preset.seed if seed is None else seed)


def dream_image(path, preset, seed: int | None = None, size=None, device=None):
    """Dream one image file; returns an HxWx3 uint8 RGB array."""
    from renderer.media.images import load_image, to_uint8

    return to_uint8(dream_batch(load_image(path, size=size), preset, seed, device))[0]
