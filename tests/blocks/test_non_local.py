"""Non-local family (nl, sa, ta, dnl, tape) against float64 references written from the equations."""

from __future__ import annotations

import pytest
import torch

from videoattn.blocks import create
from videoattn.blocks.factorised import resize_along_time
from videoattn.errors import ConfigError, ShapeError

from ._block_refs import assert_identity_then_gradients, randomize_, reference_nl, reference_sa, reference_ta

CHANNELS, FRAMES = 8, 3


def video(batch=2, channels=CHANNELS, frames=FRAMES, height=4, width=5, seed=1, dtype=torch.float64):
    return torch.randn(batch, channels, frames, height, width, generator=torch.Generator().manual_seed(seed),
                       dtype=dtype)


@pytest.mark.parametrize("mode", ["embedded_gaussian", "dot_product", "gaussian", "concatenation"])
@pytest.mark.parametrize("pool_position", ["after", "before"])
def test_nl_matches_equation_reference(mode, pool_position):
    block = randomize_(create("nl", CHANNELS, mode=mode, pool_position=pool_position).double())
    x = video()
    with torch.no_grad():
        expected = reference_nl(block, x)
        for impl in ("explicit", "sdpa", "chunked"):
            block.attention_impl, block.chunk_size = impl, 7  # chunk_size 7 forces several chunks
            torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10, msg=f"{mode} {impl}")


@pytest.mark.parametrize("options", [
    {"use_scale": True},
    {"sub_sample": False},
    {"inner_channels": 3, "use_scale": True, "mode": "gaussian"},
])
def test_nl_options_match_reference(options):
    block = randomize_(create("nl", CHANNELS, **options).double())
    x = video(height=3, width=3)  # odd sizes: ceil-mode pooling keeps the border
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_nl(block, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pool_position", ["after", "before"])
def test_nl_floor_pooling_drops_the_last_odd_row_and_column_as_the_official_codes(pool_position):
    block = randomize_(create("nl", CHANNELS, pool_mode="floor", pool_position=pool_position).double())
    x = video(height=5, width=7)  # floor mode pools 5x7 to 2x3; ceil mode would give 3x4
    with torch.no_grad():
        out = block(x)
        torch.testing.assert_close(out, reference_nl(block, x, floor_pool=True), rtol=1e-10, atol=1e-10)
        assert not torch.allclose(out, reference_nl(block, x, floor_pool=False))
        even = video(height=4, width=6)  # on even sizes the two modes are the same function
        torch.testing.assert_close(block(even), reference_nl(block, even, floor_pool=False), rtol=1e-10, atol=1e-10)


def test_nl_output_projection_without_bias_as_mmcv():
    block = create("nl", CHANNELS, out_bias=False)
    assert block.out_proj.bias is None and "out_proj.bias" not in block.state_dict()
    randomize_(block.double())
    x = video()
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_nl(block, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", ["embedded_gaussian", "dot_product", "concatenation"])
def test_memory_efficient_paths_have_the_same_gradients(mode):
    x = video(height=6, width=6).requires_grad_(True)
    grads = {}
    for impl in ("explicit", "sdpa", "chunked"):
        block = randomize_(create("nl", CHANNELS, mode=mode, attention_impl=impl, chunk_size=10).double())
        block.train()
        out = block(x)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads[impl] = [x.grad.clone()] + [p.grad.clone() for p in block.parameters()]
        x.grad = None
    for impl in ("sdpa", "chunked"):
        for got, want in zip(grads[impl], grads["explicit"]):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_sa_matches_equation_3():
    block = randomize_(create("sa", CHANNELS).double())
    x = video(height=4, width=3)
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_sa(block, x), rtol=1e-10, atol=1e-10)
        block.sub_sample, block.use_scale = False, False
        torch.testing.assert_close(block(x), reference_sa(block, x), rtol=1e-10, atol=1e-10)


def test_sa_pooling_before_the_projections_matches_its_reference():
    """pool_position="before": K = maxpool(X) W_K, V = maxpool(X) W_V (PySlowFast's non-local style)."""
    block = randomize_(create("sa", CHANNELS, pool_position="before").double())
    x = video(height=5, width=3)  # odd sizes: ceil-mode windows of 1 row / column at the border
    with torch.no_grad():
        out = block(x)
        for impl in ("explicit", "sdpa", "chunked"):
            block.attention_impl, block.chunk_size = impl, 4
            torch.testing.assert_close(block(x), reference_sa(block, x, pool_before=True), rtol=1e-10, atol=1e-10)
        # A different function from pooling after the projections (max does not commute with W_K).
        assert not torch.allclose(out, reference_sa(block, x, pool_before=False))
    after = create("sa", CHANNELS)
    assert [p.shape for p in after.parameters()] == [p.shape for p in block.parameters()]


@pytest.mark.parametrize("name, options", [
    ("dnl", {}), ("tape", {"num_frames": FRAMES, "spatial": True}), ("gta", {"num_frames": FRAMES, "num_groups": 2}),
])
def test_composites_pass_pool_position_to_their_spatial_attention(name, options):
    assert create(name, CHANNELS, **options).spatial.pool_position == "after"
    block = randomize_(create(name, CHANNELS, pool_position="before", **options).double())
    assert block.spatial.pool_position == "before"
    x = video()
    with torch.no_grad():
        torch.testing.assert_close(block.spatial(x), reference_sa(block.spatial, x, pool_before=True),
                                   rtol=1e-10, atol=1e-10)
    with pytest.raises(ConfigError, match=r"pool_position must be 'after' or 'before', got 'middle'"):
        create(name, CHANNELS, pool_position="middle", **options)


def test_ta_matches_equation_4():
    block = randomize_(create("ta", CHANNELS).double())
    x = video()
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_ta(block, x), rtol=1e-10, atol=1e-10)


def test_dnl_is_sa_then_ta_with_separate_projections():
    block = randomize_(create("dnl", CHANNELS).double())
    x = video()
    assert block.spatial.query is not block.temporal.query
    with torch.no_grad():
        expected = reference_ta(block.temporal, reference_sa(block.spatial, x))
        torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("spatial", [False, True])
def test_tape_matches_reference(spatial):
    block = randomize_(create("tape", CHANNELS, num_frames=FRAMES, spatial=spatial).double())
    x = video()
    with torch.no_grad():
        inner = reference_sa(block.spatial, x) if spatial else x
        expected = reference_ta(block.temporal, inner, block.temporal.positional_embedding.embedding)
        torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


def test_ta_is_permutation_equivariant_in_time_and_tape_is_not():
    x = video(frames=4)
    order = torch.tensor([2, 0, 3, 1])
    ta = randomize_(create("ta", CHANNELS).double())
    tape = randomize_(create("tape", CHANNELS, num_frames=4).double())
    with torch.no_grad():
        torch.testing.assert_close(ta(x[:, :, order]), ta(x)[:, :, order], rtol=1e-10, atol=1e-10)
        difference = (tape(x[:, :, order]) - tape(x)[:, :, order]).abs().max()
    assert difference > 1e-3


@pytest.mark.parametrize("name,options", [
    ("nl", {"mode": "gaussian"}), ("nl", {"mode": "concatenation"}), ("nl", {"pool_position": "before"}),
    ("nl", {"mode": "dot_product"}), ("tape", {"spatial": True}),
])
def test_identity_at_init_and_gradients_for_options(name, options):
    block = create(name, CHANNELS, num_frames=FRAMES, **options)
    assert_identity_then_gradients(block, video(dtype=torch.float32))


def test_input_errors_name_expected_and_actual_shapes():
    block = create("nl", CHANNELS)
    with pytest.raises(ShapeError, match=r"5-D video tensor.*4-D"):
        block(torch.randn(2, CHANNELS, 4, 4))
    with pytest.raises(ShapeError, match=r"C=8 channels.*C=6"):
        block(torch.randn(1, 6, 2, 4, 4))
    tape = create("tape", CHANNELS, num_frames=FRAMES)
    with pytest.raises(ShapeError, match=r"num_frames=3.*T=5.*temporal_resize=True"):
        tape(torch.randn(1, CHANNELS, 5, 4, 4))


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="mode must be one of"):
        create("nl", CHANNELS, mode="softmax")
    with pytest.raises(ConfigError, match="pool_position"):
        create("nl", CHANNELS, pool_position="middle")
    with pytest.raises(ConfigError, match="attention_impl"):
        create("sa", CHANNELS, attention_impl="flash")
    with pytest.raises(ConfigError, match="inner width"):
        create("ta", 2)  # 2 // 4 == 0
    with pytest.raises(ConfigError, match="accepts"):
        create("dnl", CHANNELS, num_groups=4)


def test_tape_temporal_resize_interpolates_the_embedding():
    tape = randomize_(create("tape", CHANNELS, num_frames=FRAMES, temporal_resize=True).double())
    x = video(frames=5)
    with torch.no_grad():
        out = tape(x)
        resized = resize_along_time(tape.temporal.positional_embedding.embedding, (1,), 5)
        expected = reference_ta(tape.temporal, x, resized)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    embedding = tape.temporal.positional_embedding.embedding
    torch.testing.assert_close(resized[:, 0], embedding[:, 0])
    torch.testing.assert_close(resized[:, 2], embedding[:, 1])  # midpoint of 5 <-> midpoint of 3
    torch.testing.assert_close(resized[:, 4], embedding[:, 2])


def test_non_contiguous_input_gives_the_same_output():
    block = randomize_(create("dnl", CHANNELS))
    trunk = torch.randn(2 * FRAMES, CHANNELS, 4, 4)  # the backbone's (N*T, C, H, W) layout
    view = trunk.view(2, FRAMES, CHANNELS, 4, 4).permute(0, 2, 1, 3, 4)
    assert not view.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(block(view), block(view.contiguous()))


@pytest.mark.parametrize("height,width", [(4, 6), (5, 3), (1, 1)])
def test_token_max_pool_matches_max_pool3d_values_and_gradients(height, width):
    from videoattn.blocks._attention import subsample_2x2, subsample_tokens_2x2

    x = torch.randn(2, 3, height, width, 5, dtype=torch.float64, requires_grad=True)  # (N, T, H, W, C)
    ours = subsample_tokens_2x2(x)
    reference = subsample_2x2(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)
    torch.testing.assert_close(ours, reference)
    weights = torch.randn_like(ours)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), x)
    (grad_reference,) = torch.autograd.grad((reference * weights).sum(), x)
    torch.testing.assert_close(grad_ours, grad_reference)


@pytest.mark.parametrize("clips", [1, 3])
def test_projection_of_a_token_view_is_the_per_position_linear_map(clips):
    """A projection fed ``token_view(x)`` (no channels-last copy) computes ``W x + b`` at every position,
    with gradients, and hands back x's gradient channels-first (the layout of the residual's)."""
    from videoattn.blocks._attention import fused_projections, projection, token_view

    torch.manual_seed(0)
    first, second = projection(5, 7).double(), projection(5, 3).double()
    for p in (first.bias, second.bias):
        torch.nn.init.normal_(p)
    x = torch.randn(clips, 5, 3, 4, 6, dtype=torch.float64, requires_grad=True)
    outs = fused_projections([first, second], token_view(x))
    expected = [torch.einsum("ncthw,oc->nthwo", x, p.weight[:, :, 0, 0, 0]) + p.bias for p in (first, second)]
    weights = [torch.randn_like(e) for e in expected]
    params = (x, first.weight, first.bias, second.weight, second.bias)
    ours = torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights)), params)
    reference = torch.autograd.grad(sum((e * w).sum() for e, w in zip(expected, weights)), params)
    for o, e in zip(outs, expected):
        torch.testing.assert_close(o, e, rtol=0, atol=1e-13)
    for o, e in zip(ours, reference):
        torch.testing.assert_close(o, e, rtol=0, atol=1e-13)
    assert ours[0].is_contiguous()
    torch.testing.assert_close(first(token_view(x)), expected[0], rtol=0, atol=1e-13)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d"])
def test_add_tokens_is_the_plain_residual_add_and_hands_back_contiguous_token_gradients(layout):
    from videoattn.blocks._attention import add_tokens

    x = torch.randn(2, 5, 3, 4, 6, dtype=torch.float64)
    if layout == "channels_last_3d":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    x.requires_grad_(True)
    tokens = torch.randn(2, 3, 4, 6, 5, dtype=torch.float64, requires_grad=True)  # (N, T, H, W, C)
    out = add_tokens(x, tokens)
    expected = torch.empty_like(out)
    for c in range(5):  # out[n, c, t, h, w] = x[n, c, t, h, w] + tokens[n, t, h, w, c]
        expected[:, c] = x[:, c] + tokens[..., c]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)
    weights = torch.randn_like(out)
    grad_x, grad_tokens = torch.autograd.grad((out * weights).sum(), (x, tokens))
    torch.testing.assert_close(grad_x, weights)
    torch.testing.assert_close(grad_tokens, weights.permute(0, 2, 3, 4, 1))
    if layout == "contiguous":  # the point of the fast path: BN's CPU backward wants contiguous (M, C)
        assert grad_tokens.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(add_tokens(x, tokens), expected)


@pytest.mark.parametrize("impl", ["explicit", "sdpa", "chunked"])
def test_every_attention_impl_runs_under_bf16_autocast(impl):
    block = randomize_(create("nl", CHANNELS, attention_impl=impl, chunk_size=16)).train()
    x = video(dtype=torch.float32, height=6, width=6).requires_grad_(True)
    with torch.no_grad():
        reference = block.eval()(x)
    block.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block.eval()(x)
    torch.testing.assert_close(out.float(), reference, rtol=0.05, atol=0.1)
    block.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_tape_positional_embedding_init_scale_is_an_option():
    default = create("tape", 16, num_frames=8).temporal.positional_embedding.embedding
    assert 0.7 < float(default.detach().std()) < 1.3  # unit scale, like the features it is added to
    small = create("tape", 16, num_frames=8, positional_init_std=0.02).temporal.positional_embedding.embedding
    assert float(small.detach().std()) < 0.05


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_sdpa_query_split_for_idle_threads_is_the_same_function(threads):
    """At batch 1 the NL block gives the CPU flash kernel one (batch, head) pair; `_sdpa` then splits
    the queries into pseudo-heads so its backward uses every thread. Values and gradients must equal
    the explicit softmax path (float64), """
    from videoattn.blocks._attention import _query_splits

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = video(batch=1, height=12, width=11).requires_grad_(True)  # T*132 tokens, 66 pooled per frame
        block = randomize_(create("nl", CHANNELS, attention_impl="sdpa").double())
        query = torch.empty(1, 1, x.shape[2] * x.shape[3] * x.shape[4], 8)
        assert _query_splits(query) > 1  # the split path is the one under test
        with torch.no_grad():
            torch.testing.assert_close(block(x), reference_nl(block, x), rtol=1e-10, atol=1e-10)
        grads = {}
        for impl in ("sdpa", "explicit"):
            block.attention_impl = impl
            out = block(x)
            (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
            grads[impl] = [x.grad.clone()] + [p.grad.clone() for p in block.parameters()]
            x.grad = None
            block.zero_grad(set_to_none=True)
        for got, want in zip(grads["sdpa"], grads["explicit"]):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("name", ["nl", "gta", "tape"])
def test_blocks_export_with_a_dynamic_batch(name):
    """torch.export with a dynamic batch: no layout fast path or attention choice may branch on the
    (symbolic) batch size (``capturing_graph``); the exported program matches eager at another batch."""
    torch.manual_seed(0)
    block = randomize_(create(name, 32, num_frames=2)).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(block, (torch.randn(2, 32, 2, 8, 8),), dynamic_shapes=({0: batch},),
                                  strict=False)
    x = torch.randn(3, 32, 2, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), block(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_bias", [(True, False), (False, True), (False, False), (True, True)])
def test_fused_projections_keep_each_projections_own_bias(with_bias):
    """Issue 31.13: one GEMM for projections of which only some have a bias gives each its own ``W x (+ b)``
    (a projection without one used to drop every bias), values and gradients."""
    from videoattn.blocks._attention import fused_projections, projection, token_view

    torch.manual_seed(1)
    projections = [projection(5, 4, bias=b).double() for b in with_bias]
    for p in projections:
        torch.nn.init.normal_(p.weight)
        if p.bias is not None:
            torch.nn.init.normal_(p.bias)
    x = torch.randn(2, 5, 3, 4, 6, dtype=torch.float64, requires_grad=True)
    outs = fused_projections(projections, token_view(x))
    expected = []
    for p in projections:  # out[n, t, h, w, o] = sum_c W[o, c] x[n, c, t, h, w] (+ b[o])
        value = torch.einsum("ncthw,oc->nthwo", x, p.weight[:, :, 0, 0, 0])
        expected.append(value + p.bias if p.bias is not None else value)
    params = [x] + [t for p in projections for t in p.parameters()]
    weights = [torch.randn_like(e) for e in expected]
    ours = torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights)), params)
    reference = torch.autograd.grad(sum((e * w).sum() for e, w in zip(expected, weights)), params)
    for o, e in zip(outs, expected):
        torch.testing.assert_close(o, e, rtol=0, atol=1e-12)
    for o, e in zip(ours, reference):
        torch.testing.assert_close(o, e, rtol=0, atol=1e-12)
