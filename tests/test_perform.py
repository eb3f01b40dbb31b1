"""Live for performers (issue 44): OSC and MIDI in (learned, saved, read again), SRT and MJPEG
out read back by the shipped ffmpeg, a virtual camera through pyvirtualcam's backend hook, and
a recorded set replayed by `dream render --controls` at full quality."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import mido
import numpy as np
import pytest
from pythonosc.udp_client import SimpleUDPClient

from conftest import ROOT, assert_user_error, run_cli
from renderer.controls import Change, Controls, read_controls, replayed
from renderer.errors import UserError
from renderer.live.osc import change_of
from renderer.media.probe import ffmpeg_exe
from renderer.presets import load

SIZE = (160, 96)


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory):
    """Twelve seconds of a moving test pattern, played as the camera."""
    path = tmp_path_factory.mktemp("perform") / "camera.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate=12", "-t", "12", "-pix_fmt",
                    "yuv420p", str(path)], check=True)
    return path


# ---------------------------------------------------------------- OSC messages
def test_osc_addresses_become_changes_and_bad_ones_are_named():
    assert change_of("/dream/strength", (0.7,)) == {"strength": 0.7}
    assert change_of("/dream/shot", (2.0,)) == {"shot": 2}
    assert change_of("/dream/preset", ("classic",)) == {"preset": "classic"}
    assert change_of("/dream/next", ()) == {"next": True}
    for address, args, words in (("/dream/glow", (1,), "unknown address"),
                                 ("/other/strength", (1,), "unknown address"),
                                 ("/dream/strength", (), "takes one value"),
                                 ("/dream/strength", (1, 2), "takes one value"),
                                 ("/dream/preset", (3,), "takes a name")):
        with pytest.raises(UserError, match=words):
            change_of(address, args)


def test_an_inbox_applies_changes_in_order_merging_what_waits_for_a_frame():
    """While one change waits for the frame in progress, the next ones merge: the latest value
    of each control; a switch (`next` counted when it applies) is never merged across."""
    import threading

    from renderer.live.inbox import Inbox

    applied, gate = [], threading.Event()

    class Session:
        shot = 0

        def update(self, change):
            gate.wait(5)  # the first change waits for a frame
            applied.append(dict(change))
            self.shot = change.get("shot", self.shot)

        def next_shot(self):
            return {"shot": self.shot + 1}

    inbox = Inbox(Session(), "test")
    inbox.put({"strength": 1.0})
    time.sleep(0.1)  # the worker holds the first, waiting
    for change in ({"strength": 2.0}, {"persistence": 0.5}, {"strength": 3.0}, {"next": True},
                   {"next": True}, {"strength": 0.5}):
        inbox.put(change)
    gate.set()
    inbox.close()
    assert applied == [{"strength": 1.0}, {"strength": 3.0, "persistence": 0.5}, {"shot": 1},
                       {"shot": 2}, {"strength": 0.5}]


# ---------------------------------------------------------------- controls files
def state(**changes) -> dict:
    return {"preset": "live", "layer": "", "mask": "", "shot": 0, "strength": 1.0, "steps": 2,
            "octaves": 2, "persistence": 0.9, **changes}


def test_a_set_replays_as_timeline_keys_and_shots():
    """Strength and carried share are held from each change; a preset switch is a cut, a layer
    switch carries on; steps and octaves (live's speed) are noted, not replayed."""
    from renderer.engine.objectives import classic_term
    from renderer.music.shots import shot_preset

    controls = Controls("rec.mkv", 100, [
        Change(0.0, state()), Change(1.0, state(strength=0.0)),
        Change(2.0, state(strength=3.0, layer="features.4")),
        Change(3.0, state(strength=3.0, layer="features.4", preset="classic", octaves=4))])
    data, notes = replayed(controls, 0.25, load, lambda p, k: shot_preset(p, k, classic_term))
    live, classic = load("live"), load("classic")
    steps = data["timeline"]["dream.step_size"]
    assert [k["at"] for k in steps] == [0.0, 0.75, 1.75, 2.75]
    assert [k["value"] for k in steps] == pytest.approx(
        [live.dream.step_size, 0.0, 3 * live.dream.step_size, 3 * classic.dream.step_size])
    assert all(k["ease"] == "step" for k in steps)
    shots = data["shots"]
    assert [(s["at"], s["extends"], s["transition"]["kind"]) for s in shots] == [
        (1.75, "live", "carry"), (2.75, "classic", "cut")]
    assert shots[0]["objective"] == ["features.4"]
    assert any("octaves" in n for n in notes)
    assert controls.to_json() and read_controls  # the file's own round trip is below


@pytest.mark.parametrize("content, words", [
    ("{", "is not JSON"), ('{"format": "other"}', "not a dream controls file"),
    ('{"format": "dream-controls", "version": 9}', "version 9"),
    ('{"format": "dream-controls", "version": 1, "recording": "a.mkv", "frames": 3, '
     '"changes": [{"t": 1.0, "state": {}}]}', "change 0 needs"),
])
def test_a_malformed_controls_file_is_one_line(tmp_path, content, words):
    path = tmp_path / "set.controls.json"
    path.write_text(content)
    with pytest.raises(UserError, match=words):
        read_controls(path)
    good = Controls("a.mkv", 3, [Change(0.0, state()), Change(0.5, state(strength=2.0))])
    path.write_text(good.to_json())
    assert read_controls(path) == good


# ---------------------------------------------------------------- MIDI learn
def test_midi_learn_binds_a_knob_and_a_pad_and_survives_a_restart(camera_clip, tmp_path):
    """Through a pure-Python mido backend: learn binds the next control change to a slider
    (0..127 fitted to its range) and the next note to `next`; the bindings are saved and read
    again by a new controller on the same file."""
    import fakemidi
    from renderer.live.capture import Capture
    from renderer.live.midi import MidiControl
    from renderer.live.session import LiveSession

    preset = tmp_path / "shots.yaml"
    preset.write_text("extends: live\nshots:\n  - {at: 1.0, objective: [features.9]}\n")
    mido.set_backend("fakemidi", load=True)
    session = LiveSession(Capture(str(camera_clip), SIZE), str(preset), ["live"], "cpu")
    bindings = tmp_path / "midi.yaml"
    try:
        with pytest.raises(UserError, match="cannot open MIDI port 'Nope'.*Fake Controller 1"):
            MidiControl(session, bindings).open("Nope")
        midi = MidiControl(session, bindings).open("Fake Controller 1")
        midi.learn("strength")
        fakemidi.play("Fake Controller 1", bytes([0x90, 36, 100]))  # a note: not for a slider
        assert midi.state()["learning"] == "strength"
        fakemidi.play("Fake Controller 1", bytes([0xB0, 21, 0]))  # knob 21 moves: bound
        assert midi.state() == {"learning": None, "bindings": {"ch1c21": "strength"}}
        fakemidi.play("Fake Controller 1", bytes([0xB0, 21, 127]))
        midi.inbox.settle()
        assert session.params.strength == pytest.approx(4.0)
        midi.learn("next")
        fakemidi.play("Fake Controller 1", bytes([0x99, 38, 90]))  # a pad on channel 10
        fakemidi.play("Fake Controller 1", bytes([0x99, 38, 90]))
        midi.inbox.settle()
        assert session.params.shot == 1
        midi.close()
        again = MidiControl(session, bindings).open("Fake Controller 1")
        assert again.state()["bindings"] == {"ch1c21": "strength", "ch10n38": "next"}
        fakemidi.play("Fake Controller 1", bytes([0xB0, 21, 64]))
        again.inbox.settle()
        assert session.params.strength == pytest.approx(4.0 * 64 / 127)
        fakemidi.play("Fake Controller 1", bytes([0x99, 38, 1]))
        again.inbox.settle()
        assert session.params.shot == 0  # next, after the last shot: the preset's own look
        again.close()
        bindings.write_text("ch1c21: [strength]\n")
        with pytest.raises(UserError, match="midi.yaml' cannot be read"):
            MidiControl(session, bindings)
    finally:
        session.close()
        mido.set_backend(None)


# ---------------------------------------------------------------- a virtual camera
def test_the_virtual_camera_sends_dreamed_frames(camera_clip):
    """pyvirtualcam's backend hook stands in for v4l2loopback; without a device the error is
    one line."""
    import pyvirtualcam

    from renderer.live.capture import Capture
    from renderer.live.session import LiveSession
    from renderer.live.streams import VirtualCamera

    received = []

    class Fake(pyvirtualcam.Backend):
        def __init__(self, *, width, height, fps, fourcc, device, **kwargs):
            self.size = (width, height)

        def close(self):
            pass

        def send(self, frame):
            received.append(frame.copy())

        def device(self):
            return "fake"

        def native_fourcc(self):
            return None

    pyvirtualcam.register_backend("fake", Fake)
    session = LiveSession(Capture(str(camera_clip), SIZE), "live", ["live"], "cpu")
    try:
        camera = VirtualCamera(session, SIZE, backend="fake").start()
        deadline = time.monotonic() + 60
        while len(received) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        camera.close()
        assert len(received) >= 3 and received[0].size == SIZE[0] * SIZE[1] * 3  # RGB bytes
        assert received[-1].std() > 10  # a picture
        with pytest.raises(UserError, match="no virtual camera to send to"):
            VirtualCamera(session, SIZE, backend="v4l2loopback")
    finally:
        session.close()


# ---------------------------------------------------------------- a set, end to end
def free_port(kind=socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def post(url, body):
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def until(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (value := check()):
            return value
        time.sleep(0.005)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def read_back(url, frames, *before) -> np.ndarray:
    """`frames` frames of a stream as the shipped ffmpeg decodes them: (N, H, W, 3)."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *before,
                             "-i", url, "-frames:v", str(frames), "-f", "rawvideo", "-pix_fmt",
                             "rgb24", "-"], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return np.frombuffer(result.stdout, np.uint8).reshape(-1, SIZE[1], SIZE[0], 3)


def running_with(text: str) -> list[int]:
    """Processes whose command line holds `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(
                    errors="replace"):
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def pngs(folder: Path) -> np.ndarray:
    return np.stack([cv2.imread(str(f)).astype(float) for f in sorted(folder.glob("*.png"))])


@pytest.mark.slow
def test_osc_drives_the_page_and_a_recorded_set_renders_again(camera_clip, tmp_path):
    """Issue 44's targets: `/dream/strength 0` then `3` reach /state within 200 ms; a bad
    message is one warning line; SRT and MJPEG streams are read back by the shipped ffmpeg;
    the recording's controls replay in `dream render --controls` at another size, weak where
    the control said 0 and at least 3x stronger after 3."""
    osc_port, srt_port = free_port(), free_port()
    live = subprocess.Popen(
        [sys.executable, "-m", "renderer.cli", "live", "--input", str(camera_clip), "--size",
         f"{SIZE[0]}x{SIZE[1]}", "--port", "0", "--osc", str(osc_port), "--srt",
         f"srt://127.0.0.1:{srt_port}?mode=listener", "--record-dir", str(tmp_path),
         "--print-url"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = live.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), live.stderr.read()
        until(lambda: get_json(url + "state")["frames"] >= 3, 60, "the first frames")
        assert f"OSC udp://127.0.0.1:{osc_port}" in get_json(url + "state")["inputs"]
        osc = SimpleUDPClient("127.0.0.1", osc_port)
        post(url + "record", {"on": True})
        waits = []
        for value in (0.0, 3.0):
            time.sleep(1.5)
            sent = time.monotonic()
            osc.send_message("/dream/strength", value)
            until(lambda: get_json(url + "state")["params"]["strength"] == value, 2,
                  f"strength {value} on /state")
            waits.append(time.monotonic() - sent)
            osc.send_message("/dream/strength", "loud")  # the wrong type: a warning only
        time.sleep(1.5)
        files = [Path(f) for f in post(url + "record", {"on": False})["files"]]
        assert max(waits) < 0.2, waits
        srt = read_back(f"srt://127.0.0.1:{srt_port}?mode=caller", 5)
        mjpeg = read_back(url + "stream", 5, "-f", "mpjpeg")
        assert srt.shape == mjpeg.shape == (5, SIZE[1], SIZE[0], 3)
        assert srt.std() > 10 and mjpeg.std() > 10  # pictures, not blank frames
    finally:
        live.send_signal(2)
        _, err = live.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert not running_with(f"127.0.0.1:{srt_port}")  # its ffmpeg ended with it
    warnings = [line for line in err.splitlines() if "OSC /dream/strength 'loud'" in line]
    assert len(warnings) == 2 and "must be a number" in warnings[0], err
    names = [f.name for f in files]
    assert names[0].endswith(".mkv") and names[-1].endswith(".controls.json"), names
    recording, controls = files[0], files[-1]
    final, flat = tmp_path / "final", tmp_path / "flat"
    replay = run_cli("render", recording, "--controls", controls, "--size", "128x80",
                     "--set", "encode.codec=png", "-o", final)
    assert replay.returncode == 0, replay.stderr
    reference = run_cli("render", recording, "-p", "live", "--set", "dream.step_size=0.000001",
                        "--size", "128x80", "--set", "encode.codec=png", "-o", flat)
    assert reference.returncode == 0, reference.stderr
    strength = np.abs(pngs(final) - pngs(flat)).mean(axis=(1, 2, 3))
    changes = json.loads(controls.read_text())["changes"]
    times = [c["t"] for c in changes]
    rate = len(strength) / (times[-1] + 1.5)  # frames a second of the delivered render
    weak = strength[int((times[2] - 0.5) * rate):int(times[2] * rate) - 1]
    strong = strength[int((times[2] + 0.5) * rate):]
    assert strong.mean() >= 3 * weak.mean(), (weak.round(2), strong.round(2))
    other = tmp_path / "other.controls.json"
    other.write_text(controls.read_text().replace(recording.name, "someone-else.mkv"))
    assert_user_error(run_cli("render", recording, "--controls", other, "-o",
                              tmp_path / "x.mp4"), "recorded with 'someone-else.mkv'")


@pytest.mark.slow
def test_missing_extras_and_devices_are_one_line(camera_clip):
    ndi = run_cli("live", "--input", camera_clip, "--ndi", "stage")
    assert_user_error(ndi, "NDI output is not built in", "--srt")
    bad_srt = run_cli("live", "--input", camera_clip, "--srt", "udp://1.2.3.4:5")
    assert_user_error(bad_srt, "not an SRT address")
    if not os.path.exists("/dev/snd/seq"):  # no MIDI system: ALSA's own words stay quiet
        no_midi = run_cli("live", "--input", camera_clip, "--midi", "Launch Control")
        assert_user_error(no_midi, "cannot open MIDI port 'Launch Control'", "ALSA")
    if not os.path.exists("/dev/video0"):
        camera = run_cli("live", "--input", camera_clip, "--virtual-camera")
        assert_user_error(camera, "virtual camera")
