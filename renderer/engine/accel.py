"""Speed-ups for the dream step, each with a safe fallback: BN folding and torch.compile.

Small ImageNet networks are memory-bound on a GPU, so what pays is moving fewer bytes: fold
batch-norm into the convolutions (one op instead of two), fuse the element-wise tails with
torch.compile, and replay the step as a CUDA graph when shapes repeat.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


_UNFOLDED: set[str] = set()  # the kinds of module already warned about


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Conv + BatchNorm pairs folded into single convolutions (eval mode); a copy.

    Falls back to the module unchanged if it cannot be traced (warned once per kind).
    """
    try:
        from torch.fx.experimental.optimization import fuse

        return fuse(module, inplace=False)
    except Exception as exc:  # an untraceable architecture keeps its batch-norms
        kind = type(module).__name__
        if kind not in _UNFOLDED:
            _UNFOLDED.add(kind)
            log.warning(f"batch-norm folding skipped for {kind} ({type(exc).__name__})")
        return module


def use_compile_cache() -> None:
    """Keep Inductor's compiled kernels across runs, so only the first render pays; and let a
    long-lived worker compile for many frame sizes (Dynamo's default stops at 8 per function
    and silently runs the rest uncompiled)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR",
                          str(Path.home() / ".cache" / "dream" / "inductor"))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)


class Compiled:
    """Calls a torch.compile'd function; on any compile error, warns once and runs eagerly."""

    def __init__(self, fn, mode: str):
        use_compile_cache()
        self.eager = fn
        options = {"mode": "reduce-overhead"} if mode == "graphs" else {}
        self.compiled = torch.compile(fn, dynamic=False, **options)
        self.failed = False

    def __call__(self, *args):
        if self.failed:
            return self.eager(*args)
        try:
            return self.compiled(*args)
        except Exception as exc:
            self.failed = True
            log.warning(f"torch.compile unavailable here ({type(exc).__name__}); running "
                        "uncompiled")
            return self.eager(*args)
