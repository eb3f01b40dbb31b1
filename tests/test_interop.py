"""Studio interop (issue 43): Deforum keyframe strings and settings files, Parseq manifests and
MIDI files in; ProRes 4444, RGBA and 16-bit PNG and EXR masters out; the classic weights
fetched from a local server. Files are made here: mido writes the MIDI, the manifests are
Parseq-shaped JSON, the Deforum strings are Deforum's documented defaults."""

import http.server
import json
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import mido
import numpy as np
import pytest

from conftest import ROOT, assert_user_error, run_cli
from media import ffmpeg
from renderer.errors import UserError
from renderer.expressions import ExpressionError
from renderer.music.schedule import Schedule, base_values, keyframe_values
from renderer.presets import Preset, load
from renderer.schedules import KeyframeString, read_schedule_file

# Deforum's defaults (deforum/args.py, DeforumAnimArgs)
DEFORUM_ZOOM = "0:(1.0025+0.002*sin(1.25*3.14*t/30))"
DEFORUM_ANGLE = "0:(0)"
DEFORUM_STRENGTH = "0: (0.65)"
DEFORUM_TRANSLATION_X = "0:(0)"
DEFORUM_NOISE = "0: (0.065)"


# ---------------------------------------------------------------- Deforum keyframe strings
def test_deforum_strings_are_read_as_deforum_reads_them():
    """Number keys are interpolated linearly, an expression key is evaluated on each frame up
    to the next key with t the frame, max_f the last frame and s the seed; sin takes radians."""
    t = np.arange(40)
    zoom = KeyframeString(DEFORUM_ZOOM).series(40, 39, 0)
    assert np.allclose(zoom, 1.0025 + 0.002 * np.sin(1.25 * 3.14 * t / 30))
    mixed = KeyframeString("0:(1.0), 30:(1.02+0.02*sin(1.25*3.14*t/30))").series(40, 39, 0)
    at30 = 1.02 + 0.02 * np.sin(1.25 * 3.14 * 30 / 30)
    assert np.allclose(mixed[:31], 1.0 + (at30 - 1.0) * t[:31] / 30)  # toward the value at 30
    assert np.allclose(mixed[30:], 1.02 + 0.02 * np.sin(1.25 * 3.14 * t[30:] / 30))
    keyed = KeyframeString("0: (0), 10: (1), 20:(2*t/max_f + s)").series(25, 24, 3)
    assert np.allclose(keyed[:11], t[:11] / 10)
    assert np.allclose(keyed[20:], 2 * t[20:25] / 24 + 3)
    assert np.allclose(keyed[10:21], np.interp(t[10:21], [10, 20], [1, 2 * 20 / 24 + 3]))
    assert np.allclose(KeyframeString("5:(2), 10:(4)").series(15, 14, 0),
                       np.interp(np.arange(15), [5, 10], [2, 4]))  # held at both ends


@pytest.mark.parametrize("text, where", [
    ("0:(1.0), 30:(1.02", "character 10"),
    ("0:(1.0), x:(2)", "character 10"),
    ("0:(wobble)", "unknown name 'wobble'"),
    ("0:(sin(2b))", "does not parse"),
    ("0:(__import__('os'))", "unknown function"),
])
def test_a_malformed_deforum_string_names_where_it_breaks(text, where):
    with pytest.raises(ExpressionError, match=where.replace("(", r"\(")):
        KeyframeString(text)


def test_deforum_strings_keep_their_own_namespace_beside_our_expressions(tmp_path):
    """In one preset, `sin(2)` of ours is a 2-second oscillator over t in seconds, and Deforum's
    sin takes radians of t in frames."""
    path = tmp_path / "both.yaml"
    path.write_text("extends: video\ntimeline:\n"
                    "  dream.step_size: '0:(0.02+0.01*sin(t))'\n"
                    "  flow.persistence: '0.5 + 0.1 * sin(2)'\n")
    p = load(str(path))
    frames = np.arange(48)
    values = Schedule(p, None, 24.0).values(frames / 24, frames, base_values(p))
    assert np.allclose(values["dream.step_size"], 0.02 + 0.01 * np.sin(frames))
    assert np.allclose(values["flow.persistence"], 0.5 + 0.1 * np.sin(2 * np.pi * frames / 48))
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: video\ntimeline:\n  dream.step_size: '0:(0.02), 12:(0.03'\n")
    with pytest.raises(UserError, match=r"bad.yaml:3.*character 11"):
        load(str(bad))


# ---------------------------------------------------------------- settings files, manifests
def parseq_manifest(path, fps=10, frames=20, **extra):
    """Parseq-shaped: rendered_frames with values and their deltas (zoom's delta is 1 +
    z[f] - z[f-1]), options.output_fps."""
    rows = []
    for f in range(frames):
        z, a, x = 1 + 0.02 * f, 1.5 * f, 4.0 * f
        rows.append({"frame": f, "zoom": z, "zoom_delta": 1.0 if f == 0 else 1.02,
                     "angle": a, "angle_delta": 0.0 if f == 0 else 1.5, "translation_x": x,
                     "translation_x_delta": 0.0 if f == 0 else 4.0, "strength": 0.5 + 0.01 * f,
                     "noise": 0.01 * f, "contrast": 1.0, **extra})
    path.write_text(json.dumps({"options": {"output_fps": fps, "bpm": 120, "cadence": 1},
                                "rendered_frames": rows}))
    return path


def test_a_parseq_manifest_drives_a_zooms_camera_and_the_carried_share(tmp_path):
    """Motion from the deltas, per frame at the manifest's rate -> per second; translation in
    pixels of schedule.size moves the picture (our pan moves the camera); strength is the
    carried share, and a zoom dreams (1 - strength) / 0.35 as hard; fields by mapping; unused
    ones noted."""
    path = parseq_manifest(tmp_path / "manifest.json")
    p = load("zoom-classic", [f"schedule.file={path}", "schedule.fields={noise: dream.step_size}",
                              "schedule.size=[400, 300]"])
    assert p.driven_targets >= {"zoom.zoom", "zoom.rotate", "zoom.pan.x", "flow.persistence",
                                "zoom.strength", "dream.step_size"}
    assert any("contrast" in note for note in p.imported().notes)
    frames = np.arange(1, 30)  # at 20 fps: the manifest's frames 0.5 .. 14.5
    values = Schedule(p, None, 20.0).values(frames / 20, frames,
                                            keyframe_values(p, frames, 20.0))
    assert np.allclose(values["zoom.zoom"][2:], 1.02 ** 10)
    assert np.allclose(values["zoom.rotate"][2:], -15.0)
    assert np.allclose(values["zoom.pan.x"][2:], -4.0 * 10 / 400)
    manifest_frame = frames / 2
    assert np.allclose(values["flow.persistence"], 0.5 + 0.01 * manifest_frame)
    assert np.allclose(values["zoom.strength"], (0.5 - 0.01 * manifest_frame) / 0.35)
    assert np.allclose(values["dream.step_size"], 0.01 * manifest_frame)


def test_a_deforum_settings_file_is_read_for_what_has_an_equivalent(tmp_path):
    path = tmp_path / "deforum_settings.txt"
    path.write_text(json.dumps({
        "W": 640, "H": 360, "fps": 15, "max_frames": 60, "seed": 7, "animation_mode": "3D",
        "zoom": DEFORUM_ZOOM, "angle": DEFORUM_ANGLE, "translation_x": DEFORUM_TRANSLATION_X,
        "translation_y": "0:(0), 30:(6)", "strength_schedule": DEFORUM_STRENGTH,
        "noise_schedule": DEFORUM_NOISE, "prompts": {"0": "a castle"}}))
    imported = read_schedule_file(path)
    t = np.arange(60)
    assert np.allclose(imported.curves["zoom.zoom"],
                       (1.0025 + 0.002 * np.sin(1.25 * 3.14 * t / 30)) ** 15)
    assert np.allclose(imported.curves["zoom.pan.y"], -np.interp(t, [0, 30], [0, 6]) * 15 / 360)
    assert np.allclose(imported.curves["flow.persistence"], 0.65)
    assert np.allclose(imported.curves["zoom.strength"], 1.0)
    notes = " ".join(imported.notes)
    assert "noise_schedule" in notes and "3D" in notes and "60 frames at 15 fps" in notes


@pytest.mark.parametrize("content, needle", [
    ("{not json", "is not JSON"),
    ('{"rendered_frames": [{"zoom": 1.0}]}', "rendered_frames[0] has no whole 'frame'"),
    ('{"rendered_frames": []}', "no rendered frames"),
    ('{"rendered_frames": [{"frame": 0, "zoom": NaN}]}', "not a finite number"),
    ('{"zoom": "0:(1.0), 5:(1.1"}', "'zoom'"),
    ('{"fps": 0, "zoom": "0:(1.0)"}', "'fps' is 0"),
    ('{"prompts": {}}', "neither a Parseq manifest"),
])
def test_a_bad_schedule_file_is_one_line_naming_it(tmp_path, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=None) as error:
        read_schedule_file(path)
    assert needle in str(error.value) and str(path) in str(error.value)


def test_a_mapped_field_the_manifest_lacks_is_refused(tmp_path):
    path = parseq_manifest(tmp_path / "m.json")
    with pytest.raises(UserError, match="no numeric field 'glow'.*noise"):
        read_schedule_file(path, {"glow": "dream.step_size"})


# ---------------------------------------------------------------- MIDI files
def midi_file(path, notes=(), controls=(), tempo=500000, later_tempo=None, channel=0):
    """A type-1 MIDI file: `notes` (beat, note, velocity), `controls` (beat, cc, value), 480
    ticks a beat at `tempo` (us a beat), switching to `later_tempo` at beat 4 if given."""
    midi = mido.MidiFile(ticks_per_beat=480)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    if later_tempo:
        conductor.append(mido.MetaMessage("set_tempo", tempo=later_tempo, time=4 * 480))
    track = mido.MidiTrack()
    events = [(b, mido.Message("note_on", note=n, velocity=v, channel=channel))
              for b, n, v in notes]
    events += [(b + 0.25, mido.Message("note_off", note=n, velocity=0, channel=channel))
               for b, n, v in notes]
    events += [(b, mido.Message("control_change", control=c, value=v, channel=channel))
               for b, c, v in controls]
    now = 0
    for beat, message in sorted(events, key=lambda e: e[0]):
        ticks = int(round(beat * 480))
        track.append(message.copy(time=ticks - now))
        now = ticks
    midi.tracks += [conductor, track]
    midi.save(str(path))
    return path


def midi_preset(path, **row) -> Preset:
    return Preset.model_validate({"extends": None, "dream": {"step_size": 0.01}, "react": [
        {"source": "midi", "file": str(path), "target": "dream.step_size", "amount": 0.03,
         "attack": 0, "release": 40, **row}]})


def test_midi_notes_pulse_at_their_frames_with_the_tempo_map(tmp_path):
    """Notes at known beats (120 BPM, then 240 from beat 4: times need the tempo map) pulse in
    the frame on screen when they sound, as high as they are played; the note filter and a
    note range keep only theirs."""
    path = midi_file(tmp_path / "hits.mid", notes=[(1, 36, 127), (3, 38, 64), (5, 36, 127),
                                                   (6.5, 40, 100)], later_tempo=250000)
    seconds = np.array([0.5, 1.5, 2.0 + 0.25, 2.0 + 0.625])
    fps = 24
    frames = np.arange(4 * fps)
    every = Schedule(midi_preset(path), None, fps).values(frames / fps, frames,
                                                         {"dream.step_size": 0.01})
    step = every["dream.step_size"] - 0.01
    own = np.floor(seconds * fps).astype(int)
    assert np.all(step[own] > 0.5 * step.max()) and np.argmax(step) in own
    assert step[own[1]] == pytest.approx(0.03 * 64 / 127, rel=0.05)  # velocity
    assert np.all(step[own + 3] < 0.5 * step[own])  # 40 ms release: gone 3 frames on
    kick = Schedule(midi_preset(path, note=36), None, fps).values(
        frames / fps, frames, {"dream.step_size": 0.01})["dream.step_size"] - 0.01
    assert kick[own[0]] > 0.02 and kick[own[2]] > 0.02 and kick[own[1]] < 1e-6
    ranged = Schedule(midi_preset(path, note="37-40"), None, fps).values(
        frames / fps, frames, {"dream.step_size": 0.01})["dream.step_size"] - 0.01
    assert ranged[own[0]] < 1e-6 and ranged[own[1]] > 0.01 and ranged[own[3]] > 0.01


def test_a_midi_controller_is_a_held_curve(tmp_path):
    path = midi_file(tmp_path / "cc.mid", controls=[(0, 1, 0), (2, 1, 127), (4, 1, 64)])
    frames = np.arange(72)
    p = midi_preset(path, cc=1, release=0)
    step = Schedule(p, None, 24).values(frames / 24, frames,
                                        {"dream.step_size": 0.01})["dream.step_size"]
    assert np.allclose(step[:23], 0.01) and np.allclose(step[25:47], 0.04)
    assert np.allclose(step[49:], 0.01 + 0.03 * 64 / 127)


@pytest.mark.parametrize("row, needle", [
    ({"source": "midi"}, "needs 'file: SONG.mid'"),
    ({"source": "onset", "file": "x.mid"}, "belong to source midi"),
    ({"source": "midi", "file": "x.mid", "note": "40-36"}, "the lower first"),
    ({"source": "midi", "file": "x.mid", "note": "kick"}, "not a MIDI note"),
    ({"source": "midi", "file": "x.mid", "note": 36, "cc": 1}, "not both"),
])
def test_a_bad_midi_row_is_refused(row, needle):
    with pytest.raises(ValueError, match=needle):
        Preset.model_validate({"react": [{"target": "dream.step_size", "amount": 0.1, **row}]})


def test_a_damaged_midi_file_is_one_line(tmp_path):
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x10\x00\x90")
    p = midi_preset(bad)
    with pytest.raises(UserError, match="broken.mid' cannot be read.*standard MIDI file"):
        Schedule(p, None, 24).values(np.arange(3) / 24, np.arange(3), {"dream.step_size": 0.01})


# ---------------------------------------------------------------- masters
def test_masters_conform_frames_and_exr_is_linear_premultiplied(tmp_path):
    import OpenEXR

    from renderer.media.encode import CODECS, conform, write_frame_file

    rgb = np.full((4, 6, 3), 128, np.uint8)
    deep = conform(rgb, CODECS["png16"])
    assert deep.dtype == np.uint16 and deep.shape == (4, 6, 4)
    assert deep[0, 0, 0] == 128 * 257 and deep[0, 0, 3] == 65535
    assert conform(deep, CODECS["h264"]).tolist() == rgb.tolist()
    frame = deep.copy()
    frame[:, 3:, 3] = 0  # transparent right half
    write_frame_file(tmp_path / "f.exr", frame)
    with OpenEXR.File(str(tmp_path / "f.exr"), separate_channels=True) as exr:
        channels = {k: v.pixels.astype(float) for k, v in exr.channels().items()}
    srgb = 128 / 255
    linear = ((srgb + 0.055) / 1.055) ** 2.4
    assert np.allclose(channels["R"][:, :3], linear, atol=1e-3)
    assert np.allclose(channels["R"][:, 3:], 0) and np.allclose(channels["A"][:, :3], 1)
    write_frame_file(tmp_path / "f.png", frame)
    back = cv2.imread(str(tmp_path / "f.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back[0, 0, 3] == 65535 and back[0, 5, 3] == 0


def decoded(path, pixel_format):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.pix_fmt, np.stack(
            [f.to_ndarray(format=pixel_format) for f in container.decode(stream)])


@pytest.mark.slow
def test_a_masked_prores_4444_master_has_the_mask_as_alpha(tmp_path):
    """Issue 43's target: `--mask left-half.png --set encode.codec=prores4444 -o out.mov`
    reads back as yuva444p* with alpha 255 on the left and 0 on the right, its colour the
    H.264 render's within 2 levels (and a lossless render's, pixel by pixel); the 16-bit PNG
    and EXR masters too."""
    clip = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=12", "-t", "1", "-pix_fmt", "yuv420p",
           clip)
    mask = np.zeros((64, 96), np.uint8)
    mask[:, :48] = 255
    cv2.imwrite(str(tmp_path / "left-half.png"), mask)
    common = [clip, "-p", "preview", "--mask", tmp_path / "left-half.png"]
    master = run_cli("render", *common, "--set", "encode.codec=prores4444", "-o",
                     tmp_path / "out.mov")
    assert master.returncode == 0, master.stderr
    assert "yuva444p" in master.stdout and "with alpha" in master.stdout
    assert run_cli("render", *common, "-o", tmp_path / "out.mp4").returncode == 0
    lossless = run_cli("render", *common, "--set", "encode.codec=png16", "-o", tmp_path / "png")
    assert lossless.returncode == 0 and "16-bit RGBA" in lossless.stdout, lossless.stdout
    pixels, rgba = decoded(tmp_path / "out.mov", "rgba64le")
    assert pixels.startswith("yuva444p")
    rgba = rgba.astype(float) / 257
    assert rgba[..., :48, 3].min() >= 253 and rgba[..., 48:, 3].max() <= 2
    _, h264 = decoded(tmp_path / "out.mp4", "rgb24")
    assert np.all(np.abs(rgba[..., :3].mean(axis=(0, 1, 2)) - h264.mean(axis=(0, 1, 2))) < 2)
    png = np.stack([cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
                    for f in sorted((tmp_path / "png").glob("frame_*.png"))]).astype(float) / 257
    assert png.shape == rgba.shape
    assert np.abs(rgba[..., :3] - png[..., :3]).mean() < 1.0
    assert np.array_equal(png[..., 3] > 127, rgba[..., 3] > 127)
    exr = run_cli("render", *common, "--set", "encode.codec=exr", "-o", tmp_path / "exr")
    assert exr.returncode == 0 and "12 EXR frames" in exr.stdout, exr.stderr
    no_folder = run_cli("render", clip, "-p", "preview", "--set", "encode.codec=exr", "-o",
                        tmp_path / "x.mov")
    assert_user_error(no_folder, "writes a folder of frames")


# ---------------------------------------------------------------- renders driven from outside
def strengths(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.abs(frames.astype(float) - reference.astype(float)).mean(axis=(1, 2, 3))


def png_frames(folder: Path) -> np.ndarray:
    return np.stack([cv2.imread(str(f)) for f in sorted(folder.glob("frame_*.png"))])


RENDER = ["-p", "preview", "--set", "encode.codec=png", "--set", "video.warmup=0",
          "--set", "dream.octaves=1", "--batch", "1"]


@pytest.mark.slow
def test_a_deforum_string_holds_the_dream_then_raises_it_at_its_frame(tmp_path):
    """Issue 43's target: `dream.step_size: "0:(0.0), 11:(0.0), 12:(0.03)"` holds the dream at
    nothing for one second of a 12 fps clip, and its strength jumps at frame 12."""
    clip = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=12", "-t", "2", "-pix_fmt", "yuv420p",
           clip)
    preset = tmp_path / "deforum.yaml"
    preset.write_text("extends: preview\ntimeline:\n"
                      "  dream.step_size: \"0:(0.0), 11:(0.0), 12:(0.03)\"\n")
    off = tmp_path / "off.yaml"
    off.write_text("extends: preview\ntimeline:\n  dream.step_size: \"0:(0.0)\"\n")
    for name, path in (("on", preset), ("off", off)):
        r = run_cli("render", clip, *RENDER, "-p", path, "-o", tmp_path / name)
        assert r.returncode == 0, r.stderr
    strength = strengths(png_frames(tmp_path / "on"), png_frames(tmp_path / "off"))
    assert strength[:12].max() < 0.5, strength
    assert strength[12] > 3 and int(np.argmax(strength > 1.5)) == 12, strength


@pytest.mark.slow
def test_midi_notes_pulse_a_render_and_a_zoom_at_their_frames(tmp_path):
    """Issue 43's target: notes at known times give strength pulses at those frames (within
    one frame), in a render and in a zoom."""
    notes = [(1.0, 36, 127), (2.5, 36, 127)]  # beats at 120 BPM: 0.5 s and 1.25 s
    hits = np.array([12, 30])  # at 24 fps
    midi = midi_file(tmp_path / "hits.mid", notes=notes)
    preset = tmp_path / "midi.yaml"
    preset.write_text(f"extends: preview\ndream: {{step_size: 0.002}}\nreact:\n"
                      f"  - {{source: midi, file: '{midi}', note: 36, target: dream.step_size, "
                      f"amount: 0.05, attack: 0, release: 40}}\n")
    clip = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24", "-t", "1.75", "-pix_fmt",
           "yuv420p", clip)
    for name, path in (("on", preset), ("off", "preview")):
        r = run_cli("render", clip, *RENDER, "-p", path, "--set", "dream.step_size=0.002",
                    "-o", tmp_path / name)
        assert r.returncode == 0, r.stderr
    added = np.diff(strengths(png_frames(tmp_path / "on"), png_frames(tmp_path / "off")),
                    prepend=0)
    peaks = np.sort(np.argsort(added)[-2:])
    assert np.all(np.abs(peaks - hits) <= 1), (peaks, added.round(2))
    zoom = run_cli("zoom", "-p", "zoom-classic", "--set", f"react={preset_rows(midi)}",
                   "--set", "zoom.keyframes=[{t: 0, zoom: 1.0}]", "--set", "dream.octaves=1",
                   "--set", "zoom.steps=1", "--set", "dream.step_size=0.002", "--seconds", "1.75",
                   "--fps", "24", "--size", "48x48", "--set", "encode.crf=0", "--seed", "3",
                   "-o", tmp_path / "zoom.mp4")
    assert zoom.returncode == 0, zoom.stderr
    _, frames = decoded(tmp_path / "zoom.mp4", "rgb24")
    change = np.abs(np.diff(frames.astype(float), axis=0)).mean(axis=(1, 2, 3))
    peaks = np.sort(np.argsort(change)[-2:]) + 1  # the change into frame k
    assert np.all(np.abs(peaks - hits) <= 1), (peaks, change.round(2))


def preset_rows(midi) -> str:
    return (f"[{{source: midi, file: '{midi}', note: 36, target: dream.step_size, "
            "amount: 0.05, attack: 0, release: 40}]")


# ---------------------------------------------------------------- the classic weights
class _Server:
    """http.server on 127.0.0.1 serving a folder; /cut/NAME sends half of NAME and hangs up."""

    def __init__(self, folder: Path):
        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):
                if self.path.startswith("/cut/"):
                    data = (folder / self.path[5:]).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[:len(data) // 2])
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _limit_file_size():  # a full disk, as the writer sees it: every write past 1 MB fails
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


@pytest.mark.slow
def test_models_fetch_checks_the_hash_and_keeps_nothing_bad(tmp_path):
    """`dream models fetch` against a local server: a good file lands in the cache `dream
    models` reads; a tampered file exits 2 naming the hash, a cut connection, a refused one and
    a full disk exit 2 in one line; none leaves a file."""
    from renderer.engine.models import MODELS

    real = MODELS["mobilenet_v2"].weights_file()  # the offline package's torchvision file
    served = tmp_path / "served"
    served.mkdir()
    (served / real.name).write_bytes(real.read_bytes())
    tampered = served / "googlenet-1378be20.pth"
    tampered.write_bytes(np.random.default_rng(0).bytes(200_000))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    env = {"TORCH_HOME": str(tmp_path / "torch")}
    server = _Server(served)
    try:
        bad = run_cli("models", "fetch", "googlenet", "--url", tampered, env=env)
        assert_user_error(bad, "not googlenet-1378be20.pth", "1378be20", "nothing was kept")
        cut = run_cli("models", "fetch", "mobilenet_v2", "--url",
                      f"{server.url}/cut/{real.name}", env=env)
        assert_user_error(cut, "b0353104")
        refused = run_cli("models", "fetch", "googlenet", "--url", "http://127.0.0.1:1/g.pth",
                          env=env)
        assert_user_error(refused, "could not download", "download.pytorch.org", str(cache))
        full = subprocess.run([sys.executable, "-m", "renderer.cli", "models", "fetch",
                               "mobilenet_v2", "--url", f"{server.url}/{real.name}"],
                              cwd=ROOT, env={**__import__("os").environ, **env},
                              capture_output=True, text=True, preexec_fn=_limit_file_size)
        assert_user_error(full, "could not write", "free some disk space")
        assert not cache.exists() or not any(cache.iterdir()), list(cache.iterdir())
        good = run_cli("models", "fetch", "mobilenet_v2", "--url", f"{server.url}/{real.name}",
                       env=env)
        assert good.returncode == 0, good.stderr
        assert (cache / real.name).read_bytes() == real.read_bytes()
        assert [p.name for p in cache.iterdir()] == [real.name]
        listed = run_cli("models", env=env)
        assert any(line.split()[:2] == ["mobilenet_v2", "cached"]
                   for line in listed.stdout.splitlines() if line.strip()), listed.stdout
    finally:
        server.close()


# ---------------------------------------------------------------- the README's examples
def readme_block(after: str, language: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"```{language}\n", text.index(after)) + len(language) + 4
    return text[start:text.index("```", start)]


def readme_yaml(name: str) -> str:
    """The README's YAML example that begins with the comment `# NAME`."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"```yaml\n# {name}\n") + len("```yaml\n")
    return text[start:text.index("```", start)]


@pytest.mark.slow
def test_the_readme_interop_examples_run(tmp_path):
    """Each door of the README's interop section, as written there, on files made here (at a
    small size, with a local server standing in for download.pytorch.org)."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=12", "-t", "1", "-pix_fmt", "yuv420p",
           tmp_path / "clip.mp4")
    (tmp_path / "deforum-strength.yaml").write_text(readme_yaml("deforum-strength.yaml"))
    (tmp_path / "kick.yaml").write_text(readme_yaml("kick.yaml"))
    midi_file(tmp_path / "beat.mid", notes=[(b, 36, 120) for b in range(4)],
              controls=[(0, 1, 0), (1, 1, 127)])
    parseq_manifest(tmp_path / "manifest.json")
    mask = np.zeros((64, 96), np.uint8)
    mask[:, :48] = 255
    cv2.imwrite(str(tmp_path / "left-half.png"), mask)
    served = tmp_path / "served"
    served.mkdir()
    (served / "googlenet-1378be20.pth").write_bytes(b"not the weights")
    server = _Server(served)
    env = {"TORCH_HOME": str(tmp_path / "torch")}
    small = ["--size", "64x48", "--set", "dream.octaves=1"]
    try:
        commands = [line.split("#")[0].split() for line in
                    readme_block("interop-examples", "bash").splitlines() if line.strip()]
        assert len(commands) == 5
        for command in commands:
            assert command[0] == "dream"
            args = command[1:]
            if args[:2] == ["models", "fetch"]:  # the real address is not reachable here
                result = run_cli(*args, "--url", f"{server.url}/googlenet-1378be20.pth",
                                 cwd=tmp_path, env=env)
                assert_user_error(result, "1378be20", "nothing was kept")
                continue
            result = run_cli(*args, *small, cwd=tmp_path, env=env)
            assert result.returncode == 0, (args, result.stderr)
            assert "wrote" in result.stdout, result.stdout
        assert "yuva444p" in run_cli("render", "clip.mp4", "-o", "master.mov", "--mask",
                                     "left-half.png", "--set", "encode.codec=prores4444",
                                     *small, "--overwrite", cwd=tmp_path).stdout
    finally:
        server.close()
