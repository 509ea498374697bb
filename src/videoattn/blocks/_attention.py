"""Shared pieces of the attention blocks: input checks, 1x1x1 projections and softmax attention.

``softmax_attention`` computes ``softmax(scale * Q K^T) V`` (eq. 1 of the GTA paper, and the
embedded-Gaussian / Gaussian pairwise functions of the Non-local paper) through one of three
implementations that compute the same function:

``"explicit"``
    materialises the full ``L x S`` weight matrix; the readable reference.
``"sdpa"``
    :func:`torch.nn.functional.scaled_dot_product_attention` with an explicit ``scale=``
    (the Non-local block's embedded Gaussian uses no ``1/sqrt(d)`` scaling by default, so the
    scale is always passed). On CPU (torch 2.x) this dispatches to a flash-attention kernel whose
    backward recomputes the weights blockwise, so training never holds the ``L x S`` matrix
    (measured in ``benchmarks/blocks.py``: about 4x less peak memory than explicit at the res3
    Non-local shape, and faster). It also works for float64 and under bf16 autocast.
``"chunked"``
    splits the queries into chunks; the softmax version is a custom autograd function in the
    flash-attention style (forward keeps the output and each query's log-sum-exp, backward
    recomputes one chunk's weights at a time), so peak memory is ``chunk_size x S`` instead of
    ``L x S``. Written with plain tensor ops, so it is device-agnostic. Other pairwise functions
    (the Non-local "concatenation" mode, which SDPA cannot express) are chunked with activation
    checkpointing.
``"auto"``
    :func:`choose_attention_impl`, a rule per device type and dtype (``docs/blocks.md``, "Choosing
    the attention path per device"). CPU (measured in ``benchmarks/gemm_bound.py``): ``"sdpa"`` for
    softmax attention (``"explicit"`` when the weight matrix per batch element has at most 1024
    entries, e.g. TA's 8 x 8, or when fewer (batch, head) pairs than threads hold at most 2^20
    entries in all, e.g. NL at res4 batch 1, where the explicit GEMMs were measured faster). CUDA
    (from issue 25's H200 figures): ``"sdpa"`` (flash) for fp16/bf16 with head widths <= 256, else
    ``"explicit"`` (batched matmuls, TF32 where PyTorch allows it) unless the weight tensor exceeds
    1/16 of the device's memory, then a memory-efficient path. ``"chunked"`` for other pairwise
    functions when the weight matrix would be large, else ``"explicit"``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError, ShapeError

ATTENTION_IMPLS = ("auto", "explicit", "sdpa", "chunked")

# Above this many weight-matrix entries per batch element "auto" avoids materialising the matrix.
_LARGE_WEIGHT_MATRIX = 1 << 20
# At or below this many entries per batch element "auto" uses the explicit softmax.
_SMALL_WEIGHT_MATRIX = 1024
# ... and also at or below this many entries of the whole weight tensor (all batch elements and heads).
_EXPLICIT_BUDGET = 1 << 20
# CPU under bf16/fp16 autocast: the explicit path up to this many weight entries (all pairs; ~1 GiB of
# fp32 softmax output saved for backward), SDPA above.
_CPU_HALF_EXPLICIT_BUDGET = 1 << 28
# CUDA: the explicit path may hold a weight tensor of at most this fraction of the device's total memory
# (training holds two or three L x S tensors at once: the scores, their softmax saved for backward, and
# in backward the softmax's gradient), so explicit uses at most ~3/16 of the device for its weights.
_CUDA_EXPLICIT_MEMORY_FRACTION = 1 / 16
# The largest head width of PyTorch's flash-attention kernel (CUDA, fp16/bf16).
_FLASH_MAX_HEAD_DIM = 256


def check_attention_impl(block: str, attention_impl: str) -> str:
    if attention_impl not in ATTENTION_IMPLS:
        raise ConfigError(
            f"block {block!r}: attention_impl must be one of {', '.join(ATTENTION_IMPLS)}, "
            f"got {attention_impl!r}"
        )
    return attention_impl


def check_video_input(block: str, x: torch.Tensor, channels: int) -> None:
    """Raise :class:`ShapeError` unless ``x`` is ``(N, channels, T, H, W)``."""
    if x.dim() != 5:
        raise ShapeError(
            f"block {block!r} expects a 5-D video tensor (N, C, T, H, W) with C={channels}, "
            f"got a {x.dim()}-D tensor of shape {tuple(x.shape)}"
        )
    if x.shape[1] != channels:
        raise ShapeError(
            f"block {block!r} was built for C={channels} channels, got input of shape "
            f"{tuple(x.shape)} with C={x.shape[1]}"
        )


def inner_width(block: str, channels: int, inner_channels: int | None, reduction: int) -> int:
    """Width of the query/key/value embeddings: ``inner_channels`` or ``channels // reduction``."""
    width = channels // reduction if inner_channels is None else inner_channels
    if not isinstance(width, int) or width <= 0:
        raise ConfigError(
            f"block {block!r}: inner width must be a positive int (channels={channels}, "
            f"inner_channels={inner_channels!r}, reduction {reduction}), got {width!r}"
        )
    return width


class PointwiseProjection(nn.Conv3d):
    """A 1x1x1 convolution (per-position linear map ``W x + b``) applied to CHANNELS-LAST tokens.

    ``forward`` takes ``(..., in_channels)`` and returns ``(..., out_channels)`` through one GEMM
    (``F.linear``). Keeping it a ``Conv3d`` keeps the parameter names/shapes of the Non-local
    implementations (``weight`` is ``(out, in, 1, 1, 1)``) and lets module-level counters
    (thop convention) see it; working channels-last avoids the layout conversions and extra saved
    copies of ``conv3d`` on CPU and gives attention its ``(tokens, width)`` layout for free.
    """

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if tokens.shape[-1] != self.in_channels:
            raise ShapeError(
                f"projection expects channels-last tokens with {self.in_channels} channels, "
                f"got shape {tuple(tokens.shape)}"
            )
        return _linear_tokens(tokens, self.weight.flatten(1), self.bias)


def capturing_graph() -> bool:
    """True while the forward is being traced, scripted, compiled or exported: layout fast paths
    (custom autograd functions, contiguity tests that would specialise symbolic shapes) step aside
    for plain tensor ops there."""
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
            or torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export())


def _dense_strides(shape: tuple[int, ...], order: tuple[int, ...]) -> tuple[int, ...]:
    """The strides of a freshly allocated tensor of ``shape`` whose dims lie in memory in ``order``
    (outermost first)."""
    strides, step = [0] * len(shape), 1
    for dim in reversed(order):
        strides[dim] = step
        step *= shape[dim]
    return tuple(strides)


def standard_layout(t: torch.Tensor) -> torch.Tensor:
    """``t`` (4-D or 5-D) itself unless it is dense (contiguous or channels-last by PyTorch's test) with strides
    other than a fresh tensor's of that format — as a batch-1 tensor can be (PyTorch ignores the stride
    of a size-1 dim) — else a copy with the fresh strides.

    Why: PyTorch 2.13's CPU BatchNorm2d/3d backward returns wrong input, weight and bias gradients when
    the input and the incoming gradient differ in memory format and one of them is such a batch-1 dense
    tensor with an odd batch stride (e.g. BatchNorm3d(8), input (1, 8, 2, 3, 3) contiguous, gradient
    strides (8, 1, 72, 24, 8): ``x.grad`` off by about 4). Recorded by
    ``tests/blocks/test_layout_fuzz.py::test_torch_batchnorm_backward_is_wrong_for_a_batch1_odd_stride_gradient``,
    which fails once the installed PyTorch gets it right. The blocks give their custom backward outputs,
    their input gradients and what their BatchNorms see this layout (:func:`standard_grad`,
    :func:`batch_norm_standard`)."""
    if t.dim() not in (4, 5):
        return t
    last = torch.channels_last if t.dim() == 4 else torch.channels_last_3d
    for memory_format, order in ((torch.contiguous_format, tuple(range(t.dim()))),
                                 (last, (0, *range(2, t.dim()), 1))):
        if t.is_contiguous(memory_format=memory_format):
            if t.stride() == _dense_strides(tuple(t.shape), order):
                return t
            return t.clone(memory_format=memory_format)
    return t


class _StandardGrad(torch.autograd.Function):
    """Identity whose backward hands on :func:`standard_layout` of the gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return standard_layout(grad)


def standard_grad(x: torch.Tensor) -> torch.Tensor:
    """``x``, with the gradient that flows back through it given :func:`standard_layout` (a copy only
    when a batch-1 gradient arrives with an odd batch stride). Plain ``x`` while a graph is captured."""
    if capturing_graph() or not (torch.is_grad_enabled() and x.requires_grad):
        return x
    return _StandardGrad.apply(x)


def batch_norm_standard(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` for a BatchNorm fed a video that may be batch-1 with odd strides, and whose output
    gradient may be: both input and gradient reach PyTorch's kernel in :func:`standard_layout`."""
    if capturing_graph():
        return norm(x)
    return standard_grad(norm(standard_layout(x)))


def _is_channels_first_view(tokens: torch.Tensor) -> bool:
    """True for ``(N, T, H, W, C)`` tokens that are :func:`token_view` of a contiguous video."""
    return tokens.dim() == 5 and not tokens.is_contiguous() and tokens.permute(0, 4, 1, 2, 3).is_contiguous()


def cpu_vendor() -> str:
    """The x86 vendor string of this CPU (``GenuineIntel``, ``AuthenticAMD``, ...; ``""`` when unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("vendor_id"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    text = platform.processor()  # Windows: "AMD64 Family 25 Model 17 Stepping 1, AuthenticAMD"
    return next((word for word in ("GenuineIntel", "AuthenticAMD") if word in text), "")


@functools.cache
def cpu_gemm_prefers_onednn() -> bool:
    """Whether float32 projections run faster as oneDNN 1x1 convolutions than as MKL matrix products here.

    True on non-Intel x86 CPUs with AVX-512 (AMD Zen 4/5) in a torch whose BLAS is MKL: MKL runs its float32
    GEMMs there at the AVX2 rate while oneDNN, which runs PyTorch's CPU convolutions, uses AVX-512. Measured
    on an AMD EPYC with AVX-512 (2 threads, ``benchmarks/results/projection_onednn_cpu.json``): a 2048^2
    ``torch.mm`` at 199-212 GFLOP/s, a 1x1 convolution of the same work at 419-439; the attention blocks'
    forward + backward at 0.60-0.86x the time with their projections as convolutions (NL res4 0.132 ->
    0.092 s), R2D-50 + NL / + GTA training steps at 0.84x / 0.86x (channels-last trunk). Intel CPUs
    (where MKL uses AVX-512) and AVX2 CPUs were not measured with convolutions and keep the batched products.
    ``VIDEOATTN_PROJECTION=onednn|bmm`` overrides the rule (checked per call), and
    :func:`fixed_projection_layout` both."""
    try:
        import torch.backends.mkl
        import torch.backends.mkldnn
        mkl = torch.backends.mkl.is_available() and torch.backends.mkldnn.is_available()
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - an unusual build: keep the measured default
        return False
    return bool(mkl and capability.startswith("AVX512") and cpu_vendor() not in ("GenuineIntel", ""))


#: Layouts pinned by :func:`fixed_projection_layout` (innermost last); they win over the environment and the rule.
_PINNED_LAYOUTS: list[str] = []
_LAYOUT_NAMES = {"onednn": "onednn_conv", "bmm": "channels_first"}


@contextlib.contextmanager
def fixed_projection_layout(name: str) -> Iterator[None]:
    """Within the block, CPU projections take ``name`` (``"bmm"``: batched products, ``"onednn"``: 1x1
    convolutions) whatever the CPU: for runs whose numbers must not depend on the CPU's vendor (the demo,
    whose README figures were measured with ``bmm``; the two round float32 sums differently)."""
    if name not in _LAYOUT_NAMES:
        raise ValueError(f"projection layout must be one of {sorted(_LAYOUT_NAMES)}, got {name!r}")
    _PINNED_LAYOUTS.append(_LAYOUT_NAMES[name])
    try:
        yield
    finally:
        _PINNED_LAYOUTS.pop()


def projection_layout(device_type: str) -> str:
    """How a projection reads a :func:`token_view` of a channels-first video on ``device_type``:

    ``"channels_first"`` (CPU): one batched product per clip on the ``(C, THW)`` matrix read
    transposed through BLAS transpose flags, no channels-last copy (measured on CPU: 12.8 MiB less
    at the R2D-50 res3 shape and faster BN backward, ``docs/blocks.md`` "Speed");
    ``"onednn_conv"`` (CPU where :func:`cpu_gemm_prefers_onednn`): every projection of contiguous or
    channels-first tokens as one 1x1 convolution (oneDNN), forward and backward (:func:`_onednn_linear`);
    ``"linear"`` (every other device): plain ``F.linear``, which copies a non-contiguous input once.
    The CPU layouts were measured to pay on CPU only (issue 18, issue 25); on a GPU they were never
    measured, so a GPU keeps PyTorch's own path (``F.linear`` / cuBLAS) until ``benchmarks/gpu.py``
    shows otherwise."""
    if device_type != "cpu":
        return "linear"
    if _PINNED_LAYOUTS:
        return _PINNED_LAYOUTS[-1]
    forced = os.environ.get("VIDEOATTN_PROJECTION")
    if forced in _LAYOUT_NAMES:
        return _LAYOUT_NAMES[forced]
    return "onednn_conv" if cpu_gemm_prefers_onednn() else "channels_first"


def _linear_tokens(tokens: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(tokens, weight, bias)``, returning contiguous ``(..., out)``. For a channels-first
    video seen through :func:`token_view` it runs one batched product per clip on the ``(C, THW)``
    matrix read transposed: no channels-last copy of the video is made, and autograd keeps the video
    itself (alive anyway) for the weight gradient instead of a copy (12.8 MiB at the R2D-50 res3
    shape). ``F.linear`` would copy such an input whenever N > 1."""
    layout = "linear" if capturing_graph() else projection_layout(tokens.device.type)
    device = tokens.device.type
    autocast = torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)
    if layout == "onednn_conv" and not autocast:
        out = _onednn_linear(tokens, weight, bias)
        if out is not None:
            return out
    if layout == "linear" or not _is_channels_first_view(tokens):
        return F.linear(tokens, weight, bias)
    n, frames, h, w, c = tokens.shape
    video = tokens.permute(0, 4, 1, 2, 3).reshape(n, c, frames * h * w)  # (N, C, THW), a view
    if autocast:
        # autograd's own backward (autocast casts bmm's operands as it would F.linear's)
        weights = weight.t().unsqueeze(0).expand(n, c, weight.shape[0])
        columns = video.transpose(1, 2)
        out = torch.bmm(columns, weights) if bias is None else torch.baddbmm(bias, columns, weights)
    else:
        out = _ChannelsFirstLinear.apply(video, weight, bias)
    return out.reshape(n, frames, h, w, weight.shape[0])


def _onednn_linear(tokens: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """``F.linear(tokens, weight, bias)`` as one 1x1 convolution (oneDNN on CPU; its own backward), for
    contiguous ``(..., C)`` tokens or a channels-first video seen through :func:`token_view`; None for
    any other layout. No copy of the input either way:

    * contiguous tokens: all positions as the width of one channels-last ``(1, C, 1, M)`` image, whose
      channels-last output is the contiguous ``(..., O)`` result;
    * a channels-first video ``(N, C, T, H, W)``: a ``(N, C, THW, 1)`` convolution, whose output is
      returned as its token view ``(N, T, H, W, O)`` (channels-first in memory, like the input) and
      whose input gradient comes back channels-first."""
    kernel = weight[:, :, None, None]
    out_channels = weight.shape[0]
    if tokens.is_contiguous():
        rows = tokens.reshape(1, 1, -1, tokens.shape[-1]).permute(0, 3, 1, 2)  # (1, C, 1, M) channels-last
        out = F.conv2d(rows, kernel.contiguous(memory_format=torch.channels_last), bias)
        return out.permute(0, 2, 3, 1).reshape(*tokens.shape[:-1], out_channels)
    if _is_channels_first_view(tokens):
        n, frames, h, w, c = tokens.shape
        video = tokens.permute(0, 4, 1, 2, 3).reshape(n, c, frames * h * w, 1)  # the video itself, a view
        out = F.conv2d(video, kernel, bias)  # (N, O, THW, 1)
        return out.view(n, out_channels, frames, h, w).permute(0, 2, 3, 4, 1)
    return None


class _ChannelsFirstLinear(torch.autograd.Function):
    """``out[n] = video[n]^T W^T + b`` for a channels-first ``video`` ``(N, C, M)``, out ``(N, M, O)``.

    Its backward returns the video's gradient channels-first ``(N, C, M)`` (``W^T dY^T``), the layout
    of the block's residual gradient, so the two add contiguously; autograd's bmm backward would
    return it channels-last and the sum would be a strided add. Every product reads its transposed
    operands in place (BLAS transpose flags): no copies."""

    @staticmethod
    def forward(ctx, video, weight, bias):
        ctx.save_for_backward(video, weight)
        ctx.has_bias = bias is not None
        columns = video.transpose(1, 2)
        weights = weight.t().unsqueeze(0).expand(video.shape[0], -1, -1)
        return torch.bmm(columns, weights) if bias is None else torch.baddbmm(bias, columns, weights)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        video, weight = ctx.saved_tensors
        grad_video = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:  # (C, O) x (O, M) per clip
            grad_video = torch.bmm(weight.t().unsqueeze(0).expand(grad.shape[0], -1, -1), grad.transpose(1, 2))
        if ctx.needs_input_grad[1]:  # sum over clips of (O, M) x (M, C)
            grad_weight = torch.bmm(grad.transpose(1, 2), video.transpose(1, 2)).sum(0)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 1))
        return grad_video, grad_weight, grad_bias


def projection(in_channels: int, out_channels: int, std: float = 0.01, bias: bool = True) -> PointwiseProjection:
    """A :class:`PointwiseProjection` initialised as in the Non-local paper's Caffe2 code:
    weights ~ N(0, std^2) with std 0.01, bias 0."""
    conv = PointwiseProjection(in_channels, out_channels, kernel_size=1, bias=bias)
    nn.init.normal_(conv.weight, std=std)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def fused_projections(projections: list[PointwiseProjection], tokens: torch.Tensor) -> list[torch.Tensor]:
    """Apply several projections of the same channels-last ``tokens`` as ONE GEMM with the stacked
    weights, returning per-projection views of the result.

    Same function as calling each projection; but autograd then keeps one input and produces one
    input gradient instead of one per projection plus their sums (at the res3 Non-local shape this
    saves about 25 MiB of the training peak). When a projection carries forward hooks (module-level,
    thop-style counters) the projections are called one by one so the hooks see every call.
    """
    hooked = any(p._forward_hooks or p._forward_pre_hooks for p in projections)
    if len(projections) == 1 or hooked:  # module-level counters (thop) hook each projection
        return [p(tokens) for p in projections]
    weight = torch.cat([p.weight.flatten(1) for p in projections])
    biases = [p.bias for p in projections]
    bias = None
    if any(b is not None for b in biases):  # a projection without a bias contributes zeros to the stacked one
        bias = torch.cat([b if b is not None else weight.new_zeros(p.out_channels)
                          for p, b in zip(projections, biases)])
    out = _linear_tokens(tokens, weight, bias)
    return list(out.split([p.out_channels for p in projections], dim=-1))


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, T, H, W)`` -> contiguous ``(N, T, H, W, C)``; one copy shared by all projections
    (none when the input already is channels-last in memory)."""
    return x.permute(0, 2, 3, 4, 1).contiguous()


def token_view(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, T, H, W)`` -> ``(N, T, H, W, C)`` VIEW, no copy. Projections (:class:`PointwiseProjection`,
    :func:`fused_projections`) read it directly; any other consumer gets a generic strided tensor
    (``reshape`` copies it where it must), so blocks pass it only to code that does not need a
    contiguous channels-last input for speed. A channels_last_3d video gives contiguous tokens."""
    return x.permute(0, 2, 3, 4, 1)


def channels_first(tokens: torch.Tensor) -> torch.Tensor:
    """``(N, T, H, W, C)`` -> ``(N, C, T, H, W)`` view (channels_last_3d strides, which
    BatchNorm3d and element-wise ops handle without a copy)."""
    return tokens.permute(0, 4, 1, 2, 3)


class _AddTokens(torch.autograd.Function):
    """``x + channels_first(tokens)`` for a contiguous ``(N, C, T, H, W)`` ``x``: the tokens are
    transposed once by a copy and added contiguously, and the tokens' gradient is returned as a
    contiguous channels-last tensor. Same values and gradients as the plain expression, which on CPU
    runs a strided element-wise add (4-5x slower) and hands the branch a transposed gradient that
    makes BatchNorm's backward take its slow path (about 23 ms instead of 2 at the res4 shape)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return x + tokens.permute(0, 4, 1, 2, 3).contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return grad, grad.permute(0, 2, 3, 4, 1).contiguous()


def add_tokens(x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The residual ``x + channels_first(tokens)`` of a block whose branch ends channels-last
    ``(N, T, H, W, C)``; fast path for the usual contiguous ``x`` (see :class:`_AddTokens`)."""
    if capturing_graph() or not x.is_contiguous():  # channels_last_3d x: the plain add keeps its layout
        return x + channels_first(tokens)
    if torch.is_grad_enabled() and (x.requires_grad or tokens.requires_grad):
        return _AddTokens.apply(x, tokens)
    return x + channels_first(tokens).contiguous()


class _MaxPool2x2Tokens(torch.autograd.Function):
    """2x2 spatial max-pool of channels-last ``(N, T, H, W, C)`` tokens (H, W even) that saves only
    the position of each window's maximum (one byte per output) for backward, instead of the full-
    resolution input plus int64 indices that ``max_pool3d`` keeps. Same values and, except at exact
    ties, the same gradients as ``F.max_pool3d``."""

    @staticmethod
    def forward(ctx, tokens: torch.Tensor) -> torch.Tensor:
        n, frames, h, w, c = tokens.shape
        windows = tokens.reshape(n, frames, h // 2, 2, w // 2, 2, c).permute(0, 1, 2, 4, 6, 3, 5)
        values, position = windows.reshape(n, frames, h // 2, w // 2, c, 4).max(dim=-1)
        ctx.save_for_backward(position.to(torch.uint8))
        ctx.input_shape = tokens.shape
        return values

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (position,) = ctx.saved_tensors
        n, frames, h, w, c = ctx.input_shape
        spread = grad.new_zeros(n, frames, h // 2, w // 2, c, 4)
        spread.scatter_(-1, position.long().unsqueeze(-1), grad.unsqueeze(-1))
        spread = spread.reshape(n, frames, h // 2, w // 2, c, 2, 2).permute(0, 1, 2, 5, 3, 6, 4)
        return spread.reshape(n, frames, h, w, c)


def subsample_tokens_2x2(tokens: torch.Tensor, ceil_mode: bool = True) -> torch.Tensor:
    """1x2x2 spatial max-pool (stride 2) of channels-last ``(N, T, H, W, C)`` tokens; the same
    function as :func:`subsample_2x2` on the channels-first view. With ``ceil_mode`` (default) odd
    sizes are padded with -inf, so the border row/column pools alone; without it the last row/column
    of an odd size is dropped (``nn.MaxPool3d``'s default floor mode, as the official NL codes)."""
    h, w = tokens.shape[2], tokens.shape[3]
    if not ceil_mode:
        if h < 2 or w < 2:
            raise ShapeError(f"floor-mode 1x2x2 pooling needs H, W >= 2, got tokens of shape {tuple(tokens.shape)}")
        tokens = tokens[:, :, : h - h % 2, : w - w % 2]
        h, w = h - h % 2, w - w % 2
    if h % 2 or w % 2:
        tokens = F.pad(tokens, (0, 0, 0, w % 2, 0, h % 2), value=float("-inf"))
    if capturing_graph():
        return subsample_2x2(channels_first(tokens)).permute(0, 2, 3, 4, 1)
    return _MaxPool2x2Tokens.apply(tokens)


class TokenBatchNorm(nn.BatchNorm3d):
    """``BatchNorm3d`` that is fed channels-last tokens flattened to ``(M, C)``.

    Per-channel statistics over all other positions: the same function as BatchNorm3d on the
    ``(N, C, T, H, W)`` view, with the same parameters, buffers and ``state_dict``. Feeding it a
    contiguous ``(M, C)`` tensor avoids PyTorch's slow CPU BN backward for mixed memory formats
    (measured ~95 ms vs a few ms at the res3 shape). Being a ``_BatchNorm`` (and fed 2-D input,
    which ``SyncBatchNorm`` accepts) it still works with BN freezing, SyncBN conversion and
    module-level counters. Use :func:`norm_tokens` to call it.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 5):
            raise ShapeError(f"TokenBatchNorm expects (M, C) tokens or (N, C, T, H, W), got {tuple(input.shape)}")


def norm_tokens(norm: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Apply a BN module to channels-last tokens ``(..., C)``."""
    return norm(tokens.reshape(-1, tokens.shape[-1])).reshape(tokens.shape)


def zero_init_bn(channels: int) -> TokenBatchNorm:
    """BN whose gamma (and beta) start at 0, so ``x + BN(W z)`` is the identity at init (NL paper)."""
    bn = TokenBatchNorm(channels)
    nn.init.zeros_(bn.weight)
    nn.init.zeros_(bn.bias)
    return bn


def subsample_2x2(x: torch.Tensor) -> torch.Tensor:
    """Spatial max-pool 1x2x2 (stride 1x2x2) of ``(N, C, T, H, W)``.

    ``ceil_mode=True`` so odd or size-1 feature maps keep their border (identical to the
    NL code's floor mode at the even res3/res4 sizes 28 and 14).
    """
    return F.max_pool3d(x, kernel_size=(1, 2, 2), stride=(1, 2, 2), ceil_mode=True)


def _explicit_softmax_attention(q, k, v, scale):
    scores = torch.matmul(q, k.transpose(-2, -1))
    weights = torch.softmax(scores if scale == 1.0 else scores * scale, dim=-1)
    return torch.matmul(weights, v)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """SDPA in the layout its fused kernels accept: 4-D ``(B, heads, L, d)`` with a unit-stride last
    dim. With 3-D or transposed inputs PyTorch (2.x, CPU) silently falls back to the math path,
    which materialises the weights and saves them for backward (measured: no memory saving)."""
    squeeze = q.dim() == 3
    if squeeze:
        q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    splits = _query_splits(q)
    if splits > 1:
        # The CPU flash kernel's backward runs one (batch, head) pair per thread: with fewer pairs
        # than threads (the Non-local block at batch 1 has ONE) it runs on a single thread and was
        # measured 4-6x slower than the explicit path. Query rows are independent, so splitting the
        # queries into `splits` pseudo-heads (keys/values broadcast, no copy) is the same function
        # and gives every thread work (benchmarks/gemm_bound.py).
        batch, heads, length, width = q.shape
        q = q.reshape(batch, heads * splits, length // splits, width)
        k = k.unsqueeze(2).expand(-1, -1, splits, -1, -1).flatten(1, 2)
        v = v.unsqueeze(2).expand(-1, -1, splits, -1, -1).flatten(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, scale=scale).reshape(batch, heads, length, -1)
    else:
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    return out.squeeze(1) if squeeze else out


def _query_splits(q: torch.Tensor) -> int:
    """How many pseudo-heads to split the queries of ``q`` ``(B, H, L, d)`` into so that the CPU
    flash kernel has at least one (batch, head) pair per thread (1: no split)."""
    if q.device.type != "cpu" or capturing_graph():
        return 1
    pairs, length = q.shape[0] * q.shape[1], q.shape[2]
    threads = torch.get_num_threads()
    if pairs >= threads:
        return 1
    splits = -(-threads // pairs)
    while splits > 1 and length % splits:
        splits -= 1
    return splits if length // max(splits, 1) >= 64 else 1


def _chunked(fn: Callable, q: torch.Tensor, *rest, chunk_size: int) -> torch.Tensor:
    """Apply ``fn(q_chunk, *rest)`` over query chunks; checkpoint each chunk when training."""
    length = q.shape[-2]
    if length <= chunk_size:
        return fn(q, *rest)
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or any(
        t.requires_grad for t in rest if isinstance(t, torch.Tensor)))
    outputs = []
    for start in range(0, length, chunk_size):
        q_chunk = q[..., start:start + chunk_size, :]
        if needs_grad:
            outputs.append(checkpoint(fn, q_chunk, *rest, use_reentrant=False))
        else:
            outputs.append(fn(q_chunk, *rest))
    return torch.cat(outputs, dim=-2)


class _ChunkedSoftmaxAttention(torch.autograd.Function):
    """``softmax(scale * q k^T) v`` computed over query chunks, flash-attention style: the forward
    keeps only the output and each query's log-sum-exp; the backward recomputes one chunk's
    weights at a time. Peak extra memory is a few ``chunk_size x S`` blocks instead of ``L x S``."""

    @staticmethod
    def forward(ctx, q, k, v, scale: float, chunk_size: int):
        out = q.new_empty(*q.shape[:-1], v.shape[-1])
        log_sum_exp = q.new_empty(q.shape[:-1])
        key_t = k.transpose(-2, -1)
        for start in range(0, q.shape[-2], chunk_size):
            rows = slice(start, start + chunk_size)
            scores = torch.matmul(q[..., rows, :], key_t).mul_(scale)
            top = scores.amax(dim=-1, keepdim=True)
            weights = scores.sub_(top).exp_()
            total = weights.sum(dim=-1, keepdim=True)
            out[..., rows, :] = torch.matmul(weights, v).div_(total)
            log_sum_exp[..., rows] = (top + total.log()).squeeze(-1)
        ctx.save_for_backward(q, k, v, out, log_sum_exp)
        ctx.scale, ctx.chunk_size = scale, chunk_size
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out, log_sum_exp = ctx.saved_tensors
        scale, chunk_size = ctx.scale, ctx.chunk_size
        grad_out = grad_out.contiguous()
        delta = (grad_out * out).sum(dim=-1)  # D_i = sum_c dO_ic O_ic
        grad_q = torch.empty_like(q)
        grad_k = torch.zeros_like(k)
        grad_v = torch.zeros_like(v)
        key_t, value_t = k.transpose(-2, -1), v.transpose(-2, -1)
        for start in range(0, q.shape[-2], chunk_size):
            rows = slice(start, start + chunk_size)
            q_chunk, grad_chunk = q[..., rows, :], grad_out[..., rows, :]
            weights = torch.matmul(q_chunk, key_t).mul_(scale).sub_(log_sum_exp[..., rows, None]).exp_()
            grad_v += torch.matmul(weights.transpose(-2, -1), grad_chunk)
            grad_scores = torch.matmul(grad_chunk, value_t).sub_(delta[..., rows, None]).mul_(weights).mul_(scale)
            grad_q[..., rows, :] = torch.matmul(grad_scores, k)
            grad_k += torch.matmul(grad_scores.transpose(-2, -1), q_chunk)
        return grad_q, grad_k, grad_v, None, None


def choose_attention_impl(
    device_type: str,
    dtype: torch.dtype,
    tf32_allowed: bool,
    head_dim: int,
    q_len: int,
    k_len: int,
    batch_heads: int | None,
    *,
    value_dim: int | None = None,
    threads: int = 1,
    device_memory_bytes: int | None = None,
    capturing: bool = False,
) -> str:
    """The implementation ``softmax_attention(impl="auto")`` runs: ``"explicit"``, ``"sdpa"`` or
    ``"chunked"``. A pure function of the call's device type, compute dtype (the autocast dtype
    under autocast), whether fp32 matmuls may use TF32, head widths (``head_dim`` of q/k,
    ``value_dim`` of v, default ``head_dim``), sequence lengths, the number of (batch, head) pairs,
    the CPU's intra-op threads and the device's total memory. While a graph is captured
    (``capturing``) the batch is symbolic: nothing may depend on ``batch_heads``.

    CPU (``benchmarks/gemm_bound.py``): fp32 unchanged since issue 18: ``"explicit"`` for a weight
    matrix of at most 1024 entries per (batch, head) pair, or for fewer pairs than threads holding at
    most 2^20 entries in all (the CPU flash kernel's backward parallelises over pairs only); else
    ``"sdpa"`` (flash with a blockwise backward: about half the training memory of explicit). bf16 /
    fp16 (autocast, which ``train.precision: auto`` now picks on AVX-512 BF16 CPUs for large models):
    ``"explicit"`` up to 2^28 weight entries in all, ``"sdpa"`` above: the CPU flash kernel's bf16 path
    was measured 1.7x slower than the explicit one at the NL res3 shape (0.197 vs 0.114 s fwd+bwd,
    AVX-512 BF16, 2 threads; equal at res4), while the explicit path's half-size weights cost little.

    CUDA (issue 25, one H200, fwd+bwd of NL at res3/res4, 8 clips x 8 frames):

    * at most 1024 entries per pair: ``"explicit"`` (as on CPU);
    * fp16/bf16 with q/k and v widths equal and <= 256 (flash attention's limit): ``"sdpa"``
      (bf16 res3, width 256: 4.30 ms, official explicit NL 4.04);
    * otherwise ``"explicit"``, batched matmuls that use TF32 where ``tf32_allowed`` (fp32 res3:
      explicit ~9.0 ms vs SDPA 15.2, with TF32 4.55 vs 12.15; bf16 res4, width 512: 4.03 vs 5.62),
      as long as the whole weight tensor (``batch_heads x q_len x k_len`` elements of ``dtype``) is
      at most 1/16 of ``device_memory_bytes`` (training holds about two such tensors); TF32 does
      not change the choice (explicit wins with and without it), it makes explicit faster;
    * a larger weight tensor: ``"sdpa"`` (PyTorch's memory-efficient kernel, fp32 included) for
      widths <= 256, ``"chunked"`` above (no fused kernel was checked there). Unknown memory
      (``None``, e.g. while capturing): no memory term.

    Other accelerators (not measured): ``"explicit"`` for tiny matrices, else ``"sdpa"``.
    """
    del tf32_allowed  # recorded in the rule's signature and table; it does not change the choice
    entries = q_len * k_len
    if entries <= _SMALL_WEIGHT_MATRIX:
        return "explicit"
    if device_type == "cpu":
        if dtype in (torch.float16, torch.bfloat16):
            pairs = 1 if capturing or batch_heads is None else batch_heads
            return "explicit" if pairs * entries <= _CPU_HALF_EXPLICIT_BUDGET else "sdpa"
        few_pairs = not capturing and batch_heads is not None and batch_heads < threads
        return "explicit" if few_pairs and batch_heads * entries <= _EXPLICIT_BUDGET else "sdpa"
    if device_type != "cuda":
        return "sdpa"
    value_dim = head_dim if value_dim is None else value_dim
    widest = max(head_dim, value_dim)
    if dtype in (torch.float16, torch.bfloat16) and head_dim == value_dim and widest <= _FLASH_MAX_HEAD_DIM:
        return "sdpa"
    pairs = 1 if capturing or batch_heads is None else batch_heads
    weight_bytes = pairs * entries * dtype.itemsize
    if device_memory_bytes is None or weight_bytes <= device_memory_bytes * _CUDA_EXPLICIT_MEMORY_FRACTION:
        return "explicit"
    return "sdpa" if widest <= _FLASH_MAX_HEAD_DIM else "chunked"


_TOTAL_MEMORY: dict[int, int] = {}


def _cuda_total_memory(device: torch.device) -> int:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _TOTAL_MEMORY:
        _TOTAL_MEMORY[index] = torch.cuda.get_device_properties(index).total_memory
    return _TOTAL_MEMORY[index]


def _auto_impl(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """:func:`choose_attention_impl` for these tensors, on their device, in the current autocast and
    TF32 state."""
    device_type = q.device.type
    capturing = capturing_graph()
    dtype = q.dtype
    if device_type in ("cuda", "cpu") and dtype == torch.float32 and torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)  # what SDPA and the matmuls will compute in
    cuda = device_type == "cuda" and not capturing
    return choose_attention_impl(
        device_type, dtype,
        # allow_tf32 = True is set_float32_matmul_precision("high"); reading the precision is warning-free
        tf32_allowed=cuda and torch.get_float32_matmul_precision() != "highest",
        head_dim=q.shape[-1], value_dim=v.shape[-1], q_len=q.shape[-2], k_len=k.shape[-2],
        batch_heads=None if capturing else q.shape[:-2].numel(),
        threads=torch.get_num_threads() if device_type == "cpu" and not capturing else 1,
        device_memory_bytes=_cuda_total_memory(q.device) if cuda else None,
        capturing=capturing,
    )


def softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    impl: str = "auto",
    chunk_size: int = 512,
) -> torch.Tensor:
    """``softmax(scale * q k^T) v`` over the last two dims: q ``(..., L, d)``, k ``(..., S, d)``,
    v ``(..., S, dv)`` -> ``(..., L, dv)``. Every ``impl`` computes the same function."""
    if impl == "auto":
        impl = _auto_impl(q, k, v)
    if impl == "explicit":
        return _explicit_softmax_attention(q, k, v, scale)
    if impl == "sdpa":
        return _sdpa(q, k, v, scale)
    if impl == "chunked":
        if capturing_graph():
            return _explicit_softmax_attention(q, k, v, scale)
        return _ChunkedSoftmaxAttention.apply(q, k, v, scale, chunk_size)
    raise ConfigError(f"attention_impl must be one of {', '.join(ATTENTION_IMPLS)}, got {impl!r}")


def pairwise_attention(
    weight_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    impl: str = "auto",
    chunk_size: int = 512,
) -> torch.Tensor:
    """``weight_fn(q, k) @ v`` for a general pairwise function (no softmax), optionally chunked
    over queries with checkpointing so the ``L x S`` matrix is never held whole for backward."""

    def block(q_chunk, k_all, v_all):
        return torch.matmul(weight_fn(q_chunk, k_all), v_all)

    if impl == "auto":
        large = q.shape[-2] * k.shape[-2] > _LARGE_WEIGHT_MATRIX
        impl = "chunked" if large else "explicit"
    if impl == "explicit":
        return block(q, k, v)
    # "sdpa" cannot express a non-softmax pairwise function: use the chunked memory-efficient path.
    return _chunked(block, q, k, v, chunk_size=chunk_size)
