"""Issue 25: ``softmax_attention(impl="auto")`` picks its path by a rule per device type and dtype
(``choose_attention_impl``), every path computes softmax(scale Q K^T) V, and the CPU-only projection
layout (``projection_layout``) is the same function as the plain one."""

import math

import pytest
import torch

from videoattn.blocks import _attention
from videoattn.blocks._attention import (
    choose_attention_impl,
    fused_projections,
    projection,
    projection_layout,
    softmax_attention,
    token_view,
)

GIB = 1 << 30
BF16, FP16, FP32, FP64 = torch.bfloat16, torch.float16, torch.float32, torch.float64
# NL at issue 25's shapes: 8 clips, res3 6272 queries x 1568 pooled keys, width 256; res4 1568 x 392, width 512
RES3 = dict(head_dim=256, q_len=6272, k_len=1568, batch_heads=8)
RES4 = dict(head_dim=512, q_len=1568, k_len=392, batch_heads=8)
H200 = 141 * GIB


@pytest.mark.parametrize("device_type,dtype,tf32,shape,memory,expected", [
    # CUDA, from issue 25's H200 figures
    ("cuda", FP32, False, RES3, H200, "explicit"),       # explicit ~9.0 ms vs SDPA 15.2
    ("cuda", FP32, True, RES3, H200, "explicit"),        # 4.55 vs 12.15
    ("cuda", FP32, False, RES4, H200, "explicit"),       # official explicit 2.78 vs SDPA 7.20
    ("cuda", BF16, False, RES3, H200, "sdpa"),           # flash, width 256
    ("cuda", FP16, False, RES3, H200, "sdpa"),
    ("cuda", BF16, False, RES4, H200, "explicit"),       # width 512 > flash's 256: 4.03 vs 5.62
    ("cuda", FP64, False, RES3, H200, "explicit"),
    # memory: res3 fp32 weights are 8 x 6272 x 1568 x 4 B = 300 MiB; the budget is 1/16 of the device
    ("cuda", FP32, True, RES3, 4 * GIB, "sdpa"),         # 256 MiB budget: memory-efficient SDPA
    ("cuda", FP32, True, RES3, 5 * GIB, "explicit"),     # 320 MiB budget
    ("cuda", FP32, False, {**RES3, "batch_heads": 512}, H200, "sdpa"),
    ("cuda", BF16, False, {**RES4, "batch_heads": 4096}, 24 * GIB, "chunked"),  # width 512: no fused kernel
    ("cuda", FP32, False, RES3, None, "explicit"),       # unknown memory: speed rule alone
    # tiny matrices (TA's 8 x 8) stay explicit everywhere
    ("cuda", BF16, False, dict(head_dim=64, q_len=8, k_len=8, batch_heads=4096), H200, "explicit"),
    ("cpu", FP32, False, dict(head_dim=64, q_len=8, k_len=8, batch_heads=4096), None, "explicit"),
    # CPU (gemm_bound.py; 2 threads): large matrices sdpa, one pair at res4 explicit
    ("cpu", FP32, False, {**RES3, "batch_heads": 1}, None, "sdpa"),
    ("cpu", FP32, False, {**RES4, "batch_heads": 1}, None, "explicit"),
    ("cpu", FP32, False, RES4, None, "sdpa"),
    # CPU under bf16/fp16 autocast: explicit (the CPU flash kernel's bf16 path measured 1.7x slower at
    # res3) up to 2^28 weight entries in all, SDPA beyond
    ("cpu", BF16, False, {**RES3, "batch_heads": 1}, None, "explicit"),
    ("cpu", BF16, False, {**RES3, "batch_heads": 8}, None, "explicit"),
    ("cpu", torch.float16, False, {**RES4, "batch_heads": 64}, None, "explicit"),
    ("cpu", BF16, False, {**RES3, "batch_heads": 64}, None, "sdpa"),
    # an accelerator nobody measured: the old default
    ("mps", FP32, False, RES3, None, "sdpa"),
])
def test_rule_table(device_type, dtype, tf32, shape, memory, expected):
    got = choose_attention_impl(device_type, dtype, tf32, **shape, threads=2, device_memory_bytes=memory)
    assert got == expected


def test_flash_needs_equal_query_and_value_widths():
    """SA-GSM: f, g C/8 wide, h C wide: not flash-eligible, so explicit (per-frame matrices are small)."""
    shape = dict(head_dim=24, q_len=784, k_len=784, batch_heads=64)
    assert choose_attention_impl("cuda", BF16, False, **shape, value_dim=24, device_memory_bytes=H200) == "sdpa"
    assert choose_attention_impl("cuda", BF16, False, **shape, value_dim=192, device_memory_bytes=H200) == "explicit"


@pytest.mark.parametrize("device_type,dtype", [("cuda", FP32), ("cuda", BF16), ("cpu", FP32)])
def test_choice_while_capturing_does_not_depend_on_the_batch(device_type, dtype):
    choices = {choose_attention_impl(device_type, dtype, True, **{**RES3, "batch_heads": batch}, threads=4,
                                     device_memory_bytes=None, capturing=True)
               for batch in (1, 2, 3, 1 << 20)}
    assert len(choices) == 1


def _previous_cpu_auto(q_len, k_len, pairs, threads):
    """``auto`` on CPU before the per-device rule (the code of issue 18, written out)."""
    entries = q_len * k_len
    small = entries <= 1024 or (pairs < threads and pairs * entries <= 1 << 20)
    return "explicit" if small else "sdpa"


@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("shape", [
    (1, 8, 8, 8), (4, 8, 8, 8),                    # TA, T x T
    (1, 2 * 4 * 4, 2 * 2 * 2, 4), (2, 96, 24, 4),   # the block tests' toy NL shapes
    (1, 4 * 132, 4 * 36, 8), (2, 4 * 132, 4 * 36, 8),
    (1, 1568, 392, 512), (8, 1568, 392, 512), (1, 6272, 1568, 256), (8, 6272, 1568, 256),
    (1, 2048, 512, 8), (3, 700, 500, 8),
])
def test_cpu_choice_is_unchanged(shape, threads):
    pairs, q_len, k_len, width = shape
    q = torch.empty(pairs, q_len, width)
    k = torch.empty(pairs, k_len, width)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert _attention._auto_impl(q, k, k) == _previous_cpu_auto(q_len, k_len, pairs, threads)
    finally:
        torch.set_num_threads(previous)


def _reference_attention(q, k, v, scale):
    """softmax(scale Q K^T) V written from the equation: out_i = sum_j exp(s_ij) v_j / sum_j exp(s_ij)."""
    scores = scale * torch.einsum("...id,...jd->...ij", q, k)
    weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return torch.einsum("...ij,...jc->...ic", weights, v)


@pytest.mark.parametrize("impl", ["auto", "explicit", "sdpa", "chunked"])
@pytest.mark.parametrize("shape", [(2, 40, 24, 8, 8), (1, 3, 70, 50, 6, 10), (1, 8, 8, 4, 4)])
def test_every_impl_is_the_equation(impl, shape):
    torch.manual_seed(0)
    *lead, q_len, k_len, width, value_width = shape
    q = torch.randn(*lead, q_len, width, dtype=torch.float64, requires_grad=True)
    k = torch.randn(*lead, k_len, width, dtype=torch.float64, requires_grad=True)
    v = torch.randn(*lead, k_len, value_width, dtype=torch.float64, requires_grad=True)
    scale = 1 / math.sqrt(width)
    out = softmax_attention(q, k, v, scale, impl, chunk_size=16)
    expected = _reference_attention(q, k, v, scale)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    weights = torch.randn_like(expected)
    ours = torch.autograd.grad((out * weights).sum(), (q, k, v))
    reference = torch.autograd.grad((expected * weights).sum(), (q, k, v))
    for got, want in zip(ours, reference):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_projection_layout_is_cpu_only(monkeypatch):
    monkeypatch.delenv("VIDEOATTN_PROJECTION", raising=False)
    expected = "onednn_conv" if _attention.cpu_gemm_prefers_onednn() else "channels_first"
    assert projection_layout("cpu") == expected
    for device_type in ("cuda", "mps", "xpu", "meta"):
        assert projection_layout(device_type) == "linear"
    monkeypatch.setenv("VIDEOATTN_PROJECTION", "bmm")
    assert projection_layout("cpu") == "channels_first" and projection_layout("cuda") == "linear"
    monkeypatch.setenv("VIDEOATTN_PROJECTION", "onednn")
    assert projection_layout("cpu") == "onednn_conv" and projection_layout("cuda") == "linear"


@pytest.mark.parametrize(("vendor", "capability", "prefers"), [
    ("AuthenticAMD", "AVX512", True),   # measured: MKL's sgemm at the AVX2 rate, oneDNN at AVX-512's
    ("GenuineIntel", "AVX512", False),  # MKL uses AVX-512 there: not measured with convolutions, keep BLAS
    ("AuthenticAMD", "AVX2", False),    # no AVX-512 for oneDNN to gain
    ("", "AVX512", False),              # unknown vendor: keep the measured default
])
def test_onednn_projection_rule(vendor, capability, prefers, monkeypatch):
    monkeypatch.setattr(_attention, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    _attention.cpu_gemm_prefers_onednn.cache_clear()
    try:
        assert _attention.cpu_gemm_prefers_onednn() is prefers
    finally:
        monkeypatch.undo()
        _attention.cpu_gemm_prefers_onednn.cache_clear()


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
@pytest.mark.parametrize("clips", [1, 3])
def test_projection_layouts_compute_the_same_function(clips, memory_format, monkeypatch):
    """The CPU token-view layout (batched products with transpose flags) and the plain ``F.linear``
    path a GPU takes: same values and gradients (float64)."""
    torch.manual_seed(0)
    first, second = projection(6, 5).double(), projection(6, 3).double()
    for p in (first.bias, second.bias):
        torch.nn.init.normal_(p)
    x = torch.randn(clips, 6, 2, 3, 4, dtype=torch.float64).contiguous(memory_format=memory_format).requires_grad_()
    params = (x, first.weight, first.bias, second.weight, second.bias)
    results = {}
    for layout in ("channels_first", "onednn_conv", "linear"):
        monkeypatch.setattr(_attention, "projection_layout", lambda device_type, layout=layout: layout)
        outs = fused_projections([first, second], token_view(x))
        loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in outs)
        results[layout] = (outs, torch.autograd.grad(loss, params))
    # the reference: each projection written out as W x + b per position, float64
    tokens = x.detach().permute(0, 2, 3, 4, 1)
    for p, out in zip((first, second), results["linear"][0]):
        expected = torch.einsum("nthwc,oc->nthwo", tokens, p.weight.detach().flatten(1)) + p.bias.detach()
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-13)
    for layout in ("channels_first", "onednn_conv"):
        for got, want in zip(results[layout][0], results["linear"][0]):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-13)
        for got, want in zip(results[layout][1], results["linear"][1]):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-13)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
def test_onednn_projection_float32_and_partial_grads(memory_format, monkeypatch):
    """The convolution layout in float32 (oneDNN's kernels) against float64 products, for the token view of
    a channels-first video and for contiguous tokens (a channels-last video), and with only some operands
    requiring gradients (a frozen projection)."""
    monkeypatch.setattr(_attention, "projection_layout", lambda device_type: "onednn_conv")
    torch.manual_seed(1)
    p = projection(16, 24)
    torch.nn.init.normal_(p.bias)
    x = torch.randn(2, 16, 3, 5, 7).contiguous(memory_format=memory_format).requires_grad_()
    assert token_view(x).is_contiguous() == (memory_format == torch.channels_last_3d)
    out = p(token_view(x))
    weight64, bias64 = p.weight.detach().double().flatten(1), p.bias.detach().double()
    expected = torch.einsum("nthwc,oc->nthwo", x.detach().double().permute(0, 2, 3, 4, 1), weight64) + bias64
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, p.weight, p.bias), upstream)
    g64 = upstream.double()
    torch.testing.assert_close(grads[0].double(), torch.einsum("nthwo,oc->ncthw", g64, weight64), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1].double().flatten(1),
                               torch.einsum("nthwo,nthwc->oc", g64, x.detach().double().permute(0, 2, 3, 4, 1)),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grads[2].double(), g64.sum((0, 1, 2, 3)), rtol=1e-5, atol=1e-5)
    p.requires_grad_(False)
    (only_input,) = torch.autograd.grad(p(token_view(x)), (x,), upstream)
    torch.testing.assert_close(only_input, grads[0], rtol=0, atol=0)


def test_cpu_autocast_dtype_reaches_the_rule(monkeypatch):
    """Under CPU bf16 autocast the float32 inputs are computed in bf16: the rule sees bf16 (explicit),
    outside it float32 (sdpa at the res3 shape); both give the same function."""
    seen = []
    real = _attention.choose_attention_impl
    monkeypatch.setattr(_attention, "choose_attention_impl",
                        lambda device_type, dtype, *a, **k: seen.append(dtype) or real(device_type, dtype, *a, **k))
    q = torch.randn(1, 1, 1568, 32)
    k = torch.randn(1, 1, 1568, 32)
    assert _attention._auto_impl(q, k, k) == "sdpa" and seen[-1] == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _attention._auto_impl(q, k, k) == "explicit" and seen[-1] == torch.bfloat16
        out = _attention.softmax_attention(q, k, k, 0.5)
    reference = torch.softmax(q.double() @ k.double().transpose(-2, -1) * 0.5, -1) @ k.double()
    assert out.dtype == torch.bfloat16 and (out.double() - reference).abs().max() < 0.1  # bf16 rounding


def test_fixed_projection_layout_wins_over_environment_and_rule(monkeypatch):
    monkeypatch.setenv("VIDEOATTN_PROJECTION", "onednn")
    with _attention.fixed_projection_layout("bmm"):
        assert projection_layout("cpu") == "channels_first"
        with _attention.fixed_projection_layout("onednn"):
            assert projection_layout("cpu") == "onednn_conv"
        assert projection_layout("cpu") == "channels_first"
        assert projection_layout("cuda") == "linear"  # a GPU keeps its own path
    assert projection_layout("cpu") == "onednn_conv"
    with pytest.raises(ValueError, match="'conv'"), _attention.fixed_projection_layout("conv"):
        pass


def test_demo_pins_the_batched_product_layout(monkeypatch):
    """The demo's README figures were measured with the batched products; it pins them on every CPU."""
    from videoattn import demo

    monkeypatch.setenv("VIDEOATTN_PROJECTION", "onednn")
    seen = []
    monkeypatch.setattr(demo, "_run_demo", lambda *args: seen.append(projection_layout("cpu")) or {})
    assert demo.run_demo(models=["r2d"]) == {}
    assert seen == ["channels_first"] and projection_layout("cpu") == "onednn_conv"
