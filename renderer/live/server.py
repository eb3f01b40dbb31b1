"""The live page: aiohttp serves it, the dreamed stream as MJPEG, the state and the controls.

MJPEG (multipart/x-mixed-replace) because an <img> shows it with no script, each part is the
newest frame (a slow client skips frames instead of queueing them) and it costs one JPEG
encode per frame, shared by all clients. Loopback only by default; on any other host every
request needs the random token printed at start.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from importlib import resources

import cv2
from aiohttp import web

from renderer.errors import UserError
from renderer.live.session import LiveSession

BOUNDARY = "dreamframe"


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def make_app(session: LiveSession, token: str | None) -> web.Application:
    """The page's routes; with a `token` every request must carry it (?token= or a header)."""

    @web.middleware
    async def require_token(request: web.Request, handler):
        given = request.query.get("token") or request.headers.get("X-Dream-Token", "")
        if token is not None and not secrets.compare_digest(given, token):
            raise web.HTTPForbidden(text="this page needs the token printed by 'dream live'")
        return await handler(request)

    async def page(request: web.Request) -> web.Response:
        html = resources.files("renderer.live").joinpath("page.html").read_text()
        return web.Response(text=html, content_type="text/html")

    async def state(request: web.Request) -> web.Response:
        return web.json_response(session.state())

    async def params(request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise UserError("send a JSON object of the values to change")
            updated = await asyncio.to_thread(session.update, changes)
        except json.JSONDecodeError:
            return web.json_response({"error": "not JSON"}, status=400)
        except UserError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"params": updated.__dict__})

    async def record(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            on, dreamed = bool(body["on"]), bool(body.get("dreamed", False))
        except (json.JSONDecodeError, KeyError, TypeError):
            return web.json_response({"error": 'send {"on": true|false, "dreamed": bool}'},
                                     status=400)
        return web.json_response(await asyncio.to_thread(session.record, on, dreamed))

    async def learn(request: web.Request) -> web.Response:
        if session.midi is None:
            return web.json_response({"error": "start dream live with --midi PORT to learn"},
                                     status=400)
        try:
            target = (await request.json())["target"]
            session.midi.learn(None if target is None else str(target))
        except (json.JSONDecodeError, KeyError, TypeError):
            return web.json_response({"error": 'send {"target": "strength" | "next" | '
                                               '"shot:N" | null}'}, status=400)
        except UserError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(session.midi.state())

    async def stream(request: web.Request) -> web.StreamResponse:
        which = "source_jpeg" if request.query.get("view") == "source" else "jpeg"
        response = web.StreamResponse(headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            "Cache-Control": "no-store"})
        await response.prepare(request)
        seq = 0
        try:
            while session.running:
                shown = await asyncio.to_thread(session.next_shown, seq, 1.0)
                if shown.seq == seq:
                    continue
                seq = shown.seq
                data = getattr(shown, which)
                await response.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}"
                    f"\r\nX-Latency-Ms: {shown.latency_ms:.1f}\r\n\r\n".encode() + data + b"\r\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client went away; the capture goes on
        return response

    async def snapshot(request: web.Request) -> web.Response:
        rgb = session.next_shown(-1, 0).rgb
        if rgb is None:
            raise web.HTTPServiceUnavailable(text="no frame dreamed yet")
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return web.Response(body=png.tobytes(), content_type="image/png")

    app = web.Application(middlewares=[require_token])
    app.add_routes([web.get("/", page), web.get("/state", state), web.post("/params", params),
                    web.post("/record", record), web.post("/learn", learn),
                    web.get("/stream", stream), web.get("/snapshot.png", snapshot)])
    return app


def serve(session: LiveSession, host: str, port: int, on_ready=None, osc=None) -> None:
    """Serve until Ctrl-C; `on_ready(url)` is called once listening (and `osc`, a
    `live.osc.OscControl`, listening on the same loop). Off the loopback a token guards every
    request (it is part of the URL); OSC has none: keep it on the loopback or a trusted
    network."""
    token = None if is_loopback(host) else secrets.token_urlsafe(16)

    async def main():
        runner = web.AppRunner(make_app(session, token))
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): another "
                            "program uses it, pick another with --port") from None
        if osc is not None:
            try:
                await osc.start()
            except UserError:
                await runner.cleanup()
                raise
        bound = site._server.sockets[0].getsockname()[1] if port == 0 else port
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        url = f"http://{shown_host}:{bound}/" + (f"?token={token}" if token else "")
        if on_ready:
            on_ready(url)
        try:
            while session.running:
                await asyncio.sleep(0.5)
        finally:
            await runner.cleanup()

    asyncio.run(main())
