"""A carried frame queues its work on the device without waiting for it (issue 31).

On a GPU every value read back to the host (`.item()`, `int(t)`, `.cpu()`) and every copy up
from pageable memory waits for all queued kernels, so the launching thread cannot run ahead.
Run on the meta device (shapes, no data), the chain's step is watched op by op: what would read
a value back is counted (and answered with zeros), so is a blocking upload.
"""

import collections
import traceback

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from renderer import load_preset
from renderer.drivable import Driven
from renderer.engine import objectives as obj
from renderer.engine.dream import Dreamer
from renderer.engine.models import networks_for
from renderer.motion.chain import Chain
from renderer.motion.flow import camera_shift

META = torch.device("meta")
COPIES = (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default)


class HostTraffic(TorchDispatchMode):
    """Counts reads back to the host and blocking uploads of tensors on the meta device, by
    the line of renderer code that made them."""

    def __init__(self):
        super().__init__()
        self.reads, self.uploads = collections.Counter(), collections.Counter()

    @staticmethod
    def _line() -> str:
        ours = [f for f in traceback.extract_stack() if "/renderer/" in f.filename]
        return f"{ours[-1].filename.split('/renderer/')[-1]}:{ours[-1].lineno}" if ours else "?"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads[self._line()] += 1
            return False if args[0].dtype == torch.bool else 0
        if func in COPIES:
            source = args[1] if func is torch.ops.aten.copy_.default else args[0]
            target = torch.device(args[0].device if func is torch.ops.aten.copy_.default
                                  else kwargs.get("device") or source.device)
            if source.device == META and target.type == "cpu":
                self.reads[self._line()] += 1
                return torch.zeros(source.shape, dtype=kwargs.get("dtype") or source.dtype)
            if source.device.type == "cpu" and target == META and not kwargs.get("non_blocking"):
                self.uploads[self._line()] += 1
        return func(*args, **kwargs)


def test_the_watch_sees_a_read_and_a_blocking_upload():
    x = torch.ones(4, device=META)
    with HostTraffic() as seen:
        int(x.sum())
        torch.as_tensor(np.ones(3), device=META)
        torch.ones(3).to(META, non_blocking=True)
    assert sum(seen.reads.values()) == 1 and sum(seen.uploads.values()) == 1


def test_a_carried_frame_reads_one_value_back_and_uploads_nothing_blocking():
    """The default `video` preset (consistent flow, hold, band limit, still) with music-driven
    per-row values and a mask: one read a carried frame, which rows are cuts (a cut is dreamed
    again as a first frame); before, 8 reads a row more (the camera's pan) and two blocking
    uploads."""
    preset = load_preset("video", ["dream.octaves=1", "dream.steps=1", "flow.steps=1"])
    network = networks_for(preset)
    dreamer = Dreamer(network, obj.build_objective(preset, network, META), preset.dream, META)
    chain = Chain(preset, dreamer, width=3)
    sources = torch.empty(3, 3, 48, 64, device=META)
    masks = torch.empty(3, 1, 48, 64, device=META)
    driven = Driven(step_size=np.array([0.01, 0.02, 0.03]),
                    temporal_weight=np.array([0.0, 0.3, 0.6]),
                    persistence=np.array([0.9, 0.8, 0.7]))
    flows = (torch.zeros(3, 2, 24, 32), torch.zeros(3, 2, 24, 32))  # as the loop stages them
    with HostTraffic() as first:
        chain.frame([0, 1, 2], sources, None, driven, masks)
    with HostTraffic() as carried:
        chain.frame([0, 1, 2], sources, tuple(f.to(META, non_blocking=True) for f in flows),
                    driven, masks)
    assert not first.reads and not first.uploads, (first.reads, first.uploads)
    assert list(carried.reads.values()) == [1], carried.reads
    assert next(iter(carried.reads)).startswith("motion/chain.py")
    assert not carried.uploads, carried.uploads


def test_the_cameras_pan_is_found_on_the_device():
    """Phase correlation's peak refined without a value coming back, and still right."""
    rng = np.random.default_rng(0)
    picture = torch.nn.functional.avg_pool2d(torch.from_numpy(
        rng.random((1, 3, 140, 200), dtype=np.float32)), 5, 1)
    previous = picture[..., 20:100, 30:150].expand(2, -1, -1, -1)
    current = torch.cat([picture[..., 23:103, 25:145], picture[..., 14:94, 37:157]])
    shift = camera_shift(current, previous)
    assert torch.allclose(shift.flatten(1), torch.tensor([[-5.0, 3.0], [7.0, -6.0]]), atol=0.05)
    with HostTraffic() as seen:
        camera_shift(current.to(META), previous.to(META))
    assert not seen.reads
