"""The lockstep video loop: decode -> flow -> dream (one batch row per segment) -> encode.

Decoding and flow run on a producer thread, each segment's encoder on its own consumer thread,
checkpoints on another, so the device only waits when the CPU side cannot keep up (`idle` in
StageTimes says how long). No torch op runs on the producer thread: on the CPU that would
compete with the dream's own threads.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from renderer.background import Consumer, Producer
from renderer.engine.dream import Dreamer
from renderer.media.decode import FrameReader, VideoIndex, slot_counts
from renderer.media.encode import codec_of
from renderer.media.images import crossfade, to_frames
from renderer.media.masks import MaskMaker
from renderer.motion.carry import Carry
from renderer.motion.chain import LINK_MAPS, Chain, Link
from renderer.motion.flowpool import FlowProcesses, FlowThreads
from renderer.music.schedule import driven_rows
from renderer.presets import Preset
from renderer.render import threads
from renderer.render.checkpoints import RenderState
from renderer.render.framestore import AsyncFrameStore, FrameStore
from renderer.render.plan import Segment, fade_weight
from renderer.progress import SILENT, ProgressSink
from renderer.render.threads import Budget


@dataclass
class StageTimes:
    """Seconds spent per stage. Summed over their threads: `decode`, `flow`, `mask`, `encode`. The
    dream loop's own wall time: `startup` (until the first frames and flows arrive), `dream`,
    `idle` (waiting for input after that), `handoff` (frames to the encoders and the cross-fade
    store; `backpressure` is the part spent blocked on a full encoder queue), `drain` (the
    encoders finishing at the end) and `mux` (joining chunks and audio)."""
    seconds: dict = field(default_factory=lambda: defaultdict(float))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, stage: str, seconds: float) -> None:
        with self.lock:
            self.seconds[stage] += seconds


TAIL = "tail"  # the parked-frame key of a part's hand-over tail: (TAIL, frame)


@dataclass(frozen=True)
class Lockstep:
    """What the loop dreams: the indexed clip at `size`, as `segments` advancing together.
    Frames of the last segment from `tail_from` on are parked as (TAIL, frame) instead of
    written: another part's warm-up is cross-faded into them at assembly. `values` are the
    music-driven parameters (`music.schedule`): target -> one value per frame of the clip."""
    index: VideoIndex
    preset: Preset
    dreamer: Dreamer
    size: tuple[int, int]
    segments: list[Segment]
    tail_from: int | None = None
    values: dict = field(default_factory=dict)
    masks: MaskMaker | None = None  # the preset's `mask:` for this clip


@dataclass
class _Packet:
    step: int
    rows: list[int]  # which segments take part in this step
    sources: torch.Tensor  # (N, H, W, 3) uint8, pinned when bound for a GPU
    flows: tuple[torch.Tensor, torch.Tensor] | None  # backward, forward: (N, 2, H, W)
    masks: torch.Tensor | None = None  # (N, 1, H, W) uint8: where each row dreams


class _FlowFeed:
    """Reads the next frame of every active segment and computes its flows (and masks), ahead
    of the GPU."""

    def __init__(self, run: Lockstep, carry: Carry, times: StageTimes, budget: Budget, pin: bool,
                 first_step: int = 0, previous=None, depth: int = 3):
        self.segments, self.carry, self.times, self.pin = run.segments, carry, times, pin
        self.first_step = first_step
        self.readers = [FrameReader(run.index, s.start + min(first_step, s.length),
                                    max(0, s.length - first_step), run.size,
                                    threads=budget.decode, fit=run.preset.video.fit)
                        for s in run.segments]
        self.masks = None if run.masks is None else [
            run.masks.cursor(s.start + min(first_step, s.length)) for s in run.segments]
        self.flow = None
        if carry.needs_flow:
            self.flow = FlowProcesses(carry.settings, run.size[::-1], len(run.segments),
                                      budget.flow, budget.opencv_per_flow_worker) \
                if budget.flow_processes else FlowThreads(carry.settings, budget.flow)
        self.previous = [(previous or {}).get(i) for i in range(len(run.segments))]
        self.worker = Producer(self._packets, depth, name="flow-feed")

    def _packets(self):
        for step in range(self.first_step, max(s.length for s in self.segments)):
            rows = [i for i, s in enumerate(self.segments) if step < s.length]
            t = time.perf_counter()
            sources = [next(self.readers[i]) for i in rows]
            self.times.add("decode", time.perf_counter() - t)
            t = time.perf_counter()
            flows = None
            if self.flow is not None and step > 0:
                pairs = [(self.previous[i], src) for i, src in zip(rows, sources)]
                flows = tuple(self._staged(torch.from_numpy(f)) for f in self.flow.flows(pairs))
            self.times.add("flow", time.perf_counter() - t)
            masks = None
            if self.masks is not None:
                t = time.perf_counter()
                masks = self._staged(torch.from_numpy(np.stack(
                    [self.masks[i](self.segments[i].start + step, src)
                     for i, src in zip(rows, sources)])[:, None]))
                self.times.add("mask", time.perf_counter() - t)
            for i, src in zip(rows, sources):
                self.previous[i] = src
            yield _Packet(step, rows, self._staged(torch.from_numpy(np.stack(sources))), flows,
                          masks)

    def _staged(self, tensor: torch.Tensor) -> torch.Tensor:
        """Page-locked host memory, so the copy to the GPU runs asynchronously."""
        return tensor.pin_memory() if self.pin else tensor

    def __iter__(self):
        return iter(self.worker)

    def close(self):
        self.worker.close()
        for reader in self.readers + (self.masks or []):
            reader.close()
        if self.flow is not None:
            self.flow.close()


class _Encoders:
    """One consumer thread per segment's sink, so a busy encoder never stalls the others;
    cross-fades are blended there too (the incoming frame arrives as a Future from the frame
    store), off the dream loop's thread."""

    def __init__(self, sinks: list, times: StageTimes, progress: ProgressSink):
        self.sinks, self.times, self.progress = sinks, times, progress
        self.workers = [Consumer(lambda item, sink=sink: self._encode(sink, *item),
                                 name="encode") for sink in sinks]

    def _encode(self, sink, rgb, repeats: int, incoming: Future | None, weight: float) -> None:
        t = time.perf_counter()
        if incoming is not None and (other := incoming.result()) is not None:
            rgb = crossfade(rgb, other, weight)
        sink.write(rgb, repeats)
        self.times.add("encode", time.perf_counter() - t)
        self.progress.advance("encoded")

    def put(self, k: int, rgb, repeats: int, incoming=None, weight: float = 0.0) -> None:
        t = time.perf_counter()
        self.workers[k].put((rgb, repeats, incoming, weight))
        self.times.add("backpressure", time.perf_counter() - t)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def finish(self) -> None:
        """Every frame written and every sink closed; the first failure is raised."""
        self.stop()
        for worker in self.workers:
            if worker.error is not None:
                raise worker.error
        t = time.perf_counter()
        for sink in self.sinks:
            sink.close()
        self.times.add("encode", time.perf_counter() - t)

    def abort(self) -> None:
        self.stop()
        for sink in self.sinks:
            sink.abort()


class _Router:
    """Where each dreamed frame goes: a warm-up frame is parked for the cross-fade, the tail
    of a part's last segment is parked for the hand-over, every other frame goes to its
    segment's encoder (with the next segment's parked warm-up frame where they overlap)."""

    def __init__(self, run: Lockstep, parked: AsyncFrameStore):
        self.segments, self.tail_from, self.parked = run.segments, run.tail_from, parked
        self.repeats = slot_counts(run.index)

    def send(self, encoders: _Encoders, step: int, rows: list[int], frames) -> None:
        segments, parked = self.segments, self.parked
        for row, i in enumerate(rows):
            frame_no = segments[i].start + step
            if frame_no < segments[i].keep:  # warm-up: kept for the cross-fade
                parked.put((i, frame_no), frames[row])
                continue
            if self.tail_from is not None and i == len(segments) - 1 \
                    and frame_no >= self.tail_from:
                parked.put((TAIL, frame_no), frames[row])
                continue
            following = segments[i + 1] if i + 1 < len(segments) else None
            fading = following is not None and following.start <= frame_no < following.keep
            incoming = parked.get((i + 1, frame_no)) if fading else None
            weight = fade_weight(following, frame_no) if fading else 0.0
            encoders.put(i, frames[row], self.repeats[frame_no], incoming, weight)


class _Stretches:
    """Checkpoint rotation: every `output.every` steps the frames go to a new stretch of
    sinks while the last one is closed and committed on a background thread (the device never
    waits for a checkpoint). A kill before a commit leaves the previous checkpoint in place."""

    def __init__(self, output, first_step: int, total: int, parked: AsyncFrameStore,
                 times: StageTimes, progress: ProgressSink):
        self.output, self.total, self.parked = output, total, parked
        self.times, self.progress = times, progress
        self.encoders = _Encoders(output.open(first_step), times, progress)
        self.background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self.saving: Future | None = None  # the last stretch, closing and committing

    def after(self, done: int, state) -> None:
        """`done` steps are dreamed; `state()` is what a checkpoint after them saves."""
        every = self.output.every
        if not every or done % every or done >= self.total:
            return
        if self.saving is not None:
            self.saving.result()
        closing, self.encoders = self.encoders, _Encoders(self.output.open(done), self.times,
                                                          self.progress)
        self.saving = self.background.submit(self._close, closing, self.parked.written(),
                                             state())

    def _close(self, encoders: _Encoders, fades_written: Future, state: RenderState) -> None:
        """Drain and close a stretch's encoders (x264 holds dozens of frames in flight), wait
        until its parked cross-fade frames are on disk, then commit the checkpoint that names
        its chunks."""
        encoders.finish()
        fades_written.result()
        self.output.commit(state, encoders.sinks)

    def finish(self) -> None:
        self.encoders.finish()
        self.parked.flush()
        if self.saving is not None:
            self.saving.result()

    def abort(self) -> None:
        self.encoders.abort()

    def close(self) -> None:
        self.background.shutdown(wait=True)  # a checkpoint in flight lands (written atomically)


def _restored(state: RenderState, device) -> dict[int, Link]:
    """The chain's rows as a checkpoint left them; the source frames exactly as the loop
    makes them (the uint8 frame over 255)."""
    def maps(i: int) -> dict:
        return {name: rows[i].to(device) for name, rows in state.maps.items() if i in rows}

    return {i: Link(torch.from_numpy(rgb).to(device).permute(2, 0, 1).float() / 255,
                    state.prev_dream[i].to(device), **maps(i))
            for i, rgb in state.prev_rgb.items()}


def _frames(dreamed: torch.Tensor, coverage: torch.Tensor | None, codec) -> np.ndarray:
    """The frames the codec takes: 8- or 16-bit, and for a master with alpha the region the
    dream shows in (opaque without a mask)."""
    alpha = None
    if codec.alpha:
        alpha = coverage if coverage is not None else torch.ones_like(dreamed[:, :1])
    return to_frames(dreamed, alpha, codec.deep)


def _snapshot(step: int, chain: Chain, prev_rgb: dict) -> RenderState:
    links = chain.links.items()
    return RenderState(step, {i: k.dream.cpu() for i, k in links}, dict(prev_rgb),
                       {name: {i: getattr(k, name).cpu() for i, k in links
                               if getattr(k, name) is not None} for name in LINK_MAPS})


def render_frames(run: Lockstep, output, *, state: RenderState | None = None,
                  fades: FrameStore | None = None, progress: ProgressSink = SILENT,
                  times: StageTimes | None = None, budget: Budget | None = None) -> StageTimes:
    """Dream every frame of `run.segments` in lockstep batches (one `Chain` row per segment)
    and write the kept frames to the sinks that `output` opens (`render.sinks`: FixedSinks or
    ChunkedOutput), a new stretch of them every `output.every` steps (`_Stretches`). `state`
    continues an earlier render; `fades` holds parked frames (warm-ups, and the tail handed to
    the next part).
    """
    preset, dreamer, segments = run.preset, run.dreamer, run.segments
    device = dreamer.device
    times = times or StageTimes()
    state = state or RenderState()
    budget = budget or threads.plan(device.type, len(segments), preset.video.threads,
                                    preset.video.flow_workers)
    threads.apply(budget)
    cuda = device.type == "cuda"
    codec = codec_of(preset.encode)
    chain = Chain(preset, dreamer, _restored(state, device), width=len(segments))
    prev_rgb = dict(state.prev_rgb)
    feed = _FlowFeed(run, chain.carry, times, budget, pin=cuda, first_step=state.step,
                     previous=state.prev_rgb)
    own_fades = fades is None
    fades = fades or FrameStore()
    parked = AsyncFrameStore(fades)
    router = _Router(run, parked)
    stretches = _Stretches(output, state.step, max(s.length for s in segments), parked, times,
                           progress)
    try:
        waited, waiting = time.perf_counter(), "startup"
        for packet in feed:
            times.add(waiting, time.perf_counter() - waited)
            waiting = "idle"
            progress.advance("decoded", len(packet.rows))
            t = time.perf_counter()
            source = packet.sources.to(device, non_blocking=cuda).permute(0, 3, 1, 2).float() / 255
            driven = driven_rows(run.values, [segments[i].start + packet.step
                                              for i in packet.rows])
            masks = None if packet.masks is None else \
                packet.masks.to(device, non_blocking=cuda).float() / 255
            dreamed = chain.frame(packet.rows, source, packet.flows, driven, masks,
                                  turn=packet.step)
            for row, i in enumerate(packet.rows):
                prev_rgb[i] = packet.sources[row].numpy()
            frames = _frames(dreamed, chain.coverage, codec)
            times.add("dream", time.perf_counter() - t)
            progress.advance("dreamed", len(packet.rows))
            t = time.perf_counter()
            router.send(stretches.encoders, packet.step, packet.rows, frames)
            times.add("handoff", time.perf_counter() - t)
            done = packet.step + 1
            stretches.after(done, lambda: _snapshot(done, chain, prev_rgb))
            waited = time.perf_counter()
        t = time.perf_counter()
        stretches.finish()
        times.add("drain", time.perf_counter() - t)
    except BaseException:
        stretches.abort()
        raise
    finally:
        feed.close()
        stretches.close()
        parked.close()
        if own_fades:
            fades.close()
    return times
