"""Encoding with ffmpeg-python: chunk writers, then one concat + audio mux into the output.

A render writes its frames as chunk files (one encoder per segment and checkpoint stretch) into
a work folder beside the output; `finalize` joins them (stream copy), muxes the audio trimmed
to the rendered span, writes a temporary file and renames it over the output. A crash never
leaves a half-written output.
"""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import ffmpeg
import numpy as np

from renderer.errors import UserError
from renderer.media.probe import ffmpeg_exe
from renderer.outputs import (atomic_path, check_name, check_output, publish, remove_owned_folder,
                              write_manifest)
from renderer.presets import EncodeSection


@dataclass(frozen=True)
class Codec:
    args: dict  # ffmpeg output options
    containers: tuple[str, ...]
    even: bool  # chroma subsampling needs even width and height


CODECS = {
    "h264": Codec({"vcodec": "libx264", "pix_fmt": "yuv420p"}, (".mp4", ".mkv", ".mov"), True),
    "h265": Codec({"vcodec": "libx265", "pix_fmt": "yuv420p", "tag:v": "hvc1",
                   "x265-params": "log-level=error"}, (".mp4", ".mkv", ".mov"), True),
    "prores": Codec({"vcodec": "prores_ks", "profile:v": 3, "pix_fmt": "yuv422p10le"},
                    (".mov", ".mkv"), True),
    "png": Codec({}, ("",), False),
}
AUDIO_FOR = {".mp4": "aac", ".mov": "aac", ".mkv": "copy"}


def check_video_output(path: str | Path, settings: EncodeSection, overwrite: bool,
                       inputs=()) -> Path:
    """Refuse what cannot work before any frame is dreamed: a container that cannot hold the
    codec, an output that is an input, a folder that is not ours, a missing ffmpeg binary."""
    path = check_name(Path(path))
    codec = CODECS[settings.codec]
    suffix = path.suffix.lower()
    if suffix in ANIMATED and settings.codec != "png":  # encoded from the chunks at the end
        codec = Codec(codec.args, ANIMATED, codec.even)
    if settings.codec == "png" and suffix:
        raise UserError(f"codec png writes a folder of frames: give an output folder name "
                        f"without an extension, not '{path.name}'")
    if suffix not in codec.containers:
        fits = ", ".join(c for c in codec.containers if c) or "a folder"
        raise UserError(f"a {suffix or 'folder'} output cannot hold codec {settings.codec}: "
                        f"use {fits}, or another codec with --set encode.codec=...")
    check_output(path, overwrite, inputs, folder_output=settings.codec == "png")
    ffmpeg_exe(settings.ffmpeg)
    return path


def _video_args(settings: EncodeSection) -> dict:
    """The encoder's options for a chunk (a stream tag is set when the chunks are joined:
    NUT refuses MP4's tags)."""
    args = {k: v for k, v in CODECS[settings.codec].args.items() if k != "tag:v"}
    if settings.codec in ("h264", "h265"):
        args.update(crf=settings.crf, preset=settings.speed)
        if settings.tune:
            args["tune"] = settings.tune
        if settings.keyint:
            args["g"] = settings.keyint
        if settings.chroma == "444":
            args["pix_fmt"] = "yuv444p"
    return args


class ChunkWriter:
    """Pipes RGB frames into one ffmpeg process writing one chunk file of the output (or, for
    codec png, into numbered PNG files in a folder, numbered by the output's slots)."""

    def __init__(self, path: Path, size: tuple[int, int], rate: Fraction,
                 settings: EncodeSection, first_slot: int = 0, threads: int = 0):
        self.path, self.size, self.settings = path, size, settings
        self.threads = threads  # encoder threads (0: the encoder's own choice)
        self.slot = first_slot
        self.frames = 0
        self.files: list[Path] = []  # what this writer has written (for checkpoint checksums)
        self.proc = None
        self.rate = rate
        if settings.codec == "png":
            path.mkdir(parents=True, exist_ok=True)

    def _start(self) -> None:
        """Start ffmpeg at the first frame, so a writer that gets no frames leaves no file."""
        settings, path, rate = self.settings, self.path, self.rate
        w, h = self.size
        stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}",
                              framerate=f"{rate.numerator}/{rate.denominator}")
        if CODECS[settings.codec].even and (w % 2 or h % 2):
            stream = stream.filter("crop", w - w % 2, h - h % 2, 0, 0)  # no resampling
        threads = {"threads": self.threads} if self.threads else {}
        out = ffmpeg.output(stream, str(path), **_video_args(settings), **threads).global_args(
            "-hide_banner", "-loglevel", "error", "-nostdin").overwrite_output()
        self.proc = out.run_async(cmd=ffmpeg_exe(settings.ffmpeg), pipe_stdin=True,
                                  pipe_stderr=True)
        self.files.append(path)
        self._stderr = []
        self._drain = threading.Thread(target=lambda: self._stderr.append(
            self.proc.stderr.read()), daemon=True)
        self._drain.start()

    @property
    def chunk(self) -> str | None:
        """The chunk file's name once it holds frames (None for PNG frames or none yet)."""
        return self.path.name if self.frames and self.settings.codec != "png" else None

    def write(self, rgb: np.ndarray, repeats: int = 1) -> None:
        """Write one frame `repeats` times (0 drops it: timing comes from timestamps)."""
        if self.settings.codec != "png" and self.proc is None and repeats:
            self._start()
        for _ in range(repeats):
            if self.settings.codec == "png":
                name = self.path / f"frame_{self.slot:06d}.png"
                write_png(name, rgb)
                self.files.append(name)
            else:
                try:
                    self.proc.stdin.write(np.ascontiguousarray(rgb).tobytes())
                except BrokenPipeError:
                    self.close()
            self.slot += 1
            self.frames += 1

    def close(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if not proc.stdin.closed:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        code = proc.wait()
        self._drain.join()
        if code != 0:
            message = b"".join(self._stderr).decode(errors="replace").strip().splitlines()
            raise UserError(f"ffmpeg failed encoding '{self.path}': "
                            f"{message[-1] if message else f'exit {code}'} (a full disk? free "
                            "some space, then run the same command with --resume)")

    def abort(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Encode in memory, then write: a full disk is an error that names the file and the cause
    (cv2.imwrite only says False)."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    try:
        if not ok:
            raise OSError(f"OpenCV could not encode frame {path.name}")
        path.write_bytes(data.tobytes())
    except OSError as exc:
        raise UserError(f"could not write '{path}' ({exc.strerror or exc}): free some disk "
                        "space, then run the same command with --resume") from None


def chunk_suffix(settings: EncodeSection) -> str:
    """Chunks are NUT files: their time base is the frame rate's, so every frame's time is
    exact (Matroska's are whole milliseconds, which drifted at each join)."""
    return "" if settings.codec == "png" else ".nut"


def concat_listing(chunks: list[Path], rate: Fraction) -> str:
    """ffmpeg's concat list of `chunks`, each with its exact length (its frames at `rate`): the
    demuxer's own guess counts the B-frame delay, a frame too many at every join. Lengths are
    whole microseconds of the running total, so rounding never adds up."""
    import av

    lines, frames = [], 0
    for path in chunks:
        with av.open(str(path)) as container:
            count = sum(1 for packet in container.demux(video=0) if packet.size)
        start = round(Fraction(frames) / rate * 1_000_000)
        frames += count
        length = round(Fraction(frames) / rate * 1_000_000) - start
        lines.append(f"file '{_concat_quote(path.resolve())}'\nduration {length}us\n")
    return "".join(lines)


@dataclass(frozen=True)
class AudioTrack:
    """A span of a file's audio for the output: from `start` seconds, at `volume`."""
    path: Path
    start: float
    codec: str | None  # the file's audio codec; None when it has no audio
    volume: float = 1.0


ANIMATED = (".gif", ".webp")  # outputs without audio, for loops people post
HOLDS = {".mp4": {"aac", "mp3", "ac3", "eac3", "alac"}, ".mov": {"aac", "mp3", "ac3", "alac"}}


def _audio_mode(settings: EncodeSection, output: Path, tracks: list[AudioTrack]):
    """'copy' or 'aac' for the output's audio, and why a requested copy was not possible."""
    suffix = output.suffix.lower()
    mode = settings.audio if settings.audio != "auto" else AUDIO_FOR[suffix]
    track = tracks[0]
    reason = None
    if len(tracks) > 1 or track.volume != 1.0:
        reason = "the tracks are mixed"
    elif track.start > 0:  # a copied stream can only start at a packet, off the cut
        reason = f"the cut at {track.start:.3f} s falls inside the compressed audio"
    elif track.codec not in HOLDS.get(suffix, {track.codec}):
        reason = f"{suffix} cannot hold {track.codec} audio"
    if mode == "copy" and reason:
        note = (f"audio re-encoded as AAC ({reason})" if settings.audio == "copy" else None)
        return "aac", note
    return mode, None


def finalize(chunks: list[Path], output: Path, settings: EncodeSection,
             tracks: list[AudioTrack], rate: Fraction, slots: int) -> str | None:
    """Join the chunk files (for codec png: one folder of frames) into `output` with the audio
    `tracks` (mixed when several), each from its start for `duration`; returns a note for the
    user, if any. The joined file is written in the chunks' work folder, then moved.
    `slots` frames at `rate`: the output's length."""
    exe = ffmpeg_exe(settings.ffmpeg)
    duration = float(slots / rate)
    suffix = output.suffix.lower()
    tracks = [t for t in tracks if t.codec] if settings.audio != "none" else []
    if settings.codec == "png":
        _finalize_png(chunks[0], output, exe, tracks, duration)
        return None
    listing = chunks[0].parent / "concat.txt"
    listing.write_text(concat_listing(chunks, rate))
    video = ffmpeg.input(str(listing.resolve()), format="concat", safe=0)["v"]
    note = None
    if suffix == ".gif":  # one palette for the whole loop, so colours do not flicker
        split = video.split()
        video = ffmpeg.filter([split[1], split[0].filter("palettegen", stats_mode="full")],
                              "paletteuse")
        out_args = {"loop": 0}
    elif suffix == ".webp":
        out_args = {"vcodec": "libwebp_anim", "loop": 0, "quality": 85}
    else:
        out_args = {"vcodec": "copy"}
        if suffix in (".mp4", ".mov") and "tag:v" in CODECS[settings.codec].args:
            out_args["tag:v"] = CODECS[settings.codec].args["tag:v"]
    streams = [video]
    if tracks and suffix not in ANIMATED:
        inputs = [ffmpeg.input(str(t.path.resolve()), ss=f"{t.start:.6f}",
                               t=f"{duration:.6f}")["a"] for t in tracks]
        mode, note = _audio_mode(settings, output, tracks)
        if len(tracks) > 1 or tracks[0].volume != 1.0:
            inputs = [ffmpeg.filter([a.filter("volume", t.volume) for a, t in zip(inputs, tracks)],
                                    "amix", inputs=len(tracks), normalize=0, duration="first")]
        streams += inputs
        out_args["acodec"] = mode
        if mode == "aac":
            out_args["audio_bitrate"] = "192k"
    if suffix in (".mp4", ".mov"):
        out_args["movflags"] = "+faststart"
    with atomic_path(output, suffix=f".partial{output.suffix}", folder=listing.parent) as tmp:
        cmd = ffmpeg.output(*streams, str(tmp.resolve()), t=f"{duration:.6f}",
                            **out_args).global_args(
            "-hide_banner", "-loglevel", "error", "-nostdin").overwrite_output()
        try:
            cmd.run(cmd=exe, capture_stdout=True, capture_stderr=True)
        except ffmpeg.Error as exc:
            lines = exc.stderr.decode(errors="replace").strip().splitlines()
            raise UserError(f"ffmpeg could not write {output.name}: "
                            f"{lines[-1] if lines else exc}") from None
    return note


def _concat_quote(path: Path) -> str:
    """A path inside single quotes in ffmpeg's concat list: ' becomes '\\''."""
    return str(path).replace("'", "'\\''")


def _finalize_png(folder: Path, output: Path, exe, tracks: list[AudioTrack], duration) -> None:
    """PNG sequences are written straight into a folder of the work folder; move it into place,
    with a manifest of its files so that a later --overwrite removes exactly those."""
    if tracks:
        inputs = [arg for t in tracks for arg in ("-ss", f"{t.start:.6f}", "-t",
                                                   f"{duration:.6f}", "-i", str(t.path.resolve()))]
        mix = ";".join(f"[{k}:a]volume={t.volume}[a{k}]" for k, t in enumerate(tracks)) + ";" + \
            "".join(f"[a{k}]" for k in range(len(tracks))) + \
            f"amix=inputs={len(tracks)}:normalize=0:duration=first[out]"
        result = subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                                 *inputs, "-filter_complex", mix, "-map", "[out]", "-c:a", "flac",
                                 str((folder / "audio.flac").resolve())],
                                capture_output=True, text=True, errors="replace")
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines()
            raise UserError(f"ffmpeg could not write the audio of {output.name}: "
                            f"{lines[-1] if lines else f'exit {result.returncode}'}")
    write_manifest(folder)
    remove_owned_folder(output)
    publish(folder, output)
