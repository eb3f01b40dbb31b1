"""What the benches share: their common arguments, the card they ran on, and a report that
prints as it goes (a run cut short still reports what it measured) and, with --out, is
appended to a file. Every report opens with the date, the card and the command."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path


def parser(doc: str, *, clip: bool = True, preset: str | None = "video",
           size: bool = True) -> argparse.ArgumentParser:
    """A bench's parser with the arguments every bench spells the same way: the clip, -p,
    --set, --size, --device and --out."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    if clip:
        p.add_argument("clip")
    if preset is not None:
        p.add_argument("-p", "--preset", default=preset)
        p.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="a preset override (repeatable)")
    if size:
        p.add_argument("--size", default=None, help="WxH (default: the clip's)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="also append the report to this file")
    return p


def card(device) -> str:
    """The GPU's name, or the CPU's cores and architecture."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


class Report:
    """Lines printed at once and appended to `out` (if given)."""

    def __init__(self, title: str, device, out: str | None = None):
        import torch

        self.out = Path(out) if out else None
        self.emit(f"# {title} {datetime.date.today()} on {card(device)}, torch "
                  f"{torch.__version__}", f"command: python {' '.join(sys.argv)}", "")

    def emit(self, *lines: str) -> None:
        text = "\n".join(lines)
        print(text, flush=True)
        if self.out:
            with self.out.open("a") as f:
                f.write(text + "\n")
