"""`dream image`, `dream layers`, `models`, `presets` from the command line, bad input included."""

import cv2
import pytest

from conftest import ROOT, assert_user_error, run_cli

FAST = ["--set", "dream.octaves=1", "--set", "dream.steps=2"]


def test_image_writes_a_dreamed_png(tmp_path):
    out = tmp_path / "out.png"
    r = run_cli("image", ROOT / "samples/astronaut.jpg", "-p", "preview", "-o", out,
                "--size", "64x48", "--seed", "3", *FAST)
    assert r.returncode == 0, r.stderr
    img = cv2.imread(str(out))
    assert img.shape == (48, 64, 3)
    src = cv2.resize(cv2.imread(str(ROOT / "samples/astronaut.jpg")), (64, 48),
                     interpolation=cv2.INTER_AREA)
    assert abs(img.astype(int) - src.astype(int)).mean() > 2


@pytest.mark.slow
def test_layers_sheet(tmp_path):
    out = tmp_path / "sheet.png"
    r = run_cli("layers", ROOT / "samples/astronaut.jpg", "-m", "mobilenet_v2", "-o", out,
                "--layers", "features.2,features.13", "--cell", "64", *FAST, "-p", "preview")
    assert r.returncode == 0, r.stderr
    sheet = cv2.imread(str(out))
    assert sheet.shape[1] > 3 * 64  # input + 2 layers side by side


@pytest.mark.slow
def test_models_and_presets_listings():
    r = run_cli("models")
    assert r.returncode == 0 and "mobilenet_v2" in r.stderr + r.stdout
    r = run_cli("models", "show", "mobilenet_v2")
    assert r.returncode == 0 and "features.13" in r.stderr + r.stdout
    r = run_cli("presets", "show", "classic", "--set", "dream.steps=7")
    assert r.returncode == 0 and "steps: 7" in r.stdout


def test_missing_input(tmp_path):
    out = tmp_path / "o.png"
    assert_user_error(run_cli("image", tmp_path / "nope.jpg", "-p", "preview", "-o", out),
                      "does not exist")
    assert not out.exists()


def test_not_an_image(tmp_path):
    bogus = tmp_path / "x.jpg"
    bogus.write_text("hello")
    out = tmp_path / "o.png"
    assert_user_error(run_cli("image", bogus, "-p", "preview", "-o", out), "not an image")
    assert not out.exists()


def test_unknown_layer(tmp_path):
    out = tmp_path / "o.png"
    r = run_cli("image", ROOT / "samples/astronaut.jpg", "-p", "preview", "-o", out,
                "--set", "objective=features.99")
    assert_user_error(r, "unknown layer", "features.")
    assert not out.exists()


@pytest.mark.parametrize("text,needles", [
    ("dream: {octaves: 3\n", ("bad.yaml", "invalid YAML")),
    ("dream:\n  steps: lots\n", ("bad.yaml:2", "dream.steps")),
])
@pytest.mark.slow
def test_bad_preset_file(tmp_path, text, needles):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    out = tmp_path / "o.png"
    assert_user_error(run_cli("image", ROOT / "samples/astronaut.jpg", "-p", bad, "-o", out),
                      *needles)
    assert not out.exists()


def test_usage_errors_exit_2():
    r = run_cli("image")
    assert r.returncode == 2 and "Traceback" not in r.stderr
