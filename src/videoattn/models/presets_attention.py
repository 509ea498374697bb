"""Presets of the Non-local family and GTA on R2D backbones (GTA paper Tables 1 and 6).

``r2d50_<block>``: R2D ResNet-50 with five blocks (res3 blocks 1,3 + res4 blocks 1,3,5, the NL/GTA
layout), 174 classes (Something-Something v1), counted at 8x224x224 with the fvcore convention:

========== ============================== ========================= ===========================
preset     block                          paper (params / GFLOPs)   ours (params / GMACs)
========== ============================== ========================= ===========================
r2d50_nl   NL, C/2, pool after phi/g      31.2 M / 61.1 G (Table 1) 31.22 M / 61.10
r2d50_sa   SA, C/4 (eq. 3)                27.5 M / 41.7 G (Table 6) 27.55 M / 41.67
r2d50_ta   TA, C/4 (eq. 4)                27.5 M / 41.0 G (Table 6) 27.55 M / 40.97
r2d50_dnl  SA + TA (Fig. 2b)              31.2 M / 49.9 G (Tables)  31.24 M / 49.93
r2d50_tape SA + TA + positional embedding 31.2 M / —     (Table 6)  31.27 M / 49.93
r2d50_gta  SA + GTA (eq. 5-8)             31.2 M / 50.2 G (Tables)  31.40 M / 50.90
========== ============================== ========================= ===========================

``r2d18_<block>``: R2D ResNet-18 with one block after res3 block 1 and one after res4 block 1
(ResNet-18 has two blocks per stage), for CPU experiments; narrow them further with the
``base_channels`` override (e.g. ``create_model("r2d18_gta", base_channels=16,
block_options={"num_groups": 4})``, the demo's setting). See ``docs/blocks.md`` for the widths.
"""

from __future__ import annotations

from .presets import paper_row_input, register_preset
from .recognizer import build_recognizer

FIVE_BLOCKS = "five_block"  # res3: 1,3; res4: 1,3,5
R2D18_PLAN = "res3: 1; res4: 1"

_BLOCKS = {
    # name: (registry block, options, description, paper reference for r2d50)
    "nl": ("nl", {}, "Non-local (embedded Gaussian, inner C/2, keys/values max-pooled 1x2x2 after phi/g)",
           "GTA Table 1 +NL: 31.2 M params, 61.1 GFLOPs (8x224x224, SS-v1)"),
    "sa": ("sa", {}, "spatial self-attention within each frame (GTA eq. 3)",
           "GTA Table 6 +SA: 27.5 M params, 41.7 GFLOPs"),
    "ta": ("ta", {}, "temporal self-attention across frames (GTA eq. 4)",
           "GTA Table 6 +TA: 27.5 M params, 41.0 GFLOPs"),
    "dnl": ("dnl", {}, "decoupled non-local: SA then TA (GTA Fig. 2b)",
            "GTA Tables 1/6 +DNL (+SA+TA): 31.2 M params, 49.9 GFLOPs"),
    "tape": ("tape", {"spatial": True}, "SA then temporal attention with a learned positional embedding",
             "GTA Table 6 +SA+TAPE: 31.2 M params"),
    "gta": ("gta", {}, "SA then Global Temporal Attention, pixel + region, cross-channel multi-head",
            "GTA Tables 1/6 +GTA: 31.2 M params, 50.2 GFLOPs"),
}

for _key, (_block, _options, _description, _reference) in _BLOCKS.items():
    register_preset(
        f"r2d50_{_key}", build_recognizer, f"R2D ResNet-50 + five {_description} blocks", _reference,
        paper_input=paper_row_input(8, 224, "fvcore"),
        depth=50, variant="r2d", num_classes=174,
        blocks=({"name": _block, "plan": FIVE_BLOCKS, "options": dict(_options)},),
    )
    register_preset(
        f"r2d18_{_key}", build_recognizer, f"R2D ResNet-18 + two {_description} blocks (res3, res4)", "",
        depth=18, variant="r2d", num_classes=174,
        blocks=({"name": _block, "plan": R2D18_PLAN, "options": dict(_options)},),
    )
