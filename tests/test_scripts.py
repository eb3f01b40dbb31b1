"""The benchmark scripts run end to end at a tiny size (CI smoke test; figures are not checked),
and the footage generators make what they promise."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from renderer.presets import load


def script(*args):
    result = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_bench_reports_fps_ratio_and_floor(tmp_path):
    out = script("scripts/bench.py", "samples/pan.mp4", "-p", "preview", "--size", "64x36",
                 "--frames", "12", "--naive-frames", "4", "--batch", "2", "--out",
                 tmp_path / "bench.md")
    for needle in ("| optimised | 12 |", "| naive | 4 |", "speed-up over naive", "memory floor"):
        assert needle in out
    assert (tmp_path / "bench.md").read_text().strip() == out.strip()


@pytest.mark.slow
def test_coherence_bench_prints_every_mode():
    out = script("scripts/coherence_bench.py", "samples/pan.mp4", "-p", "preview", "--size",
                 "64x36", "--frames", "16", "--batch", "1")
    for mode in ("independent", "blend", "warp", "consistent"):
        assert f"| {mode} |" in out


@pytest.mark.slow
def test_coherence_bench_measures_against_the_truth_and_its_floor(tmp_path):
    """--metric-flow truth reads the sample clip's exact motion; --floor's dream, locked to the
    picture, flickers far less than independent frames of the same strength."""
    out = script("scripts/coherence_bench.py", "samples/pan.mp4", "-p", "video", "--size",
                 "64x36", "--frames", "16", "--batch", "1", "--modes", "independent",
                 "--metric-flow", "truth", "--floor", "--set", "dream.octaves=2")
    rows = {line.split("|")[1].strip(): float(line.split("|")[2])
            for line in out.splitlines() if line.startswith("| ") and "ratio" not in line}
    assert rows["locked"] < 0.5 * rows["independent"], rows
    limited = f"locked, band-limited {load('video').flow.band_limit:g} px"  # the preset's sigma
    assert rows[limited] < rows["locked"], rows
    phone = tmp_path / "phone.mp4"
    phone.write_bytes((ROOT / "samples/pan.mp4").read_bytes())
    result = subprocess.run([sys.executable, "scripts/coherence_bench.py", phone, "--metric-flow",
                             "truth"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "no ground-truth motion" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_handheld_footage_shakes_and_is_measured_as_delivered(tmp_path):
    """The hand-held generator: a shaking camera (global motion every frame, with jitter: the
    motion changes direction), an object crossing it; the bench measures the delivered file."""
    import cv2

    from renderer.media.decode import FrameReader, index_video

    clip = tmp_path / "handheld.mp4"
    script("scripts/make_handheld_clip.py", "--out", clip, "--seconds", "1", "--size", "96x54")
    index = index_video(clip)
    assert index.count == 30 and (index.width, index.height) == (96, 54)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32)
            for f in FrameReader(index, 0, index.count, (96, 54))]
    shifts = np.array([cv2.phaseCorrelate(a, b)[0] for a, b in zip(gray, gray[1:])])
    assert np.median(np.abs(shifts).max(axis=1)) > 0.2  # the camera moves every frame
    assert (np.diff(np.sign(shifts[:, 0])) != 0).sum() >= 3  # and shakes, not only pans
    out = script("scripts/coherence_bench.py", clip, "-p", "preview", "--modes", "consistent",
                 "--batch", "1", "--delivered")
    row = next(line for line in out.splitlines() if line.startswith("| consistent |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 14 and float(cells[10]) > 0 and float(cells[12]) > 0  # ratio, KB
    assert float(cells[7]) >= 0 and float(cells[9]) >= float(cells[8])  # still mean, max, p95
    # --shake 0: a tripod (only the object moves); the steady clip that reproduces the
    # user's figures uses --shake 0.25
    still = tmp_path / "tripod.mp4"
    script("scripts/make_handheld_clip.py", "--out", still, "--seconds", "1", "--size", "96x54",
           "--shake", "0", "--noise", "0", "--flicker", "0")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32)
            for f in FrameReader(index_video(still), 0, 30, (96, 54))]
    steady = np.array([cv2.phaseCorrelate(a, b)[0] for a, b in zip(gray, gray[1:])])
    assert np.median(np.abs(steady).max(axis=1)) < 0.1  # the crossing object: ~0.05


def test_frame_strip_puts_videos_in_labelled_rows_at_the_same_frames(tmp_path):
    from renderer.media.images import read_rgb

    out = tmp_path / "strip.png"
    script("scripts/frame_strip.py", "samples/pan.mp4", "samples/pan.mp4", out, "--at", "3,4,5",
           "--height", "60", "--labels", "a,b")
    sheet = read_rgb(out)
    width = round(60 * 16 / 9)  # the sample clip is 16:9
    assert sheet.shape[1] == 3 * width and sheet.shape[0] > 2 * 60
    top, bottom = sheet[:60], sheet[sheet.shape[0] // 2:sheet.shape[0] // 2 + 60]
    assert np.array_equal(top, bottom)  # the same video, the same frames
    assert not np.array_equal(top[:, :width], top[:, width:2 * width])  # the pan moves
    bad = subprocess.run([sys.executable, "scripts/frame_strip.py", "samples/pan.mp4", out,
                          "--at", "0,9999"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    # --difference: the two frames' change as a third cell (the same frame twice: black)
    script("scripts/frame_strip.py", "samples/pan.mp4", out, "--at", "3,3", "--height", "60",
           "--difference", "4")
    cells = read_rgb(out)
    assert cells.shape[1] == 3 * width
    assert cells[:60, 2 * width:].max() == 0 and cells[:60, :width].max() > 0  # above captions
    assert "frames: pick frames below that" in bad.stderr


@pytest.mark.slow
def test_gil_bench_runs_every_stage_on_a_thread_and_in_a_process():
    out = script("scripts/gil_bench.py", "--size", "160x90", "--seconds", "0.3", "--repeat", "1",
                 "--rate", "0")
    rows = {line.split("|")[2].strip(): line for line in out.splitlines()
            if line.startswith("| 1 |")}
    assert set(rows) == {"flow", "decode", "encode"}, out
    for stage, line in rows.items():
        done = [float(v) for v in line.rstrip(" |").rsplit("|", 1)[1].split("/")]
        assert min(done) > 0, (stage, line)  # the work ran beside the launcher, both ways
    assert "median launcher rate beside each stage" in out


@pytest.mark.slow
def test_cpu_share_bench_compares_the_render_with_its_dream_calls(tmp_path):
    out = script("scripts/cpu_share_bench.py", "--end", "0.4", "--size", "64x36", "--repeat", "1",
                 "-p", "preview", "--out", tmp_path / "share.md")
    row = next(line for line in out.splitlines() if line.startswith("| 1 |"))
    calls = int(row.split("fps (")[1].split(" calls")[0])
    assert calls > 0 and float(row.split("|")[4]) > 0, row  # the dream calls replayed, a ratio
    assert (tmp_path / "share.md").read_text().strip() == out.strip()


@pytest.mark.slow
def test_round_5_benches_and_the_preset_sheet_run(tmp_path):
    """looks_bench, preset_sheet and beat_bench end to end at a tiny size."""
    out = script("scripts/looks_bench.py", "--frames", "3", "--size", "32x24", "--presets",
                 "zoom-loop")
    assert "| zoom-loop |" in out and "colourfulness" in out
    sheet = tmp_path / "sheet.png"
    out = script("scripts/preset_sheet.py", "-o", sheet, "--size", "48x32", "--zoom-seconds",
                 "0.1", "--presets", "classic", "zoom-loop")
    import cv2

    picture = cv2.imread(str(sheet))
    assert picture is not None and picture.shape[1] > 3 * 48 and "wrote" in out
    clip = tmp_path / "clip.mp4"
    song = tmp_path / "song.wav"
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_test_song import make_song

    make_song(song, bars=(2, 1, 1))
    script("scripts/make_sample_clip.py", "--out", clip, "--seconds", "2", "--size", "64x48",
           "--fps", "10")
    out = script("scripts/beat_bench.py", "--clip", clip, "--song", song, "--fps", "10",
                 "--size", "64x48", "--seconds", "1.5", "--song-start", "0", "--set",
                 "dream.steps=1", "--set", "flow.steps=1")
    assert "| clip.mp4 | song.wav | 10 |" in out and "median corr" in out


@pytest.mark.slow
def test_ladder_bench_times_and_measures_every_rung(tmp_path):
    """ladder_bench end to end at a tiny size: each rung's frames/s and look, the first rung
    the reference."""
    out = script("scripts/ladder_bench.py", "samples/pan.mp4", "--size", "64x36", "--seconds",
                 "0.5", "--rung", "video:flow.octaves=all", "--rung", "draft", "--set",
                 "dream.steps=1", "--out", tmp_path / "ladder.md")
    assert "| video:flow.octaves=all |" in out and "| draft |" in out and "| 1.00x |" in out
    assert (tmp_path / "ladder.md").read_text().strip() == out.strip()
