"""Shots: a render's look changes at times, beats, bars, song sections or scene cuts.

A look is an objective and the values of the driven targets (`dream.step_size`, `dream.steps`,
`flow.persistence`, `flow.temporal_weight`). A render with shots dreams the union of every
look's objective terms, each term's weight per frame that of the look on screen, so the looks
of a lockstep batch's rows can differ and the change is a driven value like any other: the
checkpoint, `--part`/`--assemble`, the queue and Ray carry it unchanged. At a `carry`
transition the values ease from the last look's to the new one's over its length while the
carried dream goes on along the flow (the new look grows over the old); at a `cut` they switch
and the frame starts afresh (`drivable.SHOT_CUT`); a `crossfade` starts afresh too, and the
last look's picture, carried along the flow, fades out over it (`drivable.SHOT_FADE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from renderer.curves import crossfade_weight
from renderer.drivable import SHOT_CUT, SHOT_FADE, term_index
from renderer.errors import UserError
from renderer.expressions import TimeSpec
from renderer.music.schedule import Schedule, base_values
from renderer.presets import ObjectiveTerm, Preset, Shot, load

LOOK_TARGETS = ("dream.step_size", "dream.steps", "flow.persistence", "flow.temporal_weight")


# the term a preset that names no objective dreams, by its model: its classic layer
Classic = Callable[[str], ObjectiveTerm]


@dataclass(frozen=True)
class Look:
    terms: tuple[ObjectiveTerm, ...]  # each naming its model
    values: dict  # LOOK_TARGETS -> the look's value
    model: str


def _key(term: ObjectiveTerm) -> tuple:
    return term.model, term.layer, term.channel, term.class_, term.guide


def _of_model(terms, model: str) -> tuple[ObjectiveTerm, ...]:
    return tuple(t if t.model else t.model_copy(update={"model": model}) for t in terms)


def look_of(preset: Preset, classic: Classic) -> Look:
    """A preset's own look."""
    own, model = base_values(preset), preset.model.name
    return Look(_of_model(preset.objective or [classic(model)], model),
                {t: own[t] for t in LOOK_TARGETS}, model)


def shot_look(shot: Shot, number: int, base: Look, classic: Classic) -> Look:
    """What a shot shows: the look of the preset it extends (else the render's), with its own
    objective (of that look's model) and values over it."""
    look = base
    if shot.extends:
        try:
            look = look_of(load(shot.extends), classic)
        except UserError as exc:
            raise UserError(f"shot {number} extends '{shot.extends}': {exc}") from None
    values = dict(look.values)
    for target in LOOK_TARGETS:
        section, key = target.split(".")
        own = getattr(getattr(shot, section), key)
        if own is not None:
            values[target] = own
    terms = _of_model(shot.objective, look.model) if shot.objective else look.terms
    return Look(terms, values, look.model)


@dataclass(frozen=True)
class ShotPlan:
    terms: list[ObjectiveTerm]  # every look's terms, the render's own first
    starts: list[int | None]  # each shot's first frame (None: its marker never came)
    values: dict  # target -> one value per frame (objective.K.weight, LOOK_TARGETS, SHOT_*)
    notes: list[str]


def plan_shots(preset: Preset, classic: Classic, times: np.ndarray,
               schedule: Schedule, cuts: list[int]) -> ShotPlan:
    """Where each shot starts and every frame's values. `times`: each frame's song time;
    `schedule`: the song's clock and sections (its analysis None: no song); `cuts`: the
    clip's scene cuts as frame numbers. A look of another model keeps its terms of that model
    (the render dreams both networks; one whose terms weigh 0 in a batch is not run)."""
    base = look_of(preset, classic)
    looks = [shot_look(shot, k + 1, base, classic) for k, shot in enumerate(preset.shots)]
    terms, index = [], {}
    for term in [t for look in [base, *looks] for t in look.terms]:
        if _key(term) not in index:
            index[_key(term)] = len(terms)
            terms.append(term.model_copy(update={"weight": 1.0}))
    count = len(times)
    starts, notes = _starts(preset.shots, times, schedule, cuts)
    values = {f"objective.{k}.weight": np.zeros(count) for k in range(len(terms))}
    values.update({target: np.zeros(count) for target in LOOK_TARGETS})
    values[SHOT_CUT], values[SHOT_FADE] = np.zeros(count), np.zeros(count)

    def show(look: Look, frames: slice) -> None:
        for target in LOOK_TARGETS:
            values[target][frames] = look.values[target]
        for k in range(len(terms)):
            values[f"objective.{k}.weight"][frames] = 0.0
        for term in look.terms:
            values[f"objective.{index[_key(term)]}.weight"][frames] += term.weight

    show(base, slice(0, count))
    for shot, look, start in zip(preset.shots, looks, starts):
        if start is None:
            continue
        before = {name: v[start - 1] if start else v[start] for name, v in values.items()}
        show(look, slice(start, count))
        kind = shot.transition.kind
        if kind in ("cut", "crossfade"):
            values[SHOT_CUT][start] = 1.0
        values[SHOT_FADE][start:] = 0.0  # a shot ends the last one's crossfade
        if kind == "cut":
            continue
        length = _frames(shot.transition.length, times[start], schedule)
        for k in range(min(length, count - start)):
            w = crossfade_weight(k, length)
            if kind == "crossfade":
                values[SHOT_FADE][start + k] = 1.0 - w
                continue
            for name, v in values.items():
                if name not in (SHOT_CUT, SHOT_FADE):
                    v[start + k] = before[name] + (v[start + k] - before[name]) * w
    values["dream.steps"] = np.round(values["dream.steps"])
    return ShotPlan(terms, starts, values, notes)


def zoom_shots(preset: Preset, classic: Classic, count: int, fps: float,
               schedule: Schedule) -> ShotPlan:
    """A zoom's shots over frames 0 .. count - 1: the values a zoom takes (each term's weight
    and `dream.step_size`; it steps `zoom.steps` a frame and has no flow). A zoom has no scene
    cut and no second picture to fade from, so `at: cut` and a crossfade are refused; a `cut`
    switches the look without easing it in."""
    for k, shot in enumerate(preset.shots, 1):
        if shot.at == "cut":
            raise UserError(f"shot {k} starts at a scene cut, but a zoom has none: start it at "
                            "a time, beat, bar, frame or section")
        if shot.transition.kind == "crossfade":
            raise UserError(f"shot {k} crossfades, but a zoom has one picture, nothing to fade "
                            "from: give it transition kind carry or cut")
    if preset.mixes_layers:
        raise UserError("a zoom with shots cannot also move zoom layer_mix: give each shot "
                        "its own objective instead")
    plan = plan_shots(preset, classic, np.arange(count) / fps, schedule, [])
    notes = [f"note: shot {k} sets dream.steps, which a zoom does not step by: it takes "
             "zoom.steps every frame" for k, shot in enumerate(preset.shots, 1)
             if shot.dream.steps is not None]
    values = {name: v for name, v in plan.values.items()
              if term_index(name) is not None or name == "dream.step_size"}
    return ShotPlan(plan.terms, plan.starts, values, plan.notes + notes)


def shot_preset(preset: Preset, number: int, classic: Classic) -> Preset:
    """The preset as its shot `number` shows it (1 first; 0: its own look), with no shots:
    what `dream live` dreams when it is stepped to that shot (of the shot's model)."""
    if number == 0:
        return preset
    look = shot_look(preset.shots[number - 1], number, look_of(preset, classic), classic)
    model = preset.model if look.model == preset.model.name else \
        preset.model.model_copy(update={"name": look.model, "weights": None})
    dream = {"step_size": look.values["dream.step_size"],
             "steps": int(look.values["dream.steps"])}
    flow = {"persistence": look.values["flow.persistence"],
            "temporal_weight": look.values["flow.temporal_weight"]}
    return preset.model_copy(update={
        "objective": list(look.terms), "shots": [], "model": model,
        "dream": preset.dream.model_copy(update=dream),
        "flow": preset.flow.model_copy(update=flow)})


def needs_song(preset: Preset) -> bool:
    """Whether a shot starts at a beat, a bar or a section (times and frames need no song)."""
    return any(shot.section is not None or shot.at == "section" or (
        shot.at != "cut" and TimeSpec.parse(shot.at).unit in ("b", "bar"))
        for shot in preset.shots)


def _frames(length, at: float, schedule: Schedule) -> int:
    """A transition's length in frames (beats and bars count from the shot's start)."""
    spec, fps, clock = TimeSpec.parse(length), schedule.clock.fps, schedule.clock
    if spec.unit == "f":
        return int(round(spec.value))
    if spec.unit == "s":
        return int(round(spec.value * fps))
    if not clock.has_beat:
        raise UserError(f"a transition of '{length}' counts beats, but there is no beat: give "
                        "a song with a beat (--audio SONG), set music.bpm, or give it in "
                        "seconds or frames")
    beats = spec.value * (4 if spec.unit == "bar" else 1)
    end = clock.time_of_beat(float(clock.beat(np.array([at]))[0]) + beats)
    return int(round((end - at) * fps))


def _starts(shots: list[Shot], times: np.ndarray, schedule: Schedule, cuts: list[int]
            ) -> tuple[list[int | None], list[str]]:
    """The first frame of each shot, in order; markers (`cut`, `section`) take the next one
    after the previous shot's start."""
    count, starts, notes, last = len(times), [], [], 0
    fps, analysis = schedule.clock.fps, schedule.analysis
    sections = analysis.sections if analysis is not None else None
    # each section change's first frame; one after the render's last frame is `count`
    changes = [int(np.searchsorted(times, t)) for t in sections] if sections is not None else []
    for k, shot in enumerate(shots, 1):
        where = f"shot {k}"
        if shot.section is not None:
            if sections is None:
                raise UserError(f"{where} starts at section {shot.section}, but there is no "
                                "song: give one with --audio SONG (or a clip with sound)")
            if shot.section > len(sections):
                raise UserError(f"{where} starts at section {shot.section}, but the song has "
                                f"{len(sections) + 1} (0..{len(sections)}): choose one of those")
            frame = changes[shot.section - 1] if shot.section else 0
            if frame >= count:
                notes.append(f"note: {where} starts at section {shot.section} "
                             f"({sections[shot.section - 1]:.1f} s into the song), after the "
                             "render's end: it is not shown")
                starts.append(None)
                continue
        elif shot.at in ("cut", "section"):
            if shot.at == "section" and sections is None:
                raise UserError(f"{where} starts at the next section, but there is no song: "
                                "give one with --audio SONG (or a clip with sound)")
            marks = [f for f in (cuts if shot.at == "cut" else changes) if last < f < count]
            if not marks:
                mark = "scene cut" if shot.at == "cut" else "section change"
                notes.append(f"note: {where} waits for a {mark} that never comes: it is not "
                             "shown")
                starts.append(None)
                continue
            frame = marks[0]
        else:
            spec = TimeSpec.parse(shot.at)
            if spec.unit in ("b", "bar") and not schedule.clock.has_beat:
                raise UserError(f"{where} starts at '{shot.at}', which counts beats, but there "
                                "is no beat: give a song with a beat (--audio SONG) or set "
                                "music.bpm in the preset")
            frame = int(round(spec.value)) if spec.unit == "f" else \
                int(np.searchsorted(times, schedule.seconds(spec) - 0.5 / fps))
            if frame >= count:
                end = times[-1] if count else 0.0
                raise UserError(f"{where} starts at '{shot.at}', after the render's last frame "
                                f"({count} frames, {end:.2f} s): move it earlier or remove it")
        if frame < last:
            raise UserError(f"{where} starts at frame {frame}, before shot {k - 1} (frame "
                            f"{last}): list the shots in time order")
        starts.append(frame)
        last = frame
    return starts, notes


def describe_shots(preset: Preset) -> list[str]:
    """One line a shot (for `dream presets show`): where it starts, what it shows, how."""
    lines = []
    for k, shot in enumerate(preset.shots, 1):
        start = f"section {shot.section}" if shot.section is not None else \
            {"cut": "the next scene cut", "section": "the next section"}.get(shot.at,
                                                                            f"{shot.at}")
        how = shot.transition.kind if shot.transition.kind == "cut" else \
            f"{shot.transition.kind} over {shot.transition.length}"
        lines.append(f"{k}. from {start}: {'; '.join(_changes(shot))} ({how})")
    return lines


def _changes(shot: Shot) -> list[str]:
    """What a shot changes, in words."""
    terms = ", ".join(_name(t) for t in shot.objective) if shot.objective else None
    shows = [f"the look of {shot.extends}"] if shot.extends else []
    shows += [f"objective {terms}"] if terms else []
    shows += [f"{section}.{key}={value}" for section in ("dream", "flow")
              for key, value in getattr(shot, section).model_dump().items()
              if value is not None]
    return shows or ["the preset's own look"]


def _name(term: ObjectiveTerm) -> str:
    if term.class_ is not None:
        return f"class:{term.class_}"
    text = (f"{term.model}/" if term.model else "") + term.layer + (
        f":{term.channel}" if term.channel is not None else "")
    return text + (f" x{term.weight:g}" if term.weight != 1.0 else "")


def shot_marks(preset: Preset, analysis, times: np.ndarray, fps: float) -> list[tuple]:
    """(song time, label: the shot and what it changes first) where each shot of `preset`
    starts over the song alone (for the `dream audio` plot; a shot at a scene cut needs the
    clip, and is left out)."""
    starts, _ = _starts(preset.shots, times, Schedule(preset, analysis, fps), [])
    return [(float(times[start]), f"shot {k}: {_changes(shot)[0]}")
            for k, (shot, start) in enumerate(zip(preset.shots, starts), 1)
            if start is not None]
