"""Presets of the Relational Self-Attention family (Kim et al., NeurIPS 2021).

``tsn50_rsa``: TSN ResNet-50 (2D per frame, average consensus; our ``r2d`` trunk) whose 3x3
convolutions are replaced by RSA (``VplusR`` kernel and context, 8 heads, 5x7x7) in 7 bottlenecks,
"for every two ResNet blocks from the third block in res2 to the second block in res5": res2 block
2; res3 blocks 1, 3; res4 blocks 1, 3, 5; res5 block 1 (the release's ``position
[[2],[1,3],[1,3,5],[1]]``). Those bottlenecks train from scratch (MSRA init, last BN gamma zero, their
ImageNet tensors skipped); stochastic depth with survival falling linearly 1 -> 0.8 over the 16
blocks and dropout 0.3 before the classifier, as in the release's training scripts. 174 classes
(Something-Something v1).

Counted with the fvcore convention (convolutions and matrix products, see docs/model_zoo.md) at
174 classes and 224x224: 22.03 M parameters, 35.66 GMACs at 8 frames, 71.31 at 16 (issue figures for the
release: about 22.03 M, 35.89 G and 71.8 G; the MACs differ by the association of the per-position
products only, see docs/model_zoo.md).

``r2d18_rsa``: the demo's small R2D ResNet-18 (BasicBlocks) with RSA replacing the second 3x3
convolution (``conv2``) of res3 block 1 and res4 block 1, those blocks from scratch.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CheckpointError
from .presets import paper_row_input, register_preset
from .recognizer import build_recognizer
from .released import register_layout

RSA_PLAN = "res2: 2; res3: 1,3; res4: 1,3,5; res5: 1"
R2D18_PLAN = "res3: 1; res4: 1"

register_preset(
    "tsn50_rsa", build_recognizer,
    "TSN ResNet-50 with RSA replacing the 3x3 conv of 7 bottlenecks (trained from scratch), stochastic depth 0.2",
    "RSA paper: TSN-R50 + 7 RSA layers (supplementary backbone paragraph); ~22.03 M params, ~35.89 GMACs at 8x224",
    paper_input=paper_row_input(8, 224, "fvcore"),
    depth=50, variant="r2d", num_classes=174, dropout=0.3, zero_init_residual=True, stochastic_depth=0.2,
    blocks=({"name": "rsa", "plan": RSA_PLAN, "position": "replace_conv2", "from_scratch": True},),
)

register_preset(
    "r2d18_rsa", build_recognizer, "R2D ResNet-18 with RSA replacing conv2 of res3 block 1 and res4 block 1", "",
    depth=18, variant="r2d", num_classes=174,
    blocks=({"name": "rsa", "plan": R2D18_PLAN, "position": "replace_conv2", "from_scratch": True},),
)


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
