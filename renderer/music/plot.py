"""The `dream audio` picture: waveform with the beat grid and sections, the audio envelopes, and
every parameter curve a preset will drive over the song, so a user sees the result before a
long render. Drawn with matplotlib (Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderer.music.analysis import GRID_HZ, Analysis

COLOURS = {"onset": "#444444", "percussive": "#d62728", "harmonic": "#1f77b4",
           "rms": "#2ca02c", "low": "#8c564b", "mid": "#9467bd", "high": "#e377c2"}


WIDTH = 14  # inches
LABEL_POINTS = 8 * 0.62  # the width of a character of a shot label (8-point font), in points


def draw(wave: tuple[np.ndarray, np.ndarray, np.ndarray], analysis: Analysis,
         curves: dict[str, np.ndarray], out: Path, title: str, shots: list = (),
         window: tuple[float, float] | None = None) -> None:
    """Write the picture to `out` (PNG) atomically; `wave` is (times, lowest, highest) of the
    samples in short spans (`media.audio.waveform`); `shots` (time, label) where each shot
    starts; `window` (start, end), the seconds of the song a render uses: only those are
    shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from renderer.outputs import atomic_path

    rows = 2 + len(curves)
    fig, axes = plt.subplots(rows, 1, figsize=(WIDTH, 2.0 * rows + 0.6), sharex=True,
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
    span = window or (0.0, max(analysis.duration, 1e-3))
    for (at, label), row in zip(shots, label_rows(shots, span)):
        for ax in axes:
            ax.axvline(at, color="#17becf", linewidth=2.0)
        wave.annotate(label, (at, 1.0), xycoords=("data", "axes fraction"),
                      xytext=(3, -12 - 11 * row), textcoords="offset points", fontsize=8,
                      color="#0e7c86")
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
    axes[-1].set_xlabel("seconds into the song")
    axes[-1].set_xlim(*span)
    fig.tight_layout()
    with atomic_path(out, fence=False) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def label_rows(shots: list, span: tuple[float, float]) -> list[int]:
    """A text row for each shot label (in time order), the lowest one whose last label ends
    before this one begins: labels never overlap."""
    seconds_per_point = (span[1] - span[0]) / (WIDTH * 0.85 * 72)
    ends: list[float] = []
    rows = []
    for at, label in shots:
        row = next((k for k, end in enumerate(ends) if end < at), len(ends))
        if row == len(ends):
            ends.append(0.0)
        ends[row] = at + (3 + LABEL_POINTS * len(label) + 6) * seconds_per_point
        rows.append(row)
    return rows
