import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DREAM_OFFLINE", "1")  # never try a download in tests


@pytest.fixture(scope="session")
def mobilenet():
    from renderer.engine.models import load_network

    return load_network("mobilenet_v2")


@pytest.fixture
def fast_preset():
    """A cheap preset: one small octave stack, few steps."""
    from renderer.presets import Preset

    return Preset.model_validate({"objective": ["features.8"],
                                  "dream": {"octaves": 2, "steps": 3, "jitter": 8}})


@pytest.fixture(scope="session")
def astronaut_small():
    from renderer.media.images import load_image

    return load_image(ROOT / "samples" / "astronaut.jpg", size=(96, 96))


def run_cli(*args, cwd=None, env=None):
    """Run `dream ...` in a subprocess, as a user would."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "renderer.cli", *map(str, args)], cwd=cwd or ROOT,
                          env=full_env, capture_output=True, text=True, timeout=600)


def assert_user_error(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert "Traceback" not in err, err
    assert err.startswith("error: "), err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle.lower() in err.lower(), (needle, err)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
