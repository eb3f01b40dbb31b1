"""Render a zoom ("infinite dream"): transform the last dream, dream a few steps, write, repeat.

`ZoomRenderer` produces the frames of a batch of variants (one seed each); `zoom_frames` puts
them in output order and closes loops; `render_zoom` writes them as checkpointed chunks and
finalizes each variant's file, as `render_video` does for a clip. Loops are closed by rendering
past the end and turning that continuation into the first frames (`ZoomRenderer.close`).
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from renderer.curves import crossfade_weight
from renderer.drivable import term_index
from renderer.engine.dream import Dreamer, pick_device
from renderer.engine.models import networks_for
from renderer.engine.objectives import MixedObjective, zoom_objective
from renderer.media import encode
from renderer.media.images import contrast_kept_crossfade, grown_in, to_uint8
from renderer.media.masks import mask_maker
from renderer.keyframes import Motion, frame_motion
from renderer.media.probe import as_rate
from renderer.motion.zoom import colour_reference, hold_colour, per_frame, transform
from renderer.music.schedule import Schedule, keyframe_values
from renderer.outputs import OutputLock
from renderer.presets import Preset
from renderer.render.checkpoints import (Checkpoints, RenderState, digest, mask_contents,
                                         remove_work_folder)
from renderer.render.framestore import FrameStore
from renderer.progress import SILENT, ProgressSink
from renderer.render.sinks import ChunkedOutput

log = logging.getLogger(__name__)


PREROLL_SECONDS = 2.0


class ZoomRenderer:
    """Produces the frames of a zoom sequence for a batch of variants, one frame at a time."""

    def __init__(self, dreamer: Dreamer, preset: Preset, fps: float, seeds: list[int],
                 mixed: MixedObjective | None = None, schedule: Schedule | None = None,
                 shots: dict[str, np.ndarray] | None = None):
        self.dreamer, self.preset, self.settings = dreamer, preset, preset.zoom
        self.fps, self.seeds, self.mixed, self.schedule = fps, seeds, mixed, schedule
        self.shots = shots or {}
        self.hold = per_frame(self.settings.color_hold, fps)

    @classmethod
    def of(cls, preset: Preset, fps: float, variants: int = 1, device=None,
           schedule: Schedule | None = None, shots: dict[str, np.ndarray] | None = None
           ) -> "ZoomRenderer":
        """The usual way in: a zoom preset on the best device, seeds seed .. seed + variants;
        a `schedule` drives its motion and strength from the timeline and the music, `shots`
        (`controller.zoom_looks`) its look, frame by frame."""
        device = pick_device(device)
        network = networks_for(preset)
        objective, mixed = zoom_objective(preset, network, device)
        return cls(Dreamer(network, objective, preset.dream, device), preset, fps,
                   [preset.seed + i for i in range(variants)], mixed, schedule, shots)

    def driven(self, count: int, period: int | None = None, offset: int = 0
               ) -> dict[str, np.ndarray]:
        """The shots' and the schedule's values for frames 0 .. count - 1 (target -> array),
        over the keyframes' motion; a loop's frames past `period` repeat the song time (and
        the look) of the frames they fade into. Empty without a schedule or shots."""
        if self.schedule is None and not self.shots:
            return {}
        frames = np.arange(count)
        local = (frames - offset) % period if period else frames
        shots = {target: np.asarray(v)[local] for target, v in self.shots.items()}
        if self.schedule is None:
            return shots
        return self.schedule.values(local / self.fps, local,
                                    {**keyframe_values(self.preset, local, self.fps), **shots})

    def motion(self, frame: int, period: int | None, driven: dict, offset: int = 0
               ) -> tuple[Motion, float, float]:
        """The motion into `frame`, dt, and the step scale (keyframed strength times any
        driven dream.step_size), with the driven values in place of the keyframes'."""
        motion, dt = frame_motion((frame - offset) % period if period else frame, self.fps,
                                  self.settings.keyframes, self.settings.easing)
        if not driven:
            return motion, dt, motion.strength

        def at(target, default):
            return float(driven[target][frame]) if target in driven else default

        motion = replace(motion, zoom=at("zoom.zoom", motion.zoom),
                         rotate=at("zoom.rotate", motion.rotate),
                         pan=(at("zoom.pan.x", motion.pan[0]), at("zoom.pan.y", motion.pan[1])),
                         center=(at("zoom.center.x", motion.center[0]),
                                 at("zoom.center.y", motion.center[1])),
                         strength=at("zoom.strength", motion.strength),
                         layer_mix=at("zoom.layer_mix", motion.layer_mix)
                         if motion.layer_mix is not None or "zoom.layer_mix" in driven else None,
                         steps=at("zoom.steps", motion.steps) if "zoom.steps" in driven
                         else motion.steps)
        scale = at("dream.step_size", self.preset.dream.step_size) / self.preset.dream.step_size
        return motion, dt, motion.strength * scale

    @property
    def blend(self) -> int:
        """Frames of the cross-fade that closes a loop (0: not a loop)."""
        return max(1, round(self.settings.loop_blend * self.fps)) if self.settings.loop else 0

    @property
    def preroll(self) -> int:
        """Frames a loop's chain runs before its first frame: a chain grown from its init
        needs about two seconds to reach its full contrast (0.41 of it on its first frame,
        0.83 after one second), and the loop closes into its first frames."""
        return round(PREROLL_SECONDS * self.fps) if self.settings.loop else 0

    def close(self, j: int, blend: int, continuation: np.ndarray, original: np.ndarray
              ) -> np.ndarray:
        """Closing frame j of `blend`: the chain's continuation turning into the original
        frame j, grown out of the zoom's centre or cross-faded (`zoom.loop_close`)."""
        if self.settings.loop_close == "fade":
            return contrast_kept_crossfade(continuation, original, crossfade_weight(j, blend))
        motion, _ = frame_motion(j, self.fps, self.settings.keyframes, self.settings.easing)
        return grown_in(continuation, original, (j + 1) / blend, motion.center)

    def steps(self, frame: int, keyframed: float | None) -> int:
        """Ascent steps of a frame: the keyframes' or `zoom.steps`; the first frame grows a
        full dream out of the init, so it takes at least `dream.steps`."""
        steps = self.settings.steps if keyframed is None else round(keyframed)
        return max(steps, self.dreamer.settings.steps) if frame == 0 else steps

    def frames(self, init: torch.Tensor, count: int, period: int | None = None,
               start: int = 0, current: torch.Tensor | None = None, offset: int = 0):
        """Yield (frame number, batch) for frames start .. count - 1; frame 0 is the first dream.

        With a `period` (loops) the keyframes repeat after `period` frames, counted from frame
        `offset` (a loop's pre-roll), so frames past the end move exactly like the frames they
        will be faded into. To resume, pass the frame to start at and `current`, the dream of
        the frame before it.
        """
        s = self.settings
        self.dreamer.choose_compile(count - start, (init.shape[-1], init.shape[-2]))
        reference = colour_reference(init.to(self.dreamer.device))
        current = (init if current is None else current).to(self.dreamer.device)
        driven = self.driven(count, period, offset)
        masks = mask_maker(self.preset.mask, (init.shape[-1], init.shape[-2]),
                           np.arange(count) / self.fps)
        cursor = None if masks is None else masks.cursor(start)
        for frame in range(start, count):
            motion, dt, scale = self.motion(frame, period, driven, offset)
            if frame > 0:
                current = transform(current, motion, dt)
            if self.mixed is not None and motion.layer_mix is not None:
                self.mixed.set_mix(motion.layer_mix)
            seeds = [seed * 1_000_003 + frame for seed in self.seeds]
            terms = {term_index(t): np.full(len(seeds), v[frame]) for t, v in driven.items()
                     if term_index(t) is not None}
            if terms:  # the look on screen (shots) or the music's term weights
                self.dreamer.objective.set_driven(terms)
            mask = None if cursor is None else self._mask(cursor, frame, current)
            dreamed = self.dreamer.dream(current, seed=seeds,
                                         steps=self.steps(frame, motion.steps),
                                         octaves=s.octaves, step_scale=scale, step_map=mask)
            if mask is not None:  # outside the mask the zoomed picture goes on as it was
                dreamed = torch.lerp(current, dreamed, mask * self._mask_strength(driven, frame))
            current = hold_colour(dreamed, reference, self.hold)
            yield frame, current
        if cursor is not None:
            cursor.close()

    @staticmethod
    def _mask(cursor, frame: int, current: torch.Tensor) -> torch.Tensor:
        """Each variant's mask of this frame (keys read the zoomed picture itself)."""
        maps = [cursor(frame, rgb) for rgb in to_uint8(current)]
        return torch.from_numpy(np.stack(maps)[:, None]).to(current.device).float() / 255

    def _mask_strength(self, driven: dict, frame: int) -> float:
        values = driven.get("mask.strength")
        return self.preset.mask.strength if values is None else float(values[frame])


def zoom_frames(renderer: ZoomRenderer, init: torch.Tensor, count: int,
                emit: Callable[[int, object], None], store: FrameStore, start: int = 0,
                current: torch.Tensor | None = None,
                checkpoint: Callable[[int, torch.Tensor], None] | None = None,
                every: int = 0, progress: ProgressSink = SILENT) -> None:
    """Call emit(frame, uint8 batch) for frames 0 .. count - 1, closing loops.

    For a loop, the chain first runs `preroll` frames that are not shown (so the loop starts
    from a grown dream), then frames count .. count + L - 1 continue the motion; the first L
    frames are held back (in `store`) and emitted last, the continuation turning into them
    (`ZoomRenderer.close`), so the final frame flows into frame 0. Output order:
    L .. count - 1, then 0 .. L - 1 - the clip is a rotation of a seamless loop. Every `every`
    chain frames checkpoint(chain frames done, current dream) is called (see resume).
    """
    blend = min(count - 1, renderer.blend)
    pre = renderer.preroll if blend else 0
    total = pre + count + blend
    for frame, batch in renderer.frames(init, total, count if blend else None, start, current,
                                        pre):
        progress.advance("dreamed")
        shown = frame - pre
        if shown >= 0:
            rgb = to_uint8(batch)
            if shown < blend:
                store.put((shown,), rgb)
            elif shown < count:
                emit(shown, rgb)
            else:
                j = shown - count
                emit(j, renderer.close(j, blend, rgb, store.get((j,))))
        if checkpoint is not None and every and (frame + 1) % every == 0 and frame + 1 < total:
            checkpoint(frame + 1, batch)


def fingerprint(renderer: ZoomRenderer, init: torch.Tensor, count: int) -> str:
    pixels = hashlib.sha256(init.cpu().contiguous().numpy().tobytes()).hexdigest()
    blend = min(count - 1, renderer.blend)
    pre = renderer.preroll if blend else 0
    driven = {k: hashlib.sha256(np.ascontiguousarray(v, np.float64).tobytes()).hexdigest()
              for k, v in sorted(renderer.driven(pre + count + blend, count if blend else None,
                                                 pre).items())}
    return digest(renderer.preset.model_dump(mode="json"), renderer.seeds, renderer.fps, count,
                  list(init.shape), pixels, driven, mask_contents(renderer.preset.mask))


def render_zoom(renderer: ZoomRenderer, init: torch.Tensor, outputs: list[Path], count: int, *,
                audio: list[encode.AudioTrack] | None = None, progress: ProgressSink = SILENT,
                resume: bool = False) -> None:
    """Render `count` frames of each variant (a row of `init`) into its output, checkpointing
    every `zoom.checkpoint_every` frames; `resume` continues from the last checkpoint. Only one
    render at a time writes an output. `audio` tracks are muxed under every variant."""
    with ExitStack() as locks:
        for out in outputs:
            locks.enter_context(OutputLock(out))
        _render_zoom(renderer, init, outputs, count, audio or [], progress, resume)


def _render_zoom(renderer: ZoomRenderer, init: torch.Tensor, outputs: list[Path], count: int,
                 audio: list, progress: ProgressSink, resume: bool) -> None:
    preset = renderer.preset
    h, w = init.shape[-2:]
    rate = as_rate(renderer.fps)
    key = fingerprint(renderer, init, count)
    stores = [Checkpoints(out, f"{key}/{k}") for k, out in enumerate(outputs)]
    restored = stores[0].start(resume)  # the first output's folder holds the shared state
    for store in stores[1:]:
        if restored is None:
            store.start(False)
    start, current, chunks = 0, None, None
    if restored is not None:
        saved, chunks = restored
        start, current = saved.step, torch.stack([saved.prev_dream[k] for k in range(len(outputs))])
        log.info(f"resuming from frame {start}")
    suffix = encode.chunk_suffix(preset.encode)
    folders = [store.folder for store in stores]

    def chunk_writer(k: int, frame: int) -> encode.ChunkWriter:
        return encode.ChunkWriter(folders[k] / f"chunk_{frame:06d}{suffix}", (w, h), rate,
                                  preset.encode)

    output = ChunkedOutput(stores[0], folders, chunk_writer, preset.zoom.checkpoint_every, chunks)
    writers = output.open(start)
    blend = min(count - 1, renderer.blend)
    pre = renderer.preroll if blend else 0
    if blend:
        log.info(f"a seamless loop: {pre + count + blend} frames dreamed for {count} written "
                 f"({pre} settle the feedback first, {blend} more are blended into the loop's "
                 "first frames)")
    progress.stage("dreamed", pre + count + blend, start)
    progress.stage("encoded", count, max(0, min(start - pre, count) - blend))

    def emit(frame: int, batch) -> None:
        for writer, rgb in zip(writers, batch):
            writer.write(rgb)
        progress.advance("encoded")

    def checkpoint(frame: int, batch: torch.Tensor) -> None:
        for writer in writers:
            writer.close()
        output.commit(RenderState(frame, prev_dream={k: t.cpu() for k, t in enumerate(batch)}),
                      writers)
        writers[:] = output.open(frame)

    try:
        zoom_frames(renderer, init, count, emit, FrameStore(stores[0].folder / "loop"), start,
                    current, checkpoint, preset.zoom.checkpoint_every, progress)
        for writer in writers:
            writer.close()
        progress.stage("finishing", None)
        for files, out in zip(output.finish(), outputs):
            if note := encode.finalize(files, out, preset.encode, audio, rate, count):
                log.warning(note)
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    for store in stores:
        remove_work_folder(store.folder)
