"""GTA Table 5's CGNL and GloRe rows: R2D-50 with the block after res3 1,3 and res4 1,3,5 (as GTA's
NL row), over all THW positions and decoupled. Table 5 prints accuracies only, so these are our own
exact counts (fvcore convention, 174 classes, 8x224x224), with their closed forms and the relation of
each decoupled form to its plain one."""

from __future__ import annotations

import pytest

from videoattn.analysis.complexity import profile_model
from videoattn.models import create_model

BASE = (23_864_558, 32_699_940_864)  # r2d50
# five_block sites: (channels, positions T*H*W, frames T, positions per frame H*W), 8x224x224
SITES = [(512, 8 * 28 * 28, 8, 28 * 28)] * 2 + [(1024, 8 * 14 * 14, 8, 14 * 14)] * 3

COUNTS = {  # preset: (parameters, fvcore MACs)
    "r2d50_cgnl": (29_607_150, 45_589_954_560),
    "r2d50_cgnl_decoupled": (35_349_742, 58_479_968_256),
    "r2d50_glore": (29_611_246, 45_358_350_336),
    "r2d50_glore_decoupled": (35_357_934, 138_899_718_144),
}


@pytest.fixture(scope="module")
def counted():
    return {name: profile_model(name) for name in ["r2d50", *COUNTS]}


def test_exact_counts(counted):
    assert (counted["r2d50"].params, counted["r2d50"].macs) == BASE
    for name, (params, macs) in COUNTS.items():
        assert (counted[name].params, counted[name].macs) == (params, macs), name


def test_closed_forms():
    """CGNL block: theta/phi/g C*C/2 each, grouped W_z C*C/16 (8 groups), GroupNorm 2C; MACs the convs
    per position plus the two order-3 kernel products, 4 * C/2 per position. GloRe block: W_s C*C/2 + C/2,
    W_b C*C/4 + C/4, A_g (C/4)^2 + C/4, W_g (C/2)^2, W_e C*C/2, BN 2C; MACs the convs and both
    projections per position plus the graph convolution once per clip."""
    cgnl = sum(25 * c * c // 16 + 2 * c for c, *_ in SITES), sum((25 * c * c // 16 + 4 * c) * n for c, n, *_ in SITES)
    assert (COUNTS["r2d50_cgnl"][0] - BASE[0], COUNTS["r2d50_cgnl"][1] - BASE[1]) == cgnl

    def glore_graph(c):
        nodes, states = c // 4, c // 2
        return nodes * nodes * states + states * states * nodes

    glore_params = sum(c * c // 2 + c // 2 + c * c // 4 + c // 4 + (c // 4) ** 2 + c // 4 + (c // 2) ** 2
                       + c * c // 2 + 2 * c for c, *_ in SITES)
    glore_macs = sum((c * c // 2 + c * c // 4 + c * c // 2 + 2 * (c // 2) * (c // 4)) * n + glore_graph(c)
                     for c, n, *_ in SITES)
    assert (COUNTS["r2d50_glore"][0] - BASE[0], COUNTS["r2d50_glore"][1] - BASE[1]) == (glore_params, glore_macs)


def test_decoupled_relation_to_plain():
    """Decoupled = one block within each frame + one along time at each position: twice the plain
    block's parameters. CGNL's compact kernel is linear in the positions, so its MACs double exactly;
    GloRe's graph convolution runs once per folded sample (T frames, then H*W positions) instead of
    once per clip, adding (T + H*W - 2) graph convolutions per site."""
    for key in ("cgnl", "glore"):
        plain, decoupled = COUNTS[f"r2d50_{key}"], COUNTS[f"r2d50_{key}_decoupled"]
        assert decoupled[0] - BASE[0] == 2 * (plain[0] - BASE[0])
    plain, decoupled = COUNTS["r2d50_cgnl"], COUNTS["r2d50_cgnl_decoupled"]
    assert decoupled[1] - BASE[1] == 2 * (plain[1] - BASE[1])
    plain, decoupled = COUNTS["r2d50_glore"], COUNTS["r2d50_glore_decoupled"]
    extra = sum((frames + per_frame - 2) * ((c // 4) ** 2 * (c // 2) + (c // 2) ** 2 * (c // 4))
                for c, _, frames, per_frame in SITES)
    assert decoupled[1] - BASE[1] == 2 * (plain[1] - BASE[1]) + extra


@pytest.mark.parametrize("key,cls", [("cgnl", "CompactGeneralizedNonLocal"), ("glore", "GlobalReasoningUnit")])
def test_layout_and_decoupled_is_the_composite(key, cls):
    model = create_model(f"r2d50_{key}", base_channels=16)
    sites = {name for name, m in model.named_modules() if type(m).__name__ == cls}
    assert sites == {"backbone.layer2.1.after_block", "backbone.layer2.3.after_block", "backbone.layer3.1.after_block",
                     "backbone.layer3.3.after_block", "backbone.layer3.5.after_block"}
    decoupled = create_model(f"r2d50_{key}_decoupled", base_channels=16).backbone.layer3[5].after_block
    assert decoupled.registered_block_name == "decoupled"
    assert type(decoupled.spatial).__name__ == type(decoupled.temporal).__name__ == cls
