"""The thread budget: the pools of a render add up to the machine (or to what the user gave)."""

import cv2
import numpy as np
import torch

from conftest import ROOT
from renderer.motion.flow import flow_to_tensor
from renderer.render.threads import plan


def test_budget_adds_up_to_the_machine(monkeypatch):
    cpu = plan("cpu", segments=3, cores=2)
    assert (cpu.torch, cpu.opencv, cpu.flow, cpu.decode, cpu.encode) == (2, 1, 1, 1, 1)
    gpu = plan("cuda", segments=4, cores=16)
    assert (gpu.torch, gpu.flow, gpu.decode) == (16, 4, 4)
    monkeypatch.setenv("DREAM_THREADS", "3")
    assert plan("cpu", 2).torch == 3
    assert plan("cpu", 2, cores=1).torch == 1  # a preset's video.threads wins


def test_a_render_sizes_the_pools_as_the_preset_says(tmp_path):
    from renderer import load_preset
    from renderer.media.decode import index_video
    from renderer.engine.dream import dreamer_for
    from renderer.render.video import render_video

    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        preset = load_preset("preview", ["video.threads=1", "dream.octaves=1", "dream.steps=1",
                                         "video.warmup=2"])
        index = index_video(ROOT / "samples" / "pan.mp4", 0, 0.3)
        render_video(index, preset, dreamer_for(preset, "cpu"), tmp_path / "o.mp4", (64, 36))
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
        assert (tmp_path / "o.mp4").stat().st_size > 0
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def test_flows_become_a_tensor_without_torch_work():
    flows = [np.random.default_rng(k).normal(size=(6, 8, 2)).astype(np.float32) for k in range(3)]
    tensor = flow_to_tensor(flows)
    assert tensor.shape == (3, 2, 6, 8) and tensor.is_contiguous()
    assert torch.equal(tensor, torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2))
