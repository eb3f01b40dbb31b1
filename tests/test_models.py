"""The offline weights are real ImageNet weights, and the zoo's loading paths work offline."""

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from renderer.errors import UserError
from renderer.media.images import to_tensor
from renderer.engine.models import MODELS, describe_layers, get_spec, load_network, weights_status

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def top5(network, rgb):
    h, w = rgb.shape[:2]
    scale = 256 / min(h, w)
    rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    y0, x0 = (rgb.shape[0] - 224) // 2, (rgb.shape[1] - 224) // 2
    crop = np.ascontiguousarray(rgb[y0:y0 + 224, x0:x0 + 224])
    with torch.no_grad():
        logits = network.truncated(["logits"])(to_tensor(crop))["logits"][0]
    return set(logits.topk(5).indices.tolist())


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_offline_models_recognise_cat_and_espresso(name):
    network = load_network(name)
    assert top5(network, data.chelsea()) & CAT_CLASSES
    assert ESPRESSO in top5(network, data.coffee())


def test_hub_cache_file_loads_offline(tmp_path, monkeypatch):
    """A torchvision model whose weights file is already in $TORCH_HOME loads without network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = get_spec("googlenet")
    assert weights_status(spec) == "missing"
    reference = spec.build()
    torch.nn.init.normal_(reference.conv1.conv.weight)
    filename = spec.download_url.rsplit("/", 1)[1]
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / filename)
    assert weights_status(spec) == "cached"
    load_network.cache_clear()
    network = load_network("googlenet")
    assert torch.equal(network.module.conv1.conv.weight, reference.conv1.conv.weight)
    acts = network.truncated(["inception4c"])(torch.rand(1, 3, 96, 96))
    assert acts["inception4c"].shape[1] == 512


def test_missing_weights_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    load_network.cache_clear()
    with pytest.raises(UserError, match="'dream models fetch vgg16'.*hub/checkpoints"):
        load_network("vgg16")


def test_weights_path_in_preset_must_exist():
    with pytest.raises(UserError, match="does not exist"):
        load_network("resnet50", "/nonexistent/resnet.pth")


def test_unknown_model_and_layer_list_close_matches(mobilenet):
    with pytest.raises(UserError, match="mobilenet_v2"):
        get_spec("mobilenet_v3")
    with pytest.raises(UserError, match="features.13"):
        mobilenet.check_layer("features.133")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_names_its_layers(name):
    rows = describe_layers(name)
    names = [r[0] for r in rows]
    spec = get_spec(name)
    assert names[-1] == "logits" and rows[-1][1] == 1000
    assert set(spec.default_layers) <= set(names) and spec.classic_layer in names
