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
from renderer.engine.dream import Anchor, Dreamer
from renderer.media.decode import FrameReader, VideoIndex, slot_counts
from renderer.media.images import crossfade, to_uint8
from renderer.motion.carry import Carry, strength
from renderer.motion.flow import FlowEstimator, flow_to_tensor, resize_flow
from renderer.presets import Preset
from renderer.render import threads
from renderer.render.checkpoints import RenderState
from renderer.render.framestore import AsyncFrameStore, FrameStore
from renderer.render.plan import Segment, fade_weight
from renderer.progress import SILENT, ProgressSink
from renderer.render.threads import Budget


@dataclass
class StageTimes:
    """Seconds spent per stage. Summed over their threads: `decode`, `flow`, `encode`. The
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


@dataclass
class _Packet:
    step: int
    rows: list[int]  # which segments take part in this step
    sources: torch.Tensor  # (N, H, W, 3) uint8, pinned when bound for a GPU
    flows: tuple[torch.Tensor, torch.Tensor] | None  # backward, forward: (N, 2, H, W)


class _FlowFeed:
    """Reads the next frame of every active segment and computes its flows, ahead of the GPU."""

    def __init__(self, run: Lockstep, carry: Carry, times: StageTimes, budget: Budget, pin: bool,
                 first_step: int = 0, previous=None, depth: int = 3):
        self.segments, self.carry, self.times, self.pin = run.segments, carry, times, pin
        self.first_step = first_step
        self.readers = [FrameReader(run.index, s.start + min(first_step, s.length),
                                    max(0, s.length - first_step), run.size,
                                    threads=budget.decode, fit=run.preset.video.fit)
                        for s in run.segments]
        self.pool = ThreadPoolExecutor(max_workers=budget.flow, thread_name_prefix="flow")
        self.local = threading.local()
        self.previous = [(previous or {}).get(i) for i in range(len(run.segments))]
        self.worker = Producer(self._packets, depth, name="flow-feed")

    def _flow(self, pair):
        if not hasattr(self.local, "estimator"):
            self.local.estimator = FlowEstimator.of(self.carry.settings)
        return self.local.estimator.pair(*pair)

    def _packets(self):
        for step in range(self.first_step, max(s.length for s in self.segments)):
            rows = [i for i, s in enumerate(self.segments) if step < s.length]
            t = time.perf_counter()
            sources = [next(self.readers[i]) for i in rows]
            self.times.add("decode", time.perf_counter() - t)
            t = time.perf_counter()
            flows = None
            if self.carry.needs_flow and step > 0:
                pairs = [(self.previous[i], src) for i, src in zip(rows, sources)]
                both = list(self.pool.map(self._flow, pairs))
                flows = tuple(self._staged(flow_to_tensor([f[k] for f in both])) for k in (0, 1))
            self.times.add("flow", time.perf_counter() - t)
            for i, src in zip(rows, sources):
                self.previous[i] = src
            yield _Packet(step, rows, self._staged(torch.from_numpy(np.stack(sources))), flows)

    def _staged(self, tensor: torch.Tensor) -> torch.Tensor:
        """Page-locked host memory, so the copy to the GPU runs asynchronously."""
        return tensor.pin_memory() if self.pin else tensor

    def __iter__(self):
        return iter(self.worker)

    def close(self):
        self.worker.close()
        for reader in self.readers:
            reader.close()
        self.pool.shutdown(wait=False, cancel_futures=True)


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


def _close_stretch(encoders: _Encoders, fades_written: Future, output, state: RenderState):
    """Off the dream loop: drain and close a stretch's encoders (x264 holds dozens of frames in
    flight), wait until its parked cross-fade frames are on disk, then commit the checkpoint
    that names its chunks. A kill before the commit leaves the previous checkpoint in place."""
    encoders.finish()
    fades_written.result()
    output.commit(state, encoders.sinks)


def _padded(start: torch.Tensor, anchor: Anchor | None, driven: dict, rows: int):
    """The batch (and its per-row values) padded to `rows`, repeating its last row: compiled
    code keeps one shape when a shorter segment has ended."""
    pad = rows - start.shape[0]
    if pad <= 0:
        return start, anchor, driven

    def longer(t):
        return torch.cat([t, t[-1:].expand(pad, *t.shape[1:])])

    start = longer(start)
    if anchor is not None:
        weight = anchor.weight if isinstance(anchor.weight, float | int) else longer(anchor.weight)
        anchor = Anchor(longer(anchor.target), longer(anchor.mask), weight)
    driven = {k: np.concatenate([v, np.repeat(v[-1:], pad)]) for k, v in driven.items()}
    return start, anchor, driven


def _driven_steps(carry: Carry, first: bool, driven: dict) -> int:
    """The batch step's ascent steps: one value for the whole batch (the first row's)."""
    fresh = driven.get("dream.steps")
    return carry.steps(first, None if fresh is None else int(round(float(fresh[0]))))


def _set_term_weights(dreamer: Dreamer, driven: dict) -> None:
    """Music-driven objective term weights, one row per image of the batch."""
    keys = [k for k in driven if k.startswith("objective.")]
    if not keys:
        return
    objective = dreamer.objective
    weights = np.repeat(objective.weights[:1].numpy(), len(driven[keys[0]]), axis=0)
    for key in keys:
        weights[:, int(key.split(".")[1])] = driven[key]
    objective.set_weights(weights)


def render_frames(run: Lockstep, output, *, state: RenderState | None = None,
                  fades: FrameStore | None = None, progress: ProgressSink = SILENT,
                  times: StageTimes | None = None, budget: Budget | None = None) -> StageTimes:
    """Dream every frame of `run.segments` in lockstep batches and write the kept frames to
    the sinks that `output` opens (`render.sinks`: FixedSinks or ChunkedOutput).

    Every `output.every` steps the frames go to a new stretch of sinks while the last stretch
    is closed and committed on a background thread, so the device never waits for a
    checkpoint. `state` continues an earlier render; `fades` holds parked frames (warm-ups,
    and the tail handed to the next part).
    """
    preset, dreamer, segments = run.preset, run.dreamer, run.segments
    device = dreamer.device
    times = times or StageTimes()
    carry = Carry.of(preset)
    state = state or RenderState()
    repeats = slot_counts(run.index)
    budget = budget or threads.plan(device.type, len(segments), preset.video.threads)
    threads.apply(budget)
    cuda = device.type == "cuda"
    feed = _FlowFeed(run, carry, times, budget, pin=cuda, first_step=state.step,
                     previous=state.prev_rgb)
    encoders = _Encoders(output.open(state.step), times, progress)
    own_fades = fades is None
    fades = fades or FrameStore()
    parked = AsyncFrameStore(fades)
    # the source frames exactly as the loop makes them: the uint8 frame over 255
    prev_source = {i: torch.from_numpy(rgb).to(device).permute(2, 0, 1).float() / 255
                   for i, rgb in state.prev_rgb.items()}
    prev_dream = {i: t.to(device) for i, t in state.prev_dream.items()}
    prev_rgb = dict(state.prev_rgb)
    reference = {i: t.to(device) for i, t in state.reference.items()}  # flow.hold's strengths
    total = max(s.length for s in segments)
    static_shapes = dreamer.static_shapes
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
    saving: Future | None = None  # the last stretch, closing and committing in `background`
    try:
        waited, waiting = time.perf_counter(), "startup"
        for packet in feed:
            times.add(waiting, time.perf_counter() - waited)
            waiting = "idle"
            progress.advance("decoded", len(packet.rows))
            t = time.perf_counter()
            source = packet.sources.to(device, non_blocking=cuda).permute(0, 3, 1, 2).float() / 255
            start, anchor, first = source, None, packet.step == 0
            driven = {k: v[[segments[i].start + packet.step for i in packet.rows]]
                      for k, v in run.values.items()}
            scale = driven.pop("dream.step_size", preset.dream.step_size) / preset.dream.step_size
            fresh = None  # rows that start a new shot (flow.hold)
            if not first:
                prev_s = torch.stack([prev_source[i] for i in packet.rows])
                prev_d = torch.stack([prev_dream[i] for i in packet.rows])
                backward = forward = None
                if packet.flows is not None:
                    backward, forward = (resize_flow(f.to(device, non_blocking=cuda),
                                                     source.shape[-2:]) for f in packet.flows)
                begun = carry.start(source, prev_s, prev_d, backward, forward,
                                    driven.get("flow.persistence"),
                                    driven.get("flow.temporal_weight"),
                                    torch.stack([reference[i] for i in packet.rows])
                                    if reference else None)
                start, anchor = begun.image, begun.anchor
                scale = scale * begun.step_scale(carry)
                if begun.fresh is not None:
                    fresh = begun.fresh.cpu().numpy()
            driven["step_scale"] = np.broadcast_to(scale, (len(packet.rows),)).astype(float)
            if static_shapes:
                start, anchor, driven = _padded(start, anchor, driven, len(segments))
            _set_term_weights(dreamer, driven)
            rows = len(packet.rows)
            begins = None  # rows that begin a shot held at their strength (flow.hold)
            if carry.settings.hold:
                begins = np.ones(rows, bool) if first else fresh
            raw = dreamer.dream(start, seed=preset.seed, steps=_driven_steps(carry, first, driven),
                                step_scale=driven["step_scale"], anchor=anchor)[:rows]
            if fresh is not None and fresh.any():
                # a cut dreams as a first frame does (fewer, larger steps dream a stronger,
                # finer picture, which a later segment's first frame would not match)
                again = dreamer.dream(start, seed=preset.seed,
                                      steps=_driven_steps(carry, True, driven),
                                      step_scale=driven["step_scale"])[:rows]
                raw = torch.where(torch.as_tensor(fresh, device=raw.device).view(-1, 1, 1, 1),
                                  again, raw)
            dreamed = carry.settle(start[:rows], raw, begins)
            for row, i in enumerate(packet.rows):
                prev_source[i], prev_dream[i] = source[row], dreamed[row]
                prev_rgb[i] = packet.sources[row].numpy()
                if carry.settings.hold and (first or (fresh is not None and fresh[row])):
                    reference[i] = strength((dreamed[row] - source[row])[None])[0]
            frames = to_uint8(dreamed)
            times.add("dream", time.perf_counter() - t)
            progress.advance("dreamed", len(packet.rows))
            t = time.perf_counter()
            for row, i in enumerate(packet.rows):
                frame_no = segments[i].start + packet.step
                if frame_no < segments[i].keep:  # warm-up: kept for the cross-fade
                    parked.put((i, frame_no), frames[row])
                    continue
                if run.tail_from is not None and i == len(segments) - 1 \
                        and frame_no >= run.tail_from:
                    parked.put((TAIL, frame_no), frames[row])
                    continue
                following = segments[i + 1] if i + 1 < len(segments) else None
                fading = following is not None and following.start <= frame_no < following.keep
                incoming = parked.get((i + 1, frame_no)) if fading else None
                weight = fade_weight(following, frame_no) if fading else 0.0
                encoders.put(i, frames[row], repeats[frame_no], incoming, weight)
            times.add("handoff", time.perf_counter() - t)
            done = packet.step + 1
            if output.every and done % output.every == 0 and done < total:
                if saving is not None:
                    saving.result()
                snapshot = RenderState(done, {i: t.cpu() for i, t in prev_dream.items()},
                                       dict(prev_rgb),
                                       {i: t.cpu() for i, t in reference.items()})
                closing, encoders = encoders, _Encoders(output.open(done), times, progress)
                saving = background.submit(_close_stretch, closing, parked.written(), output,
                                           snapshot)
            waited = time.perf_counter()
        t = time.perf_counter()
        encoders.finish()
        parked.flush()
        if saving is not None:
            saving.result()
        times.add("drain", time.perf_counter() - t)
    except BaseException:
        encoders.abort()
        raise
    finally:
        feed.close()
        background.shutdown(wait=True)  # a checkpoint in flight lands (it is written atomically)
        parked.close()
        if own_fades:
            fades.close()
    return times
