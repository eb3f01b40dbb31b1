"""`dream live`: the page's controls are validated, the token guards a public address, and in
a real headless Chromium the page shows dreamed frames that follow its sliders."""

import asyncio
import base64
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from renderer.errors import UserError
from renderer.live.capture import Capture
from renderer.live.params import LiveParams
from renderer.live.session import LiveSession
from renderer.media.probe import ffmpeg_exe

from conftest import ROOT

PRESETS = ["live", "preview"]
SIZE = (160, 96)


def test_page_can_only_pick_presets_layers_and_numbers_in_range():
    p = LiveParams()
    assert p.with_changes({"steps": "3", "strength": 0.5}, PRESETS).steps == 3
    assert p.with_changes({"preset": "preview"}, PRESETS).preset == "preview"
    assert p.with_changes({"layer": "features.4"}, PRESETS, ["features.4"]).layer == "features.4"
    for bad, words in (({"preset": "../../etc/passwd"}, "unknown preset"),
                       ({"layer": "features.99"}, "unknown layer"),
                       ({"model.weights": "/tmp/x.pth"}, "cannot be changed live"),
                       ({"mask": "/tmp/x.png"}, "unknown mask"),
                       ({"strength": 99}, "out of range"), ({"octaves": "many"}, "a number")):
        with pytest.raises(UserError, match=words):
            p.with_changes(bad, PRESETS)


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory):
    """Ten seconds of one photo (a still camera), so the page's pixels can be compared with
    the picture the camera sees."""
    path = tmp_path_factory.mktemp("live") / "still.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-loop", "1", "-i",
                    str(ROOT / "samples" / "astronaut.jpg"), "-t", "10", "-r", "12",
                    "-vf", f"scale={SIZE[0]}:{SIZE[1]}", "-pix_fmt", "yuv420p", str(path)],
                   check=True)
    return path


def serving(clip, host, record_dir=Path("."), preset="live"):
    """A live session on `clip` served on a free port: (session, url, thread)."""
    from renderer.live.server import serve

    session = LiveSession(Capture(str(clip), SIZE), preset, PRESETS, "cpu", record_dir)
    ready = threading.Event()
    urls = []

    def on_ready(url):
        urls.append(url)
        ready.set()

    thread = threading.Thread(target=serve, args=(session, host, 0, on_ready), daemon=True)
    thread.start()
    assert ready.wait(30), "the server did not start"
    return session, urls[0], thread


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


@pytest.mark.slow
def test_public_address_needs_the_token(still_clip):
    session, url, thread = serving(still_clip, "0.0.0.0")
    try:
        base, _, token = url.partition("?token=")
        assert token, "a public address must print a token in its URL"
        for path in ("", "state", "stream", "snapshot.png"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                get(base + path)
            assert refused.value.code == 403
        status, body = get(f"{base}state?token={token}")
        assert status == 200 and json.loads(body)["params"]["preset"] == "live"
    finally:
        session.close()
        thread.join(10)


class Browser:
    """Headless Chromium driven over the DevTools protocol (aiohttp's WebSocket client)."""

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-port=0", "--window-size=800,600"]

    def __init__(self, chromium, profile, url):
        self.proc = subprocess.Popen([chromium, *self.FLAGS, f"--user-data-dir={profile}", url],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        pages = json.loads(get(f"http://127.0.0.1:{port}/json/list")[1])
        self.ws_url = next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"]
        self.loop = asyncio.new_event_loop()
        self.ids = 0

    def call(self, method, **params):
        return self.loop.run_until_complete(self._call(method, params))

    async def _call(self, method, params):
        import aiohttp

        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(self.ws_url, max_msg_size=0) as ws:
                self.ids += 1
                await ws.send_json({"id": self.ids, "method": method, "params": params})
                async for msg in ws:
                    data = json.loads(msg.data)
                    if data.get("id") == self.ids:
                        assert "error" not in data, data
                        return data["result"]

    def js(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def shot(self, element_id) -> np.ndarray:
        """The element's pixels as the browser shows them (RGB)."""
        box = self.js(f"(() => {{ const r = document.getElementById('{element_id}')"
                      ".getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()")
        data = self.call("Page.captureScreenshot", format="png", clip={
            "x": box[0], "y": box[1], "width": box[2], "height": box[3], "scale": 1})["data"]
        png = np.frombuffer(base64.b64decode(data), np.uint8)
        return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.loop.close()


def wait_for(check, seconds=60, what="the page"):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


@pytest.mark.slow
def test_page_shows_dreamed_frames_that_follow_the_sliders(still_clip, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed for this test (.ci/run installs it)"
    shots = tmp_path / "shots.yaml"  # the live preset, and a shot to step to with a key
    shots.write_text("extends: live\nshots:\n  - {at: 1.0, objective: [features.9]}\n")
    session, url, thread = serving(still_clip, "127.0.0.1", tmp_path / "recorded", str(shots))
    browser = Browser(chromium, tmp_path / "profile", url)
    try:
        wait_for(lambda: browser.js("document.getElementById('dream')?.naturalWidth") == SIZE[0],
                 what="the first dreamed frame")
        wait_for(lambda: session.state()["frames"] >= 6, what="six dreamed frames")
        source = cv2.resize(cv2.cvtColor(cv2.imread(str(ROOT / "samples" / "astronaut.jpg")),
                                         cv2.COLOR_BGR2RGB), SIZE, interpolation=cv2.INTER_AREA)

        def difference():
            shown = browser.shot("dream")
            shown = cv2.resize(shown, SIZE, interpolation=cv2.INTER_AREA)
            return float(np.abs(shown.astype(float) - source).mean())

        dreaming = difference()
        cv2.imwrite(str(tmp_path / "page.png"), cv2.cvtColor(browser.shot("dream"),
                                                             cv2.COLOR_RGB2BGR))
        # the sliders, as a user moves them: no ascent steps, nothing carried over
        for key in ("steps", "persistence"):
            browser.js(f"(() => {{ const i = document.getElementById('{key}'); i.value = 0; "
                       "i.dispatchEvent(new Event('change')); })()")
        wait_for(lambda: session.state()["params"]["steps"] == 0
                 and session.state()["params"]["persistence"] == 0, what="the sliders")
        seen = session.state()["frames"]
        wait_for(lambda: session.state()["frames"] >= seen + 4, what="frames after the change")
        time.sleep(1)
        plain = difference()
        print(f"mean |page - camera|: dreaming {dreaming:.1f}, plain {plain:.1f}")
        assert dreaming > 3 * plain, (dreaming, plain)
        assert "fps" in browser.js("document.getElementById('stats').textContent")
        browser.js("(() => { const m = document.getElementById('mask'); m.value = 'person'; "
                   "m.dispatchEvent(new Event('change')); })()")
        wait_for(lambda: session.state()["params"]["mask"] == "person", what="the mask switch")
        browser.js("document.dispatchEvent(new KeyboardEvent('keydown', {key: ']'}))")
        wait_for(lambda: session.state()["params"]["shot"] == 1, what="the next shot's key")
        assert [t.layer for t in session.chain.preset.objective] == ["features.9"]
        wait_for(lambda: browser.js("document.getElementById('shot').value") == "1",
                 what="the page to show the shot")
        # record two seconds with the page's button
        browser.js("document.getElementById('record').click()")
        wait_for(lambda: session.state()["recording"], 10, "the recording to start")
        time.sleep(2.0)
        browser.js("document.getElementById('record').click()")
        wait_for(lambda: "saved" in browser.js("document.getElementById('error').textContent"),
                 10, "the recording to be saved")
        (recorded,) = (tmp_path / "recorded").glob("live-*.mkv")
        count, stamps = read_video(recorded)
        assert 16 <= count <= 30 and 1.5 <= stamps[-1] - stamps[0] <= 2.3, (count, stamps)
        page = browser.call("Page.captureScreenshot", format="png")["data"]
        (tmp_path / "page.png").write_bytes(base64.b64decode(page))
    finally:
        browser.close()
        session.close()
        thread.join(10)


@pytest.mark.slow
def test_live_steps_through_a_presets_shots(still_clip, tmp_path):
    """Each shot's look, by hand: its objective and values, the sliders where it puts them,
    the dream carried on across the switch; a shot the preset lacks is refused."""
    (tmp_path / "eyes.yaml").write_text("extends: live\nobjective: [features.14]\n"
                                        "flow: {persistence: 0.6}\n")
    preset = tmp_path / "shots.yaml"
    preset.write_text("extends: live\nshots:\n"
                      "  - {at: 1.0, objective: [features.9], dream: {step_size: 0.05}}\n"
                      "  - {at: 2.0, extends: eyes.yaml}\n"
                      "  - {at: 3.0, objective: [blocks.9], extends: lite.yaml}\n")
    (tmp_path / "lite.yaml").write_text("extends: live\nmodel: {name: efficientnet_lite0}\n")
    session = LiveSession(Capture(str(still_clip), SIZE), str(preset), PRESETS, "cpu")
    try:
        state = session.state()
        assert state["params"]["shot"] == 0 and len(state["shots"]) == 4
        assert "features.9" in state["shots"][1] and "eyes.yaml" in state["shots"][2]
        wait_for(lambda: session.state()["frames"] >= 2, what="the first frames")
        session.update({"strength": 2.0})
        session.update({"shot": 1})
        shown = session.chain.preset
        assert [t.layer for t in shown.objective] == ["features.9"]
        assert shown.dream.step_size == pytest.approx(0.05)  # the shot's, at strength 1 again
        params = session.update({"shot": 2, "strength": 1.5})
        assert params.persistence == pytest.approx(0.6) and params.strength == 1.5
        assert [t.layer for t in session.chain.preset.objective] == ["features.14"]
        assert session.chain.links  # carried on across the switch
        seen = session.state()["frames"]
        wait_for(lambda: session.state()["frames"] >= seen + 2, what="frames of the shot")
        assert session.state()["error"] == ""
        session.update({"shot": 3})  # a shot of another model: its network and layers
        assert session.chain.preset.model.name == "efficientnet_lite0"
        assert "blocks.9" in session.state()["layers"]
        seen = session.state()["frames"]
        wait_for(lambda: session.state()["frames"] >= seen + 2, what="frames of that model")
        for bad in (4, -1, "1", True):
            with pytest.raises(UserError, match="not one of the preset's"):
                session.update({"shot": bad})
        session.update({"shot": 0})
        assert [t.layer for t in session.chain.preset.objective] == ["features.10"]
        params = session.update({"preset": "preview", "steps": 3})  # the rest applies after
        assert (params.preset, params.steps, params.shot) == ("preview", 3, 0)
        assert session.state()["shots"] == ["the preset's own look"]
    finally:
        session.close()


@pytest.mark.slow
def test_the_mask_switch_dreams_around_the_person_and_keeps_them(still_clip):
    from renderer.media.masks import mask_maker
    from renderer.presets import MaskSection

    session = LiveSession(Capture(str(still_clip), SIZE), "live", PRESETS, "cpu")
    try:
        wait_for(lambda: session.state()["frames"] >= 2, what="the first frames")
        with pytest.raises(UserError, match="unknown mask"):
            session.update({"mask": "../etc/passwd"})
        session.update({"mask": "background", "strength": 3})
        seen = session.state()["frames"]
        wait_for(lambda: session.state()["frames"] >= seen + 6, what="masked frames")
        shown = session.shown.rgb.astype(float)
    finally:
        session.close()
    source = cv2.resize(cv2.cvtColor(cv2.imread(str(ROOT / "samples" / "astronaut.jpg")),
                                     cv2.COLOR_BGR2RGB), SIZE, interpolation=cv2.INTER_AREA)
    person = mask_maker(MaskSection(key="person", grow=-4), SIZE, [0.0]).cursor(0)(0, source)
    change = np.abs(shown - source).mean(axis=2)
    kept, dreamed = change[person > 250].mean(), change[person < 5].mean()
    # (the camera is an H.264 file: its frames are a few levels off the photo)
    assert kept < 6.0 and dreamed > 5 * kept, (kept, dreamed)


@pytest.mark.slow
def test_a_mask_file_keeps_its_region_live(still_clip, tmp_path):
    """`dream live --mask FILE`: the page's stream dreams only where the file is white."""
    mask = np.zeros(SIZE[::-1], np.uint8)
    mask[:, SIZE[0] // 2:] = 255
    cv2.imwrite(str(tmp_path / "right.png"), mask)
    session = LiveSession(Capture(str(still_clip), SIZE), "live", PRESETS, "cpu",
                          mask_file=str(tmp_path / "right.png"))
    try:
        session.update({"strength": 3})
        wait_for(lambda: session.state()["frames"] >= 6, what="masked frames")
        shown = session.shown.rgb.astype(float)
    finally:
        session.close()
    source = cv2.resize(cv2.cvtColor(cv2.imread(str(ROOT / "samples" / "astronaut.jpg")),
                                     cv2.COLOR_BGR2RGB), SIZE, interpolation=cv2.INTER_AREA)
    change = np.abs(shown - source).mean(axis=(0, 2))
    left, right = change[:SIZE[0] // 2 - 4].mean(), change[SIZE[0] // 2 + 4:].mean()
    assert right > 5 * left, (left, right)


def post(url, body):
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def read_video(path):
    """(frame count, timestamps in seconds) of a recorded file, as PyAV demuxes it."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stamps = [float(f.pts * f.time_base) for f in container.decode(stream)]
    return len(stamps), stamps


@pytest.mark.slow
def test_record_keeps_every_camera_frame_with_its_time_and_the_preset_on_screen(
        still_clip, tmp_path):
    from renderer.presets import load

    session, url, thread = serving(still_clip, "127.0.0.1", tmp_path)
    try:
        post(url + "params", {"steps": 3, "strength": 1.5, "layer": "features.4"})
        assert session.dreamer.objective.layers == {"features.4"}
        wait_for(lambda: session.state()["frames"] >= 2, what="frames")
        started = post(url + "record", {"on": True, "dreamed": True})["recording"]
        time.sleep(2.0)
        files = [Path(f) for f in post(url + "record", {"on": False})["files"]]
    finally:
        session.close()
        thread.join(10)
    assert [f.name for f in files] == [f"{started}.mkv", f"{started}.dream.mkv",
                                       f"{started}.yaml", f"{started}.controls.json"]
    count, stamps = read_video(files[0])
    assert 16 <= count <= 30, (count, stamps)  # the clip plays at 12 fps: ~24 frames in 2 s
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert 1.5 <= stamps[-1] - stamps[0] <= 2.3
    assert read_video(files[1])[0] >= 1
    preset = load(str(files[2]))
    live = load("live")
    assert preset.dream.steps == preset.flow.steps == 3
    assert preset.dream.step_size == pytest.approx(1.5 * live.dream.step_size)
    assert [term.layer for term in preset.objective] == ["features.4"]
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.slow
def test_edits_to_the_preset_file_apply_live_and_a_bad_edit_keeps_the_last_good(
        still_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    mine = tmp_path / "dream" / "presets" / "mine.yaml"
    mine.parent.mkdir(parents=True)
    text = (ROOT / "presets" / "live.yaml").read_text().replace("name: live", "name: mine")
    mine.write_text(text)
    capture = Capture(str(still_clip), SIZE)
    session = LiveSession(capture, "mine", ["mine"], "cpu", tmp_path)

    def edit(new_text, later):
        mine.write_text(new_text)
        os.utime(mine, (later, later))

    try:
        wait_for(lambda: session.state()["frames"] >= 1, what="frames")
        assert session.state()["params"]["steps"] == 2
        edit("  steps: 5".join(text.rsplit("  steps: 2", 1)), time.time() + 5)  # flow.steps
        wait_for(lambda: session.state()["params"]["steps"] == 5, 30, "the edit")
        edit(text.replace("octaves: 2", "octaves: many"), time.time() + 10)
        wait_for(lambda: "not valid" in session.state()["error"], 30, "the error")
        state = session.state()
        assert "octaves" in state["error"] and state["params"]["steps"] == 5
        frames = state["frames"]
        wait_for(lambda: session.state()["frames"] > frames, 30, "frames after a bad edit")
    finally:
        session.close()


@pytest.mark.slow
def test_ctrl_c_leaves_a_playable_recording_and_a_missing_camera_is_named(still_clip, tmp_path):
    import signal

    from conftest import run_cli

    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "dream"), "live", "--input",
                             str(still_clip), "--size", f"{SIZE[0]}x{SIZE[1]}", "--port", "0",
                             "--print-url", "--record-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read()
        taken = run_cli("live", "--input", str(still_clip), "--port", url.split(":")[2].strip("/"))
        assert taken.returncode == 2 and "another program uses it" in taken.stderr
        post(url + "record", {"on": True})
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
    finally:
        proc.kill()
    recorded = sorted(tmp_path.glob("live-*.mkv"))
    assert len(recorded) == 1 and read_video(recorded[0])[0] >= 8
    assert (tmp_path / f"{recorded[0].stem}.yaml").is_file()
    missing = run_cli("live", "--camera", "9", "--port", "0")
    assert missing.returncode == 2 and "camera 9 is missing" in missing.stderr
    assert "Traceback" not in missing.stderr
