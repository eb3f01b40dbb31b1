"""Real-world timing: clips with the quirks other programs write, each frame carrying its index,
rendered with a dream of zero steps (so every output frame shows one source frame as it was).

For each clip: which source frame every output frame shows (all of them, in order, none
dropped), the output's frame count and rate, its duration, and the audio against the picture (a
beep at a known source frame must land on that frame)."""

import math
from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import assert_user_error, run_cli
from media import TONE, audio_onset, coded_clip, decoded_codes, ffmpeg, info, read_codes

RENDER = ["-p", "preview", "--set", "dream.steps=0", "--set", "flow.steps=0", "--set",
          "dream.octaves=1", "--set", "video.warmup=2", "--set", "encode.crf=0", "--batch", "2"]
BEEP = 1.5  # seconds into the source's audio


BEEPING = f"aevalsrc='if(between(t,{BEEP},{BEEP}+0.08),0.8*sin(2*PI*1000*t),0)':s=48000"


def vfr_time(n: int) -> float:
    """Frame n of the VFR clip: 29.97 fps with jitter, and a 0.53 s gap after frame 29."""
    return (n + (16 if n >= 30 else 0)) / (30000 / 1001) + 0.004 * math.sin(n)


CLIPS = {
    # name: (count, input rate, video options, audio codec, suffix, frame times or None);
    # clips whose audio codec can hold it beep at BEEP seconds
    "h264_bframes_mp4": (60, "30", ["-c:v", "libx264", "-bf", "3", "-g", "12", "-pix_fmt",
                                    "yuv420p"], ["-c:a", "aac"], ".mp4", None),
    "h264_bframes_avi": (48, "30", ["-c:v", "libx264", "-bf", "3", "-pix_fmt", "yuv420p"],
                         ["-c:a", "ac3"], ".avi", None),
    "xvid_avi_23976": (48, "24000/1001", ["-c:v", "mpeg4", "-bf", "2", "-q:v", "3", "-vtag",
                                          "XVID"], ["-c:a", "ac3"], ".avi", None),
    "mjpeg_avi": (40, "15", ["-c:v", "mjpeg", "-q:v", "3"], ["-c:a", "pcm_s16le"], ".avi", None),
    "vfr_phone_2997": (60, "30000/1001", [
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-fps_mode", "vfr", "-video_track_timescale",
        "30000", "-vf", "setpts='(N+if(gte(N,30),16,0))/(30000/1001)/TB+0.004*sin(N)/TB'"],
        ["-c:a", "aac"], ".mp4", vfr_time),
    "webm_no_duration": (60, "30", ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-deadline",
                                    "realtime", "-live", "1"],
                         ["-c:a", "libopus"], ".webm", None),
    "mkv_offset": (60, "30", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-output_ts_offset",
                              "2"], ["-c:a", "flac"], ".mkv", None),
}


def render(src, out, *extra):
    result = run_cli("render", src, "-o", out, *RENDER, *extra)
    assert result.returncode == 0, result.stderr
    return result


def output_rate(path) -> Fraction:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return Fraction(stream.guessed_rate or stream.average_rate)


def check_every_frame_shown(codes, count):
    assert codes == sorted(codes), "frames out of order"
    missing = sorted(set(range(count)) - set(codes))
    assert not missing, f"source frames never shown: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CLIPS))
def test_every_frame_on_its_own_slot_at_the_source_rate(tmp_path, name):
    count, rate, video, audio, suffix, times = CLIPS[name]
    beeps = suffix != ".avi"
    src = coded_clip(tmp_path / f"src{suffix}", count, rate, video, audio,
                     tone=BEEPING if beeps else TONE)
    out = tmp_path / "out.mp4"
    render(src, out)
    codes = decoded_codes(out)
    check_every_frame_shown(codes, count)
    nominal = Fraction(rate)
    assert output_rate(out) == nominal
    if times is None:
        assert len(codes) == count and codes == list(range(count))
        source_seconds = count / nominal
    else:  # gaps are held: each frame fills the slots until the next one is due
        source_seconds = times(count - 1) - times(0) + 1 / nominal
        assert abs(len(codes) - source_seconds * nominal) <= 1
    frame = 1 / float(nominal)
    assert abs(info(out)["duration"] - float(source_seconds)) <= frame + 0.03
    if beeps:  # the frame on screen when the beep sounds in the source
        due = max(n for n in range(count) if (times or (lambda k: k / float(nominal)))(n)
                  <= BEEP + 1e-6)
        slot = int(audio_onset(out) / frame + 1e-6)
        assert due in codes[max(0, slot - 1):slot + 2], (due, codes[slot - 1:slot + 2])


@pytest.mark.slow
def test_a_cut_keeps_the_audio_in_sync(tmp_path):
    count, rate, video, audio, suffix, _ = CLIPS["h264_bframes_mp4"]
    src = coded_clip(tmp_path / f"src{suffix}", count, rate, video, audio, tone=BEEPING)
    out = tmp_path / "cut.mp4"
    render(src, out, "--start", "1", "--end", "1.9")
    codes = decoded_codes(out)
    assert codes == list(range(30, 57))
    assert abs(audio_onset(out) - (BEEP - 1)) <= 1 / 30 + 0.01


@pytest.mark.slow
def test_forced_rate_picks_frames_by_timestamp(tmp_path):
    src = coded_clip(tmp_path / "src.mp4", 60, "30", ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
                     tone=None)
    out = tmp_path / "out.mp4"
    render(src, out, "--fps", "15")
    assert output_rate(out) == 15
    assert decoded_codes(out) == list(range(0, 60, 2))


@pytest.mark.slow
def test_portrait_clip_with_a_rotation_matrix(tmp_path):
    flat = coded_clip(tmp_path / "flat.mp4", 20, "25", ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
                      tone=None)
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", flat, "-c", "copy", rotated)
    out = tmp_path / "out.mp4"
    render(rotated, out)
    assert info(out)["size"] == (48, 64)
    with av.open(str(out)) as container:  # turned back, the bands read as the frame index
        frames = [np.rot90(f.to_ndarray(format="rgb24"), -1) for f in container.decode(video=0)]
    assert read_codes(frames) == list(range(20))


@pytest.mark.slow
def test_one_frame_clip(tmp_path):
    src = coded_clip(tmp_path / "one.mp4", 1, "25", ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
                     tone=None)
    out = tmp_path / "out.mp4"
    render(src, out)
    assert decoded_codes(out) == [0]


@pytest.mark.slow
def test_a_stream_whose_last_packets_are_cut_off(tmp_path):
    src = coded_clip(tmp_path / "full.mp4", 90, "30", ["-c:v", "libx264", "-pix_fmt", "yuv420p",
                                                       "-g", "10", "-movflags", "+faststart"],
                     tone=None)
    cut = tmp_path / "cut.mp4"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out.mp4"
    result = render(cut, out)
    assert "warning:" in result.stderr and "good frames" in result.stderr
    codes = decoded_codes(out)
    assert 10 < len(codes) < 90 and codes == list(range(len(codes)))


# ---------------------------------------------------------------- the user's song, rate and size
def song(path, beep_at=0.5, seconds=3.0):
    ffmpeg("-f", "lavfi", "-i", f"aevalsrc='if(between(t,{beep_at},{beep_at}+0.08),"
           f"0.8*sin(2*PI*1000*t),0)':s=48000", "-t", seconds, "-c:a", "aac", path)
    return path


@pytest.mark.slow
def test_render_puts_a_song_under_the_picture(tmp_path):
    src = coded_clip(tmp_path / "src.mp4", 60, "30", ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
                     ["-c:a", "aac"], tone=None)
    tune = song(tmp_path / "song.m4a", beep_at=1.0)
    out = tmp_path / "out.mp4"
    render(src, out, "--audio", tune, "--audio-start", "0.5")
    assert info(out)["acodec"] == "aac"
    assert abs(audio_onset(out) - 0.5) <= 1 / 30 + 0.01
    mixed = tmp_path / "mixed.mkv"
    render(src, mixed, "--audio", tune, "--audio-mix", "0.5")
    assert abs(audio_onset(mixed) - 1.0) <= 1 / 30 + 0.01
    assert_user_error(run_cli("render", src, "-o", tmp_path / "x.mp4", *RENDER, "--audio-mix",
                              "0.3"), "--audio")


@pytest.mark.slow
def test_copied_audio_says_why_it_was_re_encoded(tmp_path):
    src = coded_clip(tmp_path / "src.mkv", 60, "30", ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
                     ["-c:a", "flac"])
    result = render(src, tmp_path / "cut.mkv", "--start", "0.5", "--set", "encode.audio=copy")
    assert "re-encoded as AAC" in result.stderr and "cut at 0.500" in result.stderr
    result = render(src, tmp_path / "whole.mkv", "--set", "encode.audio=copy")
    assert "re-encoded" not in result.stderr
    assert info(tmp_path / "whole.mkv")["acodec"] == "flac"


@pytest.mark.slow
def test_zoom_as_long_as_the_song(tmp_path):
    tune = song(tmp_path / "song.m4a", seconds=2.0)
    out = tmp_path / "z.mp4"
    zoom = ["zoom", "-o", out, "--size", "32x32", "--fps", "10", "--set", "zoom.steps=0"]
    r = run_cli(*zoom, "--audio", tune, "--fit", "audio")
    assert r.returncode == 0, r.stderr
    assert abs(info(out)["duration"] - 2.0) <= 0.1 and info(out)["frames"] == 20
    assert_user_error(run_cli(*zoom, "--fit", "audio", "--overwrite"), "--audio")
    assert_user_error(run_cli(*zoom, "--overwrite"), "--seconds")


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_animated_outputs(tmp_path, suffix):
    src = coded_clip(tmp_path / "src.mp4", 20, "10", ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
                     tone=None)
    out = tmp_path / f"out{suffix}"
    result = render(src, out)
    pixels = "palette, " if suffix == ".gif" else ""  # (a WebP's is read from its RIFF chunks)
    assert f"wrote {out}: 20 frames, 64x48, 10.000 fps, 2.00 s, {pixels}no audio" in result.stdout
    if suffix == ".gif":  # (FFmpeg reads no animated WebP back)
        with av.open(str(out)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert read_codes(frames) == list(range(20))
    loop = tmp_path / f"loop{suffix}"
    r = run_cli("zoom", "-o", loop, "-p", "zoom-loop", "--size", "32x32", "--fps", "8",
                "--seconds", "1", "--set", "zoom.steps=0")
    assert r.returncode == 0, r.stderr
    assert loop.stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("fit, corner", [("crop", 255), ("pad", 0), ("stretch", 255)])
def test_size_of_another_aspect_keeps_the_picture(tmp_path, fit, corner):
    """A white 64x48 picture into 32x32: crop and stretch fill it, pad adds black bars."""
    src = tmp_path / "white.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=white:size=64x48:rate=10", "-t", "0.5", "-c:v", "libx264",
           "-pix_fmt", "yuv444p", "-crf", "0", src)
    out = tmp_path / "out.mkv"
    result = render(src, out, "--size", "32x32", "--fit-size", fit)
    assert "note: the 64x48 picture is" in result.stderr
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape == (32, 32, 3)
    assert abs(int(frame[1, 16].mean()) - corner) < 40 and frame[16, 16].mean() > 200


@pytest.mark.slow
def test_wrote_line_describes_the_file(tmp_path):
    src = coded_clip(tmp_path / "src.mp4", 25, "24000/1001", ["-c:v", "libx264", "-pix_fmt",
                                                              "yuv420p"], ["-c:a", "aac"])
    out = tmp_path / "out.mp4"
    result = render(src, out, "--size", "35x24")
    assert f"wrote {out}: 25 frames, 34x24, 23.976 fps, 1.04 s, yuv420p, aac" in result.stdout


def test_listings_go_to_stdout_and_pipes_end_quietly(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import ROOT

    listed = run_cli("presets", "list")
    assert listed.returncode == 0 and "zoom-loop" in listed.stdout and "│" not in listed.stdout
    assert str(ROOT / "presets" / "zoom-loop.yaml") in listed.stdout  # full paths, uncut
    piped = subprocess.run(f"'{sys.executable}' -m renderer.cli presets show preview | head -1",
                           shell=True, cwd=ROOT, capture_output=True, text=True)
    assert piped.stderr == "" and piped.stdout.startswith("name:")
    db = tmp_path / "q.db"
    run_cli("queue", "--db", db, "add", "zoom", "-o", tmp_path / "z.mp4", "--seconds", "1")
    jobs = json.loads(run_cli("queue", "--db", db, "list", "--json").stdout)
    assert jobs[0]["kind"] == "zoom" and jobs[0]["state"] == "queued"
    assert json.loads(run_cli("queue", "--db", db, "show", "1", "--json").stdout)["id"] == 1


@pytest.mark.slow
def test_progress_reads_frames_per_second_and_shows_the_finish(tmp_path):
    src = coded_clip(tmp_path / "src.mp4", 20, "10", ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
                     tone=None)
    result = run_cli("render", src, "-o", tmp_path / "o.mp4", *RENDER,
                     env={"DREAM_PROGRESS": "1", "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "frames/s" in result.stderr and "fps/s" not in result.stderr
    assert "finishing" in result.stderr


def test_colour_is_upsampled_smoothly_not_in_2x2_blocks(tmp_path):
    """A 4:2:0 file's colour comes at half size; decoded frames interpolate it as players do.
    swscale's direct conversion repeats each colour sample over two pixels, a staircase that
    stays put while the picture pans and reads as flicker."""
    from renderer.media.decode import FrameReader, index_video

    ramp = np.zeros((32, 64, 3), np.uint8)
    ramp[..., 0] = np.linspace(40, 220, 64)[None]  # red rises, blue falls: colour, not light
    ramp[..., 2] = np.linspace(220, 40, 64)[None]
    ramp[..., 1] = 120
    raw = tmp_path / "ramp.rgb"
    raw.write_bytes(ramp.tobytes() * 2)
    clip = tmp_path / "ramp.mp4"
    ffmpeg("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x32", "-r", "24", "-i", raw,
           "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", clip)
    index = index_video(clip)
    red = next(FrameReader(index, 0, 1, (64, 32)))[16, 8:56, 0].astype(float)
    steps = np.abs(np.diff(red))
    within, across = steps[0::2].mean(), steps[1::2].mean()  # pixel pairs sharing a sample
    assert min(within, across) > 0.5 * max(within, across), (within, across)
