"""`dream mask`: show a preset's mask (or --mask FILE) over a clip or an image before a render."""

from __future__ import annotations

from pathlib import Path

from renderer.cli.common import add_mask, load_preset
from renderer.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("mask", help="preview a mask over a clip or an image",
                       description="Draw the region a render would dream (the preset's "
                                   "'mask:' section, or --mask FILE) over the picture: a video "
                                   "(.mp4, .mov, .mkv), or an image (.png, .jpg; for a clip a "
                                   "contact sheet of frames across it).")
    p.add_argument("input", help="a video or an image")
    p.add_argument("-o", "--output", required=True, help="preview.mp4 or preview.png")
    p.add_argument("-p", "--preset", default="video",
                   help="a built-in preset name or a .yaml file (default: video)")
    p.add_argument("--size", default=None, help="preview size WIDTHxHEIGHT")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset value, e.g. --set mask.key=chroma (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_mask(p)
    p.set_defaults(run=cmd_mask)


def cmd_mask(args) -> None:
    from renderer.cli.video import listeners
    from renderer.media.decode import index_video
    from renderer.media.images import IMAGE_SUFFIXES, check_image_output, parse_size
    from renderer.media.encode import check_video_output
    from renderer.render.maskview import clip_preview, image_preview

    preset = load_preset(args)
    output = Path(args.output)
    size = parse_size(args.size) if args.size else None
    inputs = [args.input, *preset.files()]
    if output.suffix.lower() in IMAGE_SUFFIXES:
        output = check_image_output(output, args.overwrite, inputs)
    elif output.suffix.lower() in (".mp4", ".mov", ".mkv"):
        output = check_video_output(output, preset.encode.model_copy(update={"codec": "h264"}),
                                    args.overwrite, inputs)
    else:
        raise UserError(f"'{output}': a mask preview is a video (.mp4, .mov, .mkv) or an image "
                        "(.png, .jpg)")
    if Path(args.input).suffix.lower() in IMAGE_SUFFIXES:
        if output.suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"'{args.input}' is an image: write its preview as .png or .jpg")
        dreamed = image_preview(Path(args.input), preset, output, size)
    else:
        index = index_video(args.input)
        with listeners() as progress:
            dreamed = clip_preview(index, preset, output,
                                   size or (index.width - index.width % 2,
                                            index.height - index.height % 2), progress)
    print(f"wrote {output}: the mask dreams {dreamed:.1%} of the picture")
