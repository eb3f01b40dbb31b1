"""Presets: every built-in one validates, errors name file, line and key, overrides win."""

import pytest

from renderer import presets
from renderer.errors import UserError


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_builtin_presets_validate():
    found = presets.available()
    assert {"classic", "gentle", "abstract", "cats", "preview"} <= set(found)
    for name in found:
        assert presets.load(name).name == name


@pytest.mark.parametrize("text,message", [
    ("dream:\n  octaves: 4\n  steps: [1, 2\n", r"p\.yaml:\d+: invalid YAML"),
    ("name: x\ndream:\n  octaves: many\n", r"p\.yaml:3: dream\.octaves: .*integer.*'many'"),
    ("dream:\n  step_size: 5\n", r":2: dream\.step_size: .*less than or equal to 1"),
    ("dream:\n  octavs: 3\n", r":2: unknown key 'dream\.octavs' \(did you mean: octaves"),
])
def test_bad_preset_names_file_line_and_key(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        presets.load(write(tmp_path, text))


def test_overrides_beat_preset_beat_defaults(tmp_path):
    path = write(tmp_path, "dream:\n  octaves: 3\n")
    p = presets.load(path, ["dream.octaves=5", "flow.mode=warp"])
    assert p.dream.octaves == 5 and p.flow.mode == "warp"
    assert p.dream.steps == presets.Preset().dream.steps
    assert presets.load(path).dream.octaves == 3


def test_bad_override_is_named(tmp_path):
    with pytest.raises(UserError, match=r"--set dream\.octaves"):
        presets.load("classic", ["dream.octaves=0"])
    with pytest.raises(UserError, match="section.key=value"):
        presets.load("classic", ["dream.octaves"])


def test_extends_inherits_and_overrides(tmp_path):
    path = write(tmp_path, "extends: classic\ndream:\n  steps: 2\n")
    p = presets.load(path)
    assert p.dream.steps == 2
    assert p.dream.step_size == presets.load("classic").dream.step_size
    assert [t.layer for t in p.objective] == ["features.13"]


def test_objective_strings_parse(tmp_path):
    path = write(tmp_path, "objective:\n  - features.10:3\n  - class:tabby\n"
                           "  - {layer: features.4, weight: 0.5}\n")
    terms = presets.load(path).objective
    assert (terms[0].layer, terms[0].channel) == ("features.10", 3)
    assert terms[1].class_ == "tabby"
    assert terms[2].weight == 0.5


def test_keyframes_out_of_order(tmp_path):
    path = write(tmp_path, "zoom:\n  keyframes:\n    - {t: 2}\n    - {t: 1}\n")
    with pytest.raises(UserError, match="increase"):
        presets.load(path)


def test_unknown_preset_name():
    with pytest.raises(UserError, match="classic"):
        presets.load("clasic")
