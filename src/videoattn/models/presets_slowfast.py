"""SlowFast presets (GTA Tables 1 and 2), TSM-R50 + GTA (GTA Table 3), and the PySlowFast checkpoint layout.

``slowfast50*``: SlowFast 16x8 R50 as GTA trains it on Something-Something (supplementary sec. E:
"the same training and testing strategy as SlowFast-16x8-R50 ... 16 and 64 frames for the slow and
fast pathways"): the model input is the fast pathway's 64-frame clip, alpha = 4 (PySlowFast's
``configs/SSv2/SLOWFAST_16x8_R50.yaml``: ALPHA 4, BETA_INV 8, FUSION_KERNEL_SZ 7), 174 classes.
``slowfast101*``: SlowFast 8x8 R101 on Kinetics-400 (32 fast frames, alpha = 4, fusion kernel 5).
Blocks go into the slow pathway only, five of them (res3 blocks 1,3 + res4 blocks 1,3,5), with keys
and values max-pooled before their projections as PySlowFast's non-local (``pool_position="before"``
of ``nl`` and of the SA in ``dnl``/``gta``). The count reproduction of GTA Table 1 / Table 2 is in docs/model_zoo.md.

Build with the frames the preset is meant for: ``create_model("slowfast50_gta", num_frames=64)``
(``create_model``'s default is 8 frames, i.e. 2 slow frames here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..backbones.slowfast import SlowFast
from .backbone_registry import register_backbone
from .block_options import apply_block_options
from .presets import paper_row_input, register_preset
from .recognizer import Recognizer, assemble_recognizer, build_recognizer

FIVE_BLOCKS = "five_block"


@register_backbone("slowfast", description="SlowFast two-pathway ResNet recognizer")
def build_slowfast(
    *,
    depth: int = 50,
    num_classes: int = 174,
    num_frames: int = 64,
    alpha: int = 4,
    beta_inv: int = 8,
    fusion_kernel: int = 7,
    fusion_channel_ratio: int = 2,
    base_channels: int = 64,
    dropout: float = 0.5,
    blocks: Sequence = (),
    block_options: Mapping | None = None,
    temporal_padding: str = "zeros",
    zero_init_residual: bool = True,
    pretrained: str | None = None,
) -> Recognizer:
    """A SlowFast recognizer. ``num_frames`` is the fast pathway's clip length (the model input);
    inserted blocks see the slow pathway's ``num_frames // alpha``. ``block_options`` reach the blocks by the
    rule of :mod:`.block_options`; ``pretrained`` is a local 2D ImageNet ResNet file, inflated into both
    pathways (:meth:`~videoattn.backbones.slowfast.SlowFast.adapt_pretrained_state`)."""
    backbone = SlowFast(depth, alpha, beta_inv, fusion_kernel, fusion_channel_ratio, base_channels,
                        temporal_padding, zero_init_residual)
    insertions = apply_block_options(blocks, block_options)
    return assemble_recognizer(backbone, insertions, num_classes=num_classes, num_frames=num_frames,
                               dropout=dropout, pretrained=pretrained)


_BLOCKS = {"": None, "_nl": "nl", "_dnl": "dnl", "_gta": "gta"}
_TABLE1 = {"": "34.0 M params, 131.4 GFLOPs", "_nl": "41.4 M params, 239.9 GFLOPs",
           "_dnl": "41.4 M params, 169.1 GFLOPs", "_gta": "41.4 M params, 169.9 GFLOPs"}
_TABLE2 = {"_nl": "137 GFLOPs x 30 views", "_gta": "137 GFLOPs x 30 views"}

# PySlowFast's non-local pools keys/values 1x2x2 *before* their projections; the SlowFast rows of GTA
# Table 1 (NL, DNL and GTA alike) are counted that way, so every SlowFast preset's attention does it
# (nl's and SA's pool_position="before"; block_options={"pool_position": "after"} restores the default).
_PYSLOWFAST_POOLING = {"pool_position": "before"}

for _suffix, _block in _BLOCKS.items():
    _blocks = () if _block is None else ({"name": _block, "plan": FIVE_BLOCKS, "options": dict(_PYSLOWFAST_POOLING)},)
    _what = "" if _block is None else f" + five {_block.upper()} blocks in the slow pathway"
    register_preset(
        f"slowfast50{_suffix}", build_slowfast,
        f"SlowFast 16x8 R50{_what} (input: 64 fast-pathway frames, alpha 4)",
        f"GTA Table 1 SlowFast-R50{_suffix.replace('_', ' +').upper()}: {_TABLE1[_suffix]} (SS-v1)",
        paper_input=paper_row_input(64, 256, "fvcore"),  # docs/model_zoo.md: the input reproducing Table 1
        depth=50, num_classes=174, num_frames=64, alpha=4, fusion_kernel=7, blocks=_blocks,
    )
    if _suffix != "_dnl":
        register_preset(
            f"slowfast101{_suffix}", build_slowfast,
            f"SlowFast 8x8 R101{_what} (input: 32 fast-pathway frames, alpha 4)",
            f"GTA Table 2 SlowFast-R101{_suffix.replace('_', ' +').upper()}: {_TABLE2[_suffix]} (Kinetics-400)"
            if _suffix else "",
            paper_input=paper_row_input(32, 256, "fvcore"),  # K400 test crop 256 (Table 2 is not reproduced)
            depth=101, num_classes=400, num_frames=32, alpha=4, fusion_kernel=5, blocks=_blocks,
        )

register_preset(
    "tsm50_gta", build_recognizer, "TSM ResNet-50 + five GTA blocks (res3 1,3 + res4 1,3,5): GTA's "
    "'2D R50+TSM' rows; 8 or 16 frames (num_frames)", "GTA Table 3: GTA 2D R50+TSM, 8x1x1 and 16x1x1 (SS-v1/v2)",
    paper_input=paper_row_input(8, 224, "fvcore"),
    depth=50, variant="tsm", num_classes=174, blocks=({"name": "gta", "plan": FIVE_BLOCKS},),
)
