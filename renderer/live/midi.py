"""MIDI in, with MIDI learn: a controller's knobs move the sliders, its pads step the shots.

Bindings are named as TouchDesigner names MIDI (`ch1c21`: channel 1, controller 21;
`ch1n36`: channel 1, note 36). Learn as VDMX does: arm a slider on the page (or `next`, or a
shot), move a knob or hit a pad, and the next message binds; a controller's 0..127 is fitted
to the slider's range, a note acts as a button. Bindings are saved to a YAML file at each
learn and read again at the next start. Ports are opened by name (any platform) or as a
virtual port (`virtual`, where the backend has them: not on Windows) with mido, whose backend
(python-rtmidi, or any mido backend through MIDO_BACKEND) calls back on its own thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from pathlib import Path

import yaml

from renderer.errors import UserError
from renderer.live.inbox import Inbox
from renderer.live.params import LiveParams
from renderer.outputs import atomic_write

log = logging.getLogger(__name__)

BUTTONS = ("next",)  # a note's action besides `shot:N`


def binding_name(message) -> str | None:
    """`ch1c21` for a control change, `ch1n36` for a note-on (None for anything else)."""
    if message.type == "control_change":
        return f"ch{message.channel + 1}c{message.control}"
    if message.type == "note_on" and message.velocity > 0:
        return f"ch{message.channel + 1}n{message.note}"
    return None


def check_target(target: str) -> str:
    """What a binding may drive: a slider, `next`, or `shot:N`."""
    if target in LiveParams.LIMITS or target in BUTTONS:
        return target
    kind, _, number = target.partition(":")
    if kind == "shot" and number.isdigit():
        return target
    raise UserError(f"'{target}' cannot be learned: use one of "
                    f"{', '.join((*LiveParams.LIMITS, *BUTTONS))} or shot:N")


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 to /dev/null for a moment: what a C library prints there is not ours
    to show (the error that follows says what went wrong, in one line)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class MidiControl:
    """Bindings from MIDI messages to the session's controls, learned and saved to `file`."""

    def __init__(self, session, file: Path):
        self.session, self.file = session, Path(file)
        self.lock = threading.Lock()
        self.learning: str | None = None
        self.bindings: dict[str, str] = self._read()
        self.port = None
        self.inbox = Inbox(session, "MIDI")

    def _read(self) -> dict[str, str]:
        if not self.file.exists():
            return {}
        try:
            data = yaml.safe_load(self.file.read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in data.items()):
                raise ValueError("not a mapping of names to controls")
            return {name: check_target(target) for name, target in data.items()}
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
            raise UserError(f"MIDI bindings '{self.file}' cannot be read ({exc}): fix the "
                            "file or remove it to learn again") from None

    def open(self, name: str) -> "MidiControl":
        """Listen on the port called `name` (`virtual`: a port of ours other programs see)."""
        import mido

        try:
            with _quiet_stderr():  # ALSA's C library prints its own failure there
                if name == "virtual":
                    self.port = mido.open_input("dream live", virtual=True,
                                                callback=self.handle)
                else:
                    self.port = mido.open_input(name, callback=self.handle)
        except ImportError as exc:
            raise UserError(f"MIDI ports need a mido backend ({exc}): pip install "
                            "python-rtmidi") from None
        except (OSError, NotImplementedError, RuntimeError) as exc:
            try:
                with _quiet_stderr():
                    known = ", ".join(mido.get_input_names()) or "none"
            except (OSError, RuntimeError):  # the backend itself failed (no sound system)
                known = "none (no MIDI system found)"
            raise UserError(f"cannot open MIDI port '{name}' ({' '.join(str(exc).split())}): "
                            f"ports here: {known}") from None
        return self

    def learn(self, target: str | None) -> None:
        """Bind the next message to `target` (None: stop learning)."""
        with self.lock:
            self.learning = None if target is None else check_target(target)

    def handle(self, message) -> None:
        """A message from the port (mido's thread): learn it, or act on its binding."""
        name = binding_name(message)
        if name is None:
            return
        with self.lock:
            if self.learning is not None:
                target, self.learning = self.learning, None
                if target in LiveParams.LIMITS and message.type != "control_change":
                    log.warning(f"MIDI learn: {target} is a slider, move a knob or fader "
                                "(a note acts as a button)")
                    self.learning = target
                    return
                self.bindings = {k: v for k, v in self.bindings.items() if v != target}
                self.bindings[name] = target
                try:
                    atomic_write(self.file, yaml.safe_dump(self.bindings), fence=False)
                except OSError as exc:
                    log.warning(f"MIDI learn: {name} -> {target}, but it cannot be saved to "
                                f"'{self.file}' ({exc.strerror or exc}): it lasts until exit")
                    return
                log.info(f"MIDI learn: {name} -> {target}")
                return
            target = self.bindings.get(name)
        if target is None or (target not in LiveParams.LIMITS and
                              message.type == "control_change" and message.value < 64):
            return  # a button bound to a controller acts on its press, not its release
        self.inbox.put(self._change(target, message))

    def _change(self, target: str, message) -> dict:
        if target in LiveParams.LIMITS:
            low, high = LiveParams.LIMITS[target]
            return {target: low + (high - low) * message.value / 127}
        if target == "next":
            return {"next": True}
        return {"shot": int(target.partition(":")[2])}

    def state(self) -> dict:
        with self.lock:
            return {"learning": self.learning, "bindings": dict(self.bindings)}

    def close(self) -> None:
        if self.port is not None:
            self.port.close()
        self.inbox.close()
