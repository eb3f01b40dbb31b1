"""What every command shares: the one-line-error parser, checked number types, the common
options and how they become a preset."""

from __future__ import annotations

import argparse
import math
import sys

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


def add_common(p: argparse.ArgumentParser, preset: str | None) -> None:
    p.add_argument("-p", "--preset", default=preset,
                   help="a built-in preset name ('dream presets list') or a .yaml file"
                        + (f" (default: {preset})" if preset else ""))
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


def load_preset(args):
    from renderer import presets

    preset = presets.load(args.preset, args.overrides) if args.preset else presets.defaults()
    if getattr(args, "seed", None) is not None:
        preset.seed = args.seed
    if getattr(args, "mask", None):  # the file replaces the preset's own mask source
        preset.mask = presets.MaskSection.model_validate(
            {**preset.mask.model_dump(), "file": args.mask, "key": None})
    return preset
