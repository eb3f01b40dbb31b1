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

    song = Path(args.song)
    if Path(args.output).suffix.lower() != ".png":
        raise UserError(f"'{args.output}': the plot is a PNG: give an output ending in .png")
    out = check_output(args.output, args.overwrite, [song])
    if args.json:
        check_output(args.json, args.overwrite, [song, out])
    preset = presets.load(args.preset, args.overrides) if args.preset else None
    analysis = analyse_file(song, preset.music.bands if preset else presets.defaults().music.bands)
    curves, shots = {}, []
    frames = np.arange(int(max(0.0, analysis.duration - args.start) * args.fps) + 1)
    times = args.start + frames / args.fps
    if preset is not None and preset.modulated:
        values = Schedule(preset, analysis, args.fps).values(
            times, frames, keyframe_values(preset, frames, args.fps))
        curves = {target: (times, v) for target, v in values.items()}
    if preset is not None and preset.shots:
        shots = shot_marks(preset, analysis, times, args.fps)
    draw(waveform(song), analysis, curves, out,
         f"{song.name}" + (f" + {preset.name}" if preset else ""), shots)
    if args.json:
        record = analysis.to_json()
        record["parameters"] = {target: {"t": np.round(t, 4).tolist(),
                                         "value": np.round(v, 6).tolist()}
                                for target, (t, v) in curves.items()}
        atomic_write(args.json, json.dumps(record))
    beats = f"{analysis.tempo:.1f} BPM, {len(analysis.beats)} beats" if analysis.tempo \
        else "no beat found"
    print(f"wrote {out} ({analysis.duration:.1f} s, {beats}, {len(analysis.sections) + 1} "
          f"sections{f', {len(curves)} driven parameters' if curves else ''})")
