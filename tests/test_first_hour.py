"""What a new user hits in the first hour (issue 46): commands in a shell's background, the
queue's words, `dream audio`'s window, the looks, `--layer` and `--version`."""

import os
import subprocess
import sys
import threading

from conftest import ROOT, run_cli
from media import flash_clip

FAST = ["-p", "preview", "--size", "64x36", "--set", "dream.octaves=1", "--set", "dream.steps=0",
        "--set", "flow.steps=0", "--set", "video.warmup=2"]

# A session leader that owns a terminal and stays its foreground, then starts `dream ...` in a
# process group of its own: exactly `dream ... &` typed into an interactive shell.
_SHELL = r"""
import fcntl, os, signal, subprocess, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
job = subprocess.Popen([sys.executable, "-m", "renderer.cli", *sys.argv[1:]], process_group=0)
assert os.tcgetpgrp(0) != os.getpgid(job.pid)
_, status = os.waitpid(job.pid, os.WUNTRACED)
if os.WIFSTOPPED(status):
    print("STOPPED by signal", os.WSTOPSIG(status), flush=True)
    os.kill(job.pid, signal.SIGKILL)
    os.waitpid(job.pid, 0)
    sys.exit(99)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_in_terminal_background(*args, timeout=300):
    """Run `dream *args` as a background job of an interactive terminal; (exit code, what the
    terminal showed). A job that touches the terminal is stopped (SIGTTOU/SIGTTIN): code 99."""
    master, slave = os.openpty()
    leader = subprocess.Popen([sys.executable, "-c", _SHELL, *map(str, args)], cwd=ROOT,
                              stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    shown = []

    def drain():  # a terminal nobody reads fills up and blocks its writers
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            shown.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        code = leader.wait(timeout=timeout)
    finally:
        leader.kill()
        reader.join(timeout=5)
        os.close(master)
    return code, b"".join(shown).decode(errors="replace")


def test_a_render_in_the_background_of_a_terminal_finishes(tmp_path):
    """Item 1: `dream render clip.mp4 -o out.mp4 &` gave `Stopped (tty output)` for good: the
    probe's ffmpeg set the terminal up for its keyboard commands."""
    clip = flash_clip(tmp_path / "clip.mp4", seconds=1, flash=0.5, size="64x36")
    out = tmp_path / "out.mp4"
    code, shown = run_in_terminal_background("render", clip, "-o", out, *FAST)
    assert code == 0, shown
    assert out.stat().st_size > 0


def test_dream_audio_shows_progress_and_plots_the_clips_window(tmp_path):
    """Item 3: `dream audio` was silent for a minute and always plotted the whole song."""
    import json

    sys.path.insert(0, str(ROOT / "scripts"))
    from make_test_song import make_song

    song = tmp_path / "song.wav"
    make_song(song, bars=(2, 1, 2))
    clip = flash_clip(tmp_path / "clip.mp4", seconds=1.5, flash=0.5, size="64x36")
    out, data = tmp_path / "plot.png", tmp_path / "plot.json"
    r = run_cli("audio", song, "-o", out, "-p", "music-video", "--clip", clip, "--start", "2",
                "--json", data, env={"DREAM_PROGRESS": "1",
                                     "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    assert "listening" in r.stderr and "beats" in r.stderr, r.stderr
    assert "showing 2.0-3.5 s" in r.stdout, r.stdout
    for curve in json.loads(data.read_text())["parameters"].values():
        assert curve["t"][0] == 2.0 and abs(curve["t"][-1] - 3.5) < 0.05, curve["t"][-1]
    r = run_cli("audio", song, "-o", tmp_path / "b.png", "--start", "3", "--end", "2")
    assert r.returncode == 2 and "--end 2 is not after --start 3" in r.stderr, r.stderr


def test_shot_labels_that_would_overlap_go_on_separate_rows():
    from renderer.music.plot import label_rows

    shots = [(10.0, "shot 1: objective"), (10.5, "shot 2: dream.step_size"),
             (11.0, "shot 3: zoom.zoom"), (100.0, "shot 4: objective")]
    rows = label_rows(shots, (0.0, 120.0))
    assert rows[:3] == [0, 1, 2] and rows[3] == 0
    assert label_rows(shots, (9.0, 12.0))[:3] == [0, 0, 0]  # zoomed in: room on one row
    assert label_rows(shots[:1] + shots[3:], (0.0, 120.0)) == [0, 0]


def test_version_matches_the_package():
    import tomllib

    r = run_cli("--version")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert r.returncode == 0 and r.stdout.strip() == f"dream {version}", r.stdout


def test_layer_picks_the_look_that_dream_layers_showed(tmp_path):
    """Item 5: after `dream layers` the user had to guess `--set objective=features.13`."""
    picture = ROOT / "samples" / "astronaut.jpg"
    small = ["--size", "48x48", "--set", "dream.octaves=1", "--set", "dream.steps=2"]
    r = run_cli("layers", picture, "-o", tmp_path / "sheet.png", "--layers",
                "features.4,features.13", "--cell", "48", *small[2:])
    assert r.returncode == 0, r.stderr
    assert "features.13: dream render CLIP.mp4 -o OUT.mp4 -p video --layer features.13" \
        in r.stdout, r.stdout
    by_layer, by_set = tmp_path / "a.png", tmp_path / "b.png"
    assert run_cli("image", picture, "-o", by_layer, *small, "--layer",
                   "features.8").returncode == 0
    assert run_cli("image", picture, "-o", by_set, *small, "--set",
                   "objective=features.8").returncode == 0
    other = tmp_path / "c.png"
    assert run_cli("image", picture, "-o", other, *small).returncode == 0
    assert by_layer.read_bytes() == by_set.read_bytes() != other.read_bytes()
    r = run_cli("image", picture, "-o", tmp_path / "d.png", *small, "--layer", "features.99")
    assert r.returncode == 2 and "features.99" in r.stderr, r.stderr
    r = run_cli("render", "x.mp4", "-o", tmp_path / "e.mp4", "--layer", " ,")
    assert r.returncode == 2 and "--layer" in r.stderr and "names no layer" in r.stderr
    for command in ("render", "zoom", "image"):
        assert "--layer" in run_cli(command, "--help").stdout
