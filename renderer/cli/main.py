"""The `dream` parser, the still-image and catalogue commands, and `main`: every error a user
can fix is one line and exit 2, an internal failure one line and exit 1."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shlex
import sys

from renderer.cli import live, mask, music, queue, video
from renderer.cli.common import Parser, add_common, add_mask, load_preset, number
from renderer.errors import LeaseLost, UserError

def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="dream", description="DeepDream renderer for images, videos and zoom animations.")
    parser.add_argument("--version", action="version",
                        version=f"dream {importlib.metadata.version('dream-renderer')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("image", help="dream one image", description="Dream a still image.")
    p.add_argument("input", help="input image file")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_common(p, "classic")
    add_mask(p)
    p.set_defaults(run=cmd_image)

    p = sub.add_parser("layers", help="contact sheet of one image dreamed at many layers",
                       description="Dream one image at a sequence of layers (low to high) and "
                                   "lay the results out as a labelled contact sheet.")
    p.add_argument("input", help="input image file")
    p.add_argument("-m", "--model", default="mobilenet_v2", help="model name ('dream models')")
    p.add_argument("-o", "--output", required=True, help="output sheet image (.png)")
    p.add_argument("--layers", default=None, help="comma-separated layers (default: the model's "
                                                 "standard sequence)")
    p.add_argument("--columns", type=number(int, 1, 64), default=None, help="cells per row")
    p.add_argument("--cell", type=number(int, 16, 4096), default=320,
                   help="longest side of each cell (pixels)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_common(p, None, dreams=False)
    p.set_defaults(run=cmd_layers)

    p = sub.add_parser("models", help="list models, show one model's layers, fetch weights",
                       description="List the model zoo and whether each model's weights are "
                                   "available, 'models show NAME' for its layers, or 'models "
                                   "fetch NAME' to download its torchvision weight file into "
                                   "torch's cache (checked against the hash in its name).")
    p.add_argument("action", nargs="?", choices=["list", "show", "fetch"], default="list")
    p.add_argument("name", nargs="?", help="model name for 'show' and 'fetch'")
    p.add_argument("--url", default=None, metavar="URL|FILE",
                   help="with 'fetch': a mirror's address, or a copy of the file on this "
                        "machine (the hash is still checked)")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("presets", help="list presets, or show one",
                       description="List built-in and user presets, or print one fully resolved.")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="preset name or file for 'show'")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(run=cmd_presets)

    video.register(sub)
    music.register(sub)
    queue.register(sub)
    live.register(sub)
    mask.register(sub)
    return parser


# ---------------------------------------------------------------- commands
def cmd_image(args) -> None:
    import torch

    from renderer.media import images
    from renderer.media.masks import mask_maker
    from renderer.engine.dream import dreamer_for
    from renderer.cli.bars import make_progress

    preset = load_preset(args)
    out = images.check_image_output(args.output, args.overwrite, [args.input, *preset.files()])
    size = images.parse_size(args.size) if args.size else None
    picture = images.load_image(args.input, size=size)
    region = None
    if (masks := mask_maker(preset.mask, (picture.shape[-1], picture.shape[-2]), [0.0])):
        region = torch.from_numpy(masks.cursor(0)(0, images.to_uint8(picture)[0])).float() / 255
    dreamer = dreamer_for(preset, args.device)
    with make_progress() as progress:
        task = progress.add_task("dreaming", total=dreamer.total_steps(*picture.shape[-2:]),
                                 unit="step")
        result = dreamer.dream(picture, seed=preset.seed, progress=lambda: progress.advance(task),
                               step_map=None if region is None else region[None, None])
    if region is not None:  # the source outside the mask; inside, the dream at its strength
        result = torch.lerp(picture, result.cpu(), region * preset.mask.strength)
    images.save_image(images.to_uint8(result)[0], out)
    print(f"wrote {out}")


def cmd_layers(args) -> None:
    from renderer import presets
    from renderer.media import images
    from renderer.engine.dream import Dreamer, pick_device
    from renderer.engine.models import get_spec, load_network
    from renderer.engine.objectives import layer
    from renderer.cli.bars import make_progress

    preset = load_preset(args)
    out = images.check_image_output(args.output, args.overwrite, [args.input, *preset.files()])
    spec = get_spec(args.model)
    chosen = spec.default_layers if args.layers is None else \
        [s.strip() for s in args.layers.split(",")]
    if not all(chosen):
        raise UserError(f"--layers '{args.layers}' names an empty layer: give names like "
                        f"{','.join(spec.default_layers[:2])} ('dream models show {spec.name}' "
                        "lists them)")
    device = pick_device(args.device)
    network = load_network(spec.name, preset.model.weights if args.preset else None)
    for name in chosen:
        network.check_layer(name)
    size = images.parse_size(args.size) if args.size else None
    picture = images.load_image(args.input, size=size, max_side=None if size else args.cell)
    cells = [images.label(images.to_uint8(picture)[0], "input")]
    with make_progress() as progress:
        task = progress.add_task("layers", total=len(chosen), unit="layer")
        for name in chosen:
            dreamer = Dreamer(network, layer(name), preset.dream, device)
            dreamed = dreamer.dream(picture, seed=preset.seed)
            cells.append(images.label(images.to_uint8(dreamed)[0], f"{spec.name} {name}"))
            progress.advance(task)
    columns = args.columns or min(5, len(cells))
    images.save_image(images.contact_sheet(cells, columns), out)
    print(f"wrote {out} ({len(chosen)} layers); each panel's look on your own media:")
    target = args.preset or "video"  # what `dream render` dreams with when no -p is given
    model = [] if spec.name == presets.load(target).model.name else \
        ["--set", f"model.name={spec.name}"]
    for name in chosen:
        command = ["dream", "render", "CLIP.mp4", "-o", "OUT.mp4", "-p", target, "--layer",
                   name, *model]
        print(f"  {name}: {shlex.join(command)}")


def cmd_models(args) -> None:
    from rich.table import Table

    from renderer.engine.models import (MODELS, describe_layers, fetch_weights, get_spec,
                                        load_network, weights_status)
    from renderer.cli.bars import print_table

    if args.url is not None and args.action != "fetch":
        raise UserError("--url is for 'dream models fetch NAME --url ...'")
    if args.action == "fetch":
        if not args.name:
            raise UserError("'dream models fetch' needs a model name, e.g. googlenet")
        spec = get_spec(args.name)
        path = fetch_weights(spec, args.url)
        load_network.cache_clear()
        load_network(spec.name)  # a file of another network is refused now, not at render time
        print(f"fetched {path} ({path.stat().st_size / 1e6:.1f} MB, hash checked, loads): "
              f"{spec.name} is ready")
        return
    if args.action == "show":
        if not args.name:
            raise UserError("'dream models show' needs a model name, e.g. mobilenet_v2")
        spec = get_spec(args.name)
        table = Table(title=f"{spec.name}: {spec.summary}")
        for col in ("layer", "channels", "stride", ""):
            table.add_column(col)
        for name, channels, stride in describe_layers(spec.name):
            mark = "classic" if name == spec.classic_layer else ""
            table.add_row(name, str(channels), str(stride) if stride else "-", mark)
        if weights_status(spec) == "missing":
            weights = f"weights: missing; {spec.missing_weights()}"
        else:  # load it: a file of another network is refused here, not at render time
            load_network(spec.name)
            weights = f"weights: {spec.weights_file()} (loads)"
        print_table(table)
        print(weights)
        return
    table = Table(title="models")
    for col in ("name", "weights", "description"):
        table.add_column(col)
    missing = []
    for spec in MODELS.values():
        status = weights_status(spec)
        table.add_row(spec.name, status if status != "missing" else "[red]missing[/red]",
                      spec.summary)
        if status == "missing":
            missing.append(spec)
    print_table(table)
    for spec in missing:
        print(f"{spec.name}: {spec.missing_weights()}")


def cmd_presets(args) -> None:
    from rich.table import Table

    from renderer import presets
    from renderer.cli.bars import print_table

    if args.action == "show":
        if not args.name:
            raise UserError("'dream presets show' needs a preset name or file")
        from renderer.music.schedule import describe_targets
        from renderer.music.shots import describe_shots

        preset = presets.load(args.name, args.overrides)
        print(presets.to_yaml(preset))
        driven = describe_targets(preset)
        if driven:
            print("# driven by the timeline and the music:")
            print("\n".join(f"#   {line}" for line in driven))
        if preset.shots:
            print("# shots (each a look from then on):")
            print("\n".join(f"#   {line}" for line in describe_shots(preset)))
        return
    table = Table(title="presets")
    for col in ("name", "description", "file"):
        table.add_column(col)
    for name, path in presets.available().items():
        try:
            preset = presets.load(str(path))
        except UserError as exc:  # one broken file of the user's does not hide the rest
            print(f"warning: skipped {exc}", file=sys.stderr)
            continue
        table.add_row(name, preset.description, str(path))
    print_table(table)


def main(argv=None) -> int:
    from renderer.cli.bars import show_library_notes

    parser = build_parser()
    args = parser.parse_args(argv)
    show_library_notes()
    try:
        args.run(args)
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LeaseLost as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dream presets show x | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # an internal failure: one line, the traceback on request
        if os.environ.get("DREAM_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (set DREAM_DEBUG=1 for the "
              "traceback)", file=sys.stderr)
        return 1

