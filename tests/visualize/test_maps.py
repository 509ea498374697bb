"""Every extracted map against the block's own math, recomputed here in float64 from the block's
weights and the captured input (no helper of the implementation is used by the references)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videoattn.blocks import create
from videoattn.visualize import maps, record_inputs


def _randomise(module: nn.Module, seed: int = 0, std: float = 0.3) -> nn.Module:
    """Non-trivial weights (fresh blocks are near-uniform / zero-gated) and BN statistics."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
        for sub in module.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                sub.running_mean.copy_(torch.randn(sub.running_mean.shape, generator=generator) * 0.1)
                sub.running_var.copy_(torch.rand(sub.running_var.shape, generator=generator) + 0.5)
    return module.eval()


def _capture(block: nn.Module, x: torch.Tensor, types) -> dict:
    model = nn.Sequential(block).eval()
    with record_inputs(model, types) as records, torch.no_grad():
        model(x)
    return dict(records)


def _proj(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A 1x1x1 projection of ``(N, C, T, H, W)`` in float64 as ``(N, T, H, W, out)``."""
    weight = conv.weight.double().flatten(1)
    out = torch.einsum("oc,nctHW->ntHWo", weight, x.double())
    return out + conv.bias.double() if conv.bias is not None else out


def _maxpool_hw(tokens: torch.Tensor) -> torch.Tensor:
    """1x2x2 max-pool (even sizes) of ``(N, T, H, W, d)``, written out."""
    n, t, h, w, d = tokens.shape
    return tokens.reshape(n, t, h // 2, 2, w // 2, 2, d).amax(dim=(3, 5))


X = torch.randn(1, 16, 4, 6, 6, generator=torch.Generator().manual_seed(1))
QUERY = (2, 3, 4)


@pytest.mark.parametrize("impl", ["sdpa", "chunked", "explicit"])
def test_nl_rows_sum_to_one_and_equal_float64_softmax(impl):
    from videoattn.blocks.non_local import NonLocalBlock

    block = _randomise(create("nl", 16, attention_impl=impl, chunk_size=16))
    x = _capture(block, X, (NonLocalBlock,))["0"]
    row = maps.nl_attention(block, x, QUERY)
    theta, phi = _proj(block.theta, x), _maxpool_hw(_proj(block.phi, x))
    t, y, w = QUERY
    expected = torch.softmax(phi[0].reshape(-1, 8) @ theta[0, t, y, w], dim=0).reshape(4, 3, 3)
    assert row.shape == (4, 3, 3)
    assert row.sum() == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(torch.from_numpy(row).double(), expected, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("pool_position", ["after", "before"])
def test_dnl_spatial_and_temporal_weights(pool_position):
    from videoattn.blocks.factorised import SpatialSelfAttention, TemporalSelfAttention

    block = _randomise(create("dnl", 16, pool_position=pool_position))
    records = _capture(block, X, (SpatialSelfAttention, TemporalSelfAttention))
    t, y, w = QUERY
    d = block.spatial.inner_channels
    xs = records["0.spatial"]
    if pool_position == "after":
        k = _maxpool_hw(_proj(block.spatial.key, xs))
    else:  # keys projected from the max-pooled input
        k = _proj(block.spatial.key, _maxpool_hw(xs.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3))
    q = _proj(block.spatial.query, xs)
    expected = torch.softmax(k[0, t].reshape(-1, d) @ q[0, t, y, w] / math.sqrt(d), dim=0).reshape(3, 3)
    spatial = maps.factorised_attention(block.spatial, xs, QUERY)
    torch.testing.assert_close(torch.from_numpy(spatial).double(), expected, atol=1e-6, rtol=1e-4)
    xt = records["0.temporal"]  # TA sees SA's output
    assert not torch.equal(xt, xs)
    q, k = _proj(block.temporal.query, xt), _proj(block.temporal.key, xt)
    expected = torch.softmax(k[0, :, y, w] @ q[0, t, y, w] / math.sqrt(d), dim=0)
    temporal = maps.factorised_attention(block.temporal, xt, QUERY)
    assert temporal.shape == (4,) and temporal.sum() == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(torch.from_numpy(temporal).double(), expected, atol=1e-6, rtol=1e-4)


def test_rnl_region_attention():
    from videoattn.blocks.rnl import RegionNonLocalBlock

    block = _randomise(create("rnl", 16, kernel_size=[3, 3, 3]))
    x = _capture(block, X, (RegionNonLocalBlock,))["0"]
    embedded = torch.einsum("oc,nctHW->notHW", block.theta.weight.double().flatten(1), x.double()) \
        + block.theta.bias.double()[None, :, None, None, None]
    region = F.conv3d(embedded, block.region.weight.double(), padding=1, groups=embedded.shape[1])
    a = region[0].permute(1, 2, 3, 0).reshape(-1, 8)
    t, y, w = QUERY
    expected = torch.softmax(a @ a[(t * 6 + y) * 6 + w], dim=0).reshape(4, 6, 6)
    row = maps.rnl_attention(block, x, QUERY)
    assert row.sum() == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(torch.from_numpy(row).double(), expected, atol=1e-6, rtol=1e-4)


def test_sa_gsm_frame_attention_and_gsm_gates():
    from videoattn.blocks.gsm import FrameSelfAttention, GateShift

    block = _randomise(create("sa_gsm", 16, reduction=4))
    records = _capture(block, X, (FrameSelfAttention, GateShift))
    xg = records["0.gsm"]
    gates = maps.gsm_gates(block.gsm, xg)
    expected = torch.tanh(F.conv3d(xg.double(), block.gsm.gate.weight.double(), block.gsm.gate.bias.double(),
                                   padding=1, groups=2))[0]
    assert gates.shape == (2, 4, 6, 6)
    torch.testing.assert_close(torch.from_numpy(gates).double(), expected, atol=1e-6, rtol=1e-4)
    xa = records["0.attention"]  # the attention sees GSM's output
    f, g = _proj(block.attention.f, xa), _proj(block.attention.g, xa)
    _, y, w = QUERY
    # beta_ji = softmax_i(f(x_i)^T g(x_j)) for the query j = (y, w) of every frame
    expected = torch.stack([torch.softmax(f[0, t].reshape(36, -1) @ g[0, t, y, w], dim=0) for t in range(4)])
    frame = maps.frame_attention(block.attention, xa, QUERY)
    assert frame.reshape(4, -1).sum(1) == pytest.approx([1.0] * 4, abs=1e-5)
    torch.testing.assert_close(torch.from_numpy(frame).double(), expected.reshape(4, 6, 6), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("head_mode", ["cross_channel", "multi_head", "single"])
def test_gta_matrices_are_the_parameters(head_mode):
    block = _randomise(create("gta", 16, num_frames=4, num_groups=2, head_mode=head_mode))
    found = maps.gta_matrices(block.temporal)
    for branch in ("pixel", "region"):
        parameter = getattr(block.temporal, f"{branch}_matrix").detach().double()
        expected = parameter.abs().reshape(-1, 4, 4).mean(0)
        torch.testing.assert_close(torch.from_numpy(found[branch]).double(), expected, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("source", ["value", "input"])
def test_gta_region_assignments(source):
    from videoattn.blocks.gta import GlobalTemporalAttention

    block = _randomise(create("gta", 16, num_frames=4, num_groups=2, region_source=source, num_regions=3))
    x = _capture(block, X, (GlobalTemporalAttention,))["0.temporal"]
    features = _proj(block.temporal.region_value, x) if source == "value" else x.double().permute(0, 2, 3, 4, 1)
    expected = torch.einsum("kc,nthwc->nthwk", block.temporal.region_transform.weight.double().flatten(1), features)
    regions = maps.gta_regions(block.temporal, x)
    assert regions.shape == (4, 6, 6, 3)
    torch.testing.assert_close(torch.from_numpy(regions).double(), expected[0], atol=1e-6, rtol=1e-4)


def _conv_bn_relu(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    conv, bn = seq[0], seq[1]
    y = torch.einsum("oc,bchw->bohw", conv.weight.double().flatten(1), x) + conv.bias.double()[None, :, None, None]
    y = (y - bn.running_mean.double()[None, :, None, None]) / torch.sqrt(bn.running_var.double() + bn.eps)[
        None, :, None, None] * bn.weight.double()[None, :, None, None] + bn.bias.double()[None, :, None, None]
    return torch.relu(y)


def test_bat_w_equals_p_transpose_a_q_transpose():
    from videoattn.blocks.bat import BATBase

    block = _randomise(create("bat", 16, s=3, k=2))
    x = _capture(block, X, (BATBase,))["0"]
    frames = x.shape[2]
    folded = x.double()[0].transpose(0, 1)  # (T, C, H, W)
    features = _conv_bn_relu(block.squeeze, _conv_bn_relu(block.reduce, folded))  # (T, C', 6, 6)
    rows = features.amax(dim=3).reshape(frames, -1, 3, 2).amax(dim=3)  # (T, C', s): max over row blocks
    cols = features.amax(dim=2).reshape(frames, -1, 3, 2).amax(dim=3)
    p = (torch.einsum("ocs,bcs->bo", block.row_conv.weight.double(), rows) + block.row_conv.bias.double())
    q = (torch.einsum("ocs,bcs->bo", block.col_conv.weight.double(), cols) + block.col_conv.bias.double())
    p, q = torch.relu(p.reshape(frames, 2, 3, 3)), torch.relu(q.reshape(frames, 2, 3, 3))
    p = p / (p.sum(-1, keepdim=True) + 1e-6)  # rows of P sum to 1 (eq. 2)
    q = q / (q.sum(-2, keepdim=True) + 1e-6)  # columns of Q
    eye = torch.eye(2, dtype=torch.float64)
    p_full = torch.stack([torch.stack([torch.kron(p[t, g], eye) for g in range(2)]) for t in range(frames)])
    q_full = torch.stack([torch.stack([torch.kron(q[t, g], eye) for g in range(2)]) for t in range(frames)])
    expected = p_full.transpose(-1, -2) @ torch.ones(6, 6, dtype=torch.float64) @ q_full.transpose(-1, -2)
    found = maps.bat_attention(block, x)
    assert found.shape == (4, 2, 6, 6)
    torch.testing.assert_close(torch.from_numpy(found).double(), expected, atol=1e-6, rtol=1e-4)
    # and the block's own eq. 8 helper agrees
    kept = {}
    block.keep_attention = True
    with torch.no_grad():
        block(X)
    kept = block.last_attention[0].double()
    torch.testing.assert_close(kept, expected, atol=1e-6, rtol=1e-4)


def test_grid_position_maps_input_pixels_onto_a_coarser_grid():
    assert maps.grid_position((7, 31, 0), (8, 32, 32), (8, 4, 4)) == (7, 3, 0)
    assert maps.grid_position((3, 16, 15), (8, 32, 32), (4, 2, 2)) == (1, 1, 0)


def test_a_block_folded_by_the_decoupled_composite_is_read_at_the_query_frame():
    """``decoupled`` with ``spatial: nl`` runs NL on each frame alone: the map is that frame's NL."""
    from videoattn.blocks.non_local import NonLocalBlock
    from videoattn.visualize.kinds import _unfold
    from videoattn.visualize.loading import Clip

    block = _randomise(create("decoupled", 16, spatial="nl"))
    x = _capture(block, X, (NonLocalBlock,))["0.spatial"]
    assert x.shape == (4, 16, 1, 6, 6)
    clip = Clip(video=torch.zeros(1, 3, 4, 12, 12), frames=torch.zeros(4, 12, 12, 3).numpy(), path="")
    single, position = _unfold((2, 6, 8), clip, x)
    assert position == (0, 3, 4)
    row = maps.nl_attention(block.spatial, single, position)
    alone = _capture(block.spatial, X[:, :, 2:3], (NonLocalBlock,))["0"]
    torch.testing.assert_close(torch.from_numpy(row), torch.from_numpy(maps.nl_attention(block.spatial, alone,
                                                                                         (0, 3, 4))))
