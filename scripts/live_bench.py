"""Live speed: frames per second and capture-to-display latency of `dream live`.

    python scripts/live_bench.py CLIP [--sizes 320x180,640x360] [--seconds 20] [-p live]
                                 [--osc-rate 50] [--device cpu|cuda] [--out table.md]

CLIP plays as the camera, at its own timestamps (a 30 fps clip is a 30 fps camera), through the
same capture, dream and JPEG path the page gets (coherence on: the dream is carried along the
flow). Latency is capture to JPEG ready to send, p50 and p95 over the run after a 3 s warm-up;
fps counts dreamed frames; dropped are camera frames the dream was too slow to take. With
--osc-rate N a controller sends N OSC messages a second over UDP (`/dream/strength`, moving
between 0.8 and 1.2) to the session's OSC listener, as a performer's would; the table adds how
many arrived and the p95 time from sending one to seeing it in the session's state.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

import benchkit
from renderer import presets
from renderer.engine.dream import pick_device
from renderer.live.capture import Capture
from renderer.live.session import LiveSession
from renderer.media.images import parse_size


class Controller:
    """OSC at `rate` messages a second into the session's own listener (on a loop of its own,
    as the page's server runs it), each one's time to reach the session's state measured."""

    def __init__(self, session, rate: float):
        from pythonosc.udp_client import SimpleUDPClient

        from renderer.live.osc import OscControl

        self.session, self.rate = session, rate
        self.osc = OscControl(session, "127.0.0.1", 0)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self.osc.start(), self.loop).result(10)
        self.client = SimpleUDPClient("127.0.0.1", self.osc.port)
        self.waits: list[float] = []
        self.sent = 0
        self.running = True
        self.thread = threading.Thread(target=self._send, daemon=True)
        self.thread.start()

    def _send(self) -> None:
        while self.running:
            value = round(1.0 + 0.2 * np.sin(self.sent / 7), 3)
            sent = time.monotonic()
            self.client.send_message("/dream/strength", value)
            self.sent += 1
            while self.running and time.monotonic() - sent < 1.0 / self.rate:
                if abs(self.session.params.strength - value) < 1e-4 and \
                        len(self.waits) < self.sent:
                    self.waits.append(time.monotonic() - sent)
                time.sleep(0.005)

    def close(self) -> dict:
        self.running = False
        self.thread.join()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.osc.close()
        return {"sent": self.sent, "applied": self.osc.received,
                "osc_p95": float(np.percentile(self.waits, 95) * 1000) if self.waits else None}


def run(clip: str, size: tuple[int, int], preset: str, device, seconds: float,
        osc_rate: float = 0.0) -> dict:
    session = LiveSession(Capture(clip, size), preset, sorted(presets.available()), device)
    controller = None
    try:
        time.sleep(3.0)  # network load, first frames
        controller = Controller(session, osc_rate) if osc_rate else None
        first = session.state()
        start = time.monotonic()
        time.sleep(seconds)
        last = session.state()
        elapsed = time.monotonic() - start
        with session.lock:
            latencies = list(session.stats.latency_ms)[-(last["frames"] - first["frames"]):]
    finally:
        osc = controller.close() if controller is not None else {}
        session.close()
    frames = last["frames"] - first["frames"]
    return {"fps": frames / elapsed, "p50": float(np.percentile(latencies, 50)),
            "p95": float(np.percentile(latencies, 95)),
            "dropped": last["dropped"] - first["dropped"], "frames": frames, **osc}


def main():
    parser = benchkit.parser(__doc__, preset="live", size=False)
    parser.add_argument("--sizes", default="320x180,640x360")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--osc-rate", type=float, default=0.0,
                        help="OSC messages a second sent while it runs (0: none)")
    args = parser.parse_args()
    device = pick_device(args.device)
    report = benchkit.Report("live bench", device, args.out)
    osc = args.osc_rate > 0
    report.emit("| size | fps | latency p50 ms | latency p95 ms | frames | camera frames dropped |"
                + (" OSC sent / arrived | OSC to state p95 ms |" if osc else ""),
                "|---|---|---|---|---|---|" + ("---|---|" if osc else ""))
    for text in args.sizes.split(","):
        r = run(args.clip, parse_size(text), args.preset, str(device), args.seconds,
                args.osc_rate)
        row = (f"| {text} | {r['fps']:.2f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['frames']} | "
               f"{r['dropped']} |")
        if osc:
            row += f" {r['sent']} / {r['applied']} | {r['osc_p95'] or 0:.0f} |"
        report.emit(row)


if __name__ == "__main__":
    main()
