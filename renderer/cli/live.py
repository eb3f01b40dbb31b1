"""`dream live`: a camera or a file dreamed in real time, shown on a local web page."""

from __future__ import annotations

import sys
from pathlib import Path

from renderer.cli.common import add_mask, number


def register(sub) -> None:
    p = sub.add_parser("live", help="dream a camera live in the browser",
                       description="Dream a camera (or a video file played as one) in real "
                                   "time and show it on a page at 127.0.0.1, with a preset "
                                   "picker and sliders.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", type=number(int, 0, 64), default=None,
                     help="camera index (default 0)")
    src.add_argument("--input", default=None, help="a video file, played at its own rate")
    p.add_argument("-p", "--preset", default="live", help="starting preset (default: live)")
    p.add_argument("--size", default="640x360", help="dream size WxH (default 640x360)")
    p.add_argument("--host", default="127.0.0.1",
                   help="listen address (default 127.0.0.1; any other needs the printed token)")
    p.add_argument("--port", type=number(int, 0, 65535), default=8765,
                   help="port (0: any free one)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N")
    p.add_argument("--record-dir", default=".",
                   help="where the page's record button writes (default: here)")
    add_mask(p)
    p.add_argument("--print-url", action="store_true",
                   help="print only the page's URL on stdout (for scripts)")
    perform = p.add_argument_group("performing: controllers in, streams out")
    perform.add_argument("--osc", type=number(int, 0, 65535), default=None, metavar="PORT",
                         help="listen for OSC on this UDP port (on --host): /dream/strength "
                              "0.7, /dream/preset classic, /dream/next, ...")
    perform.add_argument("--midi", default=None, metavar="PORT",
                         help="take a MIDI controller: a port's name (see the error for the "
                              "list) or 'virtual'; learn its knobs on the page")
    perform.add_argument("--midi-map", default="dream-midi.yaml", metavar="FILE",
                         help="where MIDI learn keeps its bindings (default: dream-midi.yaml "
                              "here), read again at the next start")
    perform.add_argument("--srt", default=None, metavar="URL",
                         help="also send the dream as H.264 over SRT, e.g. "
                              "srt://0.0.0.0:9000?mode=listener (OBS, TouchDesigner)")
    perform.add_argument("--virtual-camera", action="store_true",
                         help="also send the dream to a virtual webcam (optional extra: "
                              "pyvirtualcam)")
    perform.add_argument("--ndi", default=None, metavar="NAME",
                         help="NDI is not built in: the error says what to use instead")
    p.set_defaults(run=cmd_live)


def cmd_live(args) -> None:
    from renderer import presets
    from renderer.live.server import is_loopback, serve
    from renderer.live.capture import Capture
    from renderer.live.session import LiveSession
    from renderer.media.images import parse_size
    from renderer.live.midi import MidiControl
    from renderer.live.osc import OscControl
    from renderer.live.streams import SrtOut, VirtualCamera, check_ndi, check_srt
    from renderer.media.masks import mask_maker
    from renderer.media.probe import ffmpeg_exe

    names = sorted(presets.available())
    presets.locate(args.preset)  # a name or a file; the page offers it beside the others
    if args.preset not in names:
        names.append(args.preset)
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}: anyone who can reach this machine and has "
              "the token in the URL can watch the camera", file=sys.stderr)
    size = parse_size(args.size)
    if args.mask:  # refused before the camera opens
        mask_maker(presets.MaskSection(file=args.mask), size, [0.0])
    if args.ndi is not None:
        check_ndi()
    if args.srt:
        check_srt(args.srt)
    capture = Capture(args.input if args.input is not None else (args.camera or 0), size)
    session = LiveSession(capture, args.preset, names, args.device, Path(args.record_dir),
                          args.mask)
    outputs, osc = [], None
    try:
        if args.midi:
            session.midi = MidiControl(session, Path(args.midi_map)).open(args.midi)
            session.inputs.append(f"MIDI {args.midi}")
        if args.osc is not None:
            osc = OscControl(session, args.host, args.osc)
        if args.srt:
            outputs.append(SrtOut(session, args.srt, size, ffmpeg_exe()).start())
            session.inputs.append(f"SRT {args.srt}")
        if args.virtual_camera:
            outputs.append(VirtualCamera(session, size).start())
            session.inputs.append("virtual camera")

        def ready(url: str) -> None:
            if osc is not None:
                session.inputs.append(f"OSC udp://{args.host}:{osc.port}")
            if args.print_url:
                print(url, flush=True)
                return
            print(f"dream live: open {url} (Ctrl-C to stop)", flush=True)
            for line in session.inputs:
                print(f"  {line}", flush=True)

        serve(session, args.host, args.port, ready, osc)
    finally:
        session.close()
        for thing in [osc, session.midi, *outputs]:
            if thing is not None:
                thing.close()
