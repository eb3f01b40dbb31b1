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
import shutil
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import encode
from .decode import FrameReader, VideoIndex, slot_counts
from .accel import Compiled
from .dream import Anchor, Dreamer
from .framestore import FrameStore
from .flow import FlowEstimator, consistency_mask, flow_to_tensor, warp
from .images import to_uint8
from .presets import FlowSection, Preset


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


def fade_weight(segment: Segment, frame: int) -> float:
    """Weight of `segment`'s warm-up frame in the cross-fade with the previous segment."""
    x = (frame - segment.start + 1) / (segment.keep - segment.start + 1)
    return x * x * (3 - 2 * x)


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
                 workers: int, pin: bool, depth: int = 3):
        super().__init__(daemon=True)
        self.segments, self.flow_settings, self.times, self.pin = segments, flow, times, pin
        self.readers = [FrameReader(index, s.start, s.length, size) for s in segments]
        self.out: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.local = threading.local()
        self.previous: list[np.ndarray | None] = [None] * len(segments)
        self.stop = threading.Event()
        self.needs_flow = flow.mode in ("warp", "consistent")

    def _flow(self, pair):
        if not hasattr(self.local, "estimator"):
            self.local.estimator = FlowEstimator(self.flow_settings.quality,
                                                 self.flow_settings.max_width)
        return self.local.estimator.pair(*pair)

    def run(self):
        try:
            for step in range(max(s.length for s in self.segments)):
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
    are blended here too, off the dream loop's thread."""

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
                if incoming is not None:
                    rgb = ((1 - weight) * rgb + weight * incoming).round().astype(np.uint8)
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
                  times: StageTimes, progress=None) -> None:
    """Dream every frame of `segments` in lockstep batches and hand kept frames to `writers`."""
    settings, device = preset.flow, dreamer.device
    repeats = slot_counts(index)
    workers = max(1, min(os.cpu_count() or 1, len(segments)))
    cuda = device.type == "cuda"
    producer = _Producer(index, segments, size, settings, times, workers, pin=cuda)
    advance = progress or (lambda stage, n=1: None)
    writer = _Writers(writers, times, lambda: advance("encoded"))
    fades = FrameStore()
    producer.start()
    prev_source: dict[int, torch.Tensor] = {}
    prev_dream: dict[int, torch.Tensor] = {}
    carried_steps = settings.steps if settings.steps is not None else preset.dream.steps
    static_shapes = isinstance(dreamer.loss, Compiled)
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
                    backward, forward = (f.to(device, non_blocking=cuda) for f in packet.flows)
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
            frames = to_uint8(dreamed)
            times.add("dream", time.perf_counter() - t)
            advance("dreamed", len(packet.rows))
            for row, i in enumerate(packet.rows):
                frame_no = segments[i].start + packet.step
                if frame_no < segments[i].keep:  # warm-up: kept for the cross-fade
                    fades.put((i, frame_no), frames[row])
                    continue
                incoming = fades.pop((i + 1, frame_no)) if i + 1 < len(segments) else None
                weight = fade_weight(segments[i + 1], frame_no) if incoming is not None else 0.0
                writer.put(i, frames[row], repeats[frame_no], incoming, weight)
            waited = time.perf_counter()
    except BaseException:
        producer.close()
        writer.stop()
        for w in writers:
            w.abort()
        raise
    finally:
        fades.close()
    writer.finish()


def default_batch(device: torch.device, size: tuple[int, int]) -> int:
    """Segments per batch: 2 on the CPU; on CUDA what a quarter of free memory holds."""
    if device.type != "cuda":
        return 2
    free, _ = torch.cuda.mem_get_info(device)
    # MobileNetV2 up to features.12 writes ~40x the input's fp32 bytes in conv outputs; bf16
    # halves that, autograd keeps ~3 tensors per conv: ~80x the input, rounded up for safety
    per_frame = size[0] * size[1] * 3 * 4 * 80
    return int(max(1, min(16, free * 0.25 // per_frame)))


def parts_dir(output: Path) -> Path:
    return output.parent / f".{output.name}.parts"


def render_video(index: VideoIndex, preset: Preset, dreamer: Dreamer, output: Path,
                 size: tuple[int, int], batch: int | None = None, progress=None,
                 times: StageTimes | None = None) -> StageTimes:
    """Render the indexed clip into `output` (a temporary parts folder, then one rename)."""
    times = times or StageTimes()
    batch = batch or preset.video.batch or default_batch(dreamer.device, size)
    segments = plan_segments(index.count, batch, preset.video.warmup)
    repeats = slot_counts(index)
    parts = parts_dir(output)
    if parts.exists():
        shutil.rmtree(parts)
    parts.mkdir()
    try:
        suffix = encode.segment_suffix(preset.encode)
        png = preset.encode.codec == "png"
        paths = [parts / "frames" if png else parts / f"segment_{s.index:04d}{suffix}"
                 for s in segments]
        writers = [encode.SegmentWriter(p, size, index.rate, preset.encode,
                                        first_slot=sum(repeats[:s.keep]))
                   for p, s in zip(paths, segments)]
        render_frames(index, preset, dreamer, size, segments, writers, times, progress)
        t = time.perf_counter()
        written = sorted({w.path for w in writers if w.frames})  # VFR drops can empty a segment
        encode.finalize(written, output, preset.encode, index.path, index.pts[0],
                        sum(repeats) / float(index.rate), index.info.audio_codec)
        times.add("encode", time.perf_counter() - t)
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    return times
