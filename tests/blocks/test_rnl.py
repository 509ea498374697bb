"""RNL (eq. 2-9), its modified SE (eq. 10-12) and the SE+RNL chain against float64 references."""

from __future__ import annotations

import pytest
import torch

from videoattn.blocks import create
from videoattn.errors import ConfigError

from ._block_refs import assert_identity_then_gradients, randomize_
from ._rnl_refs import reference_rnl, reference_se_add, weights_of

CHANNELS = 8


def video(batch=2, channels=CHANNELS, frames=3, height=4, width=5, seed=1, dtype=torch.float64):
    return torch.randn(batch, channels, frames, height, width, generator=torch.Generator().manual_seed(seed),
                       dtype=dtype)


@pytest.mark.parametrize("form", ["gaussian", "dot", "cosine"])
@pytest.mark.parametrize("aggregation,kernel", [("conv", (3, 3, 3)), ("conv", (1, 3, 5)), ("avg", (3, 3, 3)),
                                                ("max", (3, 1, 3))])
def test_rnl_matches_equations(form, aggregation, kernel):
    block = randomize_(create("rnl", CHANNELS, form=form, aggregation=aggregation, kernel_size=kernel).double())
    x = video(height=3, width=4)
    with torch.no_grad():
        expected = reference_rnl(weights_of(block), x, form, kernel, aggregation)
        for impl in ("explicit", "sdpa", "chunked"):
            block.attention_impl, block.chunk_size = impl, 7
            torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10, msg=f"{form} {impl}")


@pytest.mark.parametrize("aggregation", ["avg", "max", "conv"])
def test_rnl_regions_larger_than_the_map(aggregation):
    """The paper's 3x7x7 regions on a map smaller than the kernel (res5 at 112 px: 4x4; PyTorch's pooling
    refuses such a map even though the padding covers it): the same equations, zero padding counted in
    the average, padding never the max."""
    block = randomize_(create("rnl", CHANNELS, aggregation=aggregation, kernel_size=(3, 7, 7)).double())
    x = video(frames=2, height=4, width=3)
    with torch.no_grad():
        expected = reference_rnl(weights_of(block), x, "gaussian", (3, 7, 7), aggregation)
        torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


def test_rnl_default_is_the_papers_gaussian_3x7x7_depthwise_conv_and_sub_sampling_option():
    block = create("rnl", 16)
    assert block.region.weight.shape == (8, 1, 3, 7, 7)  # true depthwise: one kernel per channel
    assert block.region.bias is None and block.theta.weight.shape[0] == 8
    block = randomize_(create("rnl", CHANNELS, kernel_size=(1, 3, 3), sub_sample=True).double())
    x = video(height=3, width=5)  # odd sizes: ceil-mode pooling keeps the border
    with torch.no_grad():
        expected = reference_rnl(weights_of(block), x, "gaussian", (1, 3, 3), "conv", sub_sample=True)
        torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


def test_rnl_floor_pooling_drops_the_last_odd_row_and_column_as_the_release():
    """Issue 27.5: ``pool_mode="floor"`` is the release's ``MaxPool3d((1, 2, 2))`` on odd maps (5x7 keys
    pool to 2x3), ceil mode (default) keeps the border; both the same on even sizes."""
    block = randomize_(create("rnl", CHANNELS, kernel_size=(1, 3, 3), sub_sample=True, pool_mode="floor").double())
    x = video(height=5, width=7)
    with torch.no_grad():
        out = block(x)
        torch.testing.assert_close(out, reference_rnl(weights_of(block), x, "gaussian", (1, 3, 3), "conv",
                                                      sub_sample=True, floor_pool=True), rtol=1e-10, atol=1e-10)
        assert not torch.allclose(out, reference_rnl(weights_of(block), x, "gaussian", (1, 3, 3), "conv",
                                                     sub_sample=True, floor_pool=False))
        even = video(height=4, width=6)
        block.pool_mode = "ceil"
        ceil_out = block(even)
        block.pool_mode = "floor"
        torch.testing.assert_close(block(even), ceil_out, rtol=1e-12, atol=1e-12)
    assert create("rnl", CHANNELS).pool_mode == "ceil"


def test_rnl_region_kernel_changes_the_affinity_but_a_1x1x1_region_is_nl_with_theta_phi_tied_to_g():
    """With F_theta the identity (1x1x1 kernel of ones) RNL is NL whose theta, phi and g are one
    matrix: eq. 9's three uses of x W_g."""
    block = randomize_(create("rnl", CHANNELS, kernel_size=1).double())
    nl = randomize_(create("nl", CHANNELS, sub_sample=False).double())
    with torch.no_grad():
        block.region.weight.fill_(1.0)
        for name in ("theta", "phi", "g"):
            getattr(nl, name).load_state_dict(block.theta.state_dict())
        nl.out_proj.load_state_dict(block.out_proj.state_dict())
        nl.out_norm.load_state_dict(block.out_norm.state_dict())
        x = video()
        torch.testing.assert_close(block(x), nl(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("form", ["gaussian", "dot", "cosine"])
def test_memory_efficient_paths_have_the_same_gradients(form):
    x = video(height=4, width=4).requires_grad_(True)
    grads = {}
    for impl in ("explicit", "sdpa", "chunked"):
        block = randomize_(create("rnl", CHANNELS, form=form, kernel_size=3, attention_impl=impl,
                                  chunk_size=10).double()).train()
        out = block(x)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads[impl] = [x.grad.clone()] + [p.grad.clone() for p in block.parameters()]
        x.grad = None
    for impl in ("sdpa", "chunked"):
        for got, want in zip(grads[impl], grads["explicit"]):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_se_add_matches_equations_10_to_12():
    block = randomize_(create("se_add", CHANNELS).double())
    assert block.fc1.out_features == CHANNELS // 2
    x = video()
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_se_add(weights_of(block), x), rtol=1e-10, atol=1e-10)


def test_se_add_trains_at_batch_one_with_running_statistics():
    block = randomize_(create("se_add", CHANNELS).double()).train()
    before = block.norm.running_mean.clone()
    x = video(batch=1)
    out = block(x)  # BatchNorm1d itself refuses one value per channel in training
    out.sum().backward()
    assert block.fc1.weight.grad.abs().sum() > 0
    torch.testing.assert_close(block.norm.running_mean, before)
    with torch.no_grad():
        torch.testing.assert_close(out, reference_se_add(weights_of(block), x), rtol=1e-10, atol=1e-10)


def test_se_add_momentum_sets_the_running_statistics_update():
    """Issue 27.5: ``momentum`` (the RNL release's ChannelGate uses 0.01) is the weight of the batch's
    statistics in the running estimates: r <- (1 - m) r + m * stat (unbiased variance)."""
    for momentum in (0.01, 0.1):
        block = randomize_(create("se_add", CHANNELS, momentum=momentum).double()).train()
        w = {key: value.clone() for key, value in weights_of(block).items()}  # before the update
        x = video(batch=3)
        with torch.no_grad():
            block(x)
        hidden = torch.stack([w["fc1.weight"] @ (x[s].reshape(CHANNELS, -1).sum(1) / x[s, 0].numel()) + w["fc1.bias"]
                              for s in range(3)])
        mean = hidden.sum(0) / 3
        var = ((hidden - mean) ** 2).sum(0) / 2
        torch.testing.assert_close(block.norm.running_mean, (1 - momentum) * w["norm.running_mean"] + momentum * mean,
                                   rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(block.norm.running_var, (1 - momentum) * w["norm.running_var"] + momentum * var,
                                   rtol=1e-12, atol=1e-12)


def test_se_rnl_chain_is_se_then_rnl():
    chain = create("chain", CHANNELS, blocks=["se_add", {"name": "rnl", "options": {"kernel_size": 3}}])
    randomize_(chain.double())
    x = video()
    with torch.no_grad():
        mid = reference_se_add(weights_of(chain.blocks[0]), x)
        expected = reference_rnl(weights_of(chain.blocks[1]), mid, "gaussian", (3, 3, 3), "conv")
        torch.testing.assert_close(chain(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,options", [
    ("rnl", {}), ("rnl", {"form": "cosine", "aggregation": "max"}), ("rnl", {"form": "dot"}),
])
def test_identity_at_init_and_gradients(name, options):
    assert_identity_then_gradients(create(name, CHANNELS, **options), video(dtype=torch.float32))


def test_se_add_is_the_identity_at_init_and_every_parameter_learns_once_w2_moves():
    block = create("se_add", CHANNELS)
    x = video(dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)
        block.fc2.weight.fill_(0.1)
    (block(x) * torch.linspace(-1, 1, x.numel()).view_as(x)).sum().backward()
    for name, param in block.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="form must be one of"):
        create("rnl", CHANNELS, form="embedded_gaussian")
    with pytest.raises(ConfigError, match="aggregation"):
        create("rnl", CHANNELS, aggregation="median")
    with pytest.raises(ConfigError, match="kernel_size"):
        create("rnl", CHANNELS, kernel_size=(3, 4, 4))
    with pytest.raises(ConfigError, match="reduction"):
        create("se_add", CHANNELS, reduction=0)
    with pytest.raises(ConfigError, match="pool_mode must be 'ceil' or 'floor', got 'round'"):
        create("rnl", CHANNELS, pool_mode="round")
    with pytest.raises(ConfigError, match=r"momentum must be a number in \(0, 1\], got 0"):
        create("se_add", CHANNELS, momentum=0)


def test_rnl_presets_use_the_released_se_momentum():
    """The SE+RNL preset's ``se_add`` updates its running statistics as the release's ChannelGate
    (momentum 0.01); parameters and counts are unaffected (a buffer-update rate only)."""
    from videoattn.models import create_model

    chain = create_model("tsm50_se_rnl", base_channels=16).backbone.layer3[4].after_block
    assert chain.blocks[0].norm.momentum == 0.01
    assert create("se_add", CHANNELS).norm.momentum == 0.1  # the block's own default is PyTorch's
