"""Flow in worker processes (issue 31): the same flows as on threads, the same frames, and a
dead worker is a clear error."""

import os
import signal

import numpy as np
import pytest

from conftest import ROOT, run_cli
from renderer import load_preset
from renderer.media.decode import FrameReader, index_video
from renderer.motion.flowpool import FlowProcesses, FlowThreads
from renderer.render.threads import plan


@pytest.fixture(scope="module")
def frames():
    index = index_video(ROOT / "samples" / "pan.mp4", 0, 0.3)
    reader = FrameReader(index, 0, 4, (400, 224))
    try:
        return [next(reader) for _ in range(4)]
    finally:
        reader.close()


@pytest.fixture
def settings():
    # wider than max_width (the luma is shrunk before DIS) and aligned (three DIS calls a pair)
    return load_preset("video", ["flow.max_width=320"]).flow


def test_flow_processes_give_the_threads_flows(frames, settings):
    pairs = [(frames[k], frames[k + 1]) for k in range(3)]
    processes = FlowProcesses(settings, (224, 400), slots=3, workers=2)
    threads = FlowThreads(settings, workers=2)
    try:
        backward, forward = processes.flows(pairs)
        expected = threads.flows(pairs)
        assert backward.shape == forward.shape == (3, 2, 179, 320)
        assert np.array_equal(backward, expected[0]) and np.array_equal(forward, expected[1])
        assert np.abs(backward[:, 0]).mean() > 0.5  # the clip pans: the flow is not all zero
        again = processes.flows(pairs[1:])  # fewer pairs, other slots' old flows not returned
        assert np.array_equal(again[0], expected[0][1:])
    finally:
        processes.close()
        threads.close()


def test_a_dead_flow_worker_is_a_clear_error(frames, settings):
    processes = FlowProcesses(settings, (224, 400), slots=1, workers=1)
    try:
        processes.flows([(frames[0], frames[1])])
        for pid in list(processes.pool._processes):
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match="flow worker process died"):
            processes.flows([(frames[1], frames[2])])
    finally:
        processes.close()


def test_flow_runs_in_processes_on_a_gpu_and_on_threads_on_the_cpu():
    assert plan("cuda", segments=4, cores=16).flow_processes
    assert not plan("cpu", segments=2, cores=2).flow_processes
    assert plan("cpu", segments=2, cores=2, flow_workers="processes").flow_processes
    assert not plan("cuda", segments=4, cores=16, flow_workers="threads").flow_processes


def test_a_render_with_flow_processes_has_the_frames_of_one_with_threads(tmp_path):
    args = ["-p", "video", "--size", "96x54", "--end", "0.5", "--set", "dream.octaves=1",
            "--set", "dream.steps=2", "--set", "flow.steps=1", "--set", "video.warmup=2",
            "--set", "encode.codec=png", "--set", "flow.max_width=64", "--batch", "2"]
    frames = {}
    for kind in ("threads", "processes"):
        out = tmp_path / kind
        result = run_cli("render", ROOT / "samples" / "pan.mp4", "-o", out, *args,
                         "--set", f"video.flow_workers={kind}")
        assert result.returncode == 0, result.stderr
        frames[kind] = [p.read_bytes() for p in sorted(out.glob("frame_*.png"))]
    assert len(frames["threads"]) == 12
    assert frames["processes"] == frames["threads"]
