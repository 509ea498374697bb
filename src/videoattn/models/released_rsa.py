"""Checkpoint layout of the RSA authors' TSN-R50 release (``rsa``), mapped onto ``tsn50_rsa``
(``presets_rsa.py``): ``load_weights(model, path, "rsa")``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CheckpointError
from .released import register_layout


@register_layout("rsa", "RSA authors' TSN-R50 release (module.base_model.* Conv3d keys, module.new_fc Conv1d head)")
def convert_rsa_release(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The release's keys -> ours. Their trunk is a ResNet-50 of ``Conv3d`` with 1xkxk kernels under
    ``base_model.`` (torchvision's names otherwise), the RSA layer keeps its names inside
    ``conv2`` (``projection.weight``, ``H1.weight``, ``P1``, ``H2.weight``, ``G.weight``, ``I``), and
    the classifier is a ``Conv1d`` called ``new_fc`` (``base_model.fc1`` when trained without
    dropout). Kernels are squeezed to our 2D shapes; a temporal extent other than 1 is refused."""
    target = model.state_dict()
    converted = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith(("new_fc.", "base_model.fc1.")):
            name = "fc." + key.rsplit(".", 1)[1]
            if name == "fc.weight":
                if value.dim() != 3 or value.shape[2] != 1:
                    raise CheckpointError(f"RSA release: {key!r} should be a Conv1d kernel (classes, C, 1), "
                                          f"got shape {tuple(value.shape)}")
                value = value[:, :, 0]
        elif key.startswith("base_model."):
            name = "backbone." + key.removeprefix("base_model.")
            if name.endswith((".H1.weight", ".H2.weight", ".G.weight")):
                name = name.removesuffix(".weight")
            elif value.dim() == 5 and name in target and target[name].dim() == 4:
                if value.shape[2] != 1:
                    raise CheckpointError(f"RSA release: {key!r} has temporal extent {value.shape[2]} "
                                          f"(shape {tuple(value.shape)}); the TSN trunk expects 1")
                value = value[:, :, 0]
        else:
            name = key  # not a key of the release: reported as unexpected
        converted[name] = value
    return converted
