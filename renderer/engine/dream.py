"""The dream engine: gradient ascent on a batch of images, over octaves, optionally in tiles.

Pure tensor functions (octave sizes, Laplacian normalisation, tiling) plus `Dreamer`, which owns
the truncated network and the render loop. Images are float tensors in [0, 1], shape (N, 3, H, W).
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from renderer.engine import objectives as obj
from renderer.engine.accel import Compiled, fold_batchnorm
from renderer.errors import UserError
from renderer.engine.models import Network, Networks, networks_for
from renderer.presets import DreamSection, Preset

log = logging.getLogger(__name__)

# dream.compile: auto compiles renders of at least this many pixel-frames (frames x width x
# height): 1080p from 2,900 frames. Measured on an H200 (scripts/BENCHMARKS.md): the compiled
# step saves ~15 ms per 1080p frame, the compile costs 26 s (cache warm) to 92 s (fresh)
COMPILE_PAYS = 6e9


# ---------------------------------------------------------------- pure tensor functions
def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    shrinking = size[0] < images.shape[-2]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False,
                         antialias=shrinking)


def octave_sizes(height: int, width: int, octaves: int, scale: float, minimum: int):
    """Sizes from the smallest octave up to the full size; octaves below `minimum` are skipped."""
    sizes = []
    for i in range(octaves - 1, -1, -1):
        h, w = round(height / scale**i), round(width / scale**i)
        if min(h, w) >= minimum or i == 0:
            sizes.append((h, w))
    return sizes


def laplacian_normalize(grad: torch.Tensor, levels: int, eps: float = 1e-8) -> torch.Tensor:
    """Give every spatial frequency band of the gradient the same weight, per image.

    Without this the fine bands dominate and the dream turns into high-frequency noise; with it
    detail grows at every scale (Lucid's lap_normalize).
    """
    bands, current = [], grad
    for _ in range(levels):
        if min(current.shape[-2:]) < 4:
            break
        low = F.avg_pool2d(current, 2, ceil_mode=True)
        bands.append(current - F.interpolate(low, size=current.shape[-2:], mode="bilinear",
                                             align_corners=False))
        current = low
    bands.append(current)
    out = None
    for band in reversed(bands):
        band = band / (band.flatten(1).std(1).view(-1, 1, 1, 1) + eps)
        out = band if out is None else band + F.interpolate(
            out, size=band.shape[-2:], mode="bilinear", align_corners=False)
    return out


@dataclass(frozen=True)
class TileLayout:
    batch: int
    rows: int
    cols: int
    height: int
    width: int
    core_h: int
    core_w: int
    top: int
    left: int
    margin: int


def split_tiles(images: torch.Tensor, tile: int, offset: tuple[float, float] = (0.0, 0.0),
                margin: int = 0):
    """Cut each image into a grid of overlapping tiles stacked along the batch axis.

    Each tile is a core cell plus `margin` pixels of context on every side (at most `tile`
    pixels in all), so the network sees what surrounds the cell; only the core is kept on merge.
    `offset` (fractions of a cell, in [0, 1)) moves the grid; the image is edge-padded to fit.
    """
    n, c, h, w = images.shape
    core = tile - 2 * margin
    rows, cols = math.ceil(h / core), math.ceil(w / core)
    ch, cw = math.ceil(h / rows), math.ceil(w / cols)
    top, left = int(offset[0] * ch), int(offset[1] * cw)
    rows, cols = rows + (top > 0), cols + (left > 0)
    m = margin
    padded = F.pad(images, (left + m, cols * cw - w - left + m, top + m, rows * ch - h - top + m),
                   mode="replicate")
    tiles = padded.unfold(2, ch + 2 * m, ch).unfold(3, cw + 2 * m, cw)  # n, c, rows, cols, th, tw
    tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(n * rows * cols, c, ch + 2 * m, cw + 2 * m)
    return tiles, TileLayout(n, rows, cols, h, w, ch, cw, top, left, m)


def merge_tiles(tiles: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """Put the cores of the tiles back together (the inverse of split_tiles)."""
    n, r, k, ch, cw, m = (layout.batch, layout.rows, layout.cols, layout.core_h, layout.core_w,
                          layout.margin)
    c = tiles.shape[1]
    cores = tiles[..., m:m + ch, m:m + cw]
    full = cores.reshape(n, r, k, c, ch, cw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, r * ch, k * cw)
    return full[..., layout.top: layout.top + layout.height,
                layout.left: layout.left + layout.width]


@dataclass
class Anchor:
    """Temporal loss: each step pulls x towards `target` where `mask` trusts it; `weight` is
    one number, or one per image."""
    target: torch.Tensor
    mask: torch.Tensor
    weight: float | torch.Tensor


# ---------------------------------------------------------------- the engine
class StepRandomness:
    """Per-image jitter streams plus one stream for tile offsets.

    Each image of a batch has its own seed, so variants of one picture differ; tiling draws
    from its own stream and never changes the jitter sequence.
    """

    def __init__(self, seeds: list[int]):
        self.jitter = [torch.Generator().manual_seed(s) for s in seeds]
        self.tiles = torch.Generator().manual_seed(seeds[0] + 0x9E3779B9)

    def shifts(self, spread: int) -> list[tuple[int, int]]:
        return [tuple(torch.randint(-spread, spread + 1, (2,), generator=g).tolist())
                for g in self.jitter]


def roll_indices(shifts: list[tuple[int, int]], height: int, width: int, device, sign: int = 1):
    """Gather indices that roll every image of a batch by its own (dy, dx): rows (N, H) and
    cols (N, W). Shifts as data rather than Python ints, so a compiled step never recompiles
    for a new jitter."""
    shifts = torch.tensor(shifts, dtype=torch.long).T.mul(sign).view(2, -1, 1)
    if torch.device(device).type == "cuda":  # a pageable copy would wait for the GPU to drain
        shifts = shifts.pin_memory()
    dy, dx = shifts.to(device, non_blocking=True)
    rows = (torch.arange(height, device=device) - dy) % height
    cols = (torch.arange(width, device=device) - dx) % width
    return rows, cols


def roll_each(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """images[n, :, rows[n], cols[n]], i.e. torch.roll per image (as two gathers: a quarter
    of the time of one advanced-index lookup on the CPU; Inductor fuses them on the GPU)."""
    n, c, h, w = images.shape
    images = images.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w))
    return images.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


def to_device(values, device, dtype=torch.float32) -> torch.Tensor:
    """Host values (a sequence or a numpy array) as a tensor on the device, without waiting for
    it: on a GPU a copy from pageable memory first waits for every queued kernel, a copy from
    pinned memory is queued behind them."""
    host = torch.tensor(values, dtype=dtype)
    if torch.device(device).type == "cuda":
        host = host.pin_memory()
    return host.to(device, non_blocking=True)


def row_values(value, rows: int, device) -> torch.Tensor:
    """One value per image as an (N, 1, 1, 1) tensor on the device: a number is a fill (no host
    copy), a sequence one value per row (a music-driven parameter differs per batch row). A
    compiled function takes it as data, so it neither recompiles nor syncs when values change."""
    if isinstance(value, torch.Tensor):
        return value.to(device, torch.float32).reshape(rows, 1, 1, 1)
    if isinstance(value, (int, float)):
        return torch.full((rows, 1, 1, 1), float(value), device=device)
    return to_device([float(v) for v in value], device).reshape(rows, 1, 1, 1)


def ascend(x, grad, rows, cols, step_size, lap_levels: int, target=None, mask=None, weight=None):
    """One gradient-ascent update from the gradient at the jittered image: roll the gradient
    back, normalise it (Laplacian bands, then mean |g| = 1), step, pull towards the temporal
    anchor, clamp. All element-wise, so torch.compile fuses it into a few kernels."""
    grad = roll_each(grad, rows, cols)
    if lap_levels:
        grad = laplacian_normalize(grad, lap_levels)
    grad = grad / (grad.abs().flatten(1).mean(1).view(-1, 1, 1, 1) + 1e-8)
    x = x + step_size * grad
    if target is not None:
        x = x - weight * mask * (x - target)
    return x.clamp(0.0, 1.0)


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device, checked now (not at the first frame); else CUDA when present."""
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UserError(f"--device '{requested}' is not a device: use cpu, cuda or cuda:N"
                        ) from None
    if device.type == "cuda" and not (torch.cuda.is_available() and (
            device.index is None or device.index < torch.cuda.device_count())):
        raise UserError(f"--device {requested}: no such CUDA GPU here "
                        f"({torch.cuda.device_count()} found): use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device '{requested}' is not supported: use cpu, cuda or cuda:N")
    return device


@dataclass(frozen=True)
class StepFunctions:
    """The two halves of an ascent step: the loss to differentiate and the update."""
    loss: Callable[[torch.Tensor], torch.Tensor]
    ascend: Callable[..., torch.Tensor]


class Dreamer:
    """Owns a network truncated to the objective's layers and dreams batches of images."""

    def __init__(self, network: Network | Networks, objective: obj.Objective,
                 settings: DreamSection, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.settings = settings
        self.objective = objective
        self.tile_size = settings.tile_size  # shrinks if the GPU runs out of memory
        cuda = self.device.type == "cuda"
        net = network.truncated(objective.layers)
        if settings.fold_bn:
            net = net.map(fold_batchnorm)
        self.net = net.to(self.device)
        self.dtype = {"auto": torch.bfloat16 if cuda else None, "fp32": None,
                      "bf16": torch.bfloat16}[settings.precision]
        self.channels_last = settings.channels_last is True or (
            settings.channels_last == "auto" and self.device.type in ("cuda", "cpu"))
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        mode = {"auto": "auto" if cuda else "off", True: "on", False: "off"}.get(
            settings.compile, settings.compile)
        self.eager = StepFunctions(self._loss, ascend)
        self.compiled = None if mode == "off" else StepFunctions(
            Compiled(self._loss, "graphs" if mode == "graphs" else "on"), Compiled(ascend, "on"))
        self.use_compiled = mode in ("on", "graphs")  # auto: `choose_compile` decides per render

    @property
    def static_shapes(self) -> bool:
        """Whether callers should keep batch shapes fixed (a compiled step is per shape)."""
        return self.compiled is not None and self.use_compiled

    def _functions(self) -> StepFunctions:
        return self.compiled if self.static_shapes else self.eager

    def choose_compile(self, frames: int, size: tuple[int, int]) -> bool:
        """dream.compile: auto. Compiling costs 26 s (Inductor's cache warm) to 92 s (a fresh
        machine) and makes each step about a third faster (H200, 1080p: 2.14 against 3.19 ms),
        so it pays only for long renders: from COMPILE_PAYS pixel-frames on (about two minutes
        of 1080p). Shorter renders start at once and run eagerly. Returns the choice."""
        if self.compiled is not None and not self.use_compiled:
            self.use_compiled = frames * size[0] * size[1] >= COMPILE_PAYS
            if self.use_compiled:
                log.info("compiling the dream step for this long render (a minute or two on a "
                         "fresh machine, cached after that)")
        return self.use_compiled

    def prepare(self, shape: tuple[int, ...]) -> None:
        """Compile every octave of a batch shape now (first frames, no anchor, and carried
        ones), e.g. before timing; a no-op where compiling is off. Inputs from a private
        generator: the global random state stays the caller's."""
        if self.compiled is None:
            return
        self.use_compiled = True
        noise = torch.Generator().manual_seed(0)
        images = torch.rand(shape, generator=noise)
        mask = torch.ones(shape[0], 1, *shape[2:], device=self.device)
        target = torch.rand(shape, generator=noise).to(self.device)
        anchored = Anchor(target, mask, 0.5)
        for anchor, step_map in ((None, None), (anchored, None), (anchored, mask)):
            self.dream(images, steps=1, anchor=anchor, step_map=step_map)

    def _autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.objective(self.net(x)).sum()

    def _focus(self) -> None:
        """Run only the networks, and only as deep, as the next batch's objective reads (a
        shot's other model, a look's deeper layer)."""
        self.net.focus(self.objective.needed)

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """The objective per image (no gradient), e.g. to check that dreaming raised it."""
        self._focus()
        with torch.no_grad(), self._autocast():
            return self.objective(self.net(images.to(self.device))).float()

    def _gradient(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        inp = x.contiguous(memory_format=torch.channels_last if self.channels_last
                           else torch.contiguous_format)
        (grad,) = torch.autograd.grad(self._functions().loss(inp), x)
        return grad

    def gradient(self, x: torch.Tensor, tile_offset=(0.0, 0.0)) -> torch.Tensor:
        """d objective / d x; images larger than the tile size go through as batches of tiles.

        If the GPU runs out of memory the tile size halves (down to 256 px) and the step is
        retried, so a render carries on at a smaller working set instead of failing.
        """
        while True:
            try:
                if max(x.shape[-2:]) <= self.tile_size:
                    return self._gradient(x)
                tiles, layout = split_tiles(x, self.tile_size, tile_offset,
                                            min(self.settings.tile_margin, self.tile_size // 4))
                grads = [self._gradient(chunk) for chunk in tiles.split(self.settings.tile_batch)]
                return merge_tiles(torch.cat(grads), layout)
            except torch.OutOfMemoryError:
                if self.tile_size <= 256:
                    raise
                torch.cuda.empty_cache()
                self.tile_size = max(256, min(self.tile_size, max(x.shape[-2:])) // 2)
                log.warning(f"GPU memory full: tiles of {self.tile_size} px from now on")

    def step(self, x, step_size: torch.Tensor, rng: StepRandomness, anchor: Anchor | None = None):
        """One ascent step of the batch; `step_size` is (N, 1, 1, 1) on the device, or
        (N, 1, H, W): one per pixel."""
        s = self.settings
        shifts = rng.shifts(s.jitter) if s.jitter else [(0, 0)] * x.shape[0]
        # a fresh random tile grid every step, so no tile seam stays in one place
        offset = tuple(torch.rand(2, generator=rng.tiles).tolist())
        h, w = x.shape[-2:]
        grad = self.gradient(roll_each(x, *roll_indices(shifts, h, w, x.device)), offset)
        pull = () if anchor is None else (anchor.target, anchor.mask,
                                          row_values(anchor.weight, x.shape[0], x.device))
        return self._functions().ascend(x, grad, *roll_indices(shifts, h, w, x.device, -1),
                                        step_size, s.lap_levels, *pull)

    def dream(self, images: torch.Tensor, seed: int | list[int] = 0, steps: int | None = None,
              octaves: int | None = None, step_scale=1.0, anchor: Anchor | None = None,
              step_map: torch.Tensor | None = None, progress=None,
              turn: int | None = None) -> torch.Tensor:
        """Dream a batch: octave by octave from small to full size, carrying the added detail.

        `seed` is one seed for the batch or one per image; `step_scale` multiplies
        `dream.step_size`, one number or one per image; `step_map` ((N, 1, H, W) in 0..1)
        multiplies it per pixel (0: the pixel is left as it is). `turn`: dream only the
        octave at that place (counted from the smallest, round and round), its detail scaled
        up onto the images (a carried frame's share of `flow.octaves: rotate`).
        """
        s = self.settings
        self._focus()
        seeds = [int(seed)] * images.shape[0] if isinstance(seed, int) else [int(v) for v in seed]
        rng = StepRandomness(seeds)
        steps = s.steps if steps is None else steps
        # one memory layout for every call (decoded frames arrive channels-last): a compiled
        # update is specialised on strides and would recompile for each new layout
        base = images.to(self.device, torch.float32).contiguous()
        if anchor is not None:
            anchor = Anchor(anchor.target.contiguous(), anchor.mask.contiguous(), anchor.weight)
        sizes = octave_sizes(*base.shape[-2:], octaves or s.octaves, s.octave_scale,
                             s.min_octave_size)
        if turn is not None:
            sizes = [sizes[turn % len(sizes)]]
        step_size = s.step_size * row_values(step_scale, base.shape[0], self.device)
        if step_map is not None:
            step_map = step_map.to(self.device, torch.float32).contiguous()
        detail = None
        for size in sizes:
            octave_base = resize(base, size)
            x = octave_base if detail is None else octave_base + resize(detail, size)
            octave_anchor = None if anchor is None else Anchor(
                resize(anchor.target, size), resize(anchor.mask, size), anchor.weight)
            octave_step = step_size if step_map is None else step_size * resize(step_map, size)
            for _ in range(steps):
                x = self.step(x, octave_step, rng, octave_anchor)
                if progress is not None:
                    progress()
            detail = x - octave_base
        return (base + resize(detail, base.shape[-2:])).clamp(0.0, 1.0) if detail is not None \
            else base

    def total_steps(self, height: int, width: int, steps: int | None = None) -> int:
        s = self.settings
        sizes = octave_sizes(height, width, s.octaves, s.octave_scale, s.min_octave_size)
        return len(sizes) * (s.steps if steps is None else steps)


def dreamer_for(preset: Preset, device=None) -> Dreamer:
    """The usual way in: a preset becomes a ready Dreamer on the best device."""
    device = pick_device(device)
    network = networks_for(preset)
    return Dreamer(network, obj.build_objective(preset, network, device), preset.dream, device)
