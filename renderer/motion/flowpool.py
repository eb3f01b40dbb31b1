"""The flow of a render's frame pairs, on a pool of threads or of worker processes.

Both pools take a list of (previous, current) RGB frames and give back the backward and
forward flows as two (N, 2, h, w) float32 arrays at the estimation size, the same numbers
either way (DIS is deterministic; the estimator is stateless between pairs).

Threads suit the CPU, where the dream's own torch threads need every core (beside a flow
process the dream calls on two cores took 1.54x as long). Processes suit a GPU: there the dream
loop's thread launches every kernel from Python, and a flow thread beside it takes the GIL back
at every return from OpenCV or numpy (a launcher beside one 1080p aligned flow thread ran at
0.924x its rate alone, beside a flow process at 0.952x; beside two, 0.644x and 0.735x:
scripts/BENCHMARKS.md, `scripts/gil_bench.py`). The frames go to the workers as luma at the
estimation size, written into shared memory in the parent (OpenCV, without the GIL); the flows
come back through it, so nothing large is pickled. No torch here: a worker imports OpenCV and
numpy only.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import cv2
import numpy as np

from renderer.motion.dis import FlowEstimator, batched


class FlowThreads:
    """Each pair on one of `workers` threads, each with its own estimator."""

    def __init__(self, settings, workers: int):
        self.settings = settings
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flow")
        self.local = threading.local()

    def _pair(self, pair):
        if not hasattr(self.local, "estimator"):
            self.local.estimator = FlowEstimator.of(self.settings)
        return self.local.estimator.pair(*pair)

    def flows(self, pairs: list) -> tuple[np.ndarray, np.ndarray]:
        both = list(self.pool.map(self._pair, pairs))
        return batched([f[0] for f in both]), batched([f[1] for f in both])

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class FlowProcesses:
    """Each pair in one of `workers` spawned processes. `frame_size` (H, W) is the frames'
    size; up to `slots` pairs are estimated at once (one slot of shared memory each: the two
    frames' luma in, the two flows out). `opencv_threads` per worker."""

    def __init__(self, settings, frame_size: tuple[int, int], slots: int, workers: int,
                 opencv_threads: int = 1):
        self.estimator = FlowEstimator.of(settings)  # the luma at the estimation size, here
        w, h = self.estimator.size_for(*frame_size)
        context = multiprocessing.get_context("spawn")  # never fork a process that holds CUDA
        self.frames = context.RawArray("B", slots * 2 * h * w)
        self.results = context.RawArray("f", slots * 4 * h * w)
        self.grays, self.flows_out = _views(self.frames, self.results, slots, h, w)
        self.pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_start_worker,
            initargs=(os.getpid(), (settings.quality, settings.max_width, settings.align),
                      opencv_threads, self.frames, self.results, slots, h, w))
        self.slots = slots

    def flows(self, pairs: list) -> tuple[np.ndarray, np.ndarray]:
        if len(pairs) > self.slots:
            raise ValueError(f"{len(pairs)} pairs at once, but {self.slots} slots")
        for k, (previous, current) in enumerate(pairs):
            for side, rgb in enumerate((previous, current)):
                self.grays[k, side] = self.estimator.gray(rgb)
        try:
            for done in [self.pool.submit(_estimate, k) for k in range(len(pairs))]:
                done.result()
        except BrokenProcessPool:
            raise RuntimeError("a flow worker process died (killed, or out of memory); the "
                               "render can be resumed with --resume") from None
        n = len(pairs)
        return self.flows_out[:n, 0].copy(), self.flows_out[:n, 1].copy()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _views(frames, results, slots: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The shared buffers as (slots, 2, h, w) luma and (slots, 2 directions, 2, h, w) flows."""
    return (np.frombuffer(frames, np.uint8).reshape(slots, 2, h, w),
            np.frombuffer(results, np.float32).reshape(slots, 2, 2, h, w))


_WORKER: dict = {}  # in a worker process: its estimator and its views of the shared buffers


def _start_worker(render: int, estimator: tuple, opencv_threads: int, frames, results,
                  slots: int, h: int, w: int) -> None:
    threading.Thread(target=_die_with, args=(render,), daemon=True).start()
    cv2.setNumThreads(opencv_threads)
    _WORKER["estimator"] = FlowEstimator(*estimator)
    _WORKER["grays"], _WORKER["flows"] = _views(frames, results, slots, h, w)


def _die_with(parent: int) -> None:
    """End this worker once its render is gone (killed with -9, it cannot say so), so that
    no worker, nor the resource tracker the workers keep open, outlives it. The render's PID
    comes from the render itself: one killed while this worker was still starting has already
    handed it to another parent."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _estimate(slot: int) -> None:
    grays, out = _WORKER["grays"][slot], _WORKER["flows"][slot]
    backward, forward = _WORKER["estimator"].pair_gray(grays[0], grays[1])
    out[0], out[1] = backward.transpose(2, 0, 1), forward.transpose(2, 0, 1)
