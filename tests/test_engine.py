"""The engine: dreaming raises the objective, is deterministic, batches and tiles correctly."""

import pytest
import torch

from renderer.engine.objectives import build_objective
from renderer.engine.dream import (Dreamer, ascend, dreamer_for, row_values,
                            laplacian_normalize, merge_tiles, octave_sizes, roll_each,
                            roll_indices, split_tiles)
from renderer.errors import UserError
from renderer.presets import Preset


def preset(**dream):
    return Preset.model_validate({"objective": ["features.8"],
                                  "dream": {"octaves": 2, "steps": 3, "jitter": 8, **dream}})


def test_dreaming_raises_the_objective(astronaut_small):
    dreamer = dreamer_for(preset())
    before = dreamer.score(astronaut_small)
    after = dreamer.score(dreamer.dream(astronaut_small, seed=1))
    assert after.item() > 1.3 * before.item()


def test_same_seed_same_output_other_seed_differs(astronaut_small):
    dreamer = dreamer_for(preset())
    a = dreamer.dream(astronaut_small, seed=5)
    b = dreamer.dream(astronaut_small, seed=5)
    c = dreamer.dream(astronaut_small, seed=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_batch_matches_single_images(astronaut_small):
    dreamer = dreamer_for(preset())
    other = astronaut_small.flip(-1)
    batch = dreamer.dream(torch.cat([astronaut_small, other]), seed=2)
    alone = dreamer.dream(other, seed=2)
    assert torch.allclose(batch[1:], alone, atol=2e-3)


def test_tiling_on_and_off_agree(astronaut_small):
    """Tiled and whole-image dreams differ less than two seeds of the whole-image dream do."""
    image = torch.nn.functional.interpolate(astronaut_small, size=(192, 192), mode="bilinear")
    whole = dreamer_for(preset(octaves=1, steps=3))
    tiled = dreamer_for(preset(octaves=1, steps=3, tile_size=128, tile_margin=32))
    ref = whole.dream(image, seed=0)
    tiles = tiled.dream(image, seed=0)
    other_seed = whole.dream(image, seed=1)
    change_ref, change_tiles = (ref - image).flatten(), (tiles - image).flatten()
    corr = torch.corrcoef(torch.stack([change_ref, change_tiles]))[0, 1]
    assert corr > 0.5
    assert (tiles - ref).abs().mean() < (other_seed - ref).abs().mean()
    assert abs(change_tiles.abs().mean() / change_ref.abs().mean() - 1) < 0.15


@pytest.mark.slow
def test_large_image_in_tiles_keeps_memory_bounded():
    """A 4K frame dreams on the CPU in tiles; the network never sees more than tile_batch tiles."""
    dreamer = dreamer_for(Preset.model_validate({
        "objective": ["features.3"],
        "dream": {"octaves": 1, "steps": 1, "jitter": 4, "tile_size": 256, "tile_margin": 16,
                  "tile_batch": 4}}))
    seen = []
    original = dreamer._gradient
    dreamer._gradient = lambda x: (seen.append(tuple(x.shape)), original(x))[1]
    image = torch.rand(1, 3, 2160, 3840, generator=torch.Generator().manual_seed(0))
    out = dreamer.dream(image, seed=0)
    assert out.shape == image.shape and not torch.equal(out, image)
    assert max(s[0] for s in seen) <= 4 and max(max(s[2:]) for s in seen) <= 256
    assert sum(s[0] for s in seen) >= (2160 // 224) * (3840 // 224)


@pytest.mark.parametrize("margin,offset", [(0, (0.0, 0.0)), (5, (0.3, 0.7)), (9, (0.99, 0.01))])
def test_split_merge_round_trip(margin, offset):
    images = torch.rand(2, 3, 50, 77)
    tiles, layout = split_tiles(images, 32, offset, margin)
    assert tiles.shape[-1] <= 32 and tiles.shape[-2] <= 32
    assert torch.equal(merge_tiles(tiles, layout), images)


def test_laplacian_normalize_balances_bands():
    """A gradient that is mostly fine noise comes out with its coarse band lifted."""
    torch.manual_seed(0)
    coarse = torch.nn.functional.interpolate(torch.randn(1, 3, 4, 4), size=(64, 64),
                                             mode="bilinear")
    grad = 0.05 * coarse + torch.randn(1, 3, 64, 64)
    out = laplacian_normalize(grad, 4)
    smooth = lambda t: torch.nn.functional.avg_pool2d(t, 16)
    ratio_in = smooth(grad).std() / grad.std()
    ratio_out = smooth(out).std() / out.std()
    assert ratio_out > 3 * ratio_in


def test_roll_each_rolls_every_image_by_its_own_shift_and_back():
    images = torch.rand(3, 3, 10, 14)
    shifts = [(2, -3), (0, 5), (-7, 1)]
    rolled = roll_each(images, *roll_indices(shifts, 10, 14, "cpu"))
    for image, out, shift in zip(images, rolled, shifts):
        assert torch.equal(out, torch.roll(image, shift, (1, 2)))
    assert torch.equal(roll_each(rolled, *roll_indices(shifts, 10, 14, "cpu", -1)), images)


@pytest.mark.slow
def test_compiled_update_matches_eager_and_compiles_once(tmp_path, monkeypatch):
    """The fused update the GPU path compiles, run here on the CPU: same numbers as eager, and
    new jitter, step sizes and anchor weights (one per image: music drives them per batch row)
    reuse one graph (no recompile per step)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from renderer.engine.accel import Compiled

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    torch._dynamo.reset()
    counters.clear()
    fused = Compiled(ascend, "on")
    torch.manual_seed(0)
    x, grad = torch.rand(2, 3, 24, 40), torch.randn(2, 3, 24, 40)
    target, mask = torch.rand(2, 3, 24, 40), torch.rand(2, 1, 24, 40)
    for shifts, size, weight in (([(1, 2), (3, -4)], 0.01, 0.7), ([(5, -2), (0, 7)], 0.03, 0.2),
                                 ([(2, 2), (1, 1)], [0.02, 0.005], [0.1, 0.9])):
        args = (x, grad, *roll_indices(shifts, 24, 40, "cpu", -1), row_values(size, 2, "cpu"), 4,
                target, mask, row_values(weight, 2, "cpu"))
        torch.testing.assert_close(fused(*args), ascend(*args), rtol=1e-5, atol=1e-5)
    assert not fused.failed
    assert counters["stats"]["unique_graphs"] == 1


def test_auto_compile_only_for_renders_long_enough_to_repay_it():
    """dream.compile: auto compiles on CUDA only where the render is long enough to win back
    the compile (a 10 s 1080p clip starts at once, eagerly; two minutes and more compile);
    `true` always compiles, `false` never, and the CPU's auto never."""
    from renderer.engine.dream import COMPILE_PAYS

    cpu = Dreamer.__new__(Dreamer)  # the decision alone, without a GPU
    for setting, short, long_ in (("auto", False, True), (True, True, True),
                                  (False, False, False)):
        cpu.compiled = None if setting is False else object()
        cpu.use_compiled = setting is True
        assert cpu.choose_compile(240, (1920, 1080)) is short
        assert cpu.choose_compile(3000, (1920, 1080)) is long_
    assert 240 * 1920 * 1080 < COMPILE_PAYS <= 3000 * 1920 * 1080
    assert dreamer_for(preset()).compiled is None  # auto on the CPU: off
    on = dreamer_for(preset(compile=True))
    assert on.use_compiled and on.static_shapes


def test_octave_sizes_grow_to_full_size():
    sizes = octave_sizes(360, 640, 4, 1.4, 48)
    assert sizes[-1] == (360, 640)
    assert all(a[0] < b[0] for a, b in zip(sizes, sizes[1:]))
    assert octave_sizes(40, 40, 4, 1.4, 48) == [(40, 40)]


def test_class_objective_raises_the_class_logit(mobilenet, astronaut_small):
    p = Preset.model_validate({"objective": ["class:tabby"],
                               "dream": {"octaves": 1, "steps": 5, "jitter": 4}})
    dreamer = Dreamer(mobilenet, build_objective(p, mobilenet), p.dream)
    assert dreamer.score(dreamer.dream(astronaut_small)) > dreamer.score(astronaut_small) + 1.0


def test_guided_dream_moves_towards_the_guide(mobilenet, astronaut_small, tmp_path):
    from renderer.media.images import save_image, to_uint8
    from renderer.media.images import load_image

    guide_path = tmp_path / "guide.png"
    save_image(to_uint8(load_image("samples/chelsea.jpg", size=(96, 96)))[0], guide_path)
    p = Preset.model_validate({"objective": [f"guide:{guide_path}@features.10"],
                               "dream": {"octaves": 1, "steps": 5, "jitter": 4}})
    dreamer = Dreamer(mobilenet, build_objective(p, mobilenet), p.dream)
    assert dreamer.score(dreamer.dream(astronaut_small)) > dreamer.score(astronaut_small)


def test_channel_objective_checks_the_channel_range(mobilenet, astronaut_small):
    p = Preset.model_validate({"objective": ["features.8:500"]})
    dreamer = Dreamer(mobilenet, build_objective(p, mobilenet), p.dream)
    with pytest.raises(UserError, match="0..63"):
        dreamer.score(astronaut_small)


def test_unknown_class_names_close_matches(mobilenet):
    p = Preset.model_validate({"objective": ["class:tabbby"]})
    with pytest.raises(UserError, match="tabby"):
        build_objective(p, mobilenet)


def test_a_carried_frame_dreams_one_octave_in_turn():
    """Issue 42: with `flow.octaves: rotate` a carried frame dreams one octave, the next one
    at each lockstep step (picked by the step, so a resumed render dreams the same frames), and
    a first frame every octave: about a third of the passes at the same look."""
    from renderer.motion.chain import Chain
    from renderer.presets import load

    small = ["dream.octaves=3", "dream.steps=2", "flow.steps=1", "flow.mode=warp",
             "flow.still=0", "flow.hold=0", "seed=5"]
    preset = load("video", small)
    dreamer = dreamer_for(preset, "cpu")
    sizes = []
    real = dreamer.gradient
    dreamer.gradient = lambda x, *a: sizes.append(tuple(x.shape[-2:])) or real(x, *a)
    picture = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    still = (torch.zeros(1, 2, 96, 128), torch.zeros(1, 2, 96, 128))

    def run(turns):
        chain, out = Chain(preset, dreamer), []
        chain.frame([0], picture)
        for turn in turns:
            sizes.clear()
            out.append(chain.frame([0], picture, still, turn=turn))
            out.append(sorted(set(sizes)))
        return out

    sizes.clear()
    Chain(preset, dreamer).frame([0], picture)
    octaves = sorted(set(sizes))
    assert len(octaves) == 3 and len(sizes) == 6  # a first frame: every octave, 2 steps each
    steps = run([1, 2, 3])
    assert [steps[k] for k in (1, 3, 5)] == [[octaves[1]], [octaves[2]], [octaves[0]]]
    again = run([1, 2, 3])
    assert all(torch.equal(a, b) for a, b in zip(steps[0::2], again[0::2]))
    preset = load("video", [*small, "flow.octaves=all"])
    assert run([1])[1] == octaves  # flow.octaves: all, every octave on every frame
