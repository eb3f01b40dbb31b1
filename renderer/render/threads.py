"""The thread budget: how many threads each pool of a render gets, so that together they add up
to the machine instead of each sizing itself for all of it.

A render has five pools: torch's intra-op threads (the dream on the CPU), OpenCV's (DIS flow,
resizes), the flow workers (threads, or processes on a GPU: `motion.flowpool`), the decoders'
and the encoders' (x264/x265). Left alone each takes every core, and on a laptop they fight: a
coherent dream call cost 1.7x an independent one while the producer thread ran. On the CPU the
dream is nearly all the work, so it gets the cores and the side pools one thread each (and the
producer thread runs no torch op: each calling thread gets its own OpenMP team). On a GPU the
CPU only feeds the device: torch, OpenCV and the flow workers keep the machine, decoders share
it, encoders choose their own threads (as measured on the H200; not re-measured since).
OpenMP's wait policy is left alone: PASSIVE made every dream call 2x slower on two cores
(scripts/BENCHMARKS.md).

Override the core count with `video.threads` in a preset or DREAM_THREADS in the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV = "DREAM_THREADS"


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, not the whole machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Budget:
    cores: int
    torch: int  # intra-op threads of the dream (CPU device) or of host-side tensor work
    opencv: int  # cv2.setNumThreads: DIS flow and resizes
    flow: int  # flow executor workers (one DIS estimator each)
    decode: int  # decoder threads per segment reader
    encode: int  # encoder threads per segment writer (0: the encoder's own choice)
    flow_processes: bool = False  # flow workers are processes, opencv // flow OpenCV threads each

    def __str__(self) -> str:
        kind = "processes" if self.flow_processes else "threads"
        return (f"{self.cores} cores: torch {self.torch}, opencv {self.opencv}, flow {kind} "
                f"{self.flow}, decode {self.decode} and encode {self.encode} per segment")

    @property
    def opencv_per_flow_worker(self) -> int:
        return max(1, self.opencv // self.flow)


def plan(device_type: str, segments: int, cores: int | None = None,
         flow_workers: str = "auto") -> Budget:
    """The budget for a render of `segments` segments in lockstep on `device_type`;
    `flow_workers` is `video.flow_workers` (auto: processes on a GPU, where the loop's thread
    launches the kernels and a flow thread would take the GIL from it)."""
    n = cores or int(os.environ.get(ENV) or 0) or available_cores()
    segments = max(1, segments)
    cuda = device_type == "cuda"
    processes = flow_workers == "processes" or (flow_workers == "auto" and cuda)
    if cuda:  # the CPU feeds the GPU
        return Budget(n, torch=n, opencv=n, flow=max(1, min(n, segments)),
                      decode=max(1, n // segments), encode=0, flow_processes=processes)
    return Budget(n, torch=n, opencv=1, flow=1, decode=1, encode=1, flow_processes=processes)


def apply(budget: Budget) -> None:
    """Size the process-wide pools (torch, OpenCV); the others take theirs when created."""
    import cv2
    import torch

    torch.set_num_threads(budget.torch)
    cv2.setNumThreads(budget.opencv)


def describe(device_type: str = "cpu", segments: int = 2) -> str:
    return str(plan(device_type, segments))
