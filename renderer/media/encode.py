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
    frames: str | None = None  # a folder of frame files with this suffix, not a video
    alpha: bool = False  # frames carry where the dream shows as a fourth channel
    deep: bool = False  # frames are 16-bit (the dream's float picture, not 8-bit levels)

    @property
    def input_format(self) -> str:
        """The raw pixel format of the frames it is given."""
        return {(False, False): "rgb24", (True, False): "rgba", (False, True): "rgb48le",
                (True, True): "rgba64le"}[(self.alpha, self.deep)]


FOLDER = ("",)
CODECS = {
    "h264": Codec({"vcodec": "libx264", "pix_fmt": "yuv420p"}, (".mp4", ".mkv", ".mov"), True),
    "h265": Codec({"vcodec": "libx265", "pix_fmt": "yuv420p", "tag:v": "hvc1",
                   "x265-params": "log-level=error"}, (".mp4", ".mkv", ".mov"), True),
    "prores": Codec({"vcodec": "prores_ks", "profile:v": 3, "pix_fmt": "yuv422p10le"},
                    (".mov", ".mkv"), True),
    # compositing masters: ProRes 4444 with alpha (10-bit), PNG frames with alpha (8- or
    # 16-bit), half-float OpenEXR frames (linear light, premultiplied alpha)
    "prores4444": Codec({"vcodec": "prores_ks", "profile:v": 4, "pix_fmt": "yuva444p10le",
                         "vendor": "apl0"}, (".mov", ".mkv"), False, alpha=True, deep=True),
    "png": Codec({}, FOLDER, False, ".png"),
    "png-rgba": Codec({}, FOLDER, False, ".png", alpha=True),
    "png16": Codec({}, FOLDER, False, ".png", alpha=True, deep=True),
    "exr": Codec({}, FOLDER, False, ".exr", alpha=True, deep=True),
}


def codec_of(settings: EncodeSection) -> Codec:
    return CODECS[settings.codec]


def conform(frame: np.ndarray, codec: Codec) -> np.ndarray:
    """A frame (H, W, 3 or 4; uint8 or uint16) as `codec` takes it: 16-bit when deep (8-bit
    levels x 257), an opaque alpha added or the alpha dropped."""
    if codec.deep and frame.dtype == np.uint8:
        frame = frame.astype(np.uint16) * 257
    elif not codec.deep and frame.dtype == np.uint16:
        frame = ((frame.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if codec.alpha and frame.shape[-1] == 3:
        opaque = np.full(frame.shape[:-1] + (1,), np.iinfo(frame.dtype).max, frame.dtype)
        frame = np.concatenate([frame, opaque], axis=-1)
    elif not codec.alpha and frame.shape[-1] == 4:
        frame = frame[..., :3]
    return frame
AUDIO_FOR = {".mp4": "aac", ".mov": "aac", ".mkv": "copy"}


def check_video_output(path: str | Path, settings: EncodeSection, overwrite: bool,
                       inputs=()) -> Path:
    """Refuse what cannot work before any frame is dreamed: a container that cannot hold the
    codec, an output that is an input, a folder that is not ours, a missing ffmpeg binary."""
    path = check_name(Path(path))
    codec = CODECS[settings.codec]
    suffix = path.suffix.lower()
    if suffix in ANIMATED and not codec.frames and not codec.alpha:  # encoded from the chunks
        codec = Codec(codec.args, ANIMATED, codec.even)
    if codec.frames and suffix:
        raise UserError(f"codec {settings.codec} writes a folder of frames: give an output "
                        f"folder name without an extension, not '{path.name}'")
    if suffix not in codec.containers:
        fits = ", ".join(c for c in codec.containers if c) or "a folder"
        raise UserError(f"a {suffix or 'folder'} output cannot hold codec {settings.codec}: "
                        f"use {fits}, or another codec with --set encode.codec=...")
    check_output(path, overwrite, inputs, folder_output=bool(codec.frames))
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
    """Pipes frames into one ffmpeg process writing one chunk file of the output (or, for
    a codec of frame files, into numbered files in a folder, numbered by the output's
    slots). Frames are conformed to the codec (`conform`)."""

    def __init__(self, path: Path, size: tuple[int, int], rate: Fraction,
                 settings: EncodeSection, first_slot: int = 0, threads: int = 0):
        self.path, self.size, self.settings = path, size, settings
        self.threads = threads  # encoder threads (0: the encoder's own choice)
        self.slot = first_slot
        self.frames = 0
        self.files: list[Path] = []  # what this writer has written (for checkpoint checksums)
        self.proc = None
        self.rate = rate
        self.codec = CODECS[settings.codec]
        if self.codec.frames:
            path.mkdir(parents=True, exist_ok=True)

    def _start(self) -> None:
        """Start ffmpeg at the first frame, so a writer that gets no frames leaves no file."""
        settings, path, rate = self.settings, self.path, self.rate
        w, h = self.size
        stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt=self.codec.input_format,
                              s=f"{w}x{h}",
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
        """The chunk file's name once it holds frames (None for frame files or none yet)."""
        return self.path.name if self.frames and not self.codec.frames else None

    def write(self, rgb: np.ndarray, repeats: int = 1) -> None:
        """Write one frame `repeats` times (0 drops it: timing comes from timestamps)."""
        if not self.codec.frames and self.proc is None and repeats:
            self._start()
        rgb = conform(rgb, self.codec)
        for _ in range(repeats):
            if self.codec.frames:
                name = self.path / f"frame_{self.slot:06d}{self.codec.frames}"
                write_frame_file(name, rgb)
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


def write_frame_file(path: Path, frame: np.ndarray) -> None:
    """A PNG (RGB or RGBA, 8 or 16 bits) or an EXR frame, encoded in memory, then written: a
    full disk is an error that names the file and the cause (cv2.imwrite only says False)."""
    if path.suffix == ".exr":
        data = exr_bytes(frame)
    else:
        order = cv2.COLOR_RGB2BGR if frame.shape[-1] == 3 else cv2.COLOR_RGBA2BGRA
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(frame, order))
        data = encoded.tobytes() if ok else None
    try:
        if data is None:
            raise OSError(f"OpenCV could not encode frame {path.name}")
        path.write_bytes(data)
    except OSError as exc:
        raise UserError(f"could not write '{path}' ({exc.strerror or exc}): free some disk "
                        "space, then run the same command with --resume") from None


def exr_bytes(frame: np.ndarray) -> bytes:
    """An RGBA frame (16-bit, sRGB, straight alpha) as a half-float OpenEXR file, the way
    compositors read EXR: linear light, alpha premultiplied, ZIP compressed."""
    import tempfile

    import OpenEXR

    values = frame.astype(np.float32) / np.iinfo(frame.dtype).max
    rgb, alpha = values[..., :3], values[..., 3:]
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    pixels = np.ascontiguousarray(np.concatenate([linear * alpha, alpha], axis=-1),
                                  dtype=np.float16)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with tempfile.TemporaryDirectory(prefix="dream-exr-") as folder:  # it writes to a path
        name = Path(folder) / "frame.exr"
        with OpenEXR.File(header, {"RGBA": pixels}) as image:
            image.write(str(name))
        return name.read_bytes()


def chunk_suffix(settings: EncodeSection) -> str:
    """Chunks are NUT files: their time base is the frame rate's, so every frame's time is
    exact (Matroska's are whole milliseconds, which drifted at each join)."""
    return "" if CODECS[settings.codec].frames else ".nut"


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
    """Join the chunk files (for frame files: one folder of them) into `output` with the audio
    `tracks` (mixed when several), each from its start for `duration`; returns a note for the
    user, if any. The joined file is written in the chunks' work folder, then moved.
    `slots` frames at `rate`: the output's length."""
    exe = ffmpeg_exe(settings.ffmpeg)
    duration = float(slots / rate)
    suffix = output.suffix.lower()
    tracks = [t for t in tracks if t.codec] if settings.audio != "none" else []
    if CODECS[settings.codec].frames:
        _finalize_frames(chunks[0], output, exe, tracks, duration)
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


def _finalize_frames(folder: Path, output: Path, exe, tracks: list[AudioTrack], duration
                     ) -> None:
    """Frame files are written straight into a folder of the work folder; move it into place,
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
