"""A live set's controls: what `dream live` was told while it recorded (from the page, OSC or
MIDI), with times, and that set replayed by `dream render REC.mkv --controls REC.controls.json`.

The file holds the state of the controls at the start and after every change (absolute
values, so a replay never depends on the order of partial updates), each at its time in
seconds from the start of the recording (the clock the recorded frames are stamped with). A
replay is a preset: the look on screen at each time becomes a shot (a preset switch starts
afresh as it did live; a layer or shot switch carries the dream on), the strength and the
carried share become timeline keys held until the next change. Live's steps and octaves are
the set's speed, not its look: the render dreams at the preset's own full quality.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from renderer.errors import UserError, read_json

FORMAT = "dream-controls"
VERSION = 1
# what the live controls hold, and which of them a replay follows
FIELDS = ("preset", "layer", "mask", "shot", "strength", "steps", "octaves", "persistence")
MIN_STEP = 1e-6  # strength 0: a step that changes nothing a viewer can see
# the live mask switch: name -> the `mask:` it puts on the preset ("": the preset's own)
MASKS = {"": None, "none": {}, "person": {"key": "person", "feather": 6},
         "background": {"key": "person", "invert": True, "feather": 6},
         "bright": {"key": "luma", "luma": (0.5, 1.0)}, "dark": {"key": "luma"},
         "green screen": {"key": "chroma"}, "edges": {"key": "edges", "grow": 2, "feather": 4}}


@dataclass(frozen=True)
class Change:
    t: float  # seconds from the start of the recording
    state: dict  # every control after the change


@dataclass(frozen=True)
class Controls:
    recording: str  # the camera recording's file name
    frames: int  # frames in it
    states: list[Change]  # the start (t = 0) and every change, in time order

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": VERSION, "recording": self.recording,
                           "frames": self.frames,
                           "changes": [{"t": round(c.t, 4), "state": c.state}
                                       for c in self.states]}, indent=1)


def read_controls(path: str | Path) -> Controls:
    """A controls file, checked: a malformed one is a one-line error naming what is wrong."""
    path = Path(path)
    data = read_json(path, "controls file", "give the NAME.controls.json a 'dream live' "
                     "recording wrote")

    def bad(what: str) -> UserError:
        return UserError(f"controls file '{path}': {what}: give the NAME.controls.json a "
                         "'dream live' recording wrote")

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad("it is not a dream controls file")
    if data.get("version") != VERSION:
        raise bad(f"version {data.get('version')!r} is not {VERSION}")
    if not isinstance(data.get("recording"), str) or not isinstance(data.get("frames"), int):
        raise bad("'recording' (a file name) and 'frames' (a count) are missing")
    changes = data.get("changes")
    if not isinstance(changes, list) or not changes:
        raise bad("'changes' is missing or empty")
    states, last = [], -1.0
    for k, change in enumerate(changes):
        t = change.get("t") if isinstance(change, dict) else None
        state = change.get("state") if isinstance(change, dict) else None
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) \
                or t < last or not isinstance(state, dict) or set(state) != set(FIELDS):
            raise bad(f"change {k} needs a time 't' (seconds, not before the last) and a "
                      f"'state' of {', '.join(FIELDS)}")
        states.append(Change(float(t), state))
        last = t
    return Controls(data["recording"], data["frames"], states)


def replayed(controls: Controls, first: float, load, shot_of) -> tuple[dict, list[str]]:
    """The preset (as the dict `presets.Preset.model_validate` takes) that replays the set on
    a recording whose first frame is at `first` seconds, and notes for the user. `load(name)`
    gives a preset, `shot_of(preset, k)` its shot k as a look (0: its own)."""
    start = controls.states[0].state
    base = load(start["preset"])
    data = base.model_dump(by_alias=True)
    data.pop("shots", None)
    shots, step_keys, carry_keys, notes = [], [], [], []
    look_of = {}
    last = None
    for change in controls.states:
        state = change.state
        at = max(0.0, change.t - first)
        key = (state["preset"], state["layer"], state["shot"])
        if key not in look_of:
            look_of[key] = shot_of(load(state["preset"]), int(state["shot"]))
        look = look_of[key]
        if last is not None and key != last[0]:
            shot = {"at": round(at, 4), "extends": state["preset"],
                    "objective": _objective(state, look),
                    "transition": {"kind": "cut"} if state["preset"] != last[0][0] else
                    {"kind": "carry", "length": "4f"}}
            shots.append(shot)
        step = max(look.dream.step_size * float(state["strength"]), 0.0)
        step_keys.append({"at": round(at, 4), "value": step, "ease": "step"})
        carry_keys.append({"at": round(at, 4), "value": float(state["persistence"]),
                           "ease": "step"})
        if last is not None:
            for name, kept in (("mask", "the mask the set started with"),
                               ("octaves", "the preset's own octaves"),
                               ("steps", "the preset's own steps")):
                if state[name] != last[1][name]:
                    notes.append(f"note: the set changed {name} at {change.t:.2f} s; the "
                                 f"replay keeps {kept} (--set to choose)")
        last = (key, state)
    first_look = look_of[(start["preset"], start["layer"], start["shot"])]
    if MASKS.get(start["mask"]) is not None:
        data["mask"] = dict(MASKS[start["mask"]])
    if start["layer"] or int(start["shot"]):
        data["objective"] = _objective(start, first_look)
    data["timeline"] = {**data.get("timeline", {}), "dream.step_size": step_keys,
                        "flow.persistence": carry_keys}
    data["shots"] = shots
    return data, list(dict.fromkeys(notes))


def _objective(state: dict, look) -> list:
    """What the look on screen dreams: the layer picked live, else the look's own terms."""
    return [state["layer"]] if state["layer"] else \
        [t.model_dump(by_alias=True, exclude_none=True) for t in look.objective]
