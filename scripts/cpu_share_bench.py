#!/usr/bin/env python3
"""CPU renders: how much of the wall time is the dream? (issue 31's 2-core target)

    python scripts/cpu_share_bench.py [--clip samples/pan.mp4] [--end 2] [--size 320x180]
                                      [--repeat 2] [-p video] [--set KEY=VALUE ...]

Renders the clip with the default `video` preset (or `-p`, with `--set` overrides) end to end,
recording every `Dreamer.dream` call; then replays those calls one after another with nothing
else running: that is the rate of the dream calls alone. Prints, per run, the end-to-end rate,
the dream-alone rate, their ratio (the target: >= 0.9, everything but the dream hidden behind
it), the share of the render's wall time the dream loop spent in `Chain.frame`, how much
slower the same calls ran inside the render (the side threads' contention), the carried-frame
work around them (`Chain.frame` less its dream calls: warps, masks, band limit), and each
stage's seconds (`render.loop.StageTimes`: decode, flow, mask and encode summed over their
threads). With `--device cuda` each dream call is timed to the end of its work on the GPU (the
loop waits for it anyway when it takes the frames back).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchkit  # noqa: E402
from renderer import load_preset  # noqa: E402
from renderer.engine.dream import dreamer_for  # noqa: E402
from renderer.media.decode import index_video  # noqa: E402
from renderer.media.images import parse_size  # noqa: E402
from renderer.render.loop import StageTimes  # noqa: E402
from renderer.render.threads import describe  # noqa: E402
from renderer.render.video import render_video  # noqa: E402

STAGES = ("startup", "dream", "idle", "handoff", "drain", "mux", "decode", "flow", "encode")


def _kept(value):
    """A call's argument as it was (the loop reuses no tensor, but a copy costs nothing here)."""
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def _finished(device: torch.device) -> None:
    """Wait for the device's queued work, so a call's time is its work's (a GPU runs behind)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def render(clip: Path, end: float, size, preset: str, overrides: list[str],
           device: str = "cpu") -> dict:
    preset = load_preset(preset, overrides)
    index = index_video(clip, 0.0, end)
    dreamer = dreamer_for(preset, device)
    calls, dream = [], dreamer.dream

    inside = []  # each call's seconds during the render

    def recorded(*args, **kwargs):
        calls.append(([_kept(a) for a in args], {k: _kept(v) for k, v in kwargs.items()}))
        _finished(dreamer.device)
        t = time.perf_counter()
        out = dream(*args, **kwargs)
        _finished(dreamer.device)
        inside.append(time.perf_counter() - t)
        return out

    dreamer.dream = recorded
    times = StageTimes()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        render_video(index, preset, dreamer, Path(folder) / "out.mp4", size, times=times)
        wall = time.perf_counter() - started
    dreamer.dream = dream
    _finished(dreamer.device)
    started = time.perf_counter()
    for args, kwargs in calls:  # the same calls, nothing else running
        dream(*args, **kwargs)
    _finished(dreamer.device)
    alone = time.perf_counter() - started
    return {"frames": index.count, "wall": wall, "alone": alone, "calls": len(calls),
            "inside": sum(inside),
            **{stage: times.seconds.get(stage, 0.0) for stage in STAGES}}


def main() -> None:
    parser = benchkit.parser(__doc__, clip=False)
    parser.add_argument("--clip", default=str(ROOT / "samples" / "pan.mp4"))
    parser.add_argument("--end", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    size = parse_size(args.size or "320x180")
    device = args.device or "cpu"
    report = benchkit.Report("CPU share bench", device, args.out)
    report.emit(f"thread budget: {describe(device.split(':')[0])}",
                "| run | end to end | dream calls alone | ratio | dream loop's share of wall | "
                "dream calls in the render / alone | carried-frame work (s) | "
                + " | ".join(STAGES) + " |", "|---" * (7 + len(STAGES)) + "|")
    for run in range(1, args.repeat + 1):
        r = render(Path(args.clip), args.end, size, args.preset, args.overrides, device)
        e2e, alone = r["frames"] / r["wall"], r["frames"] / r["alone"]
        stages = " | ".join(f"{r[stage]:.2f}" for stage in STAGES)
        report.emit(f"| {run} | {e2e:.2f} fps | {alone:.2f} fps ({r['calls']} calls) | "
                    f"{e2e / alone:.3f} | {r['dream'] / r['wall']:.3f} | "
                    f"{r['inside'] / r['alone']:.3f} | {r['dream'] - r['inside']:.2f} | "
                    f"{stages} |")


if __name__ == "__main__":
    main()
