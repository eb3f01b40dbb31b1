"""`dream audio`: listen to a song and draw what a preset will do with it, before a render."""

from __future__ import annotations

import json
from pathlib import Path

from renderer.cli.common import number
from renderer.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("audio", help="analyse a song and plot what a preset will drive",
                       description="Tempo, beats, bars, onsets, percussive/harmonic parts, "
                                   "loudness, bands and sections of a song, drawn as a PNG with "
                                   "every parameter curve the preset's timeline and react "
                                   "sections will drive over the song's time.")
    p.add_argument("song", help="any audio ffmpeg reads (mp3, wav, flac, m4a, ogg, a video)")
    p.add_argument("-o", "--output", required=True, help="the plot (.png)")
    p.add_argument("-p", "--preset", default=None,
                   help="also draw this preset's driven parameters")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="write the analysis and the parameter curves as JSON too")
    p.add_argument("--fps", type=number(float, 1, 240), default=30.0,
                   help="frame rate the parameter curves are sampled at (default 30)")
    p.add_argument("--start", type=number(float, 0, 1e7), default=0.0,
                   help="where the render starts in the song (seconds): its --audio-start")
    window = p.add_mutually_exclusive_group()
    window.add_argument("--end", type=number(float, 0.01, 1e7), default=None,
                        help="where the render ends in the song (seconds): the plot shows "
                             "--start to --end")
    window.add_argument("--clip", default=None, metavar="VIDEO",
                        help="the clip the song goes with: the plot shows its length of the "
                             "song from --start")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(run=cmd_audio)


def cmd_audio(args) -> None:
    import numpy as np

    from renderer import presets
    from renderer.media.audio import waveform
    from renderer.music.analysis import analyse_file
    from renderer.music.plot import draw
    from renderer.music.shots import shot_marks
    from renderer.music.schedule import Schedule, keyframe_values
    from renderer.outputs import atomic_write, check_output

    from renderer.cli.video import check_audio, listeners

    song = Path(args.song)
    length = check_audio(args.song, args.start).duration
    end = window_end(args, length)
    if Path(args.output).suffix.lower() != ".png":
        raise UserError(f"'{args.output}': the plot is a PNG: give an output ending in .png")
    out = check_output(args.output, args.overwrite, [song])
    if args.json:
        check_output(args.json, args.overwrite, [song, out])
    preset = presets.load(args.preset, args.overrides) if args.preset else None
    with listeners() as progress:
        analysis = analyse_file(song, (preset or presets.defaults()).music.bands,
                                progress=progress)
    end = analysis.duration if end is None else min(end, analysis.duration)
    curves, shots = {}, []
    frames = np.arange(int(max(0.0, end - args.start) * args.fps) + 1)
    times = args.start + frames / args.fps
    if preset is not None and preset.modulated:
        values = Schedule(preset, analysis, args.fps).values(
            times, frames, keyframe_values(preset, frames, args.fps))
        curves = {target: (times, v) for target, v in values.items()}
    if preset is not None and preset.shots:
        shots = shot_marks(preset, analysis, times, args.fps)
    framed = args.end is not None or args.clip is not None or args.start > 0
    draw(waveform(song), analysis, curves, out,
         f"{song.name}" + (f" + {preset.name}" if preset else ""), shots,
         (args.start, end) if framed else None)
    if args.json:
        record = analysis.to_json()
        record["parameters"] = {target: {"t": np.round(t, 4).tolist(),
                                         "value": np.round(v, 6).tolist()}
                                for target, (t, v) in curves.items()}
        atomic_write(args.json, json.dumps(record))
    beats = f"{analysis.tempo:.1f} BPM, {len(analysis.beats)} beats" if analysis.tempo \
        else "no beat found"
    shown = f", showing {args.start:.1f}-{end:.1f} s" if framed else ""
    print(f"wrote {out} ({analysis.duration:.1f} s, {beats}, {len(analysis.sections) + 1} "
          f"sections{f', {len(curves)} driven parameters' if curves else ''}{shown})")


def window_end(args, length: float | None) -> float | None:
    """Where the plotted window ends in the song: --end, or --start plus the clip's length
    (None: the song's end)."""
    if args.clip is not None:
        from renderer.media.decode import index_video

        return args.start + index_video(Path(args.clip)).duration
    if args.end is not None and args.end <= args.start:
        raise UserError(f"--end {args.end:g} is not after --start {args.start:g}: give an end "
                        "later than the start")
    if args.end is not None and length is not None and args.end > length + 0.05:
        raise UserError(f"--end {args.end:g} is past the end of '{args.song}' ({length:.1f} s "
                        f"long): give an end up to {length:.1f}")
    return args.end
