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

from .presets import paper_row_input, register_preset
from .recognizer import build_recognizer

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
