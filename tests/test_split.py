"""One render split into parts (`--part K/N`, alias `--shard`) rendered on their own, then joined
(`--assemble N`)."""

import cv2
import numpy as np
import pytest

from conftest import assert_user_error, run_cli
from media import audio_onset, brightness_per_frame, flash_clip, info

FAST = ["-p", "preview", "--set", "dream.octaves=1", "--set", "dream.steps=1",
        "--set", "flow.steps=1", "--set", "video.warmup=2", "--batch", "1"]


@pytest.mark.slow
def test_parts_join_in_order_with_cross_faded_hand_overs(tmp_path):
    """Every frame lands at its place; each hand-over frame is the smoothstep blend of one
    part's tail and the next part's warm-up, as a single render blends its segments."""
    from renderer.media.images import crossfade
    from renderer.render.plan import Part, fade_weight, plan_segments
    from renderer.render.video import HandOver

    src = flash_clip(tmp_path / "src.mp4", rate="25", seconds=5, size="96x64")
    out = tmp_path / "out"
    args = [*FAST, "--set", "encode.codec=png", "--set", "video.checkpoint_every=8"]
    for k in (1, 2):
        assert run_cli("render", src, "-o", out, *args, "--part", f"{k}/3").returncode == 0
    early = run_cli("render", src, "-o", out, *args, "--assemble", "3")
    assert_user_error(early, "part 3/3", "--part 3/3")
    assert run_cli("render", src, "-o", out, *args, "--shard", "3/3").returncode == 0

    segments = plan_segments(125, 3, 2)
    expected = {}
    for k, incoming in enumerate(segments[1:]):
        tails, warmups = HandOver(out, Part(k, 3)), HandOver(out, Part(k + 1, 3))
        for frame in range(incoming.start, incoming.keep):
            expected[f"frame_{frame:06d}.png"] = crossfade(
                tails.tail(frame), warmups.warmup(frame), fade_weight(incoming, frame))
    assert len(expected) == 4

    joined = run_cli("render", src, "-o", out, *args, "--assemble", "3")
    assert joined.returncode == 0, joined.stderr
    frames = sorted(p.name for p in out.glob("frame_*.png"))
    assert frames == [f"frame_{i:06d}.png" for i in range(125)]
    for name, rgb in expected.items():
        written = cv2.cvtColor(cv2.imread(str(out / name)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(written, rgb), name
    brightness = [cv2.imread(str(out / name)).mean() for name in frames]
    assert int(np.argmax(brightness)) == round(1.5 * 25)  # the source's flash, at its frame
    assert (out / "audio.flac").exists() and not any(tmp_path.glob(".out.*"))


def test_more_parts_than_segments_and_audio_in_sync(tmp_path):
    """8 parts of a 48-frame clip that holds 6 segments: two parts are empty; the joined h264
    file has every frame, and the flash still lands on the beep after --start."""
    from renderer import presets
    from renderer.media.decode import index_video
    from renderer.engine.dream import dreamer_for
    from renderer.errors import UserError
    from renderer.render.checkpoints import work_dir
    from renderer.render.plan import Part, part_plan
    from renderer.render.video import assemble_parts, render_video

    src = flash_clip(tmp_path / "flash.mp4")
    out = tmp_path / "out.mkv"
    preset = presets.load("preview", [a for p, a in zip(FAST, FAST[1:]) if p == "--set"])
    index = index_video(src, 0.5, None)
    size = (index.width, index.height)
    dreamer = dreamer_for(preset, "cpu")
    empty = 0
    for k in range(8):
        empty += not part_plan(index.count, 1, 2, Part(k, 8)).mine
        render_video(index, preset, dreamer, out, size, batch=1, part=Part(k, 8))
    assert empty == 2 and not out.exists()
    tail = next(Part(0, 8).folder(out).rglob("tail_*.npy"))
    tail.unlink()  # a lost hand-over frame: a clear error, then render that part again
    with pytest.raises(UserError, match="render parts 1/8 and 2/8 again"):
        assemble_parts(index, preset, out, size, 1, 8)
    render_video(index, preset, dreamer, out, size, batch=1, part=Part(0, 8))
    assemble_parts(index, preset, out, size, 1, 8)
    assert not work_dir(out).exists()
    rate = 24000 / 1001
    written = info(out)
    assert written["frames"] == index.count == round(2.0 * rate) and written["acodec"]
    flash_frame = int(np.argmax(brightness_per_frame(out)))
    assert abs(flash_frame / rate - 1.0) <= 1 / rate + 1e-6
    assert abs(audio_onset(out) - flash_frame / rate) <= 1 / rate + 0.01


@pytest.mark.slow
def test_bad_part_arguments(tmp_path):
    src = flash_clip(tmp_path / "src.mp4", rate="25", seconds=1, size="96x64")
    for extra, needles in ((["--shard", "3/2"], ["--part '3/2'", "K/N"]),
                           (["--part", "two"], ["--part 'two'", "e.g. --part 2/4"]),
                           (["--part", "1/2", "--assemble", "2"], ["either --part or"]),
                           (["--assemble", "0"], ["--assemble 0", "1..256"])):
        result = run_cli("render", src, "-o", tmp_path / "o.mkv", *FAST, *extra)
        assert_user_error(result, *needles)
    assert not (tmp_path / "o.mkv").exists()
