"""Test clips made with the real ffmpeg binary (lavfi sources), and probes of rendered files."""

import re
import subprocess
from pathlib import Path

import numpy as np

from renderer.media.probe import ffmpeg_exe

FF = ffmpeg_exe()


def ffmpeg(*args):
    subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


def vfr_webm(path: Path) -> Path:
    """30 frames at 30 fps then 30 frames at 15 fps (3.0 s), with Opus audio."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30", "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=48000", "-t", "3",
           "-vf", "setpts='if(lt(N,30),N/30/TB,(30+(N-30)*2)/30/TB)'", "-fps_mode", "vfr",
           "-c:v", "libvpx-vp9", "-deadline", "realtime", "-c:a", "libopus", path)
    return path


def flash_clip(path: Path, rate="24000/1001", seconds=2.5, flash=1.5, size="128x72") -> Path:
    """Dark moving pattern with a white flash and a beep at the same instant `flash` (seconds)."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}", "-f", "lavfi", "-i",
           f"aevalsrc='if(between(t,{flash},{flash}+0.08),0.8*sin(2*PI*1000*t),0)':s=48000",
           "-t", seconds, "-vf", f"eq=brightness=-0.3,drawbox=c=white:t=fill:"
                                  f"enable='between(t,{flash},{flash}+0.03)'",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", path)
    return path


def odd_clip(path: Path) -> Path:
    """161x91 pixels (odd both ways), lossless FFV1 in Matroska, with FLAC audio."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=161x91:rate=25", "-f", "lavfi", "-i",
           "sine=frequency=330", "-t", "1.2", "-c:v", "ffv1", "-pix_fmt", "bgr0", "-c:a", "flac",
           path)
    return path


def rotated_clip(path: Path, source: Path) -> Path:
    """`source` with display-rotation metadata of 90 degrees (as phones write it)."""
    ffmpeg("-display_rotation", "90", "-i", source, "-c", "copy", path)
    return path


def info(path: Path) -> dict:
    """Duration, video size, stream codecs and decoded frame count, from the ffmpeg binary."""
    probe = subprocess.run([FF, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    text = probe.stderr
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text).groups()
    video = re.search(r"Video: (\w+).*?, (\d+)x(\d+)", text)
    audio = re.search(r"Audio: (\w+)", text)
    count = subprocess.run([FF, "-hide_banner", "-i", str(path), "-map", "0:v", "-f", "null", "-"],
                           capture_output=True, text=True).stderr
    frames = int(re.findall(r"frame=\s*(\d+)", count)[-1])
    return {"duration": int(h) * 3600 + int(m) * 60 + float(s), "vcodec": video.group(1),
            "size": (int(video.group(2)), int(video.group(3))), "frames": frames,
            "acodec": audio.group(1) if audio else None}


def video_durations(path: Path) -> tuple[float, float]:
    """(video stream duration, audio stream duration) by decoding each stream."""
    out = []
    for stream in ("0:v", "0:a"):
        r = subprocess.run([FF, "-hide_banner", "-i", str(path), "-map", stream, "-f", "null", "-"],
                           capture_output=True, text=True).stderr
        h, m, s = re.findall(r"time=(\d+):(\d+):([\d.]+)", r)[-1]
        out.append(int(h) * 3600 + int(m) * 60 + float(s))
    return tuple(out)


def brightness_per_frame(path: Path) -> np.ndarray:
    raw = subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-i", str(path), "-f",
                          "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True).stdout
    w, h = info(path)["size"]
    return np.frombuffer(raw, np.uint8).reshape(-1, h * w).mean(1)


def audio_onset(path: Path, rate=8000) -> float:
    """Seconds until the audio first gets loud."""
    raw = subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:a",
                          "-ac", "1", "-ar", str(rate), "-f", "s16le", "-"],
                         capture_output=True).stdout
    samples = np.abs(np.frombuffer(raw, np.int16).astype(np.float32))
    return float(np.argmax(samples > 0.3 * samples.max()) / rate)


# ---------------------------------------------------------------- a corpus of real-world timing
CODE_BITS = 8  # frame index drawn as 8 vertical bands (white = 1), robust to any codec


def coded_frames(count: int, size=(64, 48)) -> np.ndarray:
    """`count` RGB frames, frame i showing i in binary as bands across the picture."""
    w, h = size
    band = w // CODE_BITS
    frames = np.zeros((count, h, w, 3), np.uint8)
    for i in range(count):
        for bit in range(CODE_BITS):
            if i >> (CODE_BITS - 1 - bit) & 1:
                frames[i, :, bit * band:(bit + 1) * band] = 255
    return frames


def read_codes(rgb_frames) -> list[int]:
    """The frame index each frame shows (the inverse of coded_frames)."""
    out = []
    for rgb in rgb_frames:
        h, w = rgb.shape[:2]
        band = w // CODE_BITS
        bits = [rgb[h // 4: 3 * h // 4, b * band + band // 4: (b + 1) * band - band // 4].mean()
                > 127 for b in range(CODE_BITS)]
        out.append(sum(bit << (CODE_BITS - 1 - k) for k, bit in enumerate(bits)))
    return out


TONE = "sine=frequency=440:sample_rate=48000"


def coded_clip(path: Path, count: int, rate: str = "30", video: list = (), audio: list = (),
               size=(64, 48), tone: str | None = TONE) -> Path:
    """Encode coded_frames(count) at `rate` with the output options `video` (codec, filters,
    timing) and the lavfi audio source `tone`, as long as the video, with options `audio`."""
    w, h = size
    cmd = [FF, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-framerate", rate, "-i", "pipe:"]
    if tone:
        cmd += ["-f", "lavfi", "-i", tone, "-shortest"]
    cmd += [*map(str, video), *map(str, audio), str(path)]
    subprocess.run(cmd, input=coded_frames(count, size).tobytes(), check=True)
    return path


def decoded_codes(path: Path) -> list[int]:
    """Which source frame every frame of a rendered file shows, in presentation order."""
    w, h = info(path)["size"]
    raw = subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-i", str(path), "-map",
                          "0:v", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return read_codes(np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3))
