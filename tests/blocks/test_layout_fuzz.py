"""Memory-layout fuzz over every registered block (issue 31, item 11).

Each block runs in float64, training mode (batch statistics), on an input and with an incoming
gradient in one of nine memory layouts, at batch 1-3. The reference is the same block run on a
contiguous input with a contiguous gradient: outputs, the input gradient and every parameter
gradient must agree. The input gradient a block hands back must also be safe for a BatchNorm before
it (the backbone's): no dense tensor whose batch stride is not the dense one (see
``test_torch_batchnorm_backward_is_wrong_for_a_batch1_odd_stride_gradient`` below, the PyTorch
behaviour this guards against).

A fixed sample of nine layout pairs runs by default (three batch-1 pairs that exposed the PyTorch bug
always among them); ``VIDEOATTN_SLOW=1`` runs all 3 x 9 x 9 combinations per block.
"""

from __future__ import annotations

import copy
import itertools
import os
import random

import pytest
import torch

from videoattn.blocks import create, get_block_spec, list_blocks

from .test_contract import CONTRACT_OPTIONS, perturb_

CHANNELS, FRAMES, HEIGHT, WIDTH = 32, 4, 6, 6

# options beyond the contract's, so combinations that broke are covered here too
FUZZ_CASES: dict[str, list[dict]] = {
    "chain": [CONTRACT_OPTIONS["chain"], {"blocks": ["glore", "gsm"]}],
    "gsm": [{}, {"gate_norm": True, "released_order": True}, {"gate_impl": "conv3d"}],
    "sa_gsm": [{}, {"gate_norm": True, "released_order": True, "value": "released"}],
    "bat3d": [CONTRACT_OPTIONS["bat3d"], {"s": 3, "k": 0, "tk": 2}],
}


def _dense(shape, order):
    """A new tensor of ``shape`` whose dims are laid out in memory in ``order`` (outermost first)."""
    base = torch.empty([shape[d] for d in order], dtype=torch.float64)
    return base.permute([order.index(d) for d in range(len(shape))])


def _layout(name: str, t: torch.Tensor) -> torch.Tensor:
    """``t``'s values in the named memory layout (a leaf-free copy)."""
    n, c, frames, h, w = t.shape
    if name == "contiguous":
        out = torch.empty_like(t, memory_format=torch.contiguous_format)
    elif name == "channels_last_3d":
        out = torch.empty_like(t, memory_format=torch.channels_last_3d)
    elif name == "batch_inner_cl":  # (T, H, W, N, C) memory: at N=1 the strides (C, 1, HWC, WC, C)
        out = _dense(t.shape, (2, 3, 4, 0, 1))
    elif name == "batch_gap":  # a batch slice of a larger contiguous tensor (batch stride 2CTHW)
        out = torch.empty(2 * n, c, frames, h, w, dtype=t.dtype)[::2]
    elif name == "frames_first":  # the backbone's (N*T, C, H, W) trunk seen as (N, C, T, H, W)
        out = _dense(t.shape, (0, 2, 1, 3, 4))
    elif name == "hw_transposed":
        out = _dense(t.shape, (0, 1, 2, 4, 3))
    elif name == "channel_slice":
        out = torch.empty(n, c + 3, frames, h, w, dtype=t.dtype)[:, 2:2 + c]
    elif name == "channel_slice_cl":
        out = torch.empty(n, c + 3, frames, h, w, dtype=t.dtype).contiguous(
            memory_format=torch.channels_last_3d)[:, 2:2 + c]
    elif name == "strided_w":
        out = torch.empty(n, c, frames, h, 2 * w, dtype=t.dtype)[..., ::2]
    else:
        raise AssertionError(name)
    return out.copy_(t)


LAYOUTS = ("contiguous", "channels_last_3d", "batch_inner_cl", "batch_gap", "frames_first",
           "hw_transposed", "channel_slice", "channel_slice_cl", "strided_w")


def _combinations() -> list[tuple[int, str, str]]:
    every = list(itertools.product((1, 2, 3), LAYOUTS, LAYOUTS))
    if os.environ.get("VIDEOATTN_SLOW") == "1":
        return every
    forced = [(1, "contiguous", "batch_inner_cl"), (1, "batch_inner_cl", "contiguous"),
              (1, "channels_last_3d", "channels_last_3d")]
    rest = [combo for combo in every if combo not in forced]
    return forced + random.Random(31).sample(rest, 6)


def _safe_for_batchnorm(grad: torch.Tensor) -> bool:
    """False for a dense (contiguous or channels-last) tensor with a batch stride other than the dense
    one: the layout PyTorch's CPU BatchNorm backward mishandles at batch 1."""
    n, c, frames, h, w = grad.shape
    dense = grad.is_contiguous() or grad.is_contiguous(memory_format=torch.channels_last_3d)
    return not (dense and n == 1 and grad.stride(0) != c * frames * h * w)


def _cases():
    for name in list_blocks():
        for index, options in enumerate(FUZZ_CASES.get(name, [CONTRACT_OPTIONS.get(name, {})])):
            yield pytest.param(name, options, id=f"{name}-{index}")


def _run(block, x, grad):
    x = x.detach().requires_grad_(True)
    block.zero_grad(set_to_none=True)
    seen = {}
    entry = x.view_as(x)  # a non-leaf with x's strides: its hook sees the gradient the block returns
    entry.register_hook(lambda g: seen.setdefault("grad", g))
    out = block(entry)
    out.backward(grad)
    params = {k: p.grad.clone() for k, p in block.named_parameters() if p.grad is not None}
    return out.detach(), x.grad, params, seen["grad"]


@pytest.mark.parametrize("name, options", list(_cases()))
def test_block_gradients_do_not_depend_on_memory_layout(name, options):
    spec = get_block_spec(name)
    built = perturb_(create(name, CHANNELS, num_frames=FRAMES if spec.needs_num_frames else None,
                            **options)).double().train()
    gen = torch.Generator().manual_seed(5)
    references = {}
    for batch, x_layout, g_layout in _combinations():
        if batch not in references:
            x = torch.randn(batch, CHANNELS, FRAMES, HEIGHT, WIDTH, generator=gen, dtype=torch.float64)
            grad = torch.randn(x.shape, generator=gen, dtype=torch.float64)
            block = copy.deepcopy(built)
            references[batch] = (x, grad, _run(block, x, grad))
        x, grad, (out_ref, x_grad_ref, params_ref, _) = references[batch]
        block = copy.deepcopy(built)
        out, x_grad, params, handed_back = _run(block, _layout(x_layout, x), _layout(g_layout, grad))
        where = f"{name} {options} batch {batch}, input {x_layout}, gradient {g_layout}"
        torch.testing.assert_close(out, out_ref, rtol=1e-9, atol=1e-9,
                                   msg=lambda m, where=where: f"{where}: output\n{m}")
        torch.testing.assert_close(x_grad, x_grad_ref, rtol=1e-9, atol=1e-9,
                                   msg=lambda m, where=where: f"{where}: input gradient\n{m}")
        assert params.keys() == params_ref.keys(), where
        for key, value in params.items():
            torch.testing.assert_close(value, params_ref[key], rtol=1e-9, atol=1e-9,
                                       msg=lambda m, key=key, where=where: f"{where}: gradient of {key}\n{m}")
        # a residual passes an odd incoming gradient through; a block must not make one from a safe one
        assert not _safe_for_batchnorm(_layout(g_layout, grad)) or _safe_for_batchnorm(handed_back), (
            f"{where}: the input gradient has strides {handed_back.stride()} (batch 1, dense, odd batch stride), "
            "which a BatchNorm before the block back-propagates wrongly")


def test_torch_batchnorm_backward_is_wrong_for_a_batch1_odd_stride_gradient():
    """Records PyTorch's CPU BatchNorm3d backward bug the blocks work around (``blocks._attention.
    standard_layout``): contiguous input, batch 1, a channels-last gradient whose batch stride is C
    instead of C*T*H*W. When this test fails, the installed PyTorch computes it right: the workaround
    may go (and this test with it)."""
    gen = torch.Generator().manual_seed(0)
    norm = torch.nn.BatchNorm3d(8).double()
    x = torch.randn(1, 8, 2, 3, 3, generator=gen, dtype=torch.float64)
    grad = torch.randn(1, 8, 2, 3, 3, generator=gen, dtype=torch.float64)
    odd = torch.empty_strided(grad.shape, (8, 1, 72, 24, 8), dtype=torch.float64).copy_(grad)
    grads = []
    for g in (grad, odd):
        leaf = x.clone().requires_grad_(True)
        norm(leaf).backward(g)
        grads.append(leaf.grad)
    error = (grads[0] - grads[1]).abs().max().item()
    assert error > 1e-3, (
        f"torch {torch.__version__}: BatchNorm3d backward now agrees across gradient layouts (max error "
        f"{error:.1e}); the PyTorch bug worked around in blocks/_attention.py standard_layout is fixed")
