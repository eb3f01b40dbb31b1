"""A pure-Python mido backend for the tests (`mido.set_backend("fakemidi")`): input ports that
exist while open, and `play(name, bytes)` to send raw MIDI bytes into one, parsed by mido's own
parser and handed to the port's callback as a real backend's thread would."""

import threading

import mido
from mido.ports import BaseInput

_open: dict[str, "Input"] = {}
_lock = threading.Lock()
NAMES = ["Fake Controller 1", "Fake Pads"]  # what the system's MIDI lists


def get_devices(**kwargs):
    return [{"name": name, "is_input": True, "is_output": False} for name in NAMES]


class Input(BaseInput):
    def _open(self, virtual=False, callback=None, **kwargs):
        if not virtual and self.name not in NAMES:
            raise OSError(f"unknown port {self.name!r}")
        self.callback = callback
        with _lock:
            _open[self.name] = self

    def _close(self):
        with _lock:
            _open.pop(self.name, None)


def play(name: str, data: bytes) -> None:
    """Raw MIDI bytes into the open port `name`, on a thread of its own."""
    port = _open[name]
    parser = mido.Parser()
    parser.feed(data)

    def deliver():
        for message in parser:
            port.callback(message) if port.callback else port._messages.append(message)

    thread = threading.Thread(target=deliver)
    thread.start()
    thread.join()
