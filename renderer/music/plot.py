"""The `dream audio` picture: waveform with the beat grid and sections, the audio envelopes, and
every parameter curve a preset will drive over the song, so a user sees the result before a
long render. Drawn with matplotlib (Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderer.music.analysis import GRID_HZ, Analysis

COLOURS = {"onset": "#444444", "percussive": "#d62728", "harmonic": "#1f77b4",
           "rms": "#2ca02c", "low": "#8c564b", "mid": "#9467bd", "high": "#e377c2"}


def draw(wave: tuple[np.ndarray, np.ndarray, np.ndarray], analysis: Analysis,
         curves: dict[str, np.ndarray], out: Path, title: str, shots: list = ()) -> None:
    """Write the picture to `out` (PNG) atomically; `wave` is (times, lowest, highest) of the
    samples in short spans (`media.audio.waveform`); `shots` (time, label) where each shot
    starts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from renderer.outputs import atomic_path

    rows = 2 + len(curves)
    fig, axes = plt.subplots(rows, 1, figsize=(14, 2.0 * rows + 0.6), sharex=True,
                             gridspec_kw={"height_ratios": [1.2, 1.5] + [1.0] * len(curves)})
    times, lowest, highest = wave
    wave = axes[0]
    wave.fill_between(times, lowest, highest, color="#555555", linewidth=0)
    # one collection of lines each (an artist a beat: 65,000 of them for a 3-hour song)
    marks = wave.get_xaxis_transform()
    wave.vlines(analysis.beats, 0, 1, transform=marks, color="#ff7f0e", linewidth=0.5, alpha=0.6)
    wave.vlines(analysis.downbeats, 0, 1, transform=marks, color="#d62728", linewidth=1.0)
    wave.vlines(analysis.sections, 0, 1, transform=marks, color="black", linewidth=2.0,
                linestyle="--")
    for at, label in shots:
        for ax in axes:
            ax.axvline(at, color="#17becf", linewidth=2.0)
        wave.annotate(label, (at, 1.0), xycoords=("data", "axes fraction"),
                      xytext=(3, -12), textcoords="offset points", fontsize=8, color="#0e7c86")
    tempo = f"{analysis.tempo:.1f} BPM" if analysis.tempo else "no beat found"
    wave.set_title(f"{title}: {tempo}, {len(analysis.beats)} beats, "
                   f"{len(analysis.sections) + 1} sections", loc="left")
    wave.set_ylabel("waveform")
    envelopes = axes[1]
    grid = np.arange(len(analysis.curves["onset"])) / GRID_HZ
    for name, values in analysis.curves.items():
        envelopes.plot(grid, values, label=name, color=COLOURS.get(name), linewidth=0.8)
    envelopes.set_ylabel("features (0..1)")
    envelopes.legend(loc="upper right", ncol=len(analysis.curves), fontsize=7)
    for ax, (name, values) in zip(axes[2:], curves.items()):
        frame_times = values[0]
        ax.plot(frame_times, values[1], color="#17becf", linewidth=1.0)
        ax.set_ylabel(name, fontsize=8)
        ax.vlines(analysis.beats, 0, 1, transform=ax.get_xaxis_transform(), color="#ff7f0e",
                  linewidth=0.3, alpha=0.4)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    with atomic_path(out, fence=False) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
