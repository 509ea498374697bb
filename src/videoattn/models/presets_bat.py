"""Presets of the BAT paper (Chi et al., CVPR 2020): video (Tables 7-8) and ImageNet (Tables 2-6).

Video, Kinetics-400 (400 classes), 8x224x224, five blocks after res3 blocks 1,3 and res4 blocks
1,3,5 (the release's ``--nonlocal_mod 2``), fvcore convention (convolutions, linear layers and
matrix products; the Kronecker-expanded P, Q, T products counted as the dense products they are):

============== ========================================= ====================== ==================
preset         blocks                                    paper (Table 8)        ours
============== ========================================= ====================== ==================
c2d50_nl       NL, C/2, keys/values pooled after phi/g   31.7 M / 30.7 G        31.69 M / 30.71
c2d50_bat      2D BAT, k = 8                             29.2 M / 24.8 G        29.18 M / 24.78
c2d50_bat3d    3D BAT, k = 8, tk = 4 (ts = T = 4)        29.2 M / 24.8 G        29.19 M / 24.79
i3d50_bat      2D BAT, k = 8, on I3D                     32.9 M / 33.6 G        32.89 M / 33.69
============== ========================================= ====================== ==================

ImageNet (1000 classes, 224x224), k = 4, s = 7, blocks where the release's ``--nl_mod`` puts them
(five per model; ResNet-18 has two units per stage, so two), BAT dropout 0.2 for ResNet-50 and
deeper as in the release; counts under the ``thop`` convention (``docs/model_zoo.md``):
``resnet18_bat``, ``resnet50_bat``, ``resnet101_bat``, ``resnet152_bat``, ``resnet50_nl`` (Table 5's
image NL: no sub-sampling, ``1/sqrt(d)`` scaling).

Every BAT preset uses the paper's L1 normalisation (eq. 2) by default; the released checkpoints were
trained with softmax (video) and sigmoid (image): pass ``block_options={"normalisation": ...}``
(the released-layout loaders refuse a model whose normalisation differs from the file's).
"""

from __future__ import annotations

from .presets import paper_row_input, register_preset
from .recognizer import build_image_classifier, build_recognizer

FIVE_BLOCKS = "five_block"  # res3: 1,3; res4: 1,3,5
# Where the release's nl_mod puts the five blocks (README: "2 2 1000", "2 7 1000", "4 12 1000").
IMAGE_PLANS = {18: "res3: 1; res4: 1", 50: FIVE_BLOCKS, 101: "res3: 1,3; res4: 6,13,20",
               152: "res3: 3,7; res4: 11,23,35"}

_VIDEO = {
    "c2d50_nl": ("c2d", "nl", {}, "C2D ResNet-50 + five Non-local blocks (C/2, keys/values pooled after phi/g)",
                 "BAT Table 8 C2D + NL: 31.7 M params, 30.7 GFLOPs (8x224x224, Kinetics-400)"),
    "c2d50_bat": ("c2d", "bat", {"k": 8, "dropout": 0.2}, "C2D ResNet-50 + five 2D BAT blocks (k = 8, s = 7)",
                  "BAT Table 8 C2D + BAT: 29.2 M params, 24.8 GFLOPs"),
    "c2d50_bat3d": ("c2d", "bat3d", {"k": 8, "tk": 4, "dropout": 0.2},
                    "C2D ResNet-50 + five 3D BAT blocks (k = 8, tk = 4, s = 7)",
                    "BAT Table 8 C2D + 3D-BAT: 29.2 M params, 24.8 GFLOPs"),
    "i3d50_bat": ("i3d", "bat", {"k": 8, "dropout": 0.2}, "I3D ResNet-50 + five 2D BAT blocks (k = 8, s = 7)",
                  "BAT Table 8 I3D + BAT: 32.9 M params, 33.6 GFLOPs"),
}

for _name, (_variant, _block, _options, _description, _reference) in _VIDEO.items():
    register_preset(_name, build_recognizer, _description, _reference,
                    paper_input=paper_row_input(8, 224, "fvcore"), depth=50, variant=_variant,
                    num_classes=400, blocks=({"name": _block, "plan": FIVE_BLOCKS, "options": dict(_options)},))

_IMAGE_REFERENCES = {
    18: "BAT Table 5 ResNet-18 + BAT: +0.13 M params, +0.03 GFLOPs (71.3 top-1)",
    50: "BAT Tables 2/6 ResNet-50 + BAT: 30.23 M params, 5.44 GFLOPs (78.3 top-1)",
    101: "BAT Table 6 ResNet-101 + BAT: 49.2 M params, 9.2 GFLOPs (79.1 top-1)",
    152: "BAT Table 6 ResNet-152 + BAT: 64.9 M params, 12.9 GFLOPs (79.4 top-1)",
}

for _depth, _plan in IMAGE_PLANS.items():
    register_preset(
        f"resnet{_depth}_bat", build_image_classifier,
        f"2D ResNet-{_depth} image classifier + BAT blocks (k = 4, s = 7) at {_plan}", _IMAGE_REFERENCES[_depth],
        paper_input=paper_row_input(None, 224, "thop"),
        depth=_depth, num_classes=1000,
        blocks=({"name": "bat", "plan": _plan,
                 "options": {"k": 4, "dropout": 0.2 if _depth >= 50 else 0.0}},),
    )

register_preset(
    "resnet50_nl", build_image_classifier,
    "2D ResNet-50 image classifier + five Non-local blocks (C/2, no sub-sampling, 1/sqrt(d) scaling)",
    "BAT Table 5 ResNet-50 + NL: +7.36 M params, +3.55 GFLOPs (77.5 top-1)",
    paper_input=paper_row_input(None, 224, "thop"),
    depth=50, num_classes=1000,
    blocks=({"name": "nl", "plan": FIVE_BLOCKS, "options": {"sub_sample": False, "use_scale": True}},),
)
