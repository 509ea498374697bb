"""The backbone registry: each recognizer builder is registered once with its input kind, and presets
inherit it as ``Preset.input_kind`` (what counting and ``profile --speed`` read)."""

from __future__ import annotations

import pytest
import torch

from videoattn.analysis.complexity import profile_model
from videoattn.models import get_backbone, get_preset, list_backbones, list_models, register_backbone, register_preset
from videoattn.models.recognizer import build_image_classifier


def test_presets_take_their_input_kind_from_the_registered_builder():
    assert {"resnet", "resnet_image", "bninception", "slowfast", "tsm_rnl"} <= set(list_backbones())
    assert get_backbone("resnet_image").builder is build_image_classifier
    for name in list_models():
        preset = get_preset(name)
        assert preset.input_kind == ("image" if preset.builder is build_image_classifier else "video"), name


def test_counting_shapes_its_input_from_the_input_kind():
    assert profile_model("resnet18", size=32).input_shape == (3, 32, 32)
    assert profile_model("r2d18", num_frames=2, size=32).input_shape == (3, 2, 32, 32)


def test_unregistered_builders_and_bad_registrations_are_refused():
    def build_nothing(*, num_classes: int = 3, num_frames: int = 8, pretrained=None) -> torch.nn.Module:
        return torch.nn.Identity()

    with pytest.raises(ValueError, match="build_nothing.*is not registered: decorate it with"):
        register_preset("never_registered", build_nothing)
    with pytest.raises(ValueError, match="registered twice"):
        register_backbone("resnet")(build_nothing)
    with pytest.raises(ValueError, match="input_kind must be one of"):
        register_backbone("audio", input_kind="audio")
