"""GTA (eq. 5-8) against a float64 reference written from the equations, plus options and errors."""

from __future__ import annotations

import pytest
import torch

from videoattn.blocks import create
from videoattn.blocks.gta import temporal_mix
from videoattn.errors import ConfigError, ShapeError

from ._block_refs import (
    assert_identity_then_gradients,
    gta_weights,
    randomize_,
    reference_global_temporal_matrix,
    reference_gta_paper,
    reference_gta_value_form,
    reference_sa,
)

CHANNELS, FRAMES = 16, 3


def video(batch=2, channels=CHANNELS, frames=FRAMES, height=3, width=4, seed=3, dtype=torch.float64):
    return torch.randn(batch, channels, frames, height, width, generator=torch.Generator().manual_seed(seed),
                       dtype=dtype)


@pytest.mark.parametrize("head_mode", ["cross_channel", "multi_head", "single"])
def test_temporal_mix_is_equation_7_8(head_mode):
    groups, channels, frames, samples = 4, 8, 3, 5
    shape = {"cross_channel": (groups, groups, frames, frames), "multi_head": (groups, frames, frames),
             "single": (frames, frames)}[head_mode]
    matrix = torch.randn(shape, dtype=torch.float64)
    values = torch.randn(2, frames, samples, channels, dtype=torch.float64)  # channels-last (N, T, S, C)
    got = temporal_mix(matrix, values, head_mode, groups)
    for n in range(2):
        for s in range(samples):
            expected = reference_global_temporal_matrix(matrix, [values[n, t, s] for t in range(frames)])
            for t in range(frames):
                torch.testing.assert_close(got[n, t, s], expected[t], rtol=1e-12, atol=1e-12)


def test_cross_channel_heads_sum_over_groups():
    """CCMH output head k must depend on every input group g through M[g, k] (eq. 8)."""
    groups, frames = 2, 2
    matrix = torch.zeros(groups, groups, frames, frames, dtype=torch.float64)
    matrix[1, 0] = torch.eye(frames)  # only group 1 feeds head 0
    # (N, T, S, C) with channels 0-1 = group 0, channels 2-3 = group 1
    values = torch.arange(8, dtype=torch.float64).view(1, frames, 1, 4)
    out = temporal_mix(matrix, values, "cross_channel", groups)
    torch.testing.assert_close(out[..., :2], values[..., 2:])  # head 0 = group 1's values
    torch.testing.assert_close(out[..., 2:], torch.zeros_like(out[..., 2:]))


# Options of the default (region_source="value") form, checked against its own stated equations.
GTA_VARIANTS = [
    {},  # full model: SA + Pixel + Region, CCMH (Table 4 row 1)
    {"region": False},  # Table 4 row 2
    {"pixel": False},  # row 3
    {"head_mode": "single"},  # row 4: Pixel + Region without CCMH
    {"region": False, "head_mode": "single"},  # row 5
    {"pixel": False, "head_mode": "single"},  # row 6
    {"head_mode": "multi_head"},  # Table 11 plain multi-head
    {"spatial": False, "num_regions": 1},  # Table 9 "+ Pixel GTA"-style, no SA
]


def _after_sa(block, x):
    return reference_sa(block.spatial, x) if block.spatial is not None else x


@pytest.mark.parametrize("options", GTA_VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "full")
def test_default_value_form_matches_its_stated_equations(options):
    block = randomize_(create("gta", CHANNELS, num_frames=FRAMES, num_groups=2, **options).double())
    x = video()
    with torch.no_grad():
        expected = reference_gta_value_form(gta_weights(block.temporal), _after_sa(block, x))
        torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("options", [
    {},  # SA + Pixel + Region, CCMH
    {"pixel": False},  # Region GTA alone, CCMH
    {"pixel": False, "head_mode": "single"},  # Region GTA alone, one T x T matrix
    {"head_mode": "multi_head", "spatial": False},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "full")
def test_region_source_input_is_the_papers_region_gta(options):
    """``region_source="input"`` against GTA sec. 3.3 as printed (``G_R(t) = W_G X(t)^T``, ``W_G`` K x C,
    ``X_G(t) = G_R(t) X(t)``, values of the regions, ``M_R``, ``G_R^T``). randomize_ gives every bias
    a non-zero value, so where the region value projection's bias enters is checked too."""
    block = randomize_(create("gta", CHANNELS, num_frames=FRAMES, num_groups=2, num_regions=3,
                              region_source="input", **options).double())
    assert float(block.temporal.region_value.bias.detach().abs().min()) > 0
    x = video()
    with torch.no_grad():
        expected = reference_gta_paper(gta_weights(block.temporal), _after_sa(block, x))
        torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


def test_value_form_is_the_paper_form_with_a_factored_w_g_only_without_value_bias():
    """The default form with ``W_G in R^{K x C'}`` equals the paper's Region GTA whose ``K x C`` matrix
    is ``W_G W_V^R`` (``W_V^R`` the C' x C value weights) exactly when the value projection has no
    bias; with a bias it does not (docs/blocks.md states both extra terms)."""
    block = randomize_(create("gta", CHANNELS, num_frames=FRAMES, num_groups=2, num_regions=3, pixel=False,
                              spatial=False).double())
    x = video()
    with torch.no_grad():
        weights = gta_weights(block.temporal)
        w_g, w_v = weights["region_transform.weight"].flatten(1), weights["region_value.weight"].flatten(1)
        paper = dict(weights)
        paper["region_transform.weight"] = (w_g @ w_v)[:, :, None, None, None]  # K x C
        with_bias = block(x)
        assert (with_bias - reference_gta_paper(paper, x)).abs().max() > 1e-3

        block.temporal.region_value.bias.zero_()
        paper["region_value.bias"] = torch.zeros_like(weights["region_value.bias"])
        torch.testing.assert_close(block(x), reference_gta_paper(paper, x), rtol=1e-10, atol=1e-10)


def test_value_form_transform_expands_as_documented():
    """``G_R(t) = W_G V_R(t)^T = (W_G W_V^R) X(t)^T + (W_G b) 1^T`` in float64: the bias of the value
    projection adds the same offset ``W_G b`` to every pixel's region scores."""
    gen = torch.Generator().manual_seed(5)
    hw, c, c_inner, k = 7, 6, 4, 3
    x_t = torch.randn(hw, c, generator=gen, dtype=torch.float64)  # X(t), one row per pixel
    w_v = torch.randn(c_inner, c, generator=gen, dtype=torch.float64)
    b = torch.randn(c_inner, generator=gen, dtype=torch.float64)
    w_g = torch.randn(k, c_inner, generator=gen, dtype=torch.float64)
    v_t = torch.stack([w_v @ row + b for row in x_t])  # V_R(t), HW x C'
    g_r = w_g @ v_t.T
    torch.testing.assert_close(g_r, (w_g @ w_v) @ x_t.T + (w_g @ b)[:, None].expand(k, hw), rtol=1e-12, atol=1e-12)
    # rank of the implied K x C matrix is at most C' (here K < C' so it is K; the restriction is
    # that its rows lie in the span of the C' value filters)
    assert torch.linalg.matrix_rank(w_g @ w_v) <= c_inner


def test_default_sizes_follow_the_paper():
    block = create("gta", 512, num_frames=8)
    temporal = block.temporal
    assert temporal.num_groups == 8 and temporal.num_regions == 512 // 8  # Fig. 4, Table 10
    assert temporal.inner_channels == 128  # C/4 as SA/TA (Table 6 budget)
    assert tuple(temporal.pixel_matrix.shape) == (8, 8, 8, 8)  # G x G x T x T (CCMH)
    assert tuple(temporal.region_transform.weight.shape[:2]) == (64, 128)  # W_G: K x C/4
    # SA (C^2 + biases + BN) plus GTA: four C x C/4 projections, W_G, two G x G x T x T tensors, two BNs.
    c, inner = 512, 128
    sa = 4 * c * inner + 3 * inner + c + 2 * c
    gta = 4 * c * inner + 2 * inner + 2 * c + 64 * inner + 2 * 8 * 8 * 8 * 8 + 2 * 2 * c
    assert sum(p.numel() for p in block.parameters()) == sa + gta


@pytest.mark.parametrize("options", [{}, {"pixel": False}, {"head_mode": "multi_head"}, {"spatial": False}])
def test_identity_at_init_and_gradient_to_every_parameter(options):
    block = create("gta", CHANNELS, num_frames=FRAMES, num_groups=2, **options)
    assert_identity_then_gradients(block, video(dtype=torch.float32))


def test_gta_sees_frame_order():
    """Learned temporal matrices are not permutation-equivariant, unlike TA (GTA sec. 3.3)."""
    block = randomize_(create("gta", CHANNELS, num_frames=4, num_groups=2, spatial=False).double())
    x = video(frames=4)
    order = torch.tensor([3, 1, 0, 2])
    with torch.no_grad():
        difference = (block(x[:, :, order]) - block(x)[:, :, order]).abs().max()
    assert difference > 1e-3


def test_wrong_number_of_frames_is_a_clear_error():
    block = create("gta", CHANNELS, num_frames=FRAMES, num_groups=2)
    with pytest.raises(ShapeError, match=r"num_frames=3.*T=5.*temporal_resize=True"):
        block(torch.randn(1, CHANNELS, 5, 3, 3))
    with pytest.raises(ShapeError, match=r"5-D"):
        block(torch.randn(CHANNELS, FRAMES, 3, 3))
    with pytest.raises(ShapeError, match=r"C=16 channels.*C=12"):
        block(torch.randn(1, 12, FRAMES, 3, 3))


def test_configuration_errors():
    with pytest.raises(ConfigError, match=r"value width 4.*not divisible by num_groups=8"):
        create("gta", CHANNELS, num_frames=FRAMES)  # 16 / 4 = 4 channels, 8 groups
    with pytest.raises(ConfigError, match="at least one of pixel"):
        create("gta", CHANNELS, num_frames=FRAMES, num_groups=2, pixel=False, region=False)
    with pytest.raises(ConfigError, match="head_mode"):
        create("gta", CHANNELS, num_frames=FRAMES, head_mode="ccmh")
    with pytest.raises(ConfigError, match="num_frames"):
        create("gta", CHANNELS)
    with pytest.raises(ConfigError, match="num_regions"):
        create("gta", CHANNELS, num_frames=FRAMES, num_groups=2, num_regions=0)


def test_temporal_resize_resamples_the_matrices():
    block = randomize_(create("gta", CHANNELS, num_frames=FRAMES, num_groups=2, temporal_resize=True).double())
    temporal = block.temporal
    with torch.no_grad():
        same = temporal.effective_matrix(temporal.pixel_matrix, FRAMES)
        assert same is temporal.pixel_matrix
        resized = temporal.effective_matrix(temporal.pixel_matrix, 5)
        assert tuple(resized.shape) == (2, 2, 5, 5)
        # corners map to corners, the centre to the centre, scaled by T / T' = 3 / 5
        torch.testing.assert_close(resized[..., 0, 0], temporal.pixel_matrix[..., 0, 0] * 0.6)
        torch.testing.assert_close(resized[..., 2, 4], temporal.pixel_matrix[..., 1, 2] * 0.6)
        x = video(frames=5)
        out = block(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
