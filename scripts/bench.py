"""End-to-end speed: the optimised renderer against the naive loop, and the memory floor.

    python scripts/bench.py CLIP [-p video] [--size 1920x1080] [--frames 240] [--naive-frames 48]
                            [--flow] [--ablation] [--cap4k] [--profile] [--out table.md]

Prints fps with a per-stage breakdown (decode, flow, dream, encode, GPU idle) for the optimised
pipeline (lockstep segments, bf16, channels_last, folded batch-norm, torch.compile, threads for
decode/flow/encode, pinned transfers) and, in the same run, for the naive way (fp32, one frame at
a time, no overlap, a CPU round trip per frame). Then the time of one dream step against the
memory-traffic floor of the network: floor = 5 x (bytes of every convolution's output) / measured
copy bandwidth (the forward pass writes and re-reads each activation, the backward pass reads it
and writes and reads its gradient). Runs on the CPU too, at small sizes.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

import benchkit
from renderer.media import encode
from renderer.media.decode import FrameReader, index_video, slot_counts
from renderer.engine.dream import Dreamer, dreamer_for, pick_device
from renderer.engine.objectives import build_objective
from renderer.motion.dis import FlowEstimator
from renderer.motion.flow import flow_to_tensor
from renderer.media.images import parse_size, to_tensor, to_uint8
from renderer.engine.models import load_network
from renderer.presets import load
from renderer.motion.chain import Chain
from renderer.render.loop import StageTimes
from renderer.render.plan import default_batch, plan_segments
from renderer.render.video import render_video

NAIVE = ["dream.precision=fp32", "dream.channels_last=false", "dream.compile=false",
         "dream.fold_bn=false"]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def trimmed(index, frames):
    if frames and frames < index.count:
        index.pts = index.pts[:frames]
        index.end = index.pts[-1] + (index.pts[-1] - index.pts[-2])
    return index


def optimised(clip, preset, size, frames, batch, device, workdir):
    index = trimmed(index_video(clip), frames)
    dreamer = dreamer_for(preset, device)
    rows = len(plan_segments(index.count, batch, preset.video.warmup))
    t = time.perf_counter()  # compile every octave's shape once, outside the timed render
    dreamer.prepare((rows, 3, size[1], size[0]))
    sync(device)
    warm_s = time.perf_counter() - t
    times = StageTimes()
    t = time.perf_counter()
    render_video(index, preset, dreamer, workdir / "fast.mp4", size, batch=batch, times=times)
    wall = time.perf_counter() - t
    return index.count, wall, dict(times.seconds), warm_s, dreamer, rows


def naive(clip, preset, size, frames, device, workdir):
    """Frame by frame, each stage waiting for the last, every frame back on the CPU."""
    index = trimmed(index_video(clip), frames)
    dreamer = dreamer_for(preset, device)
    repeats = slot_counts(index)
    estimator = FlowEstimator.of(preset.flow)
    writer = encode.ChunkWriter(workdir / "naive.mkv", size, index.rate, preset.encode)
    reader = FrameReader(index, 0, index.count, size, depth=1)
    times = {"decode": 0.0, "flow": 0.0, "dream": 0.0, "encode": 0.0}
    prev_rgb = None
    chain = Chain(preset, dreamer)
    start_all = time.perf_counter()
    for i in range(index.count):
        t = time.perf_counter()
        rgb = next(reader)
        times["decode"] += time.perf_counter() - t
        t = time.perf_counter()
        flows = estimator.pair(prev_rgb, rgb) if prev_rgb is not None else None
        times["flow"] += time.perf_counter() - t
        t = time.perf_counter()
        dreamed = chain.frame([0], to_tensor(rgb).to(device), flows and tuple(
            flow_to_tensor([f]) for f in flows), turn=i)
        out = to_uint8(dreamed)[0]  # the round trip
        sync(device)
        times["dream"] += time.perf_counter() - t
        t = time.perf_counter()
        writer.write(out, repeats[i])
        times["encode"] += time.perf_counter() - t
        prev_rgb = rgb
    writer.close()
    return index.count, time.perf_counter() - start_all, times


def step_ms(dreamer, x, repeats=10):
    """Median ms of one gradient + normalisation step for the batch x."""
    from renderer.engine.dream import StepRandomness

    rng = StepRandomness([0] * x.shape[0])
    for _ in range(3):
        dreamer.step(x, 0.01, rng)
    sync(x.device)
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        dreamer.step(x, 0.01, rng)
        sync(x.device)
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def conv_output_bytes(dreamer, x) -> int:
    """Bytes of every convolution output for one frame (bf16 on CUDA, fp32 on the CPU)."""
    total = []
    hooks = [m.register_forward_hook(lambda m, i, o: total.append(o[0].numel()))
             for m in dreamer.net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        dreamer.net(x[:1])
    for h in hooks:
        h.remove()
    return sum(total) * (2 if dreamer.dtype == torch.bfloat16 else 4)


def bandwidth(device) -> float:
    """Bytes per second of a large device copy (read + write)."""
    n = (1 << 28) if device.type == "cuda" else (1 << 25)
    a = torch.empty(n, dtype=torch.float32, device=device)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    sync(device)
    t = time.perf_counter()
    for _ in range(10):
        b.copy_(a)
    sync(device)
    return 10 * 2 * a.numel() * 4 / (time.perf_counter() - t)


def ablation(preset_name, size, batch, device):
    """Dream-step ms per frame as each optimisation is switched on, row by row as measured."""
    w, h = size
    configs = [("fp32, batch 1", 1, NAIVE),
               ("bf16 + channels_last, batch 1", 1, ["dream.compile=false", "dream.fold_bn=false"]),
               (f"bf16 + channels_last, batch {batch}", batch,
                ["dream.compile=false", "dream.fold_bn=false"]),
               ("+ folded batch-norm", batch, ["dream.compile=false"]),
               ("+ torch.compile (Inductor; fused update)", batch, ["dream.compile=true"])]
    if device.type != "cuda":
        configs = configs[:1] + [c for c in configs[3:4]]
    for name, b, overrides in configs:
        preset = load(preset_name, overrides)
        network = load_network(preset.model.name)
        dreamer = Dreamer(network, build_objective(preset, network, device), preset.dream, device)
        x = torch.rand(b, 3, h, w, device=device)
        t = time.perf_counter()
        try:
            ms = step_ms(dreamer, x) / b
            yield name, ms, time.perf_counter() - t
        except Exception as exc:  # report, keep going
            print(f"{name}: failed ({type(exc).__name__}: {exc})", file=sys.stderr)
            yield name, float("nan"), 0.0


def flow_workers(frames, workers_list, estimator, pairs=16):
    """ms per frame pair (both directions) with a pool of `workers` threads, each with its own
    `estimator()`, on two consecutive frames of the clip."""
    out = []
    for workers in workers_list:
        local = __import__("threading").local()

        def one(_):
            if not hasattr(local, "e"):
                local.e = estimator()
            return local.e.pair(*frames)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(workers)))
            t = time.perf_counter()
            list(pool.map(one, range(pairs)))
            out.append((workers, (time.perf_counter() - t) * 1000 / pairs))
    return out


def pinned_copy(size, batch, device):
    if device.type != "cuda":
        return None
    w, h = size
    pageable = torch.rand(batch, 3, h, w)
    pinned = pageable.pin_memory()
    res = {}
    for name, src in (("pageable", pageable), ("pinned", pinned)):
        for _ in range(3):
            src.to(device, non_blocking=True)
        sync(device)
        t = time.perf_counter()
        for _ in range(10):
            src.to(device, non_blocking=True)
        sync(device)
        res[name] = (time.perf_counter() - t) * 100
    return res


def profile_render(clip, preset, size, dreamer, rows):
    """Where the dream loop's time goes, as torch.profiler's table (device time on CUDA).

    A short render with as many segments as the timed one (4-frame segments, 1-frame warm-up),
    so the batch shape, and the already compiled code, are the same.
    """
    from torch.profiler import ProfilerActivity, profile

    device = dreamer.device
    preset = preset.model_copy(update={"video": preset.video.model_copy(update={"warmup": 1})})
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                            else [])
    with tempfile.TemporaryDirectory() as tmp:
        index = trimmed(index_video(clip), 4 * rows)
        with profile(activities=activities) as prof:
            render_video(index, preset, dreamer, Path(tmp) / "prof.mp4", size, batch=rows)
            sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=60)


def cap_4k(preset_name, device, cap_gib=16.0):
    """Dream 4K frames under a GPU memory cap; report the peak and the tile size it ended at."""
    device = torch.device("cuda", torch.cuda.current_device() if device.index is None
                          else device.index)
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gib * 2**30 / total), device)
    torch.cuda.reset_peak_memory_stats(device)
    preset = load(preset_name, ["dream.octaves=1", "dream.steps=2", "dream.compile=false"])
    dreamer = dreamer_for(preset, device)
    x = torch.rand(4, 3, 2160, 3840, device=device)
    t = time.perf_counter()
    dreamer.dream(x, seed=0)
    sync(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.set_per_process_memory_fraction(1.0, device)
    return peak, dreamer.tile_size, time.perf_counter() - t


def main():
    parser = benchkit.parser(__doc__)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--naive-frames", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--flow", action="store_true",
                        help="time the flow per frame pair: threads x full size, max_width, align")
    parser.add_argument("--ablation", action="store_true",
                        help="time each optimisation of the dream step (and the flow, as --flow)")
    parser.add_argument("--cap4k", action="store_true", help="4K under a 16 GiB cap (CUDA)")
    parser.add_argument("--profile", action="store_true",
                        help="profile a short render: the ops that take the most device time")
    args = parser.parse_args()
    device = pick_device(args.device)
    preset = load(args.preset, args.overrides)
    index = index_video(args.clip)
    size = parse_size(args.size) if args.size else (index.width, index.height)
    batch = args.batch or preset.video.batch or default_batch(device, size)
    emit = benchkit.Report("bench", device, args.out).emit
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        n, wall, stages, warm, dreamer, rows = optimised(args.clip, preset, size, args.frames,
                                                         batch, device, work)
        fps = n / wall
        loop = ("startup", "dream", "idle", "handoff", "drain", "mux")
        rest = wall - sum(stages.get(k, 0) for k in loop)
        emit(f"clip {args.clip} at {size[0]}x{size[1]}, preset {args.preset}, "
             f"{len(plan_segments(n, batch, preset.video.warmup))} segments (batch {batch}), "
             f"audio muxed; compile/warm-up before it {warm:.1f} s", "",
             "| path | frames | fps | decode s | flow s | dream s | encode s |",
             "|---|---|---|---|---|---|---|",
             f"| optimised | {n} | {fps:.2f} | {stages.get('decode', 0):.2f} | "
             f"{stages.get('flow', 0):.2f} | {stages.get('dream', 0):.2f} | "
             f"{stages.get('encode', 0):.2f} |")
        naive_preset = load(args.preset, [*args.overrides, *NAIVE])
        nn_, nwall, nstages = naive(args.clip, naive_preset, size, args.naive_frames or n,
                                    device, work)
    nfps = nn_ / nwall
    emit(f"| naive | {nn_} | {nfps:.2f} | {nstages['decode']:.2f} | {nstages['flow']:.2f} | "
         f"{nstages['dream']:.2f} | {nstages['encode']:.2f} |", "",
         "Decode, flow and encode run on their own threads (seconds summed over them; the "
         "naive path runs them in turn, and dreams for the rest of its time).", "",
         f"speed-up over naive: {fps / nfps:.1f}x", "",
         f"Where the optimised render's {wall:.2f} s of wall time went (the dream loop's thread):",
         "", "| start-up | dream | GPU idle | hand-off | (of which encoder back-pressure) "
         "| drain | mux | rest |", "|---|---|---|---|---|---|---|---|",
         "| " + " | ".join(f"{stages.get(k, 0):.2f}" for k in
                          ("startup", "dream", "idle", "handoff", "backpressure", "drain", "mux"))
         + f" | {rest:.2f} |", "")
    w, h = size
    x = torch.rand(rows, 3, h, w, device=device)  # the render's batch shape: compiled already
    ms = step_ms(dreamer, x) / rows
    bw = bandwidth(device)
    floor = 5 * conv_output_bytes(dreamer, x) / bw * 1000
    emit(f"dream step at {w}x{h}: {ms:.2f} ms per frame (batch {rows}); memory floor "
         f"{floor:.2f} ms (conv outputs x5 / {bw / 1e12:.2f} TB/s copy); "
         f"{ms / floor:.2f}x the floor", "")
    if args.profile:
        emit(f"top ops by self time, rendering {4 * rows} frames in {rows} segments "
             "(compiled, warm):", "```", profile_render(args.clip, preset, size, dreamer, rows),
             "```", "")
    if args.cap4k and device.type == "cuda":
        peak, tile, sec = cap_4k(args.preset, device)
        emit(f"4K batch of 4 under a 16 GiB cap: peak {peak:.1f} GiB, tile size {tile}, "
             f"{sec:.1f} s, no OOM", "")
    if args.flow or args.ablation:
        threads = sorted({1, 4, os.cpu_count()})
        flow = preset.flow
        pair = list(FrameReader(index_video(args.clip), 0, 2, size))
        full, small, aligned = (flow_workers(pair, threads, lambda: FlowEstimator(
            flow.quality, width, align)) for width, align in
            ((0, False), (flow.max_width, False), (flow.max_width, True)))
        emit(f"| flow threads | ms per frame pair (fwd+bwd, DIS {flow.quality}), {w} px | "
             f"at flow.max_width {flow.max_width} px | the same, flow.align |", "|---|---|---|---|",
             *[f"| {k} | {a:.1f} | {b:.1f} | {c:.1f} |"
               for (k, a), (_, b), (_, c) in zip(full, small, aligned)])
    if args.ablation:
        if (copy := pinned_copy(size, batch, device)) is not None:
            emit("", f"host->device copy of a batch: pageable {copy['pageable']:.2f} ms, "
                     f"pinned {copy['pinned']:.2f} ms")
        emit("", "| dream step configuration | ms per frame | incl. warm-up s |", "|---|---|---|")
        for name, v, sec in ablation(args.preset, size, rows, device):
            emit(f"| {name} | {v:.2f} | {sec:.1f} |")


if __name__ == "__main__":
    main()
