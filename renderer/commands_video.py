"""CLI commands for video renders and zoom animations (registered into the main parser)."""

from __future__ import annotations

import time
from pathlib import Path

from .errors import UserError

PREVIEW = ["dream.octaves=2", "flow.quality=ultrafast", "encode.speed=veryfast"]


def register(sub, add_common, number) -> None:
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
                   help="segments per GPU batch (default: what GPU memory holds; with --shard "
                        "or --assemble: per part, default 8)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed or interrupted render from its last checkpoint "
                        "(kept in a hidden .OUTPUT.parts folder beside the output)")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="render only part K of N (a run of consecutive segments), to split one "
                        "render over machines that share the output folder; then --assemble N")
    p.add_argument("--assemble", type=int, default=None, metavar="N",
                   help="join the N finished parts of a render split with --shard (same "
                        "arguments otherwise)")
    add_common(p, "video")
    p.set_defaults(run=cmd_render, check=check_render)
    register_zoom(sub, add_common, number)


def render_size(args, width: int, height: int) -> tuple[int, int]:
    from .images import fit_size, parse_size

    if args.size and args.scale:
        raise UserError("give either --size or --scale, not both")
    if args.size:
        return parse_size(args.size)
    if args.scale:
        return max(8, round(width * args.scale)), max(8, round(height * args.scale))
    if args.preview:
        return fit_size(width, height, 320)
    return width, height


def parse_shard(text: str | None, assemble: int | None):
    """--shard K/N as a 0-based Shard; --assemble N checked; None for a whole render."""
    from .video import Shard

    if text is not None and assemble is not None:
        raise UserError("give either --shard or --assemble, not both")
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
        raise UserError(f"--shard '{text}' is not a part: use K/N with 1 <= K <= N <= 256, "
                        "e.g. --shard 2/4")
    return Shard(number - 1, count)


def check_render(args):
    """Everything about a render's arguments that can be checked without decoding the video
    (also what `dream queue add` checks): (preset, output, shard, --audio's song or None)."""
    from .cli import load_preset
    from .decode import check_video
    from .encode import AudioTrack, check_output
    from .images import parse_size

    if args.preview:
        args.overrides = PREVIEW + args.overrides
    if args.fit_size:
        args.overrides = [*args.overrides, f"video.fit={args.fit_size}"]
    if args.end is not None and args.end <= args.start:
        raise UserError(f"--end {args.end:g} must be greater than --start {args.start:g}")
    shard = parse_shard(args.shard, args.assemble)
    if args.audio is None and (args.audio_mix is not None or args.audio_start):
        raise UserError("--audio-mix and --audio-start need --audio SONG")
    preset = load_preset(args)
    output = check_output(args.output, preset.encode, args.overwrite, [args.input, args.audio])
    check_video(args.input)
    song = None
    if args.audio:
        song = AudioTrack(Path(args.audio), args.audio_start, check_audio(args.audio).audio_codec)
    if args.size:
        parse_size(args.size)
    return preset, output, shard, song


def check_audio(path: str):
    """A file with an audio stream: its MediaInfo."""
    from .media import probe

    if not Path(path).is_file():
        raise UserError(f"audio file '{path}' does not exist: check the path")
    info = probe(path)
    if not info.has_audio:
        raise UserError(f"'{path}' has no audio stream: give a song or other audio file")
    return info


def render_audio(args, index, song):
    """The tracks under a render: the source's (None), or the song (mixed with --audio-mix)."""
    from .encode import AudioTrack
    from .video import source_audio

    if song is None:
        return None
    if args.audio_mix is None:
        return [song]
    source = source_audio(index)[0]
    return [AudioTrack(source.path, source.start, source.codec, 1 - args.audio_mix),
            AudioTrack(song.path, song.start, song.codec, args.audio_mix)]


def cmd_render(args) -> None:
    from .decode import index_video
    from .dream import dreamer_for
    from .jobs import report_progress
    from .media import describe_output
    from .progress import console, make_progress
    from .video import SHARD_BATCH, Shard, assemble_shards, default_batch, render_video, shard_plan

    preset, output, shard, song = check_render(args)
    index = index_video(args.input, args.start, args.end, args.fps)
    if index.warning:
        console.print(f"[yellow]warning:[/yellow] {index.warning}")
    size = render_size(args, index.width, index.height)
    if size[0] * index.height != size[1] * index.width and args.size:
        how = {"crop": "scaled to cover it and centre-cropped", "pad": "fitted inside it with "
               "black bars", "stretch": "stretched to it"}[preset.video.fit]
        console.print(f"note: the {index.width}x{index.height} picture is {how} "
                      f"({size[0]}x{size[1]}); --fit-size crop|pad|stretch chooses")
    chosen = args.batch or preset.video.batch
    if args.assemble:  # parts default to SHARD_BATCH segments: every part must agree
        assemble_shards(index, preset, output, size, chosen or SHARD_BATCH, args.assemble,
                        render_audio(args, index, song))
        print(f"wrote {output}: {describe_output(output)} ({args.assemble} parts joined)")
        return
    dreamer = dreamer_for(preset, args.device)
    batch = chosen or (SHARD_BATCH if shard else default_batch(dreamer.device, size))
    plan = shard_plan(index.count, batch, preset.video.warmup, shard or Shard(0, 1))
    dreamed_total = sum(s.length for s in plan.mine)
    kept_total = plan.kept
    started = time.perf_counter()
    encoded = [0, 0.0]  # frames, time of the last report to a queue worker

    def advance(progress, tasks, stage, n=1):
        if stage not in tasks:  # a stage without a count: encoders draining, the mux
            tasks[stage] = progress.add_task(stage, total=None, unit="")
            return
        progress.advance(tasks[stage], n)
        if stage == "encoded":
            encoded[0] += n
            if time.perf_counter() - encoded[1] > 1.0 or encoded[0] == kept_total:
                encoded[1] = time.perf_counter()
                report_progress(encoded[0], kept_total, started)

    with make_progress() as progress:
        tasks = {name: progress.add_task(name, total=total, unit="frames") for name, total in
                 (("decoded", dreamed_total), ("dreamed", dreamed_total),
                  ("encoded", kept_total))}
        render_video(index, preset, dreamer, output, size, batch,
                     lambda stage, n=1: advance(progress, tasks, stage, n), resume=args.resume,
                     shard=shard, audio=render_audio(args, index, song))
    rate = f"{kept_total / (time.perf_counter() - started):.2f} frames/s"
    if shard:
        print(f"wrote part {shard} of {output} ({kept_total} frames at {size[0]}x{size[1]}, "
              f"{rate}, {len(plan.mine)} of {len(plan.segments)} segments)")
    else:
        print(f"wrote {output}: {describe_output(output)} (rendered at {rate})")


def register_zoom(sub, add_common, number) -> None:
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
    p.set_defaults(run=cmd_zoom, check=check_zoom)


def zoom_fingerprint(preset, args, size, count, variant) -> str:
    from .checkpoints import digest

    return digest(preset.model_dump(mode="json"), args.init, args.variants, list(size), count,
                  args.fps, variant)


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
    """A zoom's arguments, checked before any work (also by `dream queue add`):
    (preset, outputs, fps, frame count, audio codec)."""
    from . import encode
    from .cli import load_preset
    from .images import parse_size

    audio_seconds = audio_codec = None
    if args.audio:
        info = check_audio(args.audio)
        audio_seconds, audio_codec = info.duration, info.audio_codec
    fps, count = zoom_plan(args, audio_seconds)
    preset = load_preset(args)
    outputs = [Path(args.output)] if args.variants == 1 else [
        Path(args.output).with_stem(f"{Path(args.output).stem}_v{i}") for i in range(args.variants)]
    if preset.encode.codec == "png":
        raise UserError("dream zoom writes video files: use encode.codec h264, h265 or prores")
    inputs = [args.audio, None if args.init == "noise" else args.init]
    for out in outputs:
        encode.check_output(out, preset.encode, args.overwrite, inputs)
    if args.init != "noise" and not Path(args.init).is_file():
        raise UserError(f"init image '{args.init}' does not exist: give an image file or 'noise'")
    if args.size:
        parse_size(args.size)
    return preset, outputs, fps, count, audio_codec


def cmd_zoom(args) -> None:
    from contextlib import ExitStack

    with ExitStack() as locks:
        _zoom(args, locks)


def _zoom(args, locks) -> None:
    import torch

    from . import encode
    from .checkpoints import Checkpoints, RenderState, remove_work_folder
    from .dream import Dreamer, build_objective, pick_device
    from .framestore import FrameStore
    from .images import load_image, parse_size
    from .media import as_rate, describe_output
    from .models import load_network
    from .outputs import OutputLock
    from .progress import console, make_progress
    from .zoom import MixedObjective, ZoomRenderer, noise_image, render_zoom

    preset, outputs, fps, count, audio_codec = check_zoom(args)
    for out in outputs:
        locks.enter_context(OutputLock(out))
    size = parse_size(args.size) if args.size else None
    seeds = [preset.seed + i for i in range(args.variants)]
    if args.init == "noise":
        init = noise_image(size or (640, 360), seeds)
    else:
        init = load_image(args.init, size=size, max_side=None if size else 1280)
        init = init.expand(args.variants, -1, -1, -1).contiguous()
    device = pick_device(args.device)
    network = load_network(preset.model.name, preset.model.weights)
    mixed = None
    if any(k.layer_mix is not None for k in preset.zoom.keyframes):
        if len(preset.objective) != 2:
            raise UserError("keyframed 'layer_mix' needs exactly two objective terms "
                            "(mix 0 = the first, 1 = the second)")
        first, second = (build_objective(preset.model_copy(update={"objective": [t]}), network,
                                         device) for t in preset.objective)
        objective = mixed = MixedObjective(first, second)
    else:
        objective = build_objective(preset, network, device)
    dreamer = Dreamer(network, objective, preset.dream, device)
    renderer = ZoomRenderer(dreamer, preset.zoom, fps, seeds, mixed)
    h, w = init.shape[-2:]
    rate = as_rate(fps)
    suffix = encode.segment_suffix(preset.encode)
    stores = [Checkpoints(out, zoom_fingerprint(preset, args, (w, h), count, i))
              for i, out in enumerate(outputs)]
    restored = stores[0].start(args.resume)  # the first output's folder holds the shared state
    for store in stores[1:]:
        if restored is None:
            store.start(False)
    start, current, chunks = 0, None, [[] for _ in outputs]
    if restored is not None:
        saved, chunks = restored
        start, current = saved.step, torch.stack([saved.prev_dream[i]
                                                  for i in range(len(outputs))])
        console.print(f"resuming from frame {start}")
    writers: list = []

    def open_chunks(frame: int) -> None:
        writers[:] = [encode.SegmentWriter(store.folder / f"zoom_{frame:06d}{suffix}", (w, h),
                                           rate, preset.encode) for store in stores]

    def checkpoint(frame: int, batch) -> None:
        for k, writer in enumerate(writers):
            writer.close()
            if writer.frames:
                chunks[k].append(writer.path.name)
        state = RenderState(frame, prev_dream={k: t.cpu() for k, t in enumerate(batch)})
        stores[0].save(state, chunks, [f for writer in writers for f in writer.files])
        open_chunks(frame)

    open_chunks(start)
    fades = FrameStore(stores[0].folder / "loop")
    try:
        with make_progress() as progress:
            task = progress.add_task("zoom", total=count, unit="frames",
                                     completed=min(start, count))

            def emit(frame, batch):
                for writer, rgb in zip(writers, batch):
                    writer.write(rgb)
                progress.advance(task)

            render_zoom(renderer, init, count, emit, fades, start, current, checkpoint,
                        preset.zoom.checkpoint_every)
        duration = count / float(rate)
        for k, (writer, out, store) in enumerate(zip(writers, outputs, stores)):
            writer.close()
            names = chunks[k] + ([writer.path.name] if writer.frames else [])
            tracks = [encode.AudioTrack(Path(args.audio), 0.0, audio_codec)] if args.audio else []
            if note := encode.finalize([store.folder / n for n in names], out, preset.encode,
                                       tracks, duration):
                console.print(f"note: {note}")
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    for store in stores:
        remove_work_folder(store.folder)
    for out in outputs:
        print(f"wrote {out}: {describe_output(out)}{' (a loop)' if preset.zoom.loop else ''}")
