"""`dream render` and `dream zoom`: parse, check everything that can be checked before any
work (also what `dream queue add` checks), then call `render_video` / `render_zoom` with the
progress listeners (rich bars, and a queued job's progress file)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path

from renderer.cli.common import (add_common, add_mask, add_schedule, check_preset_inputs,
                                 load_preset, number)
from renderer.errors import UserError

PREVIEW = ["dream.octaves=2", "flow.quality=ultrafast", "encode.speed=veryfast"]


def register(sub) -> None:
    p = sub.add_parser("render", help="dream a video with temporal coherence",
                       description="Dream every frame of a video, carrying the dream along "
                                   "optical flow; keeps the audio and the timing.")
    p.add_argument("input", help="input video (mp4, mov, mkv, webm, avi)")
    p.add_argument("-o", "--output", required=True,
                   help="output file (.mp4, .mkv, .mov) or folder for --set encode.codec=png")
    p.add_argument("--start", type=number(float, 0, 1e7), default=0.0,
                   help="start time in seconds")
    p.add_argument("--end", type=number(float, 0, 1e7), default=None, help="end time in seconds")
    p.add_argument("--scale", type=number(float, 0.01, 8), default=None,
                   help="scale factor for the frame size")
    p.add_argument("--fps", type=number(float, 1, 240), default=None,
                   help="output frame rate (default: the source's own, every frame kept; a "
                        "lower rate picks frames by timestamp)")
    p.add_argument("--audio", default=None, metavar="SONG",
                   help="put this audio file under the render instead of the source's audio")
    p.add_argument("--audio-mix", type=number(float, 0, 1), default=None, metavar="W",
                   help="with --audio: mix the song at W (0..1) with the source audio at 1-W")
    p.add_argument("--audio-start", type=number(float, 0, 1e7), default=0.0, metavar="S",
                   help="with --audio: where in the song to begin (seconds)")
    p.add_argument("--fit-size", choices=["crop", "pad", "stretch"], default=None,
                   help="a --size of another aspect: scale to cover and centre-crop (default), "
                        "fit inside with black bars, or stretch")
    p.add_argument("--preview", action="store_true",
                   help="fast low-resolution pass (320 px, fewer octaves)")
    p.add_argument("--batch", type=number(int, 1, 256), default=None,
                   help="segments per GPU batch (default: what GPU memory holds; with --part "
                        "or --assemble: per part, default 8)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed or interrupted render from its last checkpoint "
                        "(kept in a hidden .OUTPUT.work folder beside the output)")
    p.add_argument("--part", "--shard", dest="part", default=None, metavar="K/N",
                   help="render only part K of N (a run of consecutive segments), to split one "
                        "render over machines that share the output folder; then --assemble N "
                        "(--shard is the same)")
    p.add_argument("--assemble", type=int, default=None, metavar="N",
                   help="join the N finished parts of a render split with --part (same "
                        "arguments otherwise)")
    add_common(p, "video")
    add_mask(p)
    add_schedule(p)
    p.add_argument("--controls", default=None, metavar="NAME.controls.json",
                   help="replay a 'dream live' set on its recording: the looks, strength and "
                        "carried share at the times they were played, at the presets' full "
                        "quality (any --size; --set on top)")
    p.set_defaults(run=cmd_render, check=check_render)
    register_zoom(sub)


def parse_part(text: str | None, assemble: int | None):
    """--part K/N as a 0-based Part; --assemble N checked; None for a whole render."""
    from renderer.render.plan import Part

    if text is not None and assemble is not None:
        raise UserError("give either --part or --assemble, not both")
    if assemble is not None:
        if not 1 <= assemble <= 256:
            raise UserError(f"--assemble {assemble} is out of range: use 1..256")
        return None
    if text is None:
        return None
    try:
        number, count = (int(v) for v in text.split("/"))
    except ValueError:
        number = count = 0
    if not 1 <= number <= count <= 256:
        raise UserError(f"--part '{text}' is not a part: use K/N with 1 <= K <= N <= 256, "
                        "e.g. --part 2/4")
    return Part(number - 1, count)


def check_render(args):
    """Everything about a render's arguments that can be checked without decoding the video
    (also what `dream queue add` checks): (preset, output, part, --audio's song or None)."""
    from renderer.media.decode import check_video
    from renderer.media.encode import AudioTrack, check_video_output
    from renderer.media.images import parse_size

    if args.preview:
        args.overrides = PREVIEW + args.overrides
    if args.fit_size:
        args.overrides = [*args.overrides, f"video.fit={args.fit_size}"]
    if args.end is not None and args.end <= args.start:
        raise UserError(f"--end {args.end:g} must be greater than --start {args.start:g}")
    part = parse_part(args.part, args.assemble)
    if args.audio is None and (args.audio_mix is not None or args.audio_start):
        raise UserError("--audio-mix and --audio-start need --audio SONG")
    preset = load_preset(args)
    check_video(args.input)
    if args.controls:
        from renderer.controller import replay_set

        preset, notes = replay_set(Path(args.controls), Path(args.input), args.overrides,
                                   args.start, args.end, args.fps)
        for note in notes:
            print(note, file=sys.stderr)
    output = check_video_output(args.output, preset.encode, args.overwrite,
                                [args.input, args.audio, args.controls, *preset.files()])
    check_preset_inputs(preset)
    song = None
    if args.audio:
        song = AudioTrack(Path(args.audio), args.audio_start,
                          check_audio(args.audio, args.audio_start, "--audio-start").audio_codec)
    if args.size:
        parse_size(args.size)
    return preset, output, part, song


def check_audio(path: str, start: float = 0.0, option: str = "--start"):
    """A file with an audio stream that holds sound after `start` (seconds, given as
    `option`): its MediaInfo."""
    from renderer.media.audio import has_samples
    from renderer.media.probe import probe

    if not Path(path).is_file():
        raise UserError(f"audio file '{path}' does not exist: check the path")
    info = probe(path)
    if not info.has_audio:
        raise UserError(f"'{path}' has no audio stream: give a song or other audio file")
    if not has_samples(path):
        raise UserError(f"the audio stream of '{path}' holds no sound (no samples): give a "
                        "song or other audio file")
    if start and info.duration is not None and start >= info.duration:
        raise UserError(f"{option} {start:g} is past the end of '{path}' ({info.duration:.1f} "
                        f"s long): give a start before {info.duration:.1f}")
    return info


@contextmanager
def listeners():
    """The progress sink of a command: rich bars, plus the progress file of a queued job."""
    from renderer.cli.bars import RichBars, make_progress
    from renderer.jobs.progress import ProgressFile
    from renderer.progress import Fanout

    with make_progress() as bars:
        yield Fanout(RichBars(bars), ProgressFile.from_env())


def cmd_render(args) -> None:
    from renderer.cli.bars import busy_note, console, setting_up
    from renderer.controller import RenderRequest, plan_render, run_render
    from renderer.media.images import parse_size
    from renderer.media.probe import describe_output

    preset, output, part, song = check_render(args)
    request = RenderRequest(Path(args.input), output, preset, args.start, args.end, args.fps,
                            parse_size(args.size) if args.size else None, args.scale,
                            args.preview, args.batch, part, args.assemble, song, args.audio_mix,
                            args.resume, args.device)
    with setting_up("reading the clip, the song and the network"):
        plan = plan_render(request)
    if note := busy_note():
        console.print(note)
    for note in plan.notes:
        console.print(note.replace("warning:", "[yellow]warning:[/yellow]", 1))
    job = plan.job
    started = time.perf_counter()
    if args.assemble:
        run_render(job, assemble=args.assemble)
        print(f"wrote {output}: {describe_output(output)} ({args.assemble} parts joined)")
        return
    with listeners() as progress:
        report = run_render(job, device=args.device, progress=progress)
    rate = f"{report.kept / (time.perf_counter() - started):.2f} frames/s"
    if part:
        print(f"wrote part {part} of {output} ({report.kept} frames at {job.size[0]}x"
              f"{job.size[1]}, {rate}, {report.segments} of {report.of_segments} segments)")
    else:
        print(f"wrote {output}: {describe_output(output)} (rendered at {rate})")


def register_zoom(sub) -> None:
    p = sub.add_parser("zoom", help="zoom-feedback 'infinite dream' animation or seamless loop",
                       description="Feed each dream back into itself while zooming, rotating "
                                   "and panning, as keyframed in the preset's 'zoom:' section.")
    p.add_argument("-o", "--output", required=True, help="output video (.mp4, .mkv, .mov)")
    p.add_argument("--init", default="noise", help="start image file, or 'noise' (default)")
    p.add_argument("--seconds", type=number(float, 0.01, 86400), default=None,
                   help="length in seconds (not needed with --fit audio)")
    p.add_argument("--fps", type=number(float, 1, 240), default=30.0,
                   help="frames per second, 1..240 (default 30)")
    p.add_argument("--audio", default=None, help="audio file to mux in")
    p.add_argument("--fit", choices=["video", "audio"], default="video",
                   help="with --audio: 'video' trims the audio to --seconds, 'audio' makes the "
                        "video as long as the audio")
    p.add_argument("--variants", type=number(int, 1, 64), default=1,
                   help="render N seeds as one batch (OUT_v0, OUT_v1, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed or interrupted zoom from its last checkpoint")
    add_common(p, "zoom-classic")
    add_mask(p)
    add_schedule(p)
    p.set_defaults(run=cmd_zoom, check=check_zoom)


def zoom_plan(args, audio_seconds: float | None) -> tuple[float, int]:
    """(fps, frame count) from --fps, --seconds and --fit."""
    seconds = args.seconds
    if args.fit == "audio":
        if not args.audio:
            raise UserError("--fit audio makes the zoom as long as --audio SONG: give one")
        seconds = audio_seconds
    elif seconds is None:
        raise UserError("give the zoom's length with --seconds, or --audio SONG --fit audio")
    if not seconds > 0 or seconds > 24 * 3600:
        raise UserError(f"--seconds {seconds:g} is out of range: give a length above 0")
    count = max(1, round(seconds * args.fps))
    return args.fps, count


def check_zoom(args):
    """A zoom's arguments, checked before any work (also by `dream queue add`): (what it
    dreams: `controller.ZoomLooks`, outputs, fps, frame count, audio tracks)."""
    from renderer.controller import zoom_looks
    from renderer.media import encode
    from renderer.media.images import parse_size
    from renderer.media.masks import mask_maker

    audio_seconds = audio_codec = None
    if args.audio:
        info = check_audio(args.audio)
        audio_seconds, audio_codec = info.duration, info.audio_codec
    fps, count = zoom_plan(args, audio_seconds)
    preset = load_preset(args)
    outputs = [Path(args.output)] if args.variants == 1 else [
        Path(args.output).with_stem(f"{Path(args.output).stem}_v{i}") for i in range(args.variants)]
    if encode.codec_of(preset.encode).frames:
        raise UserError(f"dream zoom writes video files, not {preset.encode.codec} frames: use "
                        "encode.codec h264, h265, prores or prores4444")
    inputs = [args.audio, None if args.init == "noise" else args.init, *preset.files()]
    for out in outputs:
        encode.check_video_output(out, preset.encode, args.overwrite, inputs)
    if args.init != "noise" and not Path(args.init).is_file():
        raise UserError(f"init image '{args.init}' does not exist: give an image file or 'noise'")
    if args.size:
        parse_size(args.size)
    check_preset_inputs(preset)
    mask_maker(preset.mask, parse_size(args.size) if args.size else (640, 360),
               [i / fps for i in range(count)])  # a mask that does not fit is refused now
    audio = [encode.AudioTrack(Path(args.audio), 0.0, audio_codec)] if args.audio else []
    looks = zoom_looks(preset, Path(args.audio) if args.audio else None, fps, count)
    return looks, outputs, fps, count, audio


def cmd_zoom(args) -> None:
    from renderer.cli.bars import busy_note, console, setting_up
    from renderer.media.images import load_image, parse_size
    from renderer.media.probe import describe_output
    from renderer.motion.zoom import noise_image
    from renderer.render.zoom import ZoomRenderer, render_zoom

    with setting_up("reading the song and the network"):
        looks, outputs, fps, count, audio = check_zoom(args)
        preset = looks.preset
        renderer = ZoomRenderer.of(preset, fps, args.variants, args.device, looks.schedule,
                                   looks.shots)
    for note in filter(None, [*looks.notes, busy_note()]):
        console.print(note)
    size = parse_size(args.size) if args.size else None
    if args.init == "noise":
        init = noise_image(size or (640, 360), renderer.seeds)
    else:
        init = load_image(args.init, size=size, max_side=None if size else 1280)
        init = init.expand(args.variants, -1, -1, -1).contiguous()
    with listeners() as progress:
        render_zoom(renderer, init, outputs, count, audio=audio, progress=progress,
                    resume=args.resume)
    for out in outputs:
        print(f"wrote {out}: {describe_output(out)}{' (a loop)' if preset.zoom.loop else ''}")
