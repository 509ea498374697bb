"""Model presets: one name per paper table row, built through :func:`create_model`.

A preset is a registered builder (``@register_backbone``: :func:`build_recognizer`,
:func:`build_image_classifier`, ``build_bninception``, ``build_slowfast``, ...) plus default arguments;
``Preset.input_kind`` (video or image) comes from the builder's registration.
Families add their presets with :func:`register_preset` in their own module (e.g.
``presets_attention.py``), imported by ``videoattn.models``. Any builder argument can be overridden
by name in ``create_model(name, **overrides)``; unknown names fail with the list of accepted ones.

Naming: ``<backbone><depth>[_<block>]`` (``r2d50``, ``r2d50_gta``, ``tsm50``); the default
``num_classes`` is that of the dataset of the paper row the preset reproduces.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import ConfigError, unknown_name
from .backbone_registry import backbone_of
from .block_options import BlockOptionsError
from .recognizer import build_image_classifier, build_recognizer


@dataclass(frozen=True)
class Preset:
    name: str
    builder: Callable[..., nn.Module]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    reference: str = ""  # the paper table row it reproduces, if any
    #: The input the paper row is counted at: ``{"frames": T or None (image models), "size": S,
    #: "convention": "fvcore" | "thop"}`` (``videoattn profile``'s defaults); None: no paper row.
    paper_input: Mapping[str, Any] | None = None
    input_kind: str = "video"  # "video" (N, 3, T, H, W) or "image" (N, 3, H, W): its builder's registration

    def accepted_arguments(self) -> list[str]:
        return [p for p in inspect.signature(self.builder).parameters]


_PRESETS: dict[str, Preset] = {}


def register_preset(name: str, builder: Callable[..., nn.Module], description: str = "", reference: str = "",
                    paper_input: Mapping[str, Any] | None = None, **defaults) -> Preset:
    if name in _PRESETS:
        raise ValueError(f"model preset {name!r} is registered twice")
    if paper_input is not None:
        paper_input = _checked_paper_input(name, paper_input)
    preset = Preset(name, builder, defaults, description, reference, paper_input,
                    input_kind=backbone_of(builder).input_kind)
    unknown = set(defaults) - set(preset.accepted_arguments())
    if unknown:
        raise ValueError(f"preset {name!r}: builder does not accept {sorted(unknown)}")
    _PRESETS[name] = preset
    return preset


def paper_row_input(frames: int | None, size: int, convention: str) -> dict[str, Any]:
    """The ``paper_input`` of a preset: clip length (None for image models), crop size, counting convention."""
    return {"frames": frames, "size": size, "convention": convention}


def _checked_paper_input(name: str, value: Mapping[str, Any]) -> dict[str, Any]:
    value = dict(value)
    if set(value) != {"frames", "size", "convention"} or value["convention"] not in ("fvcore", "thop") \
            or not (value["frames"] is None or (isinstance(value["frames"], int) and value["frames"] > 0)) \
            or not (isinstance(value["size"], int) and value["size"] > 0):
        raise ValueError(f"preset {name!r}: paper_input must be {{'frames': int or None, 'size': int, "
                         f"'convention': 'fvcore' or 'thop'}}, got {value!r}")
    return value


def get_preset(name: str) -> Preset:
    try:
        return _PRESETS[name]
    except KeyError:
        raise unknown_name("model", name, list(_PRESETS)) from None


def list_models(pattern: str | None = None) -> list[str]:
    names = sorted(_PRESETS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def create_model(name: str, num_classes: int | None = None, num_frames: int | None = 8,
                 pretrained: str | None = None, weights: str | None = None, weights_layout: str = "videoattn",
                 **overrides) -> nn.Module:
    """Build preset ``name``. ``num_classes=None`` keeps the preset's default; ``pretrained`` is the
    path of a local ImageNet checkpoint for the backbone (torchvision or timm naming); ``weights`` the
    path of a whole-model checkpoint in ``weights_layout`` (``videoattn`` or an authors' released
    layout, see :mod:`videoattn.models.released`), loaded after building; ``overrides`` replace any
    builder argument (``dropout``, ``base_channels``, ``block_options``, ``blocks``, ...)."""
    preset = get_preset(name)
    accepted = preset.accepted_arguments()
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option(s) {', '.join(unknown)}; it accepts: {', '.join(accepted)}"
        )
    kwargs = {**preset.defaults, **overrides, "pretrained": pretrained}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if num_frames is not None:
        kwargs["num_frames"] = num_frames
    try:
        model = preset.builder(**kwargs)
    except BlockOptionsError as error:
        raise ConfigError(f"model {name!r}: {error}") from None
    if weights:
        from .released import load_weights

        load_weights(model, weights, weights_layout)
    return model


# --- ImageNet classifiers (torchvision-compatible) ---------------------------------------------------
for _depth in (18, 34, 50, 101, 152):
    register_preset(f"resnet{_depth}", build_image_classifier, f"2D ResNet-{_depth} image classifier "
                    "(torchvision keys), input (N, 3, H, W)", paper_input=paper_row_input(None, 224, "thop"),
                    depth=_depth, num_classes=1000)

# --- Video baselines -----------------------------------------------------------------------------------
register_preset("r2d18", build_recognizer, "R2D ResNet-18: per-frame 2D ResNet, average consensus",
                depth=18, variant="r2d", num_classes=174)
register_preset("r2d50", build_recognizer, "R2D ResNet-50 (GTA's baseline): per-frame 2D ResNet, T kept",
                "GTA Table 1: 23.9 M params, 32.7 GFLOPs (8x224x224, SS-v1)",
                paper_input=paper_row_input(8, 224, "fvcore"), depth=50, variant="r2d", num_classes=174)
register_preset("c2d50", build_recognizer, "C2D ResNet-50 (NL/BAT's baseline): temporal max-pool 2 after res2",
                "BAT Table 8: 24.3 M params, 19.6 GFLOPs (8x224x224, Kinetics)",
                paper_input=paper_row_input(8, 224, "fvcore"), depth=50, variant="c2d", num_classes=400)
register_preset("tsm50", build_recognizer, "TSM ResNet-50: 1/8 channels shifted each way before conv1 of "
                "every block", "RNL Table III: 24.3 M params, 32.9 GFLOPs (8x224x224, Kinetics)",
                paper_input=paper_row_input(8, 224, "thop"), depth=50, variant="tsm", num_classes=400)
register_preset("i3d50", build_recognizer, "I3D ResNet-50: 5x7x7 stem, 3x1x1 conv1 on alternate blocks, "
                "temporal pool after res2", paper_input=paper_row_input(8, 224, "fvcore"),
                depth=50, variant="i3d", num_classes=400)
