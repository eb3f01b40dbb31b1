"""Between the command line and the library: orders the library calls of a video render.

The CLI parses and checks the arguments and prints; `plan_render` turns a checked
`RenderRequest` into a `VideoJob` (the indexed clip, the size, the audio under it, the
music-driven values of every frame, the batch) and `run_render` renders or assembles it;
`zoom_looks` is what a zoom dreams frame by frame (its schedule and shots).
A bench that calls these gets exactly what `dream render` would make of the same request.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from renderer.errors import UserError
from renderer.media.decode import index_video, screen_times
from renderer.media.encode import AudioTrack
from renderer.media.images import fit_size
from renderer.presets import Preset
from renderer.progress import SILENT, ProgressSink
from renderer.render.plan import PART_BATCH, WHOLE, Part, default_batch, part_plan
from renderer.media.masks import mask_maker
from renderer.render.video import VideoJob, assemble_parts, clip_times, render_job, source_audio

FIT_NOTES = {"crop": "scaled to cover it and centre-cropped",
             "pad": "fitted inside it with black bars", "stretch": "stretched to it"}


@dataclass(frozen=True)
class RenderRequest:
    """What `dream render` was asked, checked (`cli.video.check_render`)."""
    input: Path
    output: Path
    preset: Preset
    start: float = 0.0
    end: float | None = None
    fps: float | None = None  # None: every frame of the source at its own rate
    size: tuple[int, int] | None = None  # exactly this size
    scale: float | None = None  # or the source's size times this
    preview: bool = False  # or at most 320 px wide
    batch: int | None = None
    part: Part | None = None
    assemble: int | None = None  # join this many finished parts
    song: AudioTrack | None = None  # --audio
    audio_mix: float | None = None  # the song's share, mixed with the source's audio
    resume: bool = False
    device: str | None = None


@dataclass(frozen=True)
class Plan:
    job: VideoJob
    notes: list[str] = field(default_factory=list)  # for the user, before any work


def render_size(request: RenderRequest, width: int, height: int) -> tuple[int, int]:
    if request.size and request.scale:
        raise UserError("give either --size or --scale, not both")
    if request.size:
        return request.size
    if request.scale:
        return max(8, round(width * request.scale)), max(8, round(height * request.scale))
    if request.preview:
        return fit_size(width, height, 320)
    return width, height


def render_audio(request: RenderRequest, index) -> list[AudioTrack]:
    """The tracks under a render: the source's, or the song (mixed with --audio-mix)."""
    song = request.song
    if song is None:
        return source_audio(index)
    if request.audio_mix is None:
        return [song]
    source = source_audio(index)[0]
    return [replace(source, volume=1 - request.audio_mix), replace(song, volume=request.audio_mix)]


def driven_values(preset: Preset, index, song: AudioTrack | None
                  ) -> tuple[Preset, dict[str, np.ndarray], list[str]]:
    """The preset to render (with shots: every look's objective terms), the driven values of
    every frame of the clip (empty for a preset without `timeline:`, `react:` or `shots:`)
    and notes. Analysed on exactly the audio that ends up in the file: the song from
    --audio-start, or the clip's own soundtrack from --start."""
    from renderer.music.schedule import base_values, schedule_for

    if not (preset.modulated or preset.shots):
        return preset, {}, []
    notes = imported_notes(preset)
    if song is not None:
        source, offset = song.path, song.start
    elif index.info.audio_codec:
        source, offset = index.path, index.pts[0]
    else:
        source, offset = None, 0.0
    on_screen, spans = screen_times(index)
    times = offset + on_screen
    frames = np.arange(index.count)
    schedule = schedule_for(preset, source, float(index.rate), offset, index.duration)
    if not preset.shots:
        return preset, schedule.values(times, frames, base_values(preset), spans), notes
    from renderer.engine.objectives import classic_term
    from renderer.music.shots import plan_shots

    cuts = _scene_cuts(index) if any(shot.at == "cut" for shot in preset.shots) else []
    plan = plan_shots(preset, classic_term, times,
                      _shot_schedule(preset, schedule, source, float(index.rate)), cuts)
    shown = _with_terms(preset, plan.terms)
    values = dict(plan.values)
    if preset.modulated:
        values.update(schedule.values(times, frames, {**base_values(preset), **values}, spans))
    return shown, values, notes + plan.notes


def imported_notes(preset: Preset) -> list[str]:
    """What the preset's `schedule.file` gave and left out, for the user."""
    imported = preset.imported()
    return [f"note: {line}" for line in imported.notes] if imported is not None else []


@dataclass(frozen=True)
class ZoomLooks:
    preset: Preset  # with shots: every look's objective terms
    schedule: object  # music.schedule.Schedule of its timeline and react rows, or None
    shots: dict  # target -> one value per frame 0 .. count - 1 (empty without shots)
    notes: list[str]


def zoom_looks(preset: Preset, song: Path | None, fps: float, count: int) -> ZoomLooks:
    """What a zoom of `count` frames dreams: its schedule (the song analysed) and its shots'
    values (`music.shots.zoom_shots`); bad shots are refused here, before any work."""
    from renderer.engine.objectives import classic_term
    from renderer.music.schedule import schedule_for
    from renderer.music.shots import zoom_shots

    schedule = schedule_for(preset, song, fps, 0.0, count / fps)
    notes = imported_notes(preset)
    if not preset.shots:
        return ZoomLooks(preset, schedule, {}, notes)
    plan = zoom_shots(preset, classic_term, count, fps, _shot_schedule(preset, schedule, song, fps))
    return ZoomLooks(_with_terms(preset, plan.terms), schedule, plan.values, notes + plan.notes)


def _with_terms(preset: Preset, terms: list) -> Preset:
    """The preset dreaming every look's terms; a shot of another model needs that model's
    weights, refused here (before any work) when they are not installed."""
    from renderer.engine.models import get_spec, weights_status

    for model in sorted({t.model for t in terms} - {preset.model.name, None}):
        spec = get_spec(model)
        if weights_status(spec) == "missing":
            raise UserError(f"a shot dreams with {model}, but {spec.missing_weights()}")
    return preset.model_copy(update={"objective": terms})


def _shot_schedule(preset: Preset, schedule, song, fps: float):
    """The clock and sections shots start by: the preset's schedule, or one of its own with
    the song analysed only when a shot counts beats, bars or sections."""
    from renderer.music.analysis import analyse_file
    from renderer.music.schedule import Schedule
    from renderer.music.shots import needs_song

    return schedule or Schedule(preset, analyse_file(song, preset.music.bands)
                                if song is not None and needs_song(preset) else None, fps)


def _scene_cuts(index) -> list[int]:
    """The frames of the clip where a new scene begins."""
    from renderer.media.scenes import scene_cuts

    half = 0.5 / float(index.rate)
    found = scene_cuts(index.path, index.pts[0], index.pts[-1] + half)
    return sorted({int(np.searchsorted(index.pts, t - half)) for t in found} - {0})


def replay_set(controls_file: Path, recording: Path, overrides: list[str], start: float = 0.0,
               end: float | None = None, fps: float | None = None
               ) -> tuple[Preset, list[str]]:
    """The preset that replays a recorded live set (`renderer.controls`) on its recording,
    `overrides` (--set) on top, and notes; a controls file of another recording is refused."""
    from renderer import presets
    from renderer.controls import read_controls, replayed
    from renderer.engine.objectives import classic_term
    from renderer.music.shots import shot_preset

    controls = read_controls(controls_file)
    if controls.recording != recording.name:
        raise UserError(f"controls file '{controls_file}' was recorded with "
                        f"'{controls.recording}', not '{recording.name}': give the recording "
                        "it was written with")
    whole = index_video(recording)
    if whole.count != controls.frames:
        raise UserError(f"controls file '{controls_file}' was written for {controls.frames} "
                        f"frames, but '{recording}' has {whole.count}: give the recording it "
                        "was written with")
    first = index_video(recording, start, end, fps).pts[0] if (start or end or fps) else \
        whole.pts[0]
    data, notes = replayed(controls, float(first), presets.load,
                           lambda preset, k: shot_preset(preset, k, classic_term))
    preset = presets.from_data(data, f"the set in '{controls_file}'", overrides)
    preset.name = f"{recording.stem} (replayed)"
    return preset, notes


def plan_render(request: RenderRequest) -> Plan:
    """Index the clip and decide everything a render needs before the network is loaded (a
    mask that does not fit the clip is refused here)."""
    index = index_video(request.input, request.start, request.end, request.fps)
    notes = [f"warning: {index.warning}"] if index.warning else []
    size = render_size(request, index.width, index.height)
    preset = request.preset
    if request.size and size[0] * index.height != size[1] * index.width:
        notes.append(f"note: the {index.width}x{index.height} picture is "
                     f"{FIT_NOTES[preset.video.fit]} ({size[0]}x{size[1]}); "
                     "--fit-size crop|pad|stretch chooses")
    masks = mask_maker(preset.mask, size, clip_times(index), preset.video.fit)
    preset, values, shot_notes = driven_values(preset, index, request.song)
    job = VideoJob(index, preset, request.output, size, request.batch or preset.video.batch,
                   render_audio(request, index), values, request.part or WHOLE, request.resume,
                   masks)
    return Plan(job, notes + shot_notes)


@dataclass(frozen=True)
class Report:
    kept: int  # frames written (of this part)
    segments: int  # of this part
    of_segments: int  # of the whole render


def run_render(job: VideoJob, assemble: int | None = None, device: str | None = None,
               progress: ProgressSink = SILENT) -> Report:
    """Render the job (the whole clip or its part) or, with `assemble`, join that many
    finished parts. Parts render `PART_BATCH` segments each unless the job says otherwise,
    so that every part and the assembly agree."""
    from renderer.engine.dream import dreamer_for

    if assemble:
        batch = job.batch or PART_BATCH
        assemble_parts(job.index, job.preset, job.output, job.size, batch, assemble, job.audio,
                       job.values)
        plan = part_plan(job.index.count, batch, job.preset.video.warmup, WHOLE)
        return Report(plan.kept, len(plan.segments), len(plan.segments))
    dreamer = dreamer_for(job.preset, device)
    part = job.part.count > 1
    batch = job.batch or (PART_BATCH if part else default_batch(dreamer.device, job.size))
    job = replace(job, batch=batch)
    render_job(job, dreamer, progress)
    plan = part_plan(job.index.count, batch, job.preset.video.warmup, job.part)
    return Report(plan.kept, len(plan.mine), len(plan.segments))
