"""Our renderer against the best-known public PyTorch DeepDream tool's method, on the same work.

    python scripts/anchor_bench.py CLIP [-p video] [--frames 240] [--anchor-frames 24]
                                   [--batch B] [--set K=V ...] [--out table.md]

The anchor is the frame-by-frame video method of gordicaleksa/pytorch-deepdream, re-implemented
here from its published description (README and write-up; no code copied): ffmpeg dumps the
clip's frames to JPEG files; each frame is read with OpenCV into a float32 numpy array,
ImageNet-normalised and dreamed alone (batch 1, fp32). For each level of the image pyramid
(`dream.octaves` levels, `dream.octave_scale` apart) the numpy image is resized with OpenCV on
the CPU, copied to the device and given `dream.steps` gradient-ascent iterations: a random
circular shift (up to `dream.jitter` px), a forward pass to the objective's layers, the loss =
mean squared activation, backward, the gradient smoothed by a cascade of three Gaussians
(sigma grows with the iteration), made zero-mean and unit-std, a step of lr 0.09, the shift
undone, a clamp to the normalised pixel range; then the image goes back to numpy for the next
level. The dreamed frame is written as a JPEG; at the end ffmpeg encodes the files with x264.
Same network and weights, layers, octaves, octave scale and steps as ours.

Ours: `render_video` with the preset, carried frames given as many steps as first frames
(`flow.steps` = `dream.steps`), so both do the same ascent per frame (by default ours does
fewer on carried frames, and would be faster still). Both times include decoding and encoding
(ours also the optical flow, the temporal loss and the audio mux). The compile before our
render is reported apart, as start-up.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

import benchkit
from renderer.engine.dream import dreamer_for, pick_device
from renderer.engine.models import load_network
from renderer.engine.objectives import build_objective
from renderer.media.decode import index_video
from renderer.media.probe import ffmpeg_exe
from renderer.presets import Preset, load
from renderer.render.plan import default_batch, plan_segments
from renderer.render.video import render_video

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
LR = 0.09
SMOOTHING = 0.5
KERNEL = 9


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def gaussian_kernels(sigma: float, device) -> torch.Tensor:
    """Three depthwise 9x9 Gaussian kernels (sigma x 0.5, 1, 2) for the RGB channels."""
    ax = torch.arange(KERNEL, dtype=torch.float32) - (KERNEL - 1) / 2
    kernels = []
    for s in (0.5 * sigma, sigma, 2.0 * sigma):
        g = torch.exp(-ax**2 / (2 * s * s))
        k = torch.outer(g, g)
        kernels.append((k / k.sum()).expand(3, 1, KERNEL, KERNEL))
    return torch.stack(kernels).to(device)


def cascade_smooth(grad: torch.Tensor, sigma: float) -> torch.Tensor:
    padded = F.pad(grad, [KERNEL // 2] * 4, mode="reflect")
    return torch.stack([F.conv2d(padded, k, groups=3) for k in gaussian_kernels(sigma, grad.device)]
                       ).mean(0)


class AnchorMethod:
    """The frame-by-frame method: one frame, one pyramid, numpy in and out at every level."""

    def __init__(self, preset: Preset, device: torch.device):
        network = load_network(preset.model.name, preset.model.weights)
        net = network.truncated(preset_layers(preset))
        self.stages = [(name, stage.to(device)) for name, stage in zip(net.names, net.stages)]
        self.keep = net.keep
        self.device = device
        self.settings = preset.dream
        self.lower = torch.tensor(-IMAGENET_MEAN / IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self.upper = torch.tensor((1 - IMAGENET_MEAN) / IMAGENET_STD,
                                  device=device).view(1, 3, 1, 1)
        self.rng = np.random.default_rng(preset.seed)

    def activations(self, x):
        out = []
        for name, stage in self.stages:
            x = stage(x)
            if name in self.keep:
                out.append(x)
        return out

    def ascend(self, x: torch.Tensor, iteration: int) -> None:
        s = self.settings
        dy, dx = (int(v) for v in self.rng.integers(-s.jitter, s.jitter + 1, 2))
        with torch.no_grad():
            x.data = torch.roll(x.data, (dy, dx), (2, 3))
        losses = [F.mse_loss(a, torch.zeros_like(a)) for a in self.activations(x)]
        torch.stack(losses).mean().backward()
        sigma = ((iteration + 1) / s.steps) * 2.0 + SMOOTHING
        grad = cascade_smooth(x.grad.data, sigma)
        grad = (grad - grad.mean()) / grad.std()
        with torch.no_grad():
            x.data += LR * grad
            x.grad.zero_()
            x.data = torch.roll(torch.maximum(torch.minimum(x.data, self.upper), self.lower),
                                (-dy, -dx), (2, 3))

    def dream(self, rgb: np.ndarray) -> np.ndarray:
        s = self.settings
        img = (rgb.astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
        h, w = img.shape[:2]
        for level in range(s.octaves):
            exponent = s.octaves - 1 - level
            size = (round(w / s.octave_scale**exponent), round(h / s.octave_scale**exponent))
            img = cv2.resize(img, size)
            x = torch.from_numpy(img).permute(2, 0, 1).to(self.device).unsqueeze(0)
            x.requires_grad_(True)
            for iteration in range(s.steps):
                self.ascend(x, iteration)
            img = x.detach().cpu().squeeze(0).numpy().transpose(1, 2, 0)
        return (np.clip(img * IMAGENET_STD + IMAGENET_MEAN, 0, 1) * 255).astype(np.uint8)


def preset_layers(preset: Preset) -> list[str]:
    network = load_network(preset.model.name, preset.model.weights)
    return sorted(build_objective(preset, network).layers)


def anchor_render(clip: str, preset: Preset, frames: int, fps: float, device, work: Path):
    """Dump, dream frame by frame, write files, encode: seconds per stage and in all."""
    ff = ffmpeg_exe()
    dumped, dreamed = work / "frames", work / "dreamed"
    dumped.mkdir()
    dreamed.mkdir()
    method = AnchorMethod(preset, device)
    times = {}
    t0 = t = time.perf_counter()
    subprocess.run([ff, "-v", "error", "-i", clip, "-frames:v", str(frames), "-q:v", "2",
                    str(dumped / "%06d.jpg")], check=True)
    times["dump"] = time.perf_counter() - t
    times["dream"] = times["read+write"] = 0.0
    for path in sorted(dumped.glob("*.jpg")):
        t = time.perf_counter()
        rgb = cv2.imread(str(path))[:, :, ::-1]
        times["read+write"] += time.perf_counter() - t
        t = time.perf_counter()
        out = method.dream(rgb)
        sync(device)
        times["dream"] += time.perf_counter() - t
        t = time.perf_counter()
        cv2.imwrite(str(dreamed / path.name), out[:, :, ::-1])
        times["read+write"] += time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([ff, "-v", "error", "-y", "-framerate", str(fps), "-i",
                    str(dreamed / "%06d.jpg"), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(work / "anchor.mp4")], check=True)
    times["encode"] = time.perf_counter() - t
    return time.perf_counter() - t0, times


def ours(clip: str, preset: Preset, frames: int, batch: int | None, device, work: Path):
    index = index_video(clip)
    if frames < index.count:
        index.pts = index.pts[:frames]
        index.end = index.pts[-1] + (index.pts[-1] - index.pts[-2])
    size = (index.width, index.height)
    dreamer = dreamer_for(preset, device)
    batch = batch or preset.video.batch or default_batch(dreamer.device, size)
    rows = len(plan_segments(index.count, batch, preset.video.warmup))
    t = time.perf_counter()
    dreamer.prepare((rows, 3, size[1], size[0]))
    sync(dreamer.device)
    startup = time.perf_counter() - t
    t = time.perf_counter()
    render_video(index, preset, dreamer, work / "ours.mp4", size, batch=batch)
    return index.count, time.perf_counter() - t, startup, rows


def main():
    parser = benchkit.parser(__doc__, size=False)
    parser.add_argument("--frames", type=int, default=240, help="frames our renderer renders")
    parser.add_argument("--anchor-frames", type=int, default=24,
                        help="frames the anchor method renders (its fps is per frame)")
    parser.add_argument("--batch", type=int, default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    base = load(args.preset, args.overrides)
    preset = load(args.preset, [*args.overrides, f"flow.steps={base.dream.steps}"])
    index = index_video(args.clip)
    d = preset.dream
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        n, wall, startup, rows = ours(args.clip, preset, args.frames, args.batch, device, work)
        anchor_frames = min(args.anchor_frames, index.count)
        anchor_wall, stages = anchor_render(args.clip, preset, anchor_frames, index.rate, device,
                                            work)
    our_fps, anchor_fps = n / wall, anchor_frames / anchor_wall
    lines = [f"{index.width}x{index.height}, {preset.model.name} to "
             f"{', '.join(preset_layers(preset))}, {d.octaves} octaves x {d.octave_scale}, "
             f"{d.steps} steps per octave on every frame", "",
             "| method | frames | fps | notes |", "|---|---|---|---|",
             f"| ours (`{args.preset}`, flow.steps={d.steps}) | {n} | {our_fps:.2f} | "
             f"{rows} segments in lockstep; compile before it {startup:.1f} s |",
             f"| frame by frame (gordicaleksa/pytorch-deepdream's method) | {anchor_frames} | "
             f"{anchor_fps:.2f} | dump {stages['dump']:.1f} s, dream {stages['dream']:.1f} s, "
             f"read+write {stages['read+write']:.1f} s, encode {stages['encode']:.1f} s |", "",
             f"ours / anchor: **{our_fps / anchor_fps:.1f}x**", ""]
    benchkit.Report("anchor bench", device, args.out).emit(*lines)


if __name__ == "__main__":
    main()
