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
    splits the queries into chunks and wraps each chunk in activation checkpointing, so the
    backward pass recomputes one chunk's weights at a time: peak memory ``chunk_size x S``
    instead of ``L x S``. Device- and op-agnostic (used for pairwise functions SDPA cannot
    express, e.g. the Non-local "concatenation" mode).
``"auto"``
    ``"sdpa"`` for softmax attention, ``"chunked"`` for other pairwise functions when the
    weight matrix would be large, else ``"explicit"``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError, ShapeError

ATTENTION_IMPLS = ("auto", "explicit", "sdpa", "chunked")

# Above this many weight-matrix entries per batch element "auto" avoids materialising the matrix.
_LARGE_WEIGHT_MATRIX = 1 << 20


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


def projection(in_channels: int, out_channels: int, std: float = 0.01) -> nn.Conv3d:
    """A 1x1x1 convolution (a per-position linear map W x + b) initialised as in the Non-local
    paper's Caffe2 code: weights ~ N(0, std^2) with std 0.01, bias 0."""
    conv = nn.Conv3d(in_channels, out_channels, kernel_size=1)
    nn.init.normal_(conv.weight, std=std)
    nn.init.zeros_(conv.bias)
    return conv


def zero_init_bn(channels: int) -> nn.BatchNorm3d:
    """BatchNorm3d whose gamma starts at 0, so ``x + BN(W z)`` is the identity at init (NL paper)."""
    bn = nn.BatchNorm3d(channels)
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
    weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * scale, dim=-1)
    return torch.matmul(weights, v)


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


def softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    impl: str = "auto",
    chunk_size: int = 1024,
) -> torch.Tensor:
    """``softmax(scale * q k^T) v`` over the last two dims: q ``(..., L, d)``, k ``(..., S, d)``,
    v ``(..., S, dv)`` -> ``(..., L, dv)``. Every ``impl`` computes the same function."""
    if impl == "auto":
        impl = "sdpa"
    if impl == "explicit":
        return _explicit_softmax_attention(q, k, v, scale)
    if impl == "sdpa":
        # SDPA wants matching dtypes; under autocast they already match.
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    if impl == "chunked":
        return _chunked(_explicit_softmax_attention, q, k, v, scale, chunk_size=chunk_size)
    raise ConfigError(f"attention_impl must be one of {', '.join(ATTENTION_IMPLS)}, got {impl!r}")


def pairwise_attention(
    weight_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    impl: str = "auto",
    chunk_size: int = 1024,
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
