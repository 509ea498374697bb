"""BN-Inception recognizers: TSN's baseline and the Gate-Shift family (GSM, SA-GSM).

``build_bninception`` hands a :class:`~videoattn.backbones.bninception.BNInception` to
:func:`~videoattn.models.recognizer.assemble_recognizer` (blocks inserted, local ImageNet weights in
the TSN/TRN/GSM released layout loaded, linear head with TSN's average consensus over the segments).

========================= ==================================== ================= ==================
preset                    blocks (10: every inception module)  paper params      ours (174 classes)
========================= ==================================== ================= ==================
``bninception``           none (TSN)                           —                 10.45 M
``bninception_gsm``       GSM at ``before_1x1_bn``             10.5 M (SA-GSM)   10.50 M
``bninception_sagsm``     SA-GSM at ``before_1x1_bn``          11.0 M (SA-GSM)   11.01 M
========================= ==================================== ================= ==================

GSM's gate sees ``ReLU(BN(x))`` (``gate_norm=True``, as the released module: the site is before the
module's own BN). SA-GSM uses the attention form without ``W_v`` (``value="released"``): the report's
11.0 M is that form's count (eq. 3's ``W_h: C -> C/8``, ``W_v: C/8 -> C`` would give 10.71 M); the
equation form is one override away (``block_options={"value": "paper"}``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..backbones.bninception import BNInception
from ..errors import ConfigError
from .backbone_registry import register_backbone
from .block_options import apply_block_options
from .presets import paper_row_input, register_preset
from .recognizer import Recognizer, assemble_recognizer

GSM_SITE = "before_1x1_bn"


@register_backbone("bninception", description="TSN/GSM BN-Inception recognizer")
def build_bninception(
    *,
    num_classes: int = 174,
    num_frames: int = 8,
    base_channels: int = 64,
    dropout: float = 0.5,
    blocks: Sequence = (),
    block_options: Mapping | None = None,
    input_convention: str = "caffe_bgr",
    pretrained: str | None = None,
) -> Recognizer:
    """A BN-Inception recognizer. ``blocks`` lists insertions (mappings or :class:`BlockInsertion`;
    site kinds ``before_1x1_bn`` and ``after_block``); ``block_options`` reach the blocks by the rule
    of :mod:`.block_options`; ``pretrained`` is a local ImageNet BN-Inception checkpoint (TSN/TRN/GSM or
    pretrainedmodels names)."""
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ConfigError(f"num_frames must be a positive int, got {num_frames!r}")
    backbone = BNInception(base_channels, input_convention)
    insertions = apply_block_options(blocks, block_options)
    return assemble_recognizer(backbone, insertions, num_classes=num_classes, num_frames=num_frames,
                               dropout=dropout, pretrained=pretrained)


# 8 segments at 224x224 (GSM/SA-GSM); the report prints no FLOPs, so the counting convention is ours.
_PAPER_INPUT = paper_row_input(8, 224, "fvcore")

register_preset("bninception", build_bninception, "TSN BN-Inception: per-frame 2D CNN, average consensus",
                "", paper_input=_PAPER_INPUT, num_classes=174)
register_preset("bninception_gsm", build_bninception, "BN-Inception + Gate-Shift Module in all 10 inception "
                "modules (after the first 1x1 convolution, before its BN)",
                "SA-GSM report sec. 5: 10.5 M params (GSM, BN-Inception)", paper_input=_PAPER_INPUT, num_classes=174,
                blocks=({"name": "gsm", "plan": "all", "position": GSM_SITE, "options": {"gate_norm": True}},))
register_preset("bninception_sagsm", build_bninception, "BN-Inception + Self-Attention Gate-Shift in all 10 "
                "inception modules", "SA-GSM report sec. 5: 11.0 M params", paper_input=_PAPER_INPUT, num_classes=174,
                blocks=({"name": "sa_gsm", "plan": "all", "position": GSM_SITE,
                         "options": {"gate_norm": True, "value": "released"}},))
