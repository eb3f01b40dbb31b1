"""MIDI files as a source of hits and curves: note-ons and controller changes with their times
in seconds (mido applies the file's tempo map), read once per file."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from renderer.errors import UserError


@dataclass(frozen=True)
class MidiEvents:
    """Every note-on (velocity above 0) and controller change of a file, in seconds."""
    notes: np.ndarray  # (N, 4): time, note, velocity, channel (1-16)
    controls: np.ndarray  # (M, 4): time, controller, value, channel (1-16)
    duration: float

    def hits(self, low: int = 0, high: int = 127, channel: int | None = None) -> np.ndarray:
        """(time, velocity 0..1) of the notes from `low` to `high` (on `channel`)."""
        n = self.notes
        keep = (n[:, 1] >= low) & (n[:, 1] <= high)
        if channel is not None:
            keep &= n[:, 3] == channel
        return np.stack([n[keep, 0], n[keep, 2] / 127.0], axis=1)

    def control(self, number: int, channel: int | None = None) -> np.ndarray:
        """(time, value 0..1) of controller `number`'s changes (on `channel`)."""
        c = self.controls
        keep = c[:, 1] == number
        if channel is not None:
            keep &= c[:, 3] == channel
        return np.stack([c[keep, 0], c[keep, 2] / 127.0], axis=1)


def read_midi(path: str | Path) -> MidiEvents:
    """The events of a standard MIDI file (cached by path, size and modification time)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise UserError(f"MIDI file '{path}' does not exist: check the path in the react "
                        "row's 'file:'") from None
    return _read(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read(path: str, size: int, mtime: int) -> MidiEvents:
    import mido

    try:
        midi = mido.MidiFile(path)
        notes, controls, now = [], [], 0.0
        for message in midi:  # merged tracks, .time in seconds with tempo changes applied
            now += message.time
            if message.type == "note_on" and message.velocity > 0:
                notes.append((now, message.note, message.velocity, message.channel + 1))
            elif message.type == "control_change":
                controls.append((now, message.control, message.value, message.channel + 1))
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise UserError(f"MIDI file '{path}' cannot be read ({str(exc) or type(exc).__name__}): "
                        "export it again as a standard MIDI file (.mid)") from None
    if midi.type == 2:
        raise UserError(f"MIDI file '{path}' is type 2 (independent patterns), which has no "
                        "single timeline: export it as type 0 or 1")
    shaped = lambda rows: np.asarray(rows, float).reshape(-1, 4)  # noqa: E731
    return MidiEvents(shaped(notes), shaped(controls), now)
