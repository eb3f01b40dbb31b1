"""Shots: a render's look changes at a time or a scene cut, on real renders (PNG frames) of
clips the ffmpeg binary made, against renders of each look alone."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import assert_user_error, run_cli
from media import ffmpeg
from renderer.drivable import SHOT_CUT, SHOT_FADE
from renderer.music.schedule import Schedule
from renderer.engine.objectives import classic_term
from renderer.music.shots import plan_shots
from renderer.presets import Preset, Shot

LOOK_A = "extends: preview\nobjective: [features.4]\nseed: 3\n"
LOOK_B = "extends: preview\nobjective: [features.14]\ndream: {step_size: 0.03}\nseed: 3\n"
PNG = ["--set", "encode.codec=png", "--batch", "2"]


@pytest.fixture(scope="module")
def looks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("looks")
    (folder / "a.yaml").write_text(LOOK_A)
    (folder / "b.yaml").write_text(LOOK_B)
    return folder


def frames(folder):
    return np.stack([cv2.imread(str(p)).astype(float) for p in sorted(folder.glob("*.png"))])


def apart(x, y):
    """Each frame's mean absolute difference, in levels."""
    return np.abs(x - y).mean(axis=(1, 2, 3))


def render(clip, out, preset):
    result = run_cli("render", clip, "-o", out, "-p", preset, *PNG)
    assert result.returncode == 0, result.stderr
    return frames(out), result


def test_values_ease_in_at_a_carry_and_switch_at_a_cut():
    preset = Preset.model_validate({
        "objective": ["features.4"], "dream": {"step_size": 0.01},
        "shots": [{"at": "10f", "objective": ["features.14"], "dream": {"step_size": 0.03},
                   "transition": {"length": "4f"}},
                  {"at": "20f", "objective": ["features.4"], "transition": {"kind": "cut"}}]})
    times = np.arange(30) / 10.0
    plan = plan_shots(preset, classic_term, times,
                      Schedule(preset, None, 10.0), [])
    assert [t.layer for t in plan.terms] == ["features.4", "features.14"] and plan.starts == [10, 20]
    size, low, high = (plan.values[k] for k in ("dream.step_size", "objective.0.weight",
                                                  "objective.1.weight"))
    assert np.allclose(size[:10], 0.01) and np.allclose(size[14:20], 0.03)
    assert np.all(np.diff(size[9:15]) > 0) and np.all(np.diff(low[9:15]) < 0)  # eased in
    assert np.allclose(high[:10], 0) and np.allclose(low[14:20], 0)
    assert np.allclose(size[20:], 0.01) and np.allclose(high[20:], 0)  # switched at the cut
    assert np.flatnonzero(plan.values[SHOT_CUT]).tolist() == [20]


def test_a_crossfade_switches_the_values_and_fades_the_last_look_out():
    preset = Preset.model_validate({
        "objective": ["features.4"],
        "shots": [{"at": "10f", "objective": ["features.14"],
                   "transition": {"kind": "crossfade", "length": "4f"}},
                  {"at": "12f", "transition": {"kind": "crossfade", "length": "3f"}}]})
    times = np.arange(20) / 10.0
    plan = plan_shots(preset, classic_term, times,
                      Schedule(preset, None, 10.0), [])
    fade, high = plan.values[SHOT_FADE], plan.values["objective.1.weight"]
    assert np.flatnonzero(plan.values[SHOT_CUT]).tolist() == [10, 12]
    assert np.allclose(high[10:12], 1.0)  # the new look's values at once, not eased
    assert np.all(fade[:10] == 0) and 0 < fade[11] < fade[10] < 1  # the last look fades out
    assert 0 < fade[14] < fade[13] < fade[12] < 1 and np.all(fade[15:] == 0)  # a shot ends it


@pytest.mark.slow
def test_a_crossfade_dissolves_into_the_fresh_new_look(tmp_path, looks):
    """A crossfade shows what a cut would, with the last look fading out over it: after its
    length the very frames of the cut, and no jump as large as the cut's on the way (here
    0.62x of it, and under the new look's own jumps)."""
    clip = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=12:duration=2", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", clip)
    (tmp_path / "b.yaml").write_text(LOOK_B)
    shown = {}
    for kind in ("cut", "crossfade"):
        preset = tmp_path / f"{kind}.yaml"
        preset.write_text(f"extends: {looks / 'a.yaml'}\nshots:\n  - {{at: 1.0, extends: b.yaml, "
                          f"transition: {{kind: {kind}, length: 6f}}}}\n")
        shown[kind], _ = render(clip, tmp_path / kind, preset)
    cut, fade = shown["cut"], shown["crossfade"]
    assert apart(fade[:12], cut[:12]).max() < 0.5 and apart(fade[18:], cut[18:]).max() < 0.5
    assert np.all(np.diff(apart(fade[12:18], cut[12:18])) < 0)  # nearer the new look each frame
    assert apart(fade[12:18], cut[12:18]).min() > 1.0  # and the old one shows in between
    jumps = apart(fade[1:], fade[:-1])  # jumps[k]: from frame k to k + 1
    # no larger than the new look's own jumps as it moves on, and far from the cut's
    assert jumps[11:18].max() <= 1.05 * jumps[18:].max(), jumps
    assert jumps[11:18].max() < 0.75 * apart(cut[12:13], cut[11:12])[0], jumps


@pytest.mark.slow
def test_a_render_with_shots_resumes_to_the_same_bytes(tmp_path):
    """Killed after a checkpoint inside a crossfade or later, a render with shots resumes to
    the frames an uninterrupted one makes (the fading look is checkpointed)."""
    from test_video import killed_and_resumed

    shots = tmp_path / "shots.yaml"
    shots.write_text("extends: preview\nshots:\n"
                     "  - {at: 1.0, objective: [features.14], transition: {kind: crossfade, "
                     "length: 2.0}}\n"
                     "  - {at: 3.5, objective: [features.9], dream: {step_size: 0.03}}\n")
    killed_and_resumed(tmp_path, ["-p", shots], trials=2)


@pytest.mark.slow
def test_a_two_shot_render_is_the_first_look_then_grows_into_the_second(tmp_path, looks):
    """Issue 29: before the switch, the frames of the first look alone; after it, nearer the
    second look's than the first's and growing nearer; no jump at the carry larger than 1.5x
    the median."""
    clip = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=12:duration=2.5", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", clip)
    both = tmp_path / "ab.yaml"
    both.write_text(f"extends: {looks / 'a.yaml'}\nshots:\n  - {{at: 1.0, extends: b.yaml, "
                    "transition: {kind: carry, length: 4f}}\n")
    (tmp_path / "b.yaml").write_text(LOOK_B)  # a shot's preset file is read beside its preset
    a, _ = render(clip, tmp_path / "a", looks / "a.yaml")
    b, _ = render(clip, tmp_path / "b", looks / "b.yaml")
    ab, _ = render(clip, tmp_path / "ab", both)
    assert apart(ab[:12], a[:12]).max() < 0.5  # the first look, as it is alone
    # after the transition (frames 12-15) and a few carried frames: nearer the second look
    # than the first, and growing nearer, as the carried first look fades (0.81 -> 0.64 today)
    nearer = apart(ab[22:], b[22:]) / apart(ab[22:], a[22:])
    assert np.all(nearer < 0.85) and nearer[-3:].max() < 0.75 and nearer[-1] < nearer[0], nearer
    jumps = apart(ab[1:], ab[:-1])
    assert jumps[11:18].max() <= 1.5 * np.median(jumps), jumps


@pytest.mark.slow
def test_a_shot_at_each_scene_cut_starts_there_afresh(tmp_path, looks):
    """`at: cut` takes the clip's next scene cut (PySceneDetect); a `cut` transition dreams
    the new look fresh, as a render of that look alone does after the cut."""
    clip = tmp_path / "cut.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=24:duration=1.5", "-f", "lavfi", "-i",
           "mandelbrot=size=96x64:rate=24", "-filter_complex",
           "[1]trim=duration=1.5,setpts=PTS-STARTPTS[b];[0][b]concat=n=2:v=1[v]", "-map", "[v]",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", clip)
    shots = tmp_path / "cuts.yaml"
    shots.write_text(f"extends: {looks / 'a.yaml'}\nshots:\n"
                     f"  - {{at: cut, extends: {looks / 'b.yaml'}, transition: {{kind: cut}}}}\n"
                     f"  - {{at: cut, extends: {looks / 'a.yaml'}}}\n")
    a, _ = render(clip, tmp_path / "a", looks / "a.yaml")
    b, _ = render(clip, tmp_path / "b", looks / "b.yaml")
    cut, result = render(clip, tmp_path / "cut", shots)
    assert "shot 2 waits for a scene cut that never comes" in result.stderr
    assert apart(cut[:36], a[:36]).max() < 0.5
    assert np.all(apart(cut[40:], b[40:]) < 0.75 * apart(cut[40:], a[40:]))
    shown = run_cli("presets", "show", shots)
    assert "1. from the next scene cut" in shown.stdout and "(cut)" in shown.stdout


@pytest.mark.slow
def test_bad_shots_are_refused_before_any_work(tmp_path, looks):
    clip = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x36:rate=12:duration=1", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", clip)
    cases = {
        "{at: 9.5}": ["shot 1 starts at '9.5', after the render's last frame"],
        "{at: 0.5, colour: red}": [":3", "unknown key 'shots.0.colour'"],
        "{section: 1}": ["shot 1 starts at section 1, but there is no song"],
        "{at: 4b}": ["counts beats, but there is no beat"],
        "{at: 0.5, extends: no-such-look}": ["shot 1 extends 'no-such-look'"],
        "{at: 0.5}\n  - {at: 0.2}": ["before shot 1", "time order"],
    }
    # a shot whose model has no weights here (an empty torch cache: none downloads)
    (tmp_path / "gnet.yaml").write_text("extends: preview\nmodel: {name: googlenet}\n")
    cases["{at: 0.5, extends: gnet.yaml}"] = ["a shot dreams with googlenet", "weights"]
    for shot, needles in cases.items():
        preset = tmp_path / "bad.yaml"
        preset.write_text(f"extends: {looks / 'a.yaml'}\nshots:\n  - {shot}\n")
        out = tmp_path / "o.mp4"
        assert_user_error(run_cli("render", clip, "-o", out, "-p", preset,
                                  env={"TORCH_HOME": str(tmp_path / "torch")}), *needles)
        assert not out.exists()


def test_dream_audio_marks_where_each_shot_starts(tmp_path):
    """`dream audio` draws the shots on its plot: their starts over the song alone."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from make_test_song import make_song

    from renderer.music.analysis import analyse_file
    from renderer.music.shots import shot_marks

    song = tmp_path / "song.wav"
    make_song(song, bars=(4, 1, 2))
    preset = Preset.model_validate({"shots": [{"at": "2bar", "objective": ["features.12"]},
                                              {"at": 6.0}, {"at": "cut"}]})
    analysis = analyse_file(song)
    times = np.arange(int(analysis.duration * 24)) / 24
    marks = shot_marks(preset, analysis, times, 24.0)
    bar = analysis.downbeats[2]  # two bars after the first downbeat
    assert [label for _, label in marks] == [  # a scene cut needs the clip
        "shot 1: objective features.12", "shot 2: the preset's own look"]
    assert abs(marks[0][0] - bar) < 1 / 24 + 1e-6 and abs(marks[1][0] - 6.0) < 1 / 24 + 1e-6
    out = tmp_path / "plot.png"
    assert run_cli("audio", song, "-o", out, "-p", "music-video").returncode == 0
    assert out.stat().st_size > 10_000


def test_a_zoom_changes_its_look_at_a_shot():
    """`dream zoom` with shots: the first look's very frames before the shot, then the second
    look's layer grown over the zoomed picture (its objective far higher than in the first
    look's zoom)."""
    from renderer.controller import zoom_looks
    from renderer.engine.dream import Dreamer
    from renderer.engine.models import load_network
    from renderer.engine.objectives import build_objective
    from renderer.motion.zoom import noise_image
    from renderer.presets import load
    from renderer.render.framestore import FrameStore
    from renderer.render.zoom import ZoomRenderer, zoom_frames

    fps, count, switch = 8, 20, 8
    first = load("zoom-classic", ["dream.steps=2", "zoom.steps=2", "zoom.octaves=1",
                                  "objective=[features.4]"])
    both = first.model_copy(update={"shots": [Shot.model_validate(
        {"at": f"{switch}f", "objective": ["features.14"], "dream": {"step_size": 0.03},
         "transition": {"kind": "cut"}})]})
    network = load_network(first.model.name)

    def zoom(preset):
        looks = zoom_looks(preset, None, fps, count)
        dreamer = Dreamer(network, build_objective(looks.preset, network), preset.dream, "cpu")
        renderer = ZoomRenderer(dreamer, looks.preset, fps, [0], shots=looks.shots)
        shown, store = [], FrameStore()
        zoom_frames(renderer, noise_image((64, 48), [0]), count,
                    lambda i, b: shown.append(b[0]), store)
        store.close()
        return np.stack(shown).astype(float)

    a, ab = zoom(first), zoom(both)
    assert apart(ab[:switch], a[:switch]).max() < 0.5
    assert apart(ab[switch:], a[switch:]).min() > 2.0
    second = Preset.model_validate({"objective": ["features.14"]})
    scorer = Dreamer(network, build_objective(second, network), first.dream, "cpu")

    def score(frames):
        return scorer.score(torch.from_numpy(frames[-4:]).permute(0, 3, 1, 2).float() / 255)

    assert score(ab).mean() > 1.3 * score(a).mean(), (score(ab), score(a))


def test_zoom_shots_refuse_what_a_zoom_cannot_show(tmp_path):
    for shot, needle in {"{at: cut}": "a zoom has none",
                         "{at: 0.5, transition: {kind: crossfade}}": "nothing to fade from",
                         "{at: 9.0}": "after the render's last frame"}.items():
        preset = tmp_path / "z.yaml"
        preset.write_text(f"extends: zoom-classic\nshots:\n  - {shot}\n")
        out = tmp_path / "z.mp4"
        assert_user_error(run_cli("zoom", "-o", out, "-p", preset, "--seconds", "1"), needle)
        assert not out.exists()


def test_a_model_no_row_shows_is_not_run():
    """Both networks are loaded, but a batch whose rows all show the first look runs only the
    first (the second model costs nothing until its shot is on screen), and a network runs
    only as deep as the terms on screen read."""
    from renderer.engine.dream import dreamer_for

    preset = Preset.model_validate({"objective": [
        "features.4", {"layer": "blocks.9", "model": "efficientnet_lite0"}, "features.14"],
        "shots": [{"at": "4f"}], "dream": {"octaves": 1, "steps": 1}})
    dreamer = dreamer_for(preset, "cpu")
    runs = {name: 0 for name in [*dreamer.net.names, "features.14"]}

    def count(name):
        return lambda *_: runs.__setitem__(name, runs[name] + 1)

    for name, member in zip(dreamer.net.names, dreamer.net.members):
        member.register_forward_hook(count(name))
    own = dreamer.net.members[0]  # and only as deep as the terms on screen read
    own.stages[own.names.index("features.14")].register_forward_hook(count("features.14"))
    images = torch.rand(2, 3, 48, 64)
    for weights, ran in (([1, 0, 0], {"": 1, "efficientnet_lite0": 0, "features.14": 0}),
                         ([[1, 0, 0], [0, 1, 0]], {"": 2, "efficientnet_lite0": 1,
                                                   "features.14": 0}),
                         ([0, 1, 0], {"": 2, "efficientnet_lite0": 2, "features.14": 0}),
                         ([0, 0, 1], {"": 3, "efficientnet_lite0": 2, "features.14": 1})):
        dreamer.objective.set_weights(np.broadcast_to(weights, (2, 3)).copy())
        both = dreamer.dream(images, seed=5, steps=1, octaves=1)
        assert runs == ran, (weights, runs)
        if weights == [0, 1, 0]:
            lite_rows = both
    # and the second look's rows dream as the second model alone does
    lite = preset.model_copy(update={"model": preset.model.model_copy(
        update={"name": "efficientnet_lite0"}), "objective": [preset.objective[1].model_copy(
            update={"model": None})], "shots": []})
    alone = dreamer_for(lite, "cpu").dream(images, seed=5, steps=1, octaves=1)
    assert torch.allclose(lite_rows, alone, atol=1e-5), (lite_rows - alone).abs().max()


@pytest.mark.slow
def test_a_shot_switches_the_model(tmp_path, looks):
    """A shot of another model: the first model's frames before it, the second model's look
    after it (both networks dreamed together)."""
    clip = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=12:duration=3", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", clip)
    lite = tmp_path / "lite.yaml"
    lite.write_text("extends: preview\nmodel: {name: efficientnet_lite0}\n"
                    "objective: [blocks.9]\ndream: {step_size: 0.03}\nseed: 3\n")
    both = tmp_path / "both.yaml"
    both.write_text(f"extends: {looks / 'a.yaml'}\nshots:\n"
                    "  - {at: 1.0, extends: lite.yaml, transition: {length: 4f}}\n")
    a, _ = render(clip, tmp_path / "a", looks / "a.yaml")
    alone, _ = render(clip, tmp_path / "lite", lite)
    ab, _ = render(clip, tmp_path / "ab", both)
    assert apart(ab[:12], a[:12]).max() < 0.5
    late = slice(22, None)  # after the transition (frames 12-15) and a few carried frames
    assert np.all(apart(ab[late], alone[late]) < 0.8 * apart(ab[late], a[late])), (
        apart(ab[late], alone[late]), apart(ab[late], a[late]))
    shown = run_cli("presets", "show", both)
    assert "the look of lite.yaml" in shown.stdout or "lite.yaml" in shown.stdout
