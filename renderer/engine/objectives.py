"""Objectives: small composable functions from layer activations to one score per image, and
every way a preset's `objective:` terms become one (the only place objectives are built).

As in Lucent, an objective names the layers it reads, and objectives combine with `+`, `-` and
scalar `*`. The engine maximises the score of every image in a batch independently.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from renderer.errors import UserError, close_matches
from renderer.presets import ObjectiveTerm, Preset

Activations = dict[str, torch.Tensor]


class Objective:
    def __init__(self, fn: Callable[[Activations], torch.Tensor], layers, description: str):
        self.fn = fn
        self.layers = frozenset(layers)
        self.description = description

    def __call__(self, acts: Activations) -> torch.Tensor:
        return self.fn(acts)

    @property
    def needed(self) -> frozenset[str]:
        """The layers the next batch's score reads (fewer than `layers` when weights are 0)."""
        return self.layers

    def __add__(self, other: "Objective") -> "Objective":
        return Objective(lambda a: self(a) + other(a), self.layers | other.layers,
                         f"{self.description} + {other.description}")

    def __mul__(self, weight: float) -> "Objective":
        return Objective(lambda a: weight * self(a), self.layers, f"{weight:g} * {self.description}")

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return self * -1.0

    def __sub__(self, other: "Objective") -> "Objective":
        return self + (-other)

    def __repr__(self) -> str:
        return f"Objective({self.description})"


def _per_image_mean(t: torch.Tensor) -> torch.Tensor:
    return t.float().flatten(1).mean(1)


def layer(name: str) -> Objective:
    """Classic DeepDream: amplify whatever the layer already sees (mean squared activation)."""
    return Objective(lambda a: _per_image_mean(a[name].float() ** 2), {name}, name)


def channel(name: str, index: int) -> Objective:
    """One feature map: draw more of the single pattern that channel detects."""
    def fn(a):
        act = a[name]
        if not 0 <= index < act.shape[1]:
            raise UserError(f"channel {index} is out of range for layer '{name}' "
                            f"(it has {act.shape[1]} channels: use 0..{act.shape[1] - 1})")
        return _per_image_mean(act[:, index])
    return Objective(fn, {name}, f"{name}:{index}")


def imagenet_class(index: int, label: str) -> Objective:
    """'Inverting the network': push the image towards what the classifier calls `label`."""
    return Objective(lambda a: a["logits"][:, index].float(), {"logits"}, f"class:{label}")


def guide(name: str, guide_features: torch.Tensor) -> Objective:
    """Dream towards a guide image: each position moves towards its best-matching guide feature.

    `guide_features` is (channels, positions) from the guide image at the same layer.
    """
    def fn(a):
        act = a[name].float().flatten(2)  # N, C, P
        y = guide_features.to(act.device, act.dtype)
        scores = torch.einsum("ncp,cm->npm", act, y)
        return scores.max(dim=2).values.mean(dim=1)
    return Objective(fn, {name}, f"guide@{name}")


def class_index(label: str | int, categories: list[str]) -> tuple[int, str]:
    """Resolve an ImageNet class given by index or (case-insensitive, unambiguous) name."""
    if isinstance(label, int) or str(label).isdigit():
        index = int(label)
        if not 0 <= index < len(categories):
            raise UserError(f"class index {index} is out of range (use 0..{len(categories) - 1})")
        return index, categories[index]
    wanted = str(label).strip().lower()
    lowered = [c.lower() for c in categories]
    if wanted in lowered:
        index = lowered.index(wanted)
        return index, categories[index]
    partial = [i for i, c in enumerate(lowered) if wanted in c]
    if len(partial) == 1:
        return partial[0], categories[partial[0]]
    if partial:
        names = ", ".join(categories[i] for i in partial[:6])
        raise UserError(f"class '{label}' is ambiguous: it matches {names}; name one exactly")
    raise UserError(f"unknown ImageNet class '{label}'{close_matches(wanted, lowered)}")


# ---------------------------------------------------------------- objectives from a preset
def guide_features(network, layer_name: str, image_path: str, device) -> torch.Tensor:
    """The guide image's activations at `layer_name`, flattened per channel."""
    from renderer.media.images import load_image

    picture = load_image(image_path, max_side=320).to(device)
    with torch.no_grad():
        act = network.truncated([layer_name]).to(device)(picture)[layer_name][0]
    return act.flatten(1)


def on_model(part: Objective, model: str) -> Objective:
    """A term of another network of the render (`engine.models.Networks`): it reads that
    network's activations, 'model/layer'."""
    prefix = f"{model}/"

    def fn(acts):
        return part({k[len(prefix):]: v for k, v in acts.items() if k.startswith(prefix)})
    return Objective(fn, {prefix + name for name in part.layers}, prefix + part.description)


def term_objective(term: ObjectiveTerm, network, device) -> Objective:
    """One `objective:` entry: a class, a guide image, a channel or a whole layer, weighted;
    a term of another model reads that network's layers (`network`: a `Networks`)."""
    if term.model is not None and term.model != network.spec.name:
        if not hasattr(network, "member"):
            raise UserError(f"the term of model '{term.model}' needs that network loaded too: "
                            "build the dreamer with engine.models.networks_for")
        own = term.model_copy(update={"model": None})
        return on_model(term_objective(own, network.member(term.model), device), term.model)
    if term.class_ is not None:
        part = imagenet_class(*class_index(term.class_, network.categories))
    else:
        network.check_layer(term.layer)
        if term.guide is not None:
            part = guide(term.layer, guide_features(network, term.layer, term.guide, device))
        elif term.channel is not None:
            part = channel(term.layer, term.channel)
        else:
            part = layer(term.layer)
    return part * term.weight if term.weight != 1.0 else part


def classic_term(model: str) -> ObjectiveTerm:
    """The term of a preset that names no objective: its model's classic layer (an unknown
    model is a UserError naming the known ones)."""
    from renderer.engine.models import get_spec

    return ObjectiveTerm(layer=get_spec(model).classic_layer)


def build_objective(preset: Preset, network, device="cpu") -> Objective:
    """The sum of the preset's terms (the model's classic layer when it names none); a
    `WeightedTerms` when music or shots drive a term's weight."""
    terms = preset.objective or [ObjectiveTerm(layer=network.spec.classic_layer)]
    if preset.shots or any(t.startswith("objective.") for t in preset.driven_targets):
        return WeightedTerms([term_objective(t.model_copy(update={"weight": 1.0}), network,
                                             device) for t in terms], [t.weight for t in terms])
    total = None
    for term in terms:
        part = term_objective(term, network, device)
        total = part if total is None else total + part
    return total


class WeightedTerms(Objective):
    """sum_k w[n, k] * term_k: the terms' weights set per image before each batch (a
    music-driven weight differs per batch row); a tensor, so compiled code is not retraced."""

    def __init__(self, terms: list[Objective], weights: list[float]):
        self.weights = torch.tensor([weights], dtype=torch.float32)  # (1 or N, K)
        self.terms = terms
        self.active = tuple(range(len(terms)))  # the terms of non-zero weight in some row

        def weighted(acts):
            w = self.weights.to(next(iter(acts.values())).device)
            return sum(w[:, k] * terms[k](acts) for k in self.active)

        layers = frozenset().union(*(t.layers for t in terms))
        super().__init__(weighted, layers,
                         "weighted(" + ", ".join(t.description for t in terms) + ")")

    def set_weights(self, weights) -> None:
        """(N, K) weights, one row per image of the next batch. A term of weight 0 in every
        row is not scored (nor its network run: a shot's other model costs nothing before it
        is on screen); one term always is, so the score keeps its gradient."""
        self.weights = torch.as_tensor(weights, dtype=torch.float32).reshape(-1, self.count)
        used = tuple(int(k) for k in torch.nonzero(self.weights.abs().amax(0)).flatten())
        self.active = used or (0,)

    @property
    def needed(self) -> frozenset[str]:
        return frozenset().union(*(self.terms[k].layers for k in self.active))

    def set_driven(self, driven: dict[int, np.ndarray]) -> None:
        """The next batch's weights of the driven terms (term index -> one weight per image);
        every other term keeps its own."""
        rows = len(next(iter(driven.values())))
        weights = np.repeat(self.weights[:1].numpy(), rows, axis=0)
        for term, values in driven.items():
            weights[:, term] = values
        self.set_weights(weights)

    @property
    def count(self) -> int:
        return self.weights.shape[1]


class MixedObjective(Objective):
    """(1 - mix) * first + mix * second, with `mix` set per frame (zoom's `layer_mix`)."""

    def __init__(self, first: Objective, second: Objective):
        self.mix = torch.zeros(())  # a tensor, so changing it never retriggers torch.compile

        def mixed(acts):
            m = self.mix.to(next(iter(acts.values())).device)
            return (1 - m) * first(acts) + m * second(acts)

        super().__init__(mixed, first.layers | second.layers,
                         f"mix({first.description}, {second.description})")

    def set_mix(self, value: float) -> None:
        self.mix.fill_(value)


def zoom_objective(preset: Preset, network, device="cpu") -> tuple[Objective, MixedObjective | None]:
    """A zoom's objective, and the mixed one when its keyframes (or the music) move
    `layer_mix` between the two terms (mix 0 = the first, 1 = the second)."""
    if not preset.mixes_layers:
        return build_objective(preset, network, device), None
    if len(preset.objective) != 2:
        raise UserError("a keyframed or driven 'layer_mix' needs exactly two objective terms "
                        "(mix 0 = the first, 1 = the second)")
    mixed = MixedObjective(*(term_objective(t, network, device) for t in preset.objective))
    return mixed, mixed
