"""Compare temporal-coherence modes on a clip: warping-error ratio, dream strength, seam ratio.

    python scripts/coherence_bench.py samples/pan.mp4 -p video [--batch 4] [--size 320x180]
                                      [--split N]

For each mode (independent, blend, warp, consistent) the clip is dreamed in `--batch` segments
advanced in lockstep, then measured against the source as in shared/research/coherence.md:
ratio = E(output) / E(source) (1.0 = no flicker added), strength = mean |output - source|, and
seam = error at segment boundaries / median consecutive error. With `--split N` the render is
done as N parts of `--batch` segments each (`dream render --part`), joined as `--assemble` does.
The reference flow is DIS medium, Farneback (`--metric-flow farneback`), or for a clip the
project generated its exact motion (`--metric-flow truth`, CLIP.motion.json); `--floor` adds
what the measure reads for a dream locked exactly to the picture.

What a viewer sees over a shot (frames between scene cuts): hold = the lowest per-second dream
strength after the first second / the first second's (the worse of mean |output - source| and
the mean |Laplacian| of that residual, its fine detail; shots over 2 s), pop = a shot's first
frame / the median of its next 24. `--per-second` prints each shot's seconds.

Still things, measured without any flow (so no flow error flatters or blames them): on the
pixels where the source does not change between two frames (at most 6 levels anywhere in their
9x9 neighbourhood), the output's mean change per frame in 0-255 levels; `still mean`, `p95`
and `max` over the frames (the source's own change there is printed above the table).
"""

import tempfile
import time
from pathlib import Path

import cv2

import benchkit
from renderer.engine.dream import pick_device
from renderer.media.decode import FrameReader, index_video
from renderer.engine.dream import dreamer_for
from renderer.media.images import parse_size
from renderer.motion.metrics import STILL_LEVELS, STILL_WINDOW, measure, stillness
from renderer.motion.truth import Truth
from renderer.errors import UserError
from renderer.presets import load
from renderer.render.loop import Lockstep, render_frames
from renderer.render.plan import Part, plan_segments, seam_ranges
from renderer.render.sinks import FixedSinks, MemorySink
from renderer.render.video import assemble_parts, render_video

MODES = ("independent", "blend", "warp", "consistent")


def run_mode(index, preset_name, mode, size, batch, overrides, device, split=1):
    preset = load(preset_name, [f"flow.mode={mode}", *overrides])
    dreamer = dreamer_for(preset, device)
    segments = plan_segments(index.count, batch * split, preset.video.warmup)
    started = time.perf_counter()
    if split == 1:
        sinks = [MemorySink() for _ in segments]
        render_frames(Lockstep(index, preset, dreamer, size, segments), FixedSinks(sinks))
        outputs = [f for sink in sinks for f in sink.frames_written]
    else:
        outputs = render_split(index, preset, dreamer, size, batch, split)
    return outputs, seam_ranges(segments), time.perf_counter() - started


def render_split(index, preset, dreamer, size, batch, split):
    """The parts one after another, joined into PNG frames, read back."""
    preset = preset.model_copy(deep=True)
    preset.encode.codec = "png"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "frames"
        for k in range(split):
            render_video(index, preset, dreamer, out, size, batch=batch, part=Part(k, split))
        assemble_parts(index, preset, out, size, batch, split)
        return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
                for p in sorted(out.glob("frame_*.png"))]


def deliver(frames, rate, preset):
    """The frames as the user gets them: encoded as `dream render` encodes them, decoded back;
    and the file's size in KB."""
    from renderer.media.encode import ChunkWriter

    h, w = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "delivered.mkv"
        writer = ChunkWriter(path, (w, h), rate, preset.encode)
        for rgb in frames:
            writer.write(rgb)
        writer.close()
        index = index_video(path)
        return list(FrameReader(index, 0, index.count, (w - w % 2, h - h % 2))), \
            path.stat().st_size / 1024


def locked(sources, independent, truth, sigma=0.0):
    """The measure's floor: each shot's first independent dream moved exactly with the picture
    (one re-sampling from the shot's first frame, by the clip's ground truth), band-limited by
    `sigma` px. No render can carry a dream better; what the measure still reads is its own."""
    import numpy as np
    import torch

    from renderer.media.images import to_tensor, to_uint8
    from renderer.motion.flow import gaussian_blur, warp

    size = sources[0].shape[1::-1]
    outputs, first, dream = [], 0, None
    for t, source in enumerate(sources):
        if t and float(truth.reference(t, size)[1].sum()) == 0:
            first, dream = t, None  # a cut: nothing of the frame before is in this one
        if dream is None:
            dream = gaussian_blur(to_tensor(independent[first]) - to_tensor(sources[first]), sigma)
        flow, valid = truth.reference(t, size, earlier=first) if t > first else \
            (torch.zeros(1, 2, *dream.shape[-2:]), torch.ones(1, 1, *dream.shape[-2:]))
        outputs.append(to_uint8((to_tensor(source) + warp(dream, flow) * valid).clamp(0, 1))[0])
    return [np.asarray(o) for o in outputs]


def main():
    parser = benchkit.parser(__doc__)
    parser.add_argument("--batch", type=int, default=4,
                        help="segments (per part with --split; seams = segments - 1)")
    parser.add_argument("--split", type=int, default=1, help="render as N parts, then join them")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames")
    parser.add_argument("--metric-flow", default="medium",
                        choices=["medium", "farneback", "truth"],
                        help="the reference flow of the measure (farneback: independent of the "
                             "DIS flow renders use; truth: the clip's exact motion, for clips "
                             "made by scripts/make_*_clip.py)")
    parser.add_argument("--delivered", action="store_true",
                        help="also measure the file a user gets: the frames encoded with the "
                             "preset's encode settings, decoded back")
    parser.add_argument("--floor", action="store_true",
                        help="after independent mode: rows for its dream locked exactly to the "
                             "picture (the clip's ground truth moves it), as is and band-limited: "
                             "the lowest ratio the measure can read at that strength")
    parser.add_argument("--per-second", action="store_true",
                        help="print each shot's strength per second (relative to its median)")
    args = parser.parse_args()
    index = index_video(args.clip)
    try:
        truth = Truth.load(args.clip) if args.metric_flow == "truth" or args.floor else None
    except UserError as error:
        raise SystemExit(f"error: {error}")
    reference = truth if args.metric_flow == "truth" else args.metric_flow
    band_limit = load(args.preset, args.overrides).flow.band_limit
    if args.frames and args.frames < index.count:
        index.pts = index.pts[:args.frames]
    size = parse_size(args.size) if args.size else (index.width, index.height)
    sources = list(FrameReader(index, 0, index.count, size))
    segments = plan_segments(index.count, args.batch * args.split,
                             load(args.preset, args.overrides).video.warmup)
    report = benchkit.Report("coherence bench", pick_device(args.device), args.out)
    emit = report.emit
    still_source = stillness(sources, sources).source_mean
    emit(f"clip {args.clip}: {index.count} frames {size[0]}x{size[1]}, preset {args.preset}, "
         f"{len(segments)} segments (--batch {args.batch}, --split {args.split}); still pixels "
         f"(source change <= {STILL_LEVELS} levels over {STILL_WINDOW}x{STILL_WINDOW}) change "
         f"{still_source:.2f} levels a frame in the source", "")
    delivered = "| delivered ratio | delivered strength | KB " if args.delivered else ""
    emit("| mode | ratio E(out)/E(src) | strength | vs independent | seam ratio | hold | pop "
         f"| still mean | still p95 | still max {delivered}| s |",
         "|---|---|---|---|---|---|---|---|---|---|" + "---|" * (3 if args.delivered else 0)
         + "---|")
    fps = float(index.rate)
    rows = []
    base = None
    for mode in args.modes.split(","):
        outputs, seams, seconds = run_mode(index, args.preset, mode, size, args.batch,
                                           args.overrides, args.device, args.split)
        c = measure(sources, outputs, seams, reference, fps=fps)
        base = base or (c.strength if mode == "independent" else None)
        rel = f"{c.strength / base:.2f}x" if base else "-"
        extra = ""
        if args.delivered:
            decoded, size_kb = deliver(outputs, index.rate, load(args.preset, args.overrides))
            h, w = decoded[0].shape[:2]  # h264 crops an odd side
            d = measure([s[:h, :w] for s in sources], decoded, seams, reference, fps=fps)
            extra = f"| {d.ratio:.3f} | {d.strength:.4f} | {size_kb:.0f} "
        st = stillness(sources, outputs)
        emit(f"| {mode} | {c.ratio:.3f} | {c.strength:.4f} | {rel} | {c.seam:.3f} | "
             f"{c.hold:.2f} | {c.pop:.2f} | {st.mean:.2f} | {st.p95:.2f} | {st.max:.2f} "
             f"{extra}| {seconds:.0f} |")
        rows += [(mode, shot) for shot in c.shots]
        if args.floor and mode == "independent":
            for sigma in sorted({0.0, band_limit}):
                floor = measure(sources, locked(sources, outputs, truth, sigma), seams,
                                reference, fps=fps)
                name = f"locked, band-limited {sigma:g} px" if sigma else "locked"
                emit(f"| {name} | {floor.ratio:.3f} | {floor.strength:.4f} | "
                     f"{floor.strength / base:.2f}x | - | - | - | - | - | - " +
                     "| - " * (3 if args.delivered else 0) + "| - |")
    if args.per_second:
        emit("", "| mode | shot (frames) | strength per second / shot median | detail per second |",
             "|---|---|---|---|")
        for mode, shot in rows:
            emit(f"| {mode} | {shot.first}-{shot.end - 1} | "
                 f"{' '.join(f'{v:.2f}' for v in shot.per_second)} | "
                 f"{' '.join(f'{v:.2f}' for v in shot.detail_per_second)} |")


if __name__ == "__main__":
    main()
