"""The video pipeline: decode -> flow -> dream (segments in lockstep, one GPU batch) -> encode.

The clip is cut into B segments that advance together, one frame of each per batch step. Two
chains that started at different frames paint different dream patterns on the same content, so
a hard cut between segments would show. Each segment therefore starts `warmup` frames early and
its warm-up frames are cross-faded (smoothstep) into the previous segment's last frames: the
hand-over is spread over `warmup` frames. Decoding and flow run on a producer thread, encoding on
a writer thread, so the GPU only waits when the CPU side cannot keep up (`idle` says how long).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import encode, threads
from .accel import Compiled
from .checkpoints import Checkpoints, RenderState, digest, parts_dir, remove_work_folder
from .decode import FrameReader, VideoIndex, slot_counts
from .dream import Anchor, Dreamer
from .errors import UserError
from .framestore import AsyncFrameStore, FrameStore, crossfade, crossfade_weight
from .flow import FlowEstimator, consistency_mask, flow_to_tensor, resize_flow, warp
from .images import to_uint8
from .outputs import OutputLock
from .presets import FlowSection, Preset
from .threads import Budget
from .progress import console


@dataclass(frozen=True)
class Segment:
    index: int
    start: int  # first frame dreamed (warm-up included)
    keep: int  # first frame written
    end: int  # one past the last frame

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_segments(count: int, batch: int, warmup: int) -> list[Segment]:
    """Split `count` frames into at most `batch` segments, each at least 4x warm-up long
    (so warm-up frames add at most a quarter to the work)."""
    n = max(1, min(batch, count // max(4, 4 * warmup)))
    bounds = [round(i * count / n) for i in range(n + 1)]
    return [Segment(i, max(0, bounds[i] - warmup), bounds[i], bounds[i + 1]) for i in range(n)]


@dataclass(frozen=True)
class ShardPlan:
    """One part's share of a split render (a whole render is part 1 of 1)."""
    segments: list[Segment]  # the whole render's
    mine: list[Segment]  # the ones this part dreams
    tail_from: int | None  # where this part's last frames start to hand over to the next part

    @property
    def kept(self) -> int:
        """Frames this part writes itself (its hand-over tail is written at assembly)."""
        if not self.mine:
            return 0
        handed_over = 0 if self.tail_from is None else self.mine[-1].end - self.tail_from
        return sum(s.end - s.keep for s in self.mine) - handed_over


def shard_plan(count: int, batch: int, warmup: int, shard: "Shard") -> ShardPlan:
    segments = plan_segments(count, batch * shard.count, warmup)
    first, last = shard.span(len(segments))
    return ShardPlan(segments, segments[first:last],
                     segments[last].start if last < len(segments) else None)


def fade_weight(segment: Segment, frame: int) -> float:
    """Weight of `segment`'s warm-up frame in the cross-fade with the previous segment."""
    return crossfade_weight(frame - segment.start, segment.keep - segment.start)


@dataclass(frozen=True)
class Shard:
    """Part `number` (0-based) of a render split into `count` parts, each a run of consecutive
    segments that one machine renders alone; `assemble_shards` joins them."""
    number: int
    count: int

    def span(self, segments: int) -> tuple[int, int]:
        """The segments [first, last) this part renders (empty when there are fewer segments
        than parts)."""
        return (round(self.number * segments / self.count),
                round((self.number + 1) * segments / self.count))

    def folder(self, output: Path) -> Path:
        return parts_dir(output) / f"shard_{self.number + 1}of{self.count}"

    def __str__(self) -> str:
        return f"{self.number + 1}/{self.count}"


@dataclass(frozen=True)
class Stretches:
    """How a render is cut into checkpointed stretches: `open(step)` gives the encoders of the
    stretch that starts at lockstep `step`; `save(state, closed)` records a checkpoint once the
    previous stretch's encoders are closed."""
    open: Callable[[int], list[encode.SegmentWriter]]
    save: Callable[[RenderState, list[encode.SegmentWriter]], None]


def _close_stretch(writers: "_Writers", fades_written: Future, save, state: RenderState) -> None:
    """Off the dream loop: drain and close a stretch's encoders (x264 holds dozens of frames in
    flight), wait until its parked cross-fade frames are on disk, then save the checkpoint that
    names its chunks. A kill before the save leaves the previous checkpoint in place."""
    writers.finish()
    fades_written.result()
    save(state, writers.writers)


def carried_start(settings: FlowSection, source, prev_source, prev_dream, backward, forward):
    """The image a frame starts dreaming from, and the temporal anchor (if any), per mode."""
    if prev_dream is None or settings.mode == "independent":
        return source, None
    if settings.mode == "blend":
        return (1 - settings.blend) * source + settings.blend * prev_dream, None
    residual = warp(prev_dream - prev_source, backward)
    if settings.mode == "warp":
        return (source + settings.persistence * residual).clamp(0, 1), None
    mask = consistency_mask(backward, forward, settings.mask_blur)
    start = (source + settings.persistence * mask * residual).clamp(0, 1)
    # the temporal loss pulls towards the carried dream (persistence applied, so it can fade)
    anchor = Anchor(start, mask, settings.temporal_weight) if settings.temporal_weight else None
    return start, anchor


@dataclass
class StageTimes:
    """Seconds spent per stage; `idle` is the dream loop waiting for input."""
    seconds: dict = field(default_factory=lambda: defaultdict(float))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, stage: str, seconds: float) -> None:
        with self.lock:
            self.seconds[stage] += seconds


@dataclass
class _Packet:
    step: int
    rows: list[int]  # which segments take part in this step
    sources: torch.Tensor  # (N, H, W, 3) uint8, pinned when bound for a GPU
    flows: tuple[torch.Tensor, torch.Tensor] | None  # backward, forward: (N, 2, H, W)


class _Producer(threading.Thread):
    """Reads the next frame of every active segment and computes its flows, ahead of the GPU."""

    def __init__(self, index, segments, size, flow: FlowSection, times: StageTimes,
                 budget: Budget, pin: bool, first_step: int = 0, previous=None, depth: int = 3,
                 fit: str = "crop"):
        super().__init__(daemon=True)
        self.segments, self.flow_settings, self.times, self.pin = segments, flow, times, pin
        self.first_step = first_step
        self.readers = [FrameReader(index, s.start + min(first_step, s.length),
                                    max(0, s.length - first_step), size, threads=budget.decode,
                                    fit=fit)
                        for s in segments]
        self.out: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.pool = ThreadPoolExecutor(max_workers=budget.flow, thread_name_prefix="flow")
        self.local = threading.local()
        self.previous = [(previous or {}).get(i) for i in range(len(segments))]
        self.stop = threading.Event()
        self.needs_flow = flow.mode in ("warp", "consistent")

    def _flow(self, pair):
        if not hasattr(self.local, "estimator"):
            self.local.estimator = FlowEstimator(self.flow_settings.quality,
                                                 self.flow_settings.max_width)
        return self.local.estimator.pair(*pair)

    def run(self):
        try:
            for step in range(self.first_step, max(s.length for s in self.segments)):
                if self.stop.is_set():
                    return
                rows = [i for i, s in enumerate(self.segments) if step < s.length]
                t = time.perf_counter()
                sources = [next(self.readers[i]) for i in rows]
                self.times.add("decode", time.perf_counter() - t)
                t = time.perf_counter()
                flows = None
                if self.needs_flow and step > 0:
                    pairs = [(self.previous[i], src) for i, src in zip(rows, sources)]
                    both = list(self.pool.map(self._flow, pairs))
                    flows = tuple(self._staged(flow_to_tensor([f[k] for f in both]))
                                  for k in (0, 1))
                self.times.add("flow", time.perf_counter() - t)
                for i, src in zip(rows, sources):
                    self.previous[i] = src
                self.out.put(_Packet(step, rows, self._staged(torch.from_numpy(
                    np.stack(sources))), flows))
        except BaseException as exc:
            self.error = exc
        finally:
            self.out.put(None)

    def _staged(self, tensor: torch.Tensor) -> torch.Tensor:
        """Page-locked host memory, so the copy to the GPU runs asynchronously."""
        return tensor.pin_memory() if self.pin else tensor

    def packets(self):
        while (packet := self.out.get()) is not None:
            yield packet
        if self.error is not None:
            raise self.error

    def close(self):
        self.stop.set()
        while self.is_alive():
            try:
                self.out.get_nowait()
            except queue.Empty:
                self.join(0.05)
        for reader in self.readers:
            reader.close()
        self.pool.shutdown(wait=False, cancel_futures=True)


class _Writers:
    """One thread per segment encoder, so a busy encoder never stalls the others; cross-fades
    are blended here too (the incoming frame arrives as a Future from the frame store), off the
    dream loop's thread."""

    def __init__(self, writers: list[encode.SegmentWriter], times: StageTimes, on_frame):
        self.writers, self.times, self.on_frame = writers, times, on_frame
        self.inboxes = [queue.Queue(maxsize=4) for _ in writers]
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                        for k in range(len(writers))]
        for thread in self.threads:
            thread.start()

    def _run(self, k: int) -> None:
        inbox = self.inboxes[k]
        try:
            while (item := inbox.get()) is not None:
                rgb, repeats, incoming, weight = item
                t = time.perf_counter()
                incoming = incoming.result() if incoming is not None else None
                if incoming is not None:
                    rgb = crossfade(rgb, incoming, weight)
                self.writers[k].write(rgb, repeats)
                self.times.add("encode", time.perf_counter() - t)
                self.on_frame()
        except BaseException as exc:
            self.errors.append(exc)
            while inbox.get() is not None:  # keep the dream loop from blocking
                pass

    def put(self, k: int, rgb, repeats: int, incoming=None, weight: float = 0.0) -> None:
        if self.errors:
            raise self.errors[0]
        self.inboxes[k].put((rgb, repeats, incoming, weight))

    def stop(self) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        for thread in self.threads:
            thread.join()

    def finish(self) -> None:
        self.stop()
        if self.errors:
            raise self.errors[0]
        t = time.perf_counter()
        for writer in self.writers:
            writer.close()
        self.times.add("encode", time.perf_counter() - t)


def render_frames(index: VideoIndex, preset: Preset, dreamer: Dreamer, size: tuple[int, int],
                  segments: list[Segment], writers: list[encode.SegmentWriter],
                  times: StageTimes, progress=None, state: RenderState | None = None,
                  stretches: Stretches | None = None, every: int = 0,
                  fades: FrameStore | None = None, tail_from: int | None = None,
                  budget: Budget | None = None) -> None:
    """Dream every frame of `segments` in lockstep batches and hand kept frames to `writers`.

    With `stretches`, every `every` steps the frames go to a new stretch of encoders while the
    last stretch is closed and checkpointed on a background thread, so the GPU never waits for
    a checkpoint. `state` continues an earlier render.
    Frames of the last segment from `tail_from` on are parked in `fades` as ("tail", frame)
    instead of written: another shard's warm-up is cross-faded into them at assembly.
    """
    settings, device = preset.flow, dreamer.device
    state = state or RenderState()
    repeats = slot_counts(index)
    budget = budget or threads.plan(device.type, len(segments), preset.video.threads)
    threads.apply(budget)
    cuda = device.type == "cuda"
    producer = _Producer(index, segments, size, settings, times, budget, pin=cuda,
                         first_step=state.step, previous=state.prev_rgb, fit=preset.video.fit)
    advance = progress or (lambda stage, n=1: None)
    writer = _Writers(writers, times, lambda: advance("encoded"))
    own_fades = fades is None
    fades = fades or FrameStore()
    parked = AsyncFrameStore(fades)
    producer.start()
    # the source frames exactly as the loop makes them: the uint8 frame over 255
    prev_source = {i: torch.from_numpy(rgb).to(device).permute(2, 0, 1).float() / 255
                   for i, rgb in state.prev_rgb.items()}
    prev_dream = {i: t.to(device) for i, t in state.prev_dream.items()}
    prev_rgb = dict(state.prev_rgb)
    total = max(s.length for s in segments)
    carried_steps = settings.steps if settings.steps is not None else preset.dream.steps
    static_shapes = isinstance(dreamer.loss, Compiled)
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
    saving: Future | None = None  # the last stretch, closing and checkpointing in `background`
    try:
        waited = time.perf_counter()
        for packet in producer.packets():
            times.add("idle", time.perf_counter() - waited)
            advance("decoded", len(packet.rows))
            t = time.perf_counter()
            source = packet.sources.to(device, non_blocking=cuda).permute(0, 3, 1, 2).float() / 255
            start, anchor, first = source, None, packet.step == 0
            if not first:
                prev_s = torch.stack([prev_source[i] for i in packet.rows])
                prev_d = torch.stack([prev_dream[i] for i in packet.rows])
                backward = forward = None
                if packet.flows is not None:
                    backward, forward = (resize_flow(f.to(device, non_blocking=cuda),
                                                     source.shape[-2:]) for f in packet.flows)
                start, anchor = carried_start(settings, source, prev_s, prev_d, backward, forward)
            steps = preset.dream.steps if first or settings.mode == "independent" else carried_steps
            pad = len(segments) - len(packet.rows) if static_shapes else 0
            if pad:  # the tail of a shorter segment: keep the batch shape for compiled code
                start = torch.cat([start, start[-1:].expand(pad, -1, -1, -1)])
                if anchor is not None:
                    anchor = Anchor(*(torch.cat([t, t[-1:].expand(pad, -1, -1, -1)])
                                      for t in (anchor.target, anchor.mask)), anchor.weight)
            dreamed = dreamer.dream(start, seed=preset.seed, steps=steps,
                                    anchor=anchor)[:len(packet.rows)]
            for row, i in enumerate(packet.rows):
                prev_source[i], prev_dream[i] = source[row], dreamed[row]
                prev_rgb[i] = packet.sources[row].numpy()
            frames = to_uint8(dreamed)
            times.add("dream", time.perf_counter() - t)
            advance("dreamed", len(packet.rows))
            t = time.perf_counter()
            for row, i in enumerate(packet.rows):
                frame_no = segments[i].start + packet.step
                if frame_no < segments[i].keep:  # warm-up: kept for the cross-fade
                    parked.put((i, frame_no), frames[row])
                    continue
                if tail_from is not None and i == len(segments) - 1 and frame_no >= tail_from:
                    parked.put(("tail", frame_no), frames[row])
                    continue
                following = segments[i + 1] if i + 1 < len(segments) else None
                fading = following is not None and following.start <= frame_no < following.keep
                incoming = parked.get((i + 1, frame_no)) if fading else None
                weight = fade_weight(following, frame_no) if fading else 0.0
                writer.put(i, frames[row], repeats[frame_no], incoming, weight)
            times.add("handoff", time.perf_counter() - t)
            done = packet.step + 1
            if stretches is not None and every and done % every == 0 and done < total:
                if saving is not None:
                    saving.result()
                snapshot = RenderState(done, {i: t.cpu() for i, t in prev_dream.items()},
                                       dict(prev_rgb))
                closing, writer = writer, _Writers(stretches.open(done), times,
                                                   lambda: advance("encoded"))
                saving = background.submit(_close_stretch, closing, parked.written(),
                                           stretches.save, snapshot)
            waited = time.perf_counter()
        writer.finish()
        parked.flush()
        if saving is not None:
            saving.result()
    except BaseException:
        producer.close()
        writer.stop()
        for w in writer.writers:
            w.abort()
        raise
    finally:
        background.shutdown(wait=True)  # a checkpoint in flight lands (it is written atomically)
        parked.close()
        if own_fades:
            fades.close()


SHARD_BATCH = 8  # segments per part of a split render unless --batch says otherwise


def default_batch(device: torch.device, size: tuple[int, int]) -> int:
    """Segments per batch: 2 on the CPU; on CUDA what a quarter of free memory holds."""
    if device.type != "cuda":
        return 2
    free, _ = torch.cuda.mem_get_info(device)
    # MobileNetV2 up to features.12 writes ~40x the input's fp32 bytes in conv outputs; bf16
    # halves that, autograd keeps ~3 tensors per conv: ~80x the input, rounded up for safety
    per_frame = size[0] * size[1] * 3 * 4 * 80
    return int(max(1, min(16, free * 0.25 // per_frame)))


def fingerprint(index: VideoIndex, preset: Preset, size, segments) -> str:
    return digest(str(index.path.resolve()), index.pts[0], index.count, str(index.rate), list(size),
                  preset.model_dump(mode="json"), [vars(s) for s in segments])


def render_video(index: VideoIndex, preset: Preset, dreamer: Dreamer, output: Path,
                 size: tuple[int, int], batch: int | None = None, progress=None,
                 times: StageTimes | None = None, resume: bool = False,
                 shard: Shard | None = None, audio: list | None = None) -> StageTimes:
    """Render the indexed clip into `output`, checkpointing every `video.checkpoint_every`
    steps into a parts folder; `resume` continues from its last checkpoint. Only one render
    at a time writes `output` (or one part of it).

    With `shard`, only that part's segments are rendered (`batch` segments per part), into its
    own folder, and left there for `assemble_shards`. `audio` replaces the source's audio
    (`source_audio`) with other tracks.
    """
    times = times or StageTimes()
    batch = batch or preset.video.batch or default_batch(dreamer.device, size)
    shard = shard or Shard(0, 1)
    whole = shard.count == 1
    with OutputLock(output, "" if whole else shard.folder(output).name):
        _render(index, preset, dreamer, output, size, batch, progress, times, resume, shard,
                source_audio(index) if audio is None else audio)
    return times


def _render(index: VideoIndex, preset: Preset, dreamer: Dreamer, output: Path,
            size: tuple[int, int], batch: int, progress, times: StageTimes, resume: bool,
            shard: Shard, audio: list) -> None:
    plan = shard_plan(index.count, batch, preset.video.warmup, shard)
    mine = plan.mine
    repeats = slot_counts(index)
    whole = shard.count == 1
    store = Checkpoints(output, fingerprint(index, preset, size, plan.segments) + str(shard),
                        None if whole else shard.folder(output))
    if resume and not whole and store.finished() is not None:
        console.print(f"part {shard} is already rendered")
        return
    restored = store.start(resume)
    if not mine:  # more parts than segments: nothing to do
        store.finish([])
        return
    state, chunks = restored or (RenderState(), [])
    if restored is not None:
        console.print(f"resuming from step {state.step} of "
                      f"{max(s.length for s in mine)} ({len(chunks)} finished chunks)")
    png = preset.encode.codec == "png"
    suffix = encode.segment_suffix(preset.encode)
    budget = threads.plan(dreamer.device.type, len(mine), preset.video.threads)
    open_writers: list[encode.SegmentWriter] = []  # the latest stretch's

    def chunk_writers(step: int) -> list[encode.SegmentWriter]:
        """Encoders for the stretch that starts at lockstep `step` (a new list: the previous
        stretch's is still being closed)."""
        writers = [encode.SegmentWriter(
            store.folder / "frames" if png else
            store.folder / f"segment_{s.index:04d}_{step:06d}{suffix}", size, index.rate,
            preset.encode, first_slot=sum(repeats[:max(s.keep, min(s.end, s.start + step))]),
            threads=budget.encode) for s in mine]
        open_writers[:] = writers
        return writers

    def checkpoint(new_state: RenderState, closed: list[encode.SegmentWriter]) -> None:
        chunks.extend(str(w.path.name) for w in closed if w.frames and not png)
        store.save(new_state, chunks, [f for w in closed for f in w.files])

    render_frames(index, preset, dreamer, size, mine, chunk_writers(state.step), times,
                  progress, state, Stretches(chunk_writers, checkpoint),
                  preset.video.checkpoint_every, FrameStore(store.folder / "fades"),
                  plan.tail_from, budget)
    chunks.extend(str(w.path.name) for w in open_writers if w.frames and not png)
    # chunks in output order: by segment, then by step (names sort that way)
    ordered = ["frames"] if png else sorted(chunks)
    if not whole:
        store.finish(ordered)
        return
    t = time.perf_counter()
    if progress is not None:
        progress("finishing", 0)
    _finalize([store.folder / c for c in ordered], output, preset, index, audio)
    times.add("encode", time.perf_counter() - t)
    remove_work_folder(store.folder)


def assemble_shards(index: VideoIndex, preset: Preset, output: Path, size: tuple[int, int],
                    batch: int, count: int, audio: list | None = None) -> None:
    """Join the `count` finished parts of a split render: the tail of each part is cross-faded
    with the next part's warm-up (as one render does between its segments) and encoded, then
    every chunk is concatenated in order with the audio."""
    with OutputLock(output):
        _assemble(index, preset, output, size, batch, count,
                  source_audio(index) if audio is None else audio)


def _assemble(index: VideoIndex, preset: Preset, output: Path, size: tuple[int, int],
              batch: int, count: int, audio: list) -> None:
    shards = [Shard(k, count) for k in range(count)]
    plans = [shard_plan(index.count, batch, preset.video.warmup, s) for s in shards]
    repeats = slot_counts(index)
    base = fingerprint(index, preset, size, plans[0].segments)
    stores = [Checkpoints(output, base + str(s), s.folder(output)) for s in shards]
    manifests = [store.finished() for store in stores]
    for shard, manifest in zip(shards, manifests):
        if manifest is None:
            raise UserError(f"part {shard} of '{output}' is not rendered (or was rendered with "
                            f"other settings): run the same render with --shard {shard} first")
    png = preset.encode.codec == "png"
    merged = parts_dir(output) / "frames"
    if png:
        merged.mkdir(parents=True, exist_ok=True)
    parts: list[Path] = []
    filled = [(s, st, m, p) for s, st, m, p in zip(shards, stores, manifests, plans) if p.mine]
    for (shard, store, manifest, plan), following in zip(filled, filled[1:] + [None]):
        if png:
            for frame in (store.folder / "frames").glob("*.png"):
                os.replace(frame, merged / frame.name)
        else:
            parts.extend(store.folder / c for c in manifest)
        if following is None:
            continue
        incoming, last = following[3].mine[0], plan.mine[-1]
        tails, warmups = (FrameStore(s.folder / "fades") for s in (store, following[1]))
        seam = encode.SegmentWriter(
            merged if png else parts_dir(output) / f"seam_{shard.number:04d}.mkv", size,
            index.rate, preset.encode, first_slot=sum(repeats[:incoming.start]))
        for frame in range(incoming.start, last.end):
            tail, warm = tails.get(("tail", frame)), warmups.get((0, frame))
            if tail is None or warm is None:
                seam.abort()
                raise UserError(f"frame {frame} of the hand-over after part {shard} is missing "
                                f"from '{parts_dir(output)}': render parts {shard} and "
                                f"{following[0]} again without --resume")
            seam.write(crossfade(tail, warm, fade_weight(incoming, frame)), repeats[frame])
        seam.close()
        if not png and seam.frames:
            parts.append(seam.path)
    _finalize([merged] if png else parts, output, preset, index, audio)
    remove_work_folder(parts_dir(output))


def source_audio(index: VideoIndex) -> list[encode.AudioTrack]:
    """The clip's own audio, from the first rendered frame's time (so a cut stays in sync)."""
    return [encode.AudioTrack(index.path, index.pts[0], index.info.audio_codec)]


def _finalize(parts: list[Path], output: Path, preset: Preset, index: VideoIndex,
              audio: list) -> None:
    """Join the chunks with the audio, as long as the output's slots."""
    note = encode.finalize(parts, output, preset.encode, audio,
                           sum(slot_counts(index)) / float(index.rate))
    if note:
        console.print(f"note: {note}")
