"""Render a video file: plan -> lockstep loop into checkpointed chunks -> finalize with audio.

`render_video` renders a whole clip, or one part of a split render (`--part K/N`, Ray), into
a work folder beside the output; `assemble_parts` joins the finished parts. Every committed
stretch is checkpointed, so `resume` continues a killed render bit for bit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from renderer.engine.dream import Dreamer
from renderer.errors import UserError
from renderer.media import encode
from renderer.media.decode import VideoIndex, slot_counts
from renderer.media.images import crossfade
from renderer.outputs import OutputLock
from renderer.presets import Preset
from renderer.render import threads
from renderer.media.masks import MaskMaker, mask_maker
from renderer.render.checkpoints import (Checkpoints, RenderState, digest, mask_contents,
                                         remove_work_folder, work_dir)
from renderer.render.framestore import FrameStore
from renderer.render.loop import TAIL, Lockstep, StageTimes, render_frames
from renderer.render.plan import WHOLE, Part, default_batch, fade_weight, part_plan
from renderer.progress import SILENT, ProgressSink
from renderer.render.sinks import ChunkedOutput

log = logging.getLogger(__name__)


def fingerprint(index: VideoIndex, preset: Preset, size, segments, values: dict) -> str:
    driven = {k: hashlib.sha256(np.ascontiguousarray(v, np.float64).tobytes()).hexdigest()
              for k, v in sorted(values.items())}  # what the song made of the preset
    return digest(str(index.path.resolve()), index.pts[0], index.count, str(index.rate), list(size),
                  preset.model_dump(mode="json"), [vars(s) for s in segments], driven,
                  mask_contents(preset.mask))


def clip_times(index: VideoIndex) -> np.ndarray:
    """Each frame's time from the clip's first frame (seconds, from the container)."""
    return np.asarray(index.pts, float) - index.pts[0]


def source_audio(index: VideoIndex) -> list[encode.AudioTrack]:
    """The clip's own audio, from the first rendered frame's time (so a cut stays in sync)."""
    return [encode.AudioTrack(index.path, index.pts[0], index.info.audio_codec)]


class HandOver:
    """What a finished part parks for the assembly: the frames of its last segment that the
    next part's warm-up fades into (`tail`), and its first segment's warm-up (`warmup`)."""

    def __init__(self, output: Path, part: Part):
        self.store = FrameStore(parked_frames(part.folder(output)))

    def tail(self, frame: int):
        return self.store.get((TAIL, frame))

    def warmup(self, frame: int):
        return self.store.get((0, frame))


def parked_frames(folder: Path) -> Path:
    return folder / "fades"


@dataclass(frozen=True)
class VideoJob:
    """One render of a clip: what `render_video` takes, in one value (`controller.plan_render`
    makes it from a command's request). `batch` None: what the device's memory holds; `audio`
    None: the source's own; `values`: music-driven parameters (target -> one value per frame
    of the clip, see `music.schedule`)."""
    index: VideoIndex
    preset: Preset
    output: Path
    size: tuple[int, int]
    batch: int | None = None
    audio: list[encode.AudioTrack] | None = None
    values: dict = field(default_factory=dict)
    part: Part = WHOLE
    resume: bool = False
    masks: MaskMaker | None = None  # the preset's `mask:` for this clip (None: made here)


def render_video(index: VideoIndex, preset: Preset, dreamer: Dreamer, output: Path,
                 size: tuple[int, int], *, batch: int | None = None,
                 progress: ProgressSink = SILENT, times: StageTimes | None = None,
                 resume: bool = False, part: Part = WHOLE,
                 audio: list[encode.AudioTrack] | None = None,
                 values: dict | None = None) -> StageTimes:
    """`render_job` of these arguments."""
    return render_job(VideoJob(index, preset, Path(output), size, batch, audio, values or {},
                               part, resume), dreamer, progress, times)


def render_job(job: VideoJob, dreamer: Dreamer, progress: ProgressSink = SILENT,
               times: StageTimes | None = None) -> StageTimes:
    """Render the job's clip into its output, checkpointing every `video.checkpoint_every`
    steps into its work folder; `resume` continues from the last checkpoint. Only one render
    at a time writes an output (or one part of it).

    With a `part` of several, only that part's segments are rendered (`batch` segments per
    part), into its own folder, and left there for `assemble_parts`.
    """
    times = times or StageTimes()
    job = replace(job, batch=job.batch or job.preset.video.batch
                  or default_batch(dreamer.device, job.size),
                  audio=source_audio(job.index) if job.audio is None else job.audio)
    with OutputLock(job.output, "" if job.part.count == 1 else job.part.folder(job.output).name):
        _render(job, dreamer, progress, times)
    return times


def _render(job: VideoJob, dreamer: Dreamer, progress: ProgressSink, times: StageTimes) -> None:
    index, preset, output, size, part = job.index, job.preset, job.output, job.size, job.part
    plan = part_plan(index.count, job.batch, preset.video.warmup, part)
    mine = plan.mine
    repeats = slot_counts(index)
    whole = part.count == 1
    store = Checkpoints(output, fingerprint(index, preset, size, plan.segments, job.values)
                        + str(part), None if whole else part.folder(output))
    if job.resume and not whole and store.finished() is not None:
        log.info(f"part {part} is already rendered")
        return
    restored = store.start(job.resume)
    if not mine:  # more parts than segments: nothing to do
        store.finish([])
        return
    state, chunks = restored or (RenderState(), None)
    if restored is not None:
        log.info(f"resuming from step {state.step} of {max(s.length for s in mine)} "
                 f"({sum(map(len, chunks))} finished chunks)")
    dreamer.choose_compile(plan.dreamed, size)
    progress.stage("decoded", plan.dreamed, plan.dreamed_before(state.step))
    progress.stage("dreamed", plan.dreamed, plan.dreamed_before(state.step))
    progress.stage("encoded", plan.kept, plan.kept_before(state.step))
    png = bool(encode.codec_of(preset.encode).frames)  # a folder of frame files
    suffix = encode.chunk_suffix(preset.encode)
    budget = threads.plan(dreamer.device.type, len(mine), preset.video.threads,
                          preset.video.flow_workers)

    def chunk_writer(k: int, step: int) -> encode.ChunkWriter:
        s = mine[k]
        return encode.ChunkWriter(
            store.folder / "frames" if png else
            store.folder / f"chunk_{s.index:04d}_{step:06d}{suffix}", size, index.rate,
            preset.encode, first_slot=sum(repeats[:max(s.keep, min(s.end, s.start + step))]),
            threads=budget.encode)

    output_chunks = ChunkedOutput(store, [store.folder] * len(mine), chunk_writer,
                                  preset.video.checkpoint_every, chunks)
    masks = job.masks or mask_maker(preset.mask, size, clip_times(index), preset.video.fit)
    render_frames(Lockstep(index, preset, dreamer, size, mine, plan.tail_from, job.values, masks),
                  output_chunks,
                  state=state, fades=FrameStore(parked_frames(store.folder)), progress=progress,
                  times=times, budget=budget)
    # in output order: by segment, then by step
    files = [store.folder / "frames"] if png else [f for names in output_chunks.finish()
                                                   for f in names]
    if not whole:
        store.finish([f.name for f in files])
        return
    t = time.perf_counter()
    progress.stage("finishing", None)
    _finalize(files, output, preset, index, job.audio)
    times.add("mux", time.perf_counter() - t)
    remove_work_folder(store.folder)


def assemble_parts(index: VideoIndex, preset: Preset, output: Path, size: tuple[int, int],
                   batch: int, count: int, audio: list | None = None,
                   values: dict | None = None) -> None:
    """Join the `count` finished parts of a split render: the tail of each part is cross-faded
    with the next part's warm-up (as one render does between its segments) and encoded, then
    every chunk is concatenated in order with the audio."""
    with OutputLock(output):
        _assemble(index, preset, output, size, batch, count,
                  source_audio(index) if audio is None else audio, values or {})


def _assemble(index: VideoIndex, preset: Preset, output: Path, size: tuple[int, int],
              batch: int, count: int, audio: list, values: dict) -> None:
    parts = [Part(k, count) for k in range(count)]
    plans = [part_plan(index.count, batch, preset.video.warmup, p) for p in parts]
    repeats = slot_counts(index)
    base = fingerprint(index, preset, size, plans[0].segments, values)
    stores = [Checkpoints(output, base + str(p), p.folder(output)) for p in parts]
    manifests = [store.finished() for store in stores]
    for part, manifest in zip(parts, manifests):
        if manifest is None:
            raise UserError(f"part {part} of '{output}' is not rendered (or was rendered with "
                            f"other settings): run the same render with --part {part} first")
    frames = encode.codec_of(preset.encode).frames
    png = bool(frames)  # a folder of frame files
    suffix = encode.chunk_suffix(preset.encode)
    merged = work_dir(output) / "frames"
    if png:
        merged.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    filled = [(p, st, m, pl) for p, st, m, pl in zip(parts, stores, manifests, plans) if pl.mine]
    for (part, store, manifest, plan), following in zip(filled, filled[1:] + [None]):
        if png:
            for frame in (store.folder / "frames").glob(f"*{frames}"):
                os.replace(frame, merged / frame.name)
        else:
            files.extend(store.folder / c for c in manifest)
        if following is None:
            continue
        incoming, last = following[3].mine[0], plan.mine[-1]
        tails, warmups = HandOver(output, part), HandOver(output, following[0])
        seam = encode.ChunkWriter(
            merged if png else work_dir(output) / f"seam_{part.number:04d}{suffix}", size,
            index.rate, preset.encode, first_slot=sum(repeats[:incoming.start]))
        for frame in range(incoming.start, last.end):
            tail, warm = tails.tail(frame), warmups.warmup(frame)
            if tail is None or warm is None:
                seam.abort()
                raise UserError(f"frame {frame} of the hand-over after part {part} is missing "
                                f"from '{work_dir(output)}': render parts {part} and "
                                f"{following[0]} again without --resume")
            seam.write(crossfade(tail, warm, fade_weight(incoming, frame)), repeats[frame])
        seam.close()
        if seam.chunk is not None:
            files.append(seam.path)
    _finalize([merged] if png else files, output, preset, index, audio)
    remove_work_folder(work_dir(output))


def _finalize(chunks: list[Path], output: Path, preset: Preset, index: VideoIndex,
              audio: list) -> None:
    """Join the chunks with the audio, as long as the output's slots."""
    note = encode.finalize(chunks, output, preset.encode, audio, index.rate,
                           sum(slot_counts(index)))
    if note:
        log.warning(note)
