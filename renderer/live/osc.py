"""OSC in: a fixed address for every live control, no mapping to set up (Resolume's way).

    /dream/strength 0.7   /dream/steps 3   /dream/octaves 2   /dream/persistence 0.8
    /dream/preset classic /dream/layer features.6 /dream/mask person /dream/shot 2  /dream/next

python-osc's asyncio UDP server runs on the page's event loop; each message is checked there
and becomes a change of the session (`LiveSession.update`, the page's own path, so a recording
logs it) through an `Inbox` (in order, merged while a frame is dreamed, off the loop). A
message that is unknown, of the wrong type or out of range is one warning line, never a
crash.
"""

from __future__ import annotations

import asyncio
import logging

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import AsyncIOOSCUDPServer

from renderer.errors import UserError
from renderer.live.inbox import Inbox

log = logging.getLogger(__name__)

PREFIX = "/dream/"
CONTROLS = ("strength", "steps", "octaves", "persistence", "preset", "layer", "mask", "shot")


def change_of(address: str, args: tuple) -> dict:
    """The session change an OSC message asks for (UserError: what is wrong with it)."""
    name = address[len(PREFIX):] if address.startswith(PREFIX) else ""
    if name == "next":
        return {"next": True}
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
        self.inbox = Inbox(session, "OSC")
        self.received = 0

    def _handle(self, address: str, *args) -> None:
        self.received += 1
        try:
            change = change_of(address, args)
            if "next" not in change:
                self.session.check(change)
        except UserError as exc:
            log.warning(f"OSC {address} {' '.join(map(repr, args))}: ignored, {exc}")
            return
        self.inbox.put(change)

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
        self.inbox.close()
