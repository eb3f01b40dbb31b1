"""OSC in: a fixed address for every live control, no mapping to set up (Resolume's way).

    /dream/strength 0.7   /dream/steps 3   /dream/octaves 2   /dream/persistence 0.8
    /dream/preset classic /dream/layer features.6 /dream/mask person /dream/shot 2  /dream/next

python-osc's asyncio UDP server runs on the page's event loop; messages become changes of the
session (`LiveSession.update`, the page's own path, so a recording logs them), applied in
arrival order on one worker thread (a preset switch loads a network: the loop never waits).
A controller sends far more often than frames are dreamed (a fader: 50 messages a second), so
the messages that arrive while one change waits for the frame in progress are merged into the
next change: the latest value of each control, a preset or shot switch applied on its own
first. A message that is unknown, of the wrong type or out of range is one warning line, never
a crash.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import AsyncIOOSCUDPServer

from renderer.errors import UserError

log = logging.getLogger(__name__)

PREFIX = "/dream/"
CONTROLS = ("strength", "steps", "octaves", "persistence", "preset", "layer", "mask", "shot")


def change_of(address: str, args: tuple, session) -> dict:
    """The session change an OSC message asks for (UserError: what is wrong with it)."""
    name = address[len(PREFIX):] if address.startswith(PREFIX) else ""
    if name == "next":
        return session.next_shot()
    if name not in CONTROLS:
        raise UserError(f"unknown address (use {PREFIX}" + "|".join((*CONTROLS, "next")) + ")")
    if len(args) != 1:
        raise UserError(f"{address} takes one value, got {len(args)}")
    value = args[0]
    if name == "shot" and isinstance(value, float) and value.is_integer():
        value = int(value)
    if name in ("preset", "layer", "mask") and not isinstance(value, str):
        raise UserError(f"{address} takes a name, got {value!r}")
    return {name: value}


class OscControl:
    """Listens on UDP `host:port` (0: any free port, read back from `port`)."""

    def __init__(self, session, host: str, port: int):
        self.session, self.host, self.requested = session, host, port
        self.port = None
        self.transport = None
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="osc")
        self.pending: deque = deque()
        self.lock = threading.Lock()
        self.received = 0

    def _handle(self, address: str, *args) -> None:
        self.received += 1
        with self.lock:
            self.pending.append((address, args))
            if len(self.pending) == 1:  # else the worker's next turn takes it too
                self.worker.submit(self._apply)

    def _apply(self) -> None:
        with self.lock:
            messages = list(self.pending)
            self.pending.clear()
        merged: dict = {}
        for address, args in messages:
            try:
                change = change_of(address, args, self.session)
                self.session.check(change)
            except UserError as exc:
                self._warn(address, args, exc)
                continue
            if merged and ({"preset", "shot"} & set(change) or {"preset", "shot"} & set(merged)):
                self._update(merged)  # a switch resets the sliders: keep the order
                merged = {}
            merged.update(change)
        if merged:
            self._update(merged)

    def _update(self, change: dict) -> None:
        try:
            self.session.update(change)
        except UserError as exc:  # valid alone, not after a switch that came first
            log.warning(f"OSC {change}: ignored, {exc}")

    @staticmethod
    def _warn(address: str, args: tuple, exc: UserError) -> None:
        log.warning(f"OSC {address} {' '.join(map(repr, args))}: ignored, {exc}")

    async def start(self) -> None:
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(self._handle)
        server = AsyncIOOSCUDPServer((self.host, self.requested), dispatcher,
                                     asyncio.get_running_loop())
        try:
            self.transport, _ = await server.create_serve_endpoint()
        except OSError as exc:
            raise UserError(f"cannot listen for OSC on udp {self.host}:{self.requested} "
                            f"({exc.strerror or exc}): pick another with --osc PORT") from None
        self.port = self.transport.get_extra_info("sockname")[1]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.worker.shutdown(wait=True)
