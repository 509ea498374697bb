"""RNL paper presets (Table III) on TSM-ResNet-50, 400 classes (Kinetics-400), thop convention.

Blocks go after res3 blocks 0,2 and res4 blocks 0,2,4, as in the authors' release (and the TSM
repository's NL layout); SE, CBAM and GC go before the residual addition of the same units, where
their papers put them. ``docs/model_zoo.md`` reconciles the counts with Table III:

=============== ============================== ============================ =========================
preset          block                          paper (params / GFLOPs)      ours (params / GMACs)
=============== ============================== ============================ =========================
tsm50_nl        NL (TSM repo: pool after, floor) 31.69 M / 49.38 G           31.69 M / 49.38
tsm50_rnl       RNL, 3x7x7 res3, 3x3x3 res4    35.48 M / 41.15 G (*)        28.13 M / 41.69 (*)
tsm50_se_rnl    SE (eq. 10-12, C/16) then RNL  35.95 M / 41.16 G (*)        28.59 M / 41.69 (*)
tsm50_se        SE (Hu et al.), C/16           24.79 M / 32.89 G            24.79 M / 32.89
tsm50_cbam      CBAM, C/16, 7x7 per frame      24.80 M / 32.90 G            24.79 M / 32.90
tsm50_gc        GCNet block, C/16              24.79 M / 32.90 G            24.80 M / 32.90
=============== ============================== ============================ =========================

(*) the release stores each depthwise kernel densely (32x its real weights) plus an equally large
frozen mask, and its counter skips that conv: ``videoattn.analysis.released_counts.rnl_release_count``
gives Table III's figures back.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConfigError
from .backbone_registry import register_backbone
from .presets import paper_row_input, register_preset
from .recognizer import Recognizer, build_recognizer

TSM_LAYOUT = {"res3": (0, 2), "res4": (0, 2, 4)}  # RNL release / TSM repository (NL3DWrapper)
TSM_PLAN = "res3: 0,2; res4: 0,2,4"
RELEASED_KERNELS = {"res3": (3, 7, 7), "res4": (3, 3, 3)}
PAPER_KERNELS = {"res3": (3, 7, 7), "res4": (3, 7, 7)}
RELEASED_SE_MOMENTUM = 0.01  # BatchNorm1d momentum of the release's ChannelGate (running statistics only)


def rnl_insertions(region_kernels: Mapping, se_reduction: int | None) -> list[dict]:
    """One ``rnl`` (or ``chain`` of ``se_add`` then ``rnl``) insertion per stage of ``region_kernels``."""
    if not isinstance(region_kernels, Mapping) or not region_kernels:
        raise ConfigError(f"region_kernels must map stages {sorted(TSM_LAYOUT)} to kernel sizes, "
                          f"got {region_kernels!r}")
    unknown = sorted(set(region_kernels) - set(TSM_LAYOUT))
    if unknown:
        raise ConfigError(f"region_kernels names stage(s) {', '.join(unknown)}; the RNL layout has blocks in "
                          f"{', '.join(sorted(TSM_LAYOUT))} only")
    insertions = []
    for stage, kernel in region_kernels.items():
        rnl = {"name": "rnl", "options": {"kernel_size": kernel}}
        plan = {stage: list(TSM_LAYOUT[stage])}
        if se_reduction is None:
            insertions.append({**rnl, "plan": plan})
        else:
            se = {"name": "se_add", "options": {"reduction": se_reduction, "momentum": RELEASED_SE_MOMENTUM}}
            insertions.append({"name": "chain", "plan": plan, "options": {"blocks": [se, rnl]}})
    return insertions


@register_backbone("tsm_rnl", description="TSM ResNet with the RNL release's block layout")
def build_tsm_rnl(*, region_kernels: Mapping = RELEASED_KERNELS, se_reduction: int | None = None,
                  block_options: Mapping | None = None, depth: int = 50, variant: str = "tsm", num_classes: int = 400,
                  num_frames: int = 8, base_channels: int = 64, dropout: float = 0.5, tsm_n_div: int = 8,
                  temporal_padding: str = "zeros", zero_init_residual: bool = False,
                  pretrained: str | None = None) -> Recognizer:
    """TSM ResNet with RNL blocks after res3 0,2 and res4 0,2,4. ``region_kernels``: F_theta's kernel
    per stage (default the release's 3x7x7 / 3x3x3; ``PAPER_KERNELS`` is the text's 3x7x7
    everywhere); ``se_reduction``: put RNL's additive SE (``se_add``) with this reduction before each
    RNL (the SE+RNL attention chain); ``block_options``: other block options (``{"aggregation": ...}``
    reaches every RNL; ``{"se_add": {...}}`` only the SEs), by the rule of :mod:`.block_options`."""
    return build_recognizer(
        depth=depth, variant=variant, num_classes=num_classes, num_frames=num_frames, base_channels=base_channels,
        dropout=dropout, blocks=rnl_insertions(region_kernels, se_reduction), block_options=block_options,
        tsm_n_div=tsm_n_div,
        temporal_padding=temporal_padding, zero_init_residual=zero_init_residual, pretrained=pretrained,
    )


_COMMON = {"depth": 50, "variant": "tsm", "num_classes": 400}
_RNL_INPUT = paper_row_input(8, 224, "thop")  # Table III: 8x224x224, thop

register_preset("tsm50_nl", build_recognizer, "TSM ResNet-50 + five NL blocks (res3 0,2; res4 0,2,4), the TSM "
                "repository's NL: embedded Gaussian, C/2, keys/values max-pooled 1x2x2 (floor) after phi/g",
                "RNL Table III +5 NL: 31.69 M params, 49.38 GFLOPs (8x224x224, thop)", paper_input=_RNL_INPUT,
                blocks=({"name": "nl", "plan": TSM_PLAN, "options": {"pool_mode": "floor"}},), **_COMMON)
register_preset("tsm50_rnl", build_tsm_rnl, "TSM ResNet-50 + five Gaussian RNL blocks (res3 0,2 with 3x7x7 "
                "regions; res4 0,2,4 with 3x3x3, as released)",
                "RNL Table III +5 RNL: 35.48 M params, 41.15 GFLOPs as the release counts (honest: 28.13 M, 41.69 G)",
                paper_input=_RNL_INPUT)
register_preset("tsm50_se_rnl", build_tsm_rnl, "TSM ResNet-50 + five SE+RNL attention chains (RNL sec. III-D; SE "
                "of eq. 10-12 with the C/16 bottleneck Table III's count implies)",
                "RNL Table III +5 [SE+RNL]: 35.95 M params, 41.16 GFLOPs as the release counts", paper_input=_RNL_INPUT,
                se_reduction=16)

# --- Table III's attention baselines, before the residual addition of the same units -------------------
_TSM_BASELINES = {
    "se": ("squeeze-and-excitation (Hu et al.), C/16", "+5 SE: 24.79 M params, 32.89 GFLOPs"),
    "cbam": ("CBAM channel then spatial (7x7 per frame) attention, C/16", "+5 CBAM: 24.80 M params, 32.90 GFLOPs"),
    "gc": ("GCNet global context, C/16", "+5 GC: 24.79 M params, 32.90 GFLOPs"),
}
for _key, (_description, _reference) in _TSM_BASELINES.items():
    register_preset(f"tsm50_{_key}", build_recognizer, f"TSM ResNet-50 + five {_description} blocks before the "
                    "residual addition (res3 0,2; res4 0,2,4)", f"RNL Table III {_reference}", paper_input=_RNL_INPUT,
                    blocks=({"name": _key, "plan": TSM_PLAN, "position": "before_residual"},), **_COMMON)

# --- GTA Table 5: NL variants as published (over all THW positions) and decoupled ----------------------
# Same five-block layout and site as GTA's NL row (r2d50_nl); "decoupled" is the generic composite:
# the block within each frame, then a second one along time at each position.
_GTA_VARIANTS = {
    "gc": "GCNet global context (C/16)",
    "cgnl": "CGNL (C/2, 8 groups, order-3 Taylor-Gaussian kernel, as released)",
    "glore": "GloRe (C/4 nodes, C/2 states, as released)",
}
for _key, _description in _GTA_VARIANTS.items():
    register_preset(f"r2d50_{_key}", build_recognizer, f"R2D ResNet-50 + five {_description} blocks over THW",
                    "GTA Table 5 (SS-v1 accuracy only)", paper_input=paper_row_input(8, 224, "fvcore"),
                    depth=50, variant="r2d", num_classes=174,
                    blocks=({"name": _key, "plan": "five_block"},))
    register_preset(f"r2d50_{_key}_decoupled", build_recognizer, f"R2D ResNet-50 + five decoupled {_description} "
                    "blocks: within each frame, then along time", "GTA Table 5, decoupled row",
                    paper_input=paper_row_input(8, 224, "fvcore"),
                    depth=50, variant="r2d", num_classes=174,
                    blocks=({"name": "decoupled", "plan": "five_block",
                             "options": {"spatial": _key, "temporal": _key}},))
