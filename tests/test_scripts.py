"""The benchmark scripts run end to end at a tiny size (CI smoke test; figures are not checked)."""

import subprocess
import pytest
import sys

from conftest import ROOT


def script(*args):
    result = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_bench_reports_fps_ratio_and_floor(tmp_path):
    out = script("scripts/bench.py", "samples/pan.mp4", "-p", "preview", "--size", "64x36",
                 "--frames", "12", "--naive-frames", "4", "--batch", "2", "--out",
                 tmp_path / "bench.md")
    for needle in ("| optimised | 12 |", "| naive | 4 |", "speed-up over naive", "memory floor"):
        assert needle in out
    assert (tmp_path / "bench.md").read_text().strip() == out.strip()


@pytest.mark.slow
def test_coherence_bench_prints_every_mode():
    out = script("scripts/coherence_bench.py", "samples/pan.mp4", "-p", "preview", "--size",
                 "64x36", "--frames", "16", "--batch", "1")
    for mode in ("independent", "blend", "warp", "consistent"):
        assert f"| {mode} |" in out
