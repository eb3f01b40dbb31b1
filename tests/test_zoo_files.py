"""torchvision's own weight files load as torchvision ships them (aux heads included).

Each file here has exactly the keys and shapes of the one torchvision publishes: the state dict
of the model that torchvision's builder constructs when it loads its ImageNet weights. Values
are constants stored as zero-stride views, so a VGG file is a few kilobytes instead of 550 MB.
"""

import pytest
import torch
import torchvision

from conftest import ROOT, assert_user_error, run_cli
from renderer.engine.models import get_spec

# what torchvision's builder passes to the constructor before it loads its ImageNet file
BUILDER_KWARGS = {
    "googlenet": dict(aux_logits=True, init_weights=False, transform_input=True),
    "inception_v3": dict(aux_logits=True, init_weights=False, transform_input=True),
    "vgg16": {}, "vgg19": {}, "resnet50": {},
}
ZOO = sorted(BUILDER_KWARGS)


def torchvision_layout_file(name: str, path):
    """Save a state dict with the layout of torchvision's published file for `name`."""
    with torch.device("meta"):
        model = getattr(torchvision.models, name)(weights=None, num_classes=1000,
                                                  **BUILDER_KWARGS[name])
    state = {}
    for key, tensor in model.state_dict().items():
        value = 1.0 if key.endswith("running_var") else 0.0 if "running_mean" in key else 0.01
        state[key] = torch.full((), value, dtype=tensor.dtype).expand(tensor.shape)
    torch.save(state, path)
    return path


@pytest.fixture
def hub(tmp_path):
    """An empty torch hub cache for the CLI (TORCH_HOME), and its checkpoints folder."""
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return {"TORCH_HOME": str(tmp_path / "torch")}, folder


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_torchvision_file_loads_in_every_command(name, tmp_path, hub):
    env, cache = hub
    spec = get_spec(name)
    filename = spec.download_url.rsplit("/", 1)[1]
    listed = run_cli("models", env=env)
    assert listed.returncode == 0, listed.stderr
    assert f"{name}: " in listed.stdout and str(cache / filename) in listed.stdout

    torchvision_layout_file(name, cache / filename)
    shown = run_cli("models", "show", name, env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"weights: {cache / filename} (loads)" in shown.stdout

    layer = spec.classic_layer
    sheet = tmp_path / "sheet.png"
    r = run_cli("layers", ROOT / "samples/astronaut.jpg", "-m", name, "--layers", layer,
                "--cell", "48", "-o", sheet, env=env)
    assert r.returncode == 0, r.stderr
    assert sheet.stat().st_size > 0

    copy = torchvision_layout_file(name, tmp_path / "mine.pth")  # given by path in a preset
    preset = tmp_path / "p.yaml"
    preset.write_text(f"model: {{name: {name}, weights: '{copy}'}}\nobjective: ['{layer}']\n"
                      "dream: {octaves: 1, steps: 1}\n")
    out = tmp_path / "out.png"
    r = run_cli("image", ROOT / "samples/astronaut.jpg", "-p", preset, "--size", "48x48",
                "-o", out, env=dict(env, TORCH_HOME=str(tmp_path / "elsewhere")))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0


@pytest.mark.parametrize("name, other", [("googlenet", "inception_v3"), ("vgg16", "vgg19"),
                                         ("resnet50", "googlenet")])
@pytest.mark.slow
def test_a_file_of_another_model_is_refused(name, other, tmp_path, hub):
    env, cache = hub
    torchvision_layout_file(other, cache / get_spec(name).download_url.rsplit("/", 1)[1])
    r = run_cli("models", "show", name, env=env)
    assert_user_error(r, f"does not fit {name}", "missing keys")
