"""`dream render` on generated clips: timing, audio, odd sizes, rotation, bad input."""

import json

import numpy as np
import pytest

from conftest import ROOT, assert_user_error, run_cli
from renderer.render.checkpoints import work_dir
from media import (audio_onset, brightness_per_frame, ffmpeg, flash_clip, info, odd_clip,
                   rotated_clip, vfr_webm, video_durations)

FAST = ["-p", "preview", "--set", "dream.octaves=1", "--set", "dream.steps=1",
        "--set", "flow.steps=1", "--set", "video.warmup=2", "--batch", "2"]


def render(src, out, *extra):
    result = run_cli("render", src, "-o", out, *FAST, *extra)
    assert result.returncode == 0, result.stderr
    return info(out)


@pytest.mark.slow
def test_vfr_webm_keeps_duration_and_audio(tmp_path):
    src = vfr_webm(tmp_path / "vfr.webm")
    out = render(src, tmp_path / "out.mp4", "--size", "80x60")
    # 30 frames at 30 fps, then 30 frames at 15 fps: 3.0 s, shown at a constant 30 fps
    assert out["frames"] == 90
    assert abs(out["frames"] / 30 - 3.0) <= 1 / 30
    assert out["acodec"] == "aac" and out["size"] == (80, 60)
    video, audio = video_durations(tmp_path / "out.mp4")
    assert abs(video - audio) <= 1 / 30 + 0.025  # one frame, plus one AAC packet


@pytest.mark.slow
def test_ntsc_rate_flash_and_beep_stay_in_sync(tmp_path):
    """24000/1001 fps, cut with --start: the flash frame and the beep land at the same time."""
    src = flash_clip(tmp_path / "flash.mp4")
    out_path = tmp_path / "out.mkv"
    out = render(src, out_path, "--start", "0.5")
    rate = 24000 / 1001
    assert abs(out["frames"] - round(2.0 * rate)) <= 1
    flash_frame = int(np.argmax(brightness_per_frame(out_path)))
    assert abs(flash_frame / rate - 1.0) <= 1 / rate + 1e-6
    assert abs(audio_onset(out_path) - flash_frame / rate) <= 1 / rate + 0.01


@pytest.mark.slow
def test_odd_size_is_cropped_to_even_for_h264(tmp_path):
    src = odd_clip(tmp_path / "odd.mkv")
    out = render(src, tmp_path / "out.mp4")
    assert out["size"] == (160, 90)
    assert out["frames"] == 30 and out["acodec"] == "aac"


@pytest.mark.slow
def test_png_sequence_keeps_odd_size(tmp_path):
    src = odd_clip(tmp_path / "odd.mkv")
    result = run_cli("render", src, "-o", tmp_path / "frames", *FAST, "--set", "encode.codec=png")
    assert result.returncode == 0, result.stderr
    pngs = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert len(pngs) == 30 and (tmp_path / "frames" / "audio.flac").exists()
    import cv2

    assert cv2.imread(str(pngs[0])).shape == (91, 161, 3)


@pytest.mark.slow
def test_rotation_metadata_is_respected(tmp_path):
    src = flash_clip(tmp_path / "flat.mp4", rate="25", seconds=1, size="96x64")
    rotated = rotated_clip(tmp_path / "rotated.mp4", src)
    out = render(rotated, tmp_path / "out.mp4")
    assert out["size"] == (64, 96)


@pytest.mark.parametrize("codec,suffix,vcodec", [("h265", ".mp4", "hevc"),
                                                 ("prores", ".mov", "prores")])
@pytest.mark.slow
def test_other_codecs(tmp_path, codec, suffix, vcodec):
    src = odd_clip(tmp_path / "odd.mkv")
    out = render(src, tmp_path / f"out{suffix}", "--set", f"encode.codec={codec}", "--end", "0.4")
    assert out["vcodec"] == vcodec and out["frames"] == 10


@pytest.mark.slow
def test_full_chroma_encoding(tmp_path):
    """encode.chroma=444: the dream's colour detail kept (yuv444p), still H.264 with audio."""
    import subprocess

    from media import FF

    out = tmp_path / "o.mkv"
    written = render(ROOT / "samples/pan.mp4", out, "--end", "0.5", "--set", "encode.chroma=444",
                     "--set", "encode.tune=film", "--set", "encode.keyint=6")
    assert written["vcodec"] == "h264" and written["acodec"] and written["frames"] == 12
    probe = subprocess.run([FF, "-hide_banner", "-i", str(out)], capture_output=True, text=True)
    assert "yuv444p" in probe.stderr


@pytest.mark.slow
def test_truncated_video_renders_good_frames_with_a_warning(tmp_path):
    src = flash_clip(tmp_path / "full.mkv", rate="25", seconds=4)
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    result = run_cli("render", cut, "-o", tmp_path / "out.mp4", *FAST)
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "good frames" in result.stderr
    out = info(tmp_path / "out.mp4")
    assert 10 < out["frames"] < 100


# ---------------------------------------------------------------- bad input: exit 2, no output
def bad(tmp_path, src, *extra, out_name="out.mp4"):
    out = tmp_path / out_name
    result = run_cli("render", src, "-o", out, *FAST, *extra)
    return result, out


def test_missing_file(tmp_path):
    result, out = bad(tmp_path, tmp_path / "missing.mp4")
    assert_user_error(result, "does not exist")
    assert not out.exists()


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    result, out = bad(tmp_path, tmp_path / "empty.mp4")
    assert_user_error(result, "empty")
    assert not out.exists()


def test_not_a_video(tmp_path):
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 100)
    result, out = bad(tmp_path, tmp_path / "text.mp4")
    assert_user_error(result, "not a video")
    assert not out.exists()


def test_audio_only(tmp_path):
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440", "-t", "1", tmp_path / "a.m4a")
    result, out = bad(tmp_path, tmp_path / "a.m4a")
    assert_user_error(result, "audio-only")
    assert not out.exists()


@pytest.mark.slow
def test_video_with_no_frames(tmp_path):
    """An AVI whose header declares a video stream but whose every frame is empty."""
    full = tmp_path / "full.avi"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-t", "1", "-c:v", "mjpeg", full)
    data = bytearray(full.read_bytes())
    at = data.index(b"movi")
    while (at := data.find(b"00dc", at)) >= 0:  # zero each frame's payload, keep the chunks
        size = int.from_bytes(data[at + 4:at + 8], "little")
        data[at + 8:at + 8 + size] = bytes(size)
        at += 8 + size
    src = tmp_path / "noframes.avi"
    src.write_bytes(bytes(data))
    result, out = bad(tmp_path, src)
    assert_user_error(result, "no decodable video frames")
    assert not out.exists()


@pytest.mark.slow
def test_output_folder_missing(tmp_path):
    result = run_cli("render", ROOT / "samples/pan.mp4", "-o", tmp_path / "nope" / "o.mp4", *FAST)
    assert_user_error(result, "does not exist")


@pytest.mark.slow
def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep me")
    result = run_cli("render", ROOT / "samples/pan.mp4", "-o", out, *FAST)
    assert_user_error(result, "--overwrite")
    assert out.read_bytes() == b"keep me"


def test_codec_the_container_cannot_hold(tmp_path):
    result, out = bad(tmp_path, ROOT / "samples/pan.mp4", "--set", "encode.codec=prores")
    assert_user_error(result, "cannot hold codec prores", ".mov")
    assert not out.exists()


def test_segment_readers_start_exactly_where_asked(tmp_path):
    """Each segment decodes from its own first frame: the same pixels a full pass gives."""
    from renderer.media.decode import FrameReader, index_video

    index = index_video(vfr_webm(tmp_path / "vfr.webm"))
    full = list(FrameReader(index, 0, index.count, (80, 60)))
    for start in (17, 40, index.count - 1):
        part = list(FrameReader(index, start, index.count - start, (80, 60)))
        assert len(part) == index.count - start
        assert all(np.array_equal(a, b) for a, b in zip(part, full[start:]))


@pytest.mark.slow
def test_killed_render_resumes_to_identical_frames(tmp_path):
    """SIGKILL at random points after a checkpoint, --resume, and get the same PNG frames."""
    # flow.still and a hold: the checkpoint carries each pixel's age and the shot's strength
    killed_and_resumed(tmp_path, ["--set", "flow.still=3", "--set", "flow.hold=0.25"], trials=3)


def killed_and_resumed(tmp_path, extra: list, trials: int) -> None:
    """Render a 5 s clip to PNG frames; then `trials` times kill the same render at a random
    point after its first checkpoint and resume it: every frame must be the same bytes."""
    import random
    import signal
    import subprocess
    import sys
    import time

    src = flash_clip(tmp_path / "src.mp4", rate="25", seconds=5, size="96x64")
    args = [*FAST, "--set", "encode.codec=png", "--set", "video.checkpoint_every=4",
            "--set", "dream.steps=4", "--set", "flow.steps=4", *extra]
    assert run_cli("render", src, "-o", tmp_path / "ref", *args).returncode == 0
    reference = sorted((tmp_path / "ref").glob("frame_*.png"))
    assert len(reference) == 125
    rng = random.Random(7)
    for trial in range(trials):
        out = tmp_path / f"run{trial}"
        checkpoint = work_dir(tmp_path / f"run{trial}") / "checkpoint.json"
        proc = subprocess.Popen([sys.executable, "-m", "renderer.cli", "render", str(src), "-o",
                                 str(out), *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not out.exists(), "the render finished before it could be killed"
        resumed = run_cli("render", src, "-o", out, *args, "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming from step" in resumed.stderr
        frames = sorted(out.glob("frame_*.png"))
        assert [f.name for f in frames] == [f.name for f in reference]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(frames, reference))
        assert not checkpoint.parent.exists()


def test_resume_refuses_a_checkpoint_of_another_render(tmp_path):
    src = flash_clip(tmp_path / "src.mp4", rate="25", seconds=3, size="96x64")
    out = tmp_path / "o.mkv"
    parts = work_dir(tmp_path / "o.mkv")
    parts.mkdir()
    (parts / "checkpoint.json").write_text(json.dumps(
        {"fingerprint": "another render", "step": 0, "chunks": [], "state": "x", "sha256": {}}))
    result = run_cli("render", src, "-o", out, *FAST, "--resume")
    assert_user_error(result, "different render", "without --resume")
    assert not out.exists()


def test_parked_frames_are_written_in_order_off_the_loop_and_a_failed_write_is_raised(tmp_path):
    import shutil

    from renderer.render.framestore import AsyncFrameStore, FrameStore

    parked = AsyncFrameStore(FrameStore(tmp_path / "fades"), backlog=2)
    frames = [np.full((4, 6, 3), k, np.uint8) for k in range(5)]
    for k, frame in enumerate(frames):
        parked.put((0, k), frame)
    reads = [parked.get((0, k)) for k in range(5)]  # submitted after the writes: must see them
    assert all(np.array_equal(read.result(), frame) for read, frame in zip(reads, frames))
    assert parked.get((1, 0)).result() is None
    shutil.rmtree(tmp_path / "fades")  # the disk goes away under a render
    parked.put((0, 9), frames[0])
    with pytest.raises(OSError):
        parked.flush()
    parked.close()


def test_a_checkpoint_that_fails_in_the_background_stops_the_render(tmp_path, monkeypatch):
    """Checkpoints are saved off the dream loop; a full disk there must still end the render
    with the one-line error and leave no output."""
    import errno
    import os

    import torch

    from renderer.media.decode import index_video
    from renderer.engine.dream import dreamer_for
    from renderer.errors import UserError
    from renderer.presets import load
    from renderer.render.video import render_video

    src = flash_clip(tmp_path / "src.mp4", rate="25", seconds=2, size="64x48")
    preset = load("preview", ["dream.octaves=1", "dream.steps=1", "flow.steps=1",
                              "video.warmup=2", "video.checkpoint_every=3"])

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "out.mp4"
    with pytest.raises(UserError, match="No space left.*--resume"):
        render_video(index_video(src), preset, dreamer_for(preset, "cpu"), out, (64, 48),
                     batch=2)
    assert not out.exists()
