"""Video out of `dream live` besides the page's MJPEG stream: SRT (H.264 in MPEG-TS through
the shipped ffmpeg, low latency: TouchDesigner's Video Stream In and OBS's Media Source take
`srt://`) and a virtual camera (`pyvirtualcam`, an optional extra: any video app picks it as a
webcam). Each runs on its own thread and takes the newest dreamed frame when it is free: a
slow receiver, or none yet (an SRT listener waits for its caller), never holds up the dream.
"""

from __future__ import annotations

import subprocess
import threading
from urllib.parse import parse_qs, urlparse

import numpy as np

from renderer.errors import UserError


class _Sender:
    """A thread that hands every new dreamed frame of `session` to `send(rgb)`."""

    def __init__(self, session, name: str):
        self.session = session
        self.sent = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=name)

    def start(self) -> "_Sender":
        self.thread.start()
        return self

    def stop(self) -> None:
        """No frame is sent after this returns (one being sent may take a second)."""
        self.stopping.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        seq = 0
        while self.session.running and not self.stopping.is_set():
            shown = self.session.next_shown(seq, 1.0)
            if shown.seq == seq or shown.rgb is None or self.stopping.is_set():
                continue
            seq = shown.seq
            if not self.send(shown.rgb):
                return
            self.sent += 1

    def send(self, rgb: np.ndarray) -> bool:
        raise NotImplementedError


def check_srt(url: str) -> str:
    """An SRT address ffmpeg can serve: srt://HOST:PORT (?mode=listener: wait for a caller)."""
    parsed = urlparse(url)
    if parsed.scheme != "srt" or not parsed.hostname or not parsed.port:
        raise UserError(f"--srt '{url}' is not an SRT address: give srt://HOST:PORT?mode="
                        "listener (OBS and TouchDesigner then call it)")
    mode = parse_qs(parsed.query).get("mode", ["caller"])[0]
    if mode not in ("listener", "caller", "rendezvous"):
        raise UserError(f"--srt mode '{mode}' is not one of listener, caller, rendezvous")
    return url


class SrtOut(_Sender):
    """The dream as H.264 (ultrafast, zerolatency, a keyframe each second) in MPEG-TS over SRT,
    each frame stamped with the wall clock as it is sent (a live dream's rate wanders)."""

    def __init__(self, session, url: str, size: tuple[int, int], ffmpeg: str):
        super().__init__(session, "srt-out")
        w, h = size
        self.url = check_srt(url)
        self.proc = subprocess.Popen(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "rawvideo",
             "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-use_wallclock_as_timestamps", "1",
             "-i", "pipe:", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
             "-pix_fmt", "yuv420p", "-g", "30", "-bf", "0", "-f", "mpegts", url],
            stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def send(self, rgb: np.ndarray) -> bool:
        try:
            self.proc.stdin.write(np.ascontiguousarray(rgb).tobytes())
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, ValueError, OSError):
            return False

    def close(self) -> None:
        """End the stream at once: ffmpeg first (a listener may still wait for its caller,
        with the sender blocked writing to it), then the sender."""
        self.stopping.set()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stop()
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass


class VirtualCamera(_Sender):
    """The dream as a webcam other programs open (`pyvirtualcam`: v4l2loopback on Linux, OBS's
    virtual camera on Windows and macOS)."""

    def __init__(self, session, size: tuple[int, int], backend: str | None = None):
        super().__init__(session, "virtual-camera")
        try:
            import pyvirtualcam
        except ImportError:
            raise UserError("--virtual-camera needs the optional extra: pip install "
                            "'dream-renderer[vcam]' (pyvirtualcam; on Linux also the "
                            "v4l2loopback kernel module)") from None
        try:
            self.camera = pyvirtualcam.Camera(size[0], size[1], 30, backend=backend)
        except (RuntimeError, ValueError) as exc:
            message = " ".join(str(exc).split())
            raise UserError(f"no virtual camera to send to ({message}): on Linux load "
                            "v4l2loopback (sudo modprobe v4l2loopback), on Windows and macOS "
                            "install OBS") from None

    def send(self, rgb: np.ndarray) -> bool:
        self.camera.send(np.ascontiguousarray(rgb))
        return True

    def close(self) -> None:
        self.stop()
        self.camera.close()


def check_ndi() -> None:
    """NDI is not built in: its runtime is proprietary, and no NDI receiver can be tested on
    the machines this is built on. SRT reaches the same programs."""
    raise UserError("--ndi: NDI output is not built in (its runtime is proprietary): send SRT "
                    "with --srt srt://0.0.0.0:9000?mode=listener, which OBS and TouchDesigner "
                    "read (OBS's NDI plugin can pass it on)")
