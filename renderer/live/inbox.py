"""Changes from a controller (OSC, MIDI), applied to the session in arrival order on one worker
thread. A controller sends far more often than frames are dreamed (a fader: 50 messages a
second, a knob turned fast: more), and each change waits for the frame in progress; so the
changes that arrive meanwhile are merged into one: the latest value of each control, a preset
or shot switch (`next` included) applied on its own, in order. The controller's own thread
(the page's event loop, mido's callback) never waits."""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from renderer.errors import UserError

log = logging.getLogger(__name__)

SWITCHES = {"preset", "shot", "next"}  # a switch resets the sliders: never merged across


class Inbox:
    def __init__(self, session, name: str):
        self.session, self.name = session, name
        self.pending: deque = deque()
        self.lock = threading.Lock()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def put(self, change: dict) -> None:
        """A checked change (`{"next": True}`: the preset's next shot, counted when applied)."""
        with self.lock:
            self.pending.append(change)
            if len(self.pending) == 1:  # else the worker's turn already due takes it too
                self.worker.submit(self._drain)

    def _drain(self) -> None:
        with self.lock:
            changes = list(self.pending)
            self.pending.clear()
        merged: dict = {}
        for change in changes:
            if merged and (SWITCHES & set(change) or SWITCHES & set(merged)):
                self._apply(merged)
                merged = {}
            merged.update(change)
        if merged:
            self._apply(merged)

    def _apply(self, change: dict) -> None:
        if change.pop("next", None):
            change = {**self.session.next_shot(), **change}
        try:
            self.session.update(change)
        except UserError as exc:  # valid alone, not after a switch that came first
            log.warning(f"{self.name} {change}: ignored, {exc}")
        except Exception as exc:  # shown, as the dream loop shows its own; the inbox goes on
            log.error(f"{self.name} {change}: failed, {type(exc).__name__}: {exc}")

    def settle(self) -> None:
        """Return once every change put so far is applied."""
        self.worker.submit(lambda: None).result()

    def close(self) -> None:
        self.worker.shutdown(wait=True)
