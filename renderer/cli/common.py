"""What every command shares: the one-line-error parser, checked number types, the common
options and how they become a preset."""

from __future__ import annotations

import argparse
import math
import sys

from renderer.errors import UserError

SEED_MAX = 2**63 - 1


class Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error (exit 2)."""

    def error(self, message):
        print(f"error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def number(kind, low, high):
    """An argparse type: a finite int or float in [low, high], else a one-line usage error."""
    def parse(text: str):
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: use {low:g}..{high:g}")
        return value

    return parse


def add_common(p: argparse.ArgumentParser, preset: str | None, dreams: bool = True) -> None:
    """The preset options; `dreams`: also --layer, the look picked from `dream layers`."""
    p.add_argument("-p", "--preset", default=preset,
                   help="a built-in preset name ('dream presets list') or a .yaml file"
                        + (f" (default: {preset})" if preset else ""))
    if dreams:
        p.add_argument("--layer", default=None, metavar="NAME[,NAME...]",
                       help="dream this layer (or these) instead of the preset's objective, "
                            "e.g. --layer features.13: 'dream layers' shows each one's look")
    p.add_argument("--seed", type=number(int, 0, SEED_MAX), default=None,
                   help="random seed, 0..2^63-1 (default: the preset's)")
    p.add_argument("--size", default=None, help="output size WIDTHxHEIGHT")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset value, e.g. --set dream.octaves=5 (repeatable)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if present)")


def add_mask(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mask", default=None, metavar="FILE",
                   help="dream only where this mask is white (or opaque): an image, a video "
                        "matched by timestamp, or a folder of images, one per frame; the "
                        "preset's 'mask:' section shapes it (invert, grow, feather, strength)")


def add_schedule(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedule", default=None, metavar="FILE",
                   help="curves made in Parseq (its manifest .json) or Deforum (a settings "
                        "file): zoom, angle, translation and strength drive the zoom's camera "
                        "and the carried share (the preset's 'schedule:' section)")


def load_preset(args):
    from renderer import presets

    overrides = [*args.overrides, *layer_override(getattr(args, "layer", None))]
    preset = presets.load(args.preset, overrides) if args.preset else \
        presets.defaults(overrides)
    if getattr(args, "seed", None) is not None:
        preset.seed = args.seed
    mask = getattr(args, "mask", None)
    if mask is not None and not mask.strip():
        raise UserError("--mask is empty: give a mask image, video or folder")
    if mask:  # the file replaces the preset's own mask source
        preset.mask = presets.MaskSection.model_validate(
            {**preset.mask.model_dump(), "file": mask, "key": None})
    schedule = getattr(args, "schedule", None)
    if schedule is not None:
        preset.schedule = presets.ScheduleSection.model_validate(
            {**preset.schedule.model_dump(), "file": schedule})
    return preset


def layer_override(layer: str | None) -> list[str]:
    """--layer as the `--set objective=[...]` it stands for (after the user's own --set)."""
    if layer is None:
        return []
    names = [name.strip() for name in layer.split(",")]
    if not all(names):
        raise UserError(f"--layer '{layer}' names no layer: give one like features.13 "
                        "('dream models show MODEL' lists them)")
    return [f"objective=[{', '.join(names)}]"]


def check_preset_inputs(preset) -> None:
    """The pictures a preset reads, checked before any work (by the command, `queue add` and
    so the worker alike): its mask (file, folder or video, and the person key's model), its
    guide images, its own and its shots', its schedule file and its MIDI files."""
    from renderer.media.images import check_picture
    from renderer.media.masks import mask_maker
    from renderer.media.midi import read_midi

    mask_maker(preset.mask, (64, 64), [0.0], preset.video.fit)
    preset.imported()
    for row in preset.react:
        if row.file:
            read_midi(row.file)
    for shot in [preset, *preset.shots]:
        for term in shot.objective or []:
            if term.guide:
                check_picture(term.guide, "guide image")
