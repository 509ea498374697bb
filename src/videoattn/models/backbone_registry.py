"""The registry of recognizer builders, one per backbone: ``@register_backbone(name, input_kind=...)``.

A builder constructs its backbone (a :class:`~videoattn.backbones.base.VideoBackbone`), applies
``block_options`` (:mod:`.block_options`) and hands both to
:func:`~videoattn.models.recognizer.assemble_recognizer`. Registering it says what it takes as input:
``"video"`` clips ``(N, 3, T, H, W)`` or ``"image"`` batches ``(N, 3, H, W)``; a preset built with it
inherits that as :attr:`Preset.input_kind <videoattn.models.presets.Preset>`, which is what counting,
``profile --speed`` and the tests read instead of asking which builder function a preset uses.
A builder that only fixes a layout on another backbone (``build_tsm_rnl`` on the ResNet) registers too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import unknown_name

INPUT_KINDS = ("video", "image")


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    builder: Callable
    input_kind: str
    description: str


_BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(name: str, *, input_kind: str = "video", description: str = ""):
    """Decorator registering a recognizer builder under ``name``."""
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"backbone {name!r}: input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")

    def decorator(builder: Callable) -> Callable:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        doc = description or (builder.__doc__ or "").strip().split("\n")[0]
        _BACKBONES[name] = BackboneSpec(name, builder, input_kind, doc)
        return builder

    return decorator


def list_backbones() -> list[str]:
    return sorted(_BACKBONES)


def get_backbone(name: str) -> BackboneSpec:
    try:
        return _BACKBONES[name]
    except KeyError:
        raise unknown_name("backbone", name, list(_BACKBONES)) from None


def backbone_of(builder: Callable) -> BackboneSpec:
    """The registration of ``builder``; a ValueError (a programming error) for an unregistered one."""
    for spec in _BACKBONES.values():
        if spec.builder is builder:
            return spec
    raise ValueError(f"builder {getattr(builder, '__qualname__', builder)!r} is not registered: decorate it with "
                     "@videoattn.models.register_backbone(name, input_kind=...)")
