"""Relational Self-Attention against the explicit-unfold float64 reference (tests/blocks/_rsa_ref.py),
for every kernel/context type, at the borders (kernels larger than the clip) and with stride 2."""

from __future__ import annotations

import pytest
import torch

from videoattn.blocks import create
from videoattn.errors import ConfigError, ShapeError

from ._block_refs import randomize_
from ._rsa_ref import reference_rsa, rsa_weights

TYPES = ["V", "R", "VplusR"]


def video(batch=2, channels=8, frames=3, height=4, width=5, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, frames, height, width, generator=gen, dtype=torch.float64)


def build(kernel_type, context_type, channels=8, seed=0, **options):
    block = create("rsa", channels, kernel_type=kernel_type, context_type=context_type, **options)
    return randomize_(block.double(), seed=seed)


def check(block, x, *, kernel_type, context_type, num_heads, key_channels, kernel_size, stride=1):
    expected = reference_rsa(x, rsa_weights(block), num_heads=num_heads, key_channels=key_channels,
                             kernel_size=kernel_size, kernel_type=kernel_type, context_type=context_type,
                             stride=stride)
    got = block(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel_type", TYPES)
@pytest.mark.parametrize("context_type", TYPES)
def test_matches_unfold_reference_every_type(kernel_type, context_type):
    # C=8, 2 heads: d_v = d_k = d_d = 4; a 3x3x3 neighbourhood on a 3x4x5 clip (borders everywhere)
    block = build(kernel_type, context_type, num_heads=2, kernel_size=3)
    check(block, video(), kernel_type=kernel_type, context_type=context_type, num_heads=2, key_channels=4,
          kernel_size=(3, 3, 3))


def test_default_neighbourhood_larger_than_the_clip_and_unequal_widths():
    # 5x7x7 on a 2x3x4 clip: most of every neighbourhood is padding; d_k = 3 != d_d = 5 != d_v = 4
    block = build("VplusR", "VplusR", num_heads=2, key_channels=3, kernel_channels=5, seed=1)
    x = video(batch=1, frames=2, height=3, width=4, seed=5)
    check(block, x, kernel_type="VplusR", context_type="VplusR", num_heads=2, key_channels=3,
          kernel_size=(5, 7, 7))


def test_stride_two_and_out_channels():
    block = build("R", "VplusR", num_heads=3, out_channels=6, stride=2, kernel_size=(1, 3, 3), seed=2)
    x = video(frames=2, height=5, width=4, seed=7)
    check(block, x, kernel_type="R", context_type="VplusR", num_heads=3, key_channels=2, kernel_size=(1, 3, 3),
          stride=2)


@pytest.mark.parametrize("kernel_type,context_type", [("VplusR", "VplusR"), ("R", "R"), ("V", "V"), ("V", "VplusR")])
def test_inference_path_matches_the_reference(kernel_type, context_type):
    # without autograd the products run as plain bmm (the path export, autocast and the MAC count take)
    block = build(kernel_type, context_type, num_heads=2, kernel_size=3, seed=4)
    x = video(seed=8)
    expected = reference_rsa(x, rsa_weights(block), num_heads=2, key_channels=4, kernel_size=(3, 3, 3),
                             kernel_type=kernel_type, context_type=context_type)
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel_type,context_type", [("VplusR", "VplusR"), ("R", "R"), ("V", "V"), ("V", "VplusR")])
def test_hand_written_backward_against_finite_differences(kernel_type, context_type):
    # the training path's backward (kernels.relational.PositionProducts) is written by hand: check it numerically, with
    # respect to the input and every parameter, borders included (3x3x3 neighbourhood on a 2x3x3 clip)
    block = build(kernel_type, context_type, num_heads=2, kernel_size=3, seed=5)
    x = video(batch=1, frames=2, height=3, width=3, seed=9).requires_grad_(True)
    names = [name for name, _ in block.named_parameters()]

    def run(inp, *params):
        return torch.func.functional_call(block, dict(zip(names, params)), (inp,))

    assert torch.autograd.gradcheck(run, (x, *block.parameters()), eps=1e-6, atol=1e-7, rtol=1e-5,
                                    fast_mode=True)


def test_frame_chunks_with_recomputation_match_the_whole_clip():
    # chunk_frames=1 on a 3-frame clip: every chunk needs its neighbours' frames (temporal context 1),
    # and in training each chunk is recomputed in backward (checkpoint); outputs and gradients equal
    # those of the whole clip at once (whose backward is checked against finite differences above)
    whole = build("VplusR", "VplusR", num_heads=2, kernel_size=3, seed=6, chunk_frames=None)
    chunked = build("VplusR", "VplusR", num_heads=2, kernel_size=3, seed=6, chunk_frames=1)
    x = video(batch=1, frames=3, height=3, width=3, seed=10).requires_grad_(True)
    grads = []
    for block in (whole, chunked):
        out = block(x)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads.append([x.grad.clone()] + [p.grad.clone() for p in block.parameters()])
        x.grad = None
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_defaults_are_the_released_ones():
    block = create("rsa", 64)
    assert (block.num_heads, block.dk, block.dv, block.dd) == (8, 8, 8, 8)
    assert block.kernel_size == (5, 7, 7) and (block.kernel_type, block.context_type) == ("VplusR", "VplusR")
    shapes = {name: tuple(p.shape) for name, p in block.named_parameters()}
    assert shapes == {"projection.weight": (8 * 8 + 8 + 8, 64, 1, 1, 1), "H1": (64, 1, 5, 7, 7),
                      "P1": (1, 8, 8), "H2": (8, 1, 5, 7, 7), "G": (8, 1, 5, 7, 7), "I": (1, 8, 8)}
    torch.testing.assert_close(block.I[0], torch.eye(8))
    # kaiming normal, fan_out: std sqrt(2 / (out * 245)) for H1 (64 outputs)
    assert block.H1.std().item() == pytest.approx((2 / (64 * 245)) ** 0.5, rel=0.1)


def test_float32_path_matches_float64():
    block = build("VplusR", "VplusR", num_heads=2, kernel_size=3)
    x = video()
    expected = block(x)
    got = block.float()(x.float())
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("options,message", [
    ({"num_heads": 3}, "must divide out_channels"),
    ({"stride": 3}, "stride must be 1 or 2"),
    ({"kernel_size": (4, 7, 7)}, "odd"),
    ({"kernel_type": "Q"}, "kernel_type must be one of"),
    ({"context_type": "VR"}, "context_type must be one of"),
    ({"kernel_type": "V", "key_channels": 4, "kernel_channels": 2}, "must equal kernel_channels"),
    ({"chunk_frames": 0}, "chunk_frames must be a positive int"),
])
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        create("rsa", 8, **options)


def test_wrong_input_is_a_shape_error():
    with pytest.raises(ShapeError, match="C=8"):
        create("rsa", 8)(torch.zeros(1, 4, 2, 3, 3))
