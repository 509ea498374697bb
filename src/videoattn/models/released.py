"""Full-model weights in the layouts the papers' authors released, loaded by key map.

An ImageNet file initialises only a backbone (:func:`videoattn.backbones.load_pretrained`); a
*released* checkpoint holds a whole trained video model (trunk, inserted blocks, classifier) under
its authors' key names. Each family registers how to read its layout::

    @register_layout("rnl", "RNL authors' TSM-R50 + RNL release (module.base_model.* keys)")
    def _convert(state, model):          # their state dict -> ours (names, and values if needed)
        return {our_key(k): v for k, v in state.items()}

The converter receives the file's state dict with only DataParallel's ``module.`` prefix removed.
Users load with ``create_model(name, weights=path, weights_layout="rnl")`` (or the config's
``model.weights`` / ``model.weights_layout``). A converter may rename, reshape or drop keys and may
raise :class:`~videoattn.errors.CheckpointError` when a value breaks an assumption it relies on
(e.g. masked-out weights that must be zero). Loading then requires every converted key to exist with
its shape; keys the converter could not map and model keys nothing filled are reported. The
``videoattn`` layout is our own naming (a ``model`` state dict saved by the engine, or a bare one).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..backbones.pretrained import read_state_dict
from ..errors import CheckpointError, short_list, unknown_name

log = logging.getLogger(__name__)

Converter = Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Layout:
    name: str
    convert: Converter
    description: str


_LAYOUTS: dict[str, Layout] = {}


def register_layout(name: str, description: str):
    """Decorator registering ``convert(state, model) -> state`` as checkpoint layout ``name``."""

    def decorator(convert: Converter) -> Converter:
        if name in _LAYOUTS:
            raise ValueError(f"checkpoint layout {name!r} is registered twice")
        _LAYOUTS[name] = Layout(name, convert, description)
        return convert

    return decorator


def list_layouts() -> dict[str, str]:
    """Registered layout names and their descriptions."""
    return {name: layout.description for name, layout in sorted(_LAYOUTS.items())}


@dataclass
class WeightsReport:
    """What :func:`load_weights` did."""

    path: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys the file did not fill
    unexpected: list[str] = field(default_factory=list)  # converted keys the model does not have

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors from {self.path} ({self.layout} layout)"]
        if self.missing:
            parts.append(f"missing (kept at initialisation): {short_list(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected (not used): {short_list(self.unexpected)}")
        return "; ".join(parts)


@register_layout("videoattn", "videoattn's own names (an engine checkpoint's 'model' or a bare state dict)")
def _own(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    return state


def load_weights(model: nn.Module, path: str | os.PathLike, layout: str = "videoattn",
                 strict: bool = False) -> WeightsReport:
    """Load a whole-model checkpoint in ``layout`` into ``model``; ``strict`` also refuses missing or
    unexpected keys. Shapes must match exactly (a CheckpointError names the key and both shapes)."""
    if layout not in _LAYOUTS:
        raise unknown_name("checkpoint layout", layout, list(_LAYOUTS))
    if not os.path.isfile(path):
        raise CheckpointError(f"model weights file not found: {os.fspath(path)} ({layout} layout; videoattn never "
                              "downloads weights: pass the path of a local whole-model checkpoint)")
    # Only DataParallel's prefix is stripped: whole-model keys start with "backbone." themselves, and a
    # layout's converter sees the rest of its authors' names as they are.
    source = read_state_dict(path, strip_prefixes=("module.",))
    state = _LAYOUTS[layout].convert(source, model)
    target = model.state_dict()
    report = WeightsReport(os.fspath(path), layout)
    load = {}
    for key, value in state.items():
        if key not in target:
            report.unexpected.append(key)
            continue
        if tuple(value.shape) != tuple(target[key].shape):
            raise CheckpointError(f"{os.fspath(path)} ({layout} layout): {key!r} has shape {tuple(value.shape)} "
                                  f"but the model expects {tuple(target[key].shape)}")
        load[key] = value.to(dtype=target[key].dtype)
        report.loaded.append(key)
    if not load:
        raise CheckpointError(f"{os.fspath(path)} ({layout} layout) fills no parameter of the model; expected keys "
                              f"such as {short_list(sorted(target), 2)}, found e.g. {short_list(sorted(state), 3)}")
    report.missing = sorted(k for k in target if k not in load and not k.endswith("num_batches_tracked"))
    if strict and (report.missing or report.unexpected):
        raise CheckpointError(f"{os.fspath(path)} ({layout} layout) does not match the model exactly: "
                              f"{report.summary()}")
    model.load_state_dict(load, strict=False)
    log.info(report.summary())
    return report


# layouts registered in their own modules that nothing else imports (the GSM / SA-GSM releases)
from . import released_gsm  # noqa: E402,F401
