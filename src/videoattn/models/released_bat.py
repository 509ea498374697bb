"""Checkpoint layouts of the BAT authors' releases (``bat-image``, ``bat-video``), mapped onto the BAT
presets (``presets_bat.py``): ``load_weights(model, path, "bat-image" | "bat-video")``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..blocks.bat import BATBase
from ..errors import CheckpointError
from .released import register_layout

# BAT-Image-Classification (NLNet): torchvision keys, a BAT block after unit i of a stage is the
# Sequential entry ``layer<S>.nl<i>``; BAT-Video-Classification: the same names with Conv3d kernels
# (``conv1.weight`` 64x3x1x7x7 for C2D), the classifier a 1x1x1 Conv3d ``fc``. Inside a block:
_BAT_KEYS = {
    "conv1.0.": "reduce.0.", "conv1.1.": "reduce.1.",
    "batransform.conv1.0.": "squeeze.0.", "batransform.conv1.1.": "squeeze.1.",
    "batransform.conv_p.": "row_conv.", "batransform.conv_q.": "col_conv.", "batransform.conv_t.": "time_conv.",
    "batransform.conv2.0.": "mix.0.", "batransform.conv2.1.": "mix.1.",
    "conv2.0.": "expand.0.", "conv2.1.": "expand.1.",
}
_RELEASED_NORMALISATION = {"bat-image": "sigmoid", "bat-video": "softmax"}


def _bat_block_key(rest: str) -> str | None:
    for theirs, ours in sorted(_BAT_KEYS.items(), key=lambda item: -len(item[0])):
        if rest.startswith(theirs):
            return ours + rest[len(theirs):]
    return None


def _squeezed(shape) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _convert_bat(layout: str, state: dict[str, torch.Tensor], model: nn.Module, prefix: str):
    wanted = _RELEASED_NORMALISATION[layout]
    for name, module in model.named_modules():
        if isinstance(module, BATBase) and module.normalisation != wanted:
            raise CheckpointError(
                f"{layout} checkpoints were trained with {wanted} normalisation but block {name} uses "
                f"{module.normalisation!r}: build the model with block_options={{'normalisation': '{wanted}'}}")
    target = model.state_dict()
    out = {}
    for key, value in state.items():
        match = re.match(r"(layer\d+)\.nl(\d+)\.(.*)$", key)
        if match:
            rest = _bat_block_key(match.group(3))
            if rest is None:
                out[key] = value  # reported as unexpected
                continue
            ours = f"{prefix}{match.group(1)}.{match.group(2)}.after_block.{rest}"
        elif key.startswith("fc."):
            ours = key
        else:
            ours = prefix + key
        want = target.get(ours)
        if want is not None and value.shape != want.shape and _squeezed(value.shape) == _squeezed(want.shape) \
                and value.numel() == want.numel():
            value = value.reshape(want.shape)  # Conv3d 1x1x1 / 1xsx1 kernels -> our 2D / 1D ones
        out[ours] = value
    return out


@register_layout("bat-image", "BAT authors' ImageNet release (BAT-Image-Classification: torchvision keys, "
                 "layer<S>.nl<i>.* blocks; sigmoid normalisation)")
def _convert_bat_image(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    return _convert_bat("bat-image", state, model, "")


@register_layout("bat-video", "BAT authors' Kinetics release (BAT-Video-Classification: Conv3d C2D/I3D keys, "
                 "layer<S>.nl<i>.* blocks, Conv3d fc; softmax normalisation)")
def _convert_bat_video(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    return _convert_bat("bat-video", state, model, "backbone.")
