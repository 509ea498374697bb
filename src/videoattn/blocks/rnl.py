"""Region-based Non-local (RNL) and its modified SE block (Huang et al., "Region-based Non-local
Operation for Video Classification", ICPR 2020 / arXiv 2007.09033).

RNL (eq. 2-9): the affinity between positions i and j is computed between *aggregated regions*
``F_theta`` around them instead of between the single positions::

    e     = W_g x                         (1x1x1 conv C -> C/2, "theta" in the release)
    a     = F_theta(e)                    (channel-wise kxkxk aggregation, stride 1, same padding)
    y_i   = 1/C(x) sum_j f(a_i, a_j) e_j  (eq. 4 with the value e, matrix form eq. 9)
    z     = x + BN(W_z y)                 (eq. 8; BN gamma zero-initialised as in NL)

``F_theta`` is a true depthwise (groups = channels) ``Conv3d`` without bias, or average / max
pooling (sec. III-C, Table II(c)). ``f``: ``gaussian`` = exp(a_i . a_j) normalised over j (softmax,
eq. 5), ``dot`` = a_i . a_j / (T*H*W) (eq. 6), ``cosine`` = ReLU(cos(a_i, a_j)) / (T*H*W) (eq. 7).

``se_add`` (eq. 10-12): ``v = x + W2 ReLU(BN(W1 mean_THW(x)))`` broadcast over T, H, W; with the
paper's C/2 bottleneck by default. Placed before RNL it forms the attention chain SE+RNL
(sec. III-D), built with the registered ``chain`` block.

Deviations from the authors' release are listed in ``docs/blocks.md`` (the release stores the
depthwise kernel densely with a frozen mask, and replaced this SE by a GCNet-style gate).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._attention import (
    add_tokens,
    channels_first,
    channels_last,
    check_attention_impl,
    check_video_input,
    inner_width,
    norm_tokens,
    pairwise_attention,
    projection,
    softmax_attention,
    subsample_tokens_2x2,
    zero_init_bn,
)
from .registry import register_block

RNL_FORMS = ("gaussian", "dot", "cosine")
RNL_AGGREGATIONS = ("conv", "avg", "max")


def _kernel(value, block: str) -> tuple[int, int, int]:
    if isinstance(value, int):
        value = (value, value, value)
    if (not isinstance(value, Sequence) or len(value) != 3
            or not all(isinstance(k, int) and k >= 1 and k % 2 == 1 for k in value)):
        raise ConfigError(f"block {block!r}: kernel_size must be an odd int or three odd ints (t, h, w), got {value!r}")
    return tuple(value)


@register_block("rnl", description="Region-based Non-local (Huang et al. 2020): affinity between aggregated regions")
class RegionNonLocalBlock(nn.Module):
    """RNL block ``z = x + BN(W_z y)``, ``y_i = 1/C(x) sum_j f(F(e)_i, F(e)_j) e_j``, ``e = W_g x``.

    Args:
        channels: C.
        form: ``"gaussian"`` (eq. 5, softmax over keys; default), ``"dot"`` (eq. 6) or
            ``"cosine"`` (eq. 7).
        kernel_size: region size ``(t, h, w)`` of ``F_theta`` (odd; the paper's default 3x7x7).
        aggregation: ``"conv"`` (true depthwise Conv3d, no bias; default), ``"avg"`` or ``"max"``
            pooling (stride 1, padding k//2; average pooling divides by the full kernel volume,
            PyTorch's ``count_include_pad``, max pooling ignores the padding).
        inner_channels: width of ``W_g`` (default C/2, eq. 9).
        sub_sample: max-pool keys and values 1x2x2 (the release's ``sub_sample``, off there and
            here); queries keep every position.
        pool_mode: ``"ceil"`` (default) pools the last row/column of an odd-sized map on its own;
            ``"floor"`` drops it, as the release's ``nn.MaxPool3d((1, 2, 2))`` does (``nl``'s option of
            the same name; the two agree on even sizes). Only used with ``sub_sample``.
        attention_impl, chunk_size: as for ``nl`` (all implementations compute the same function).
    """

    identity_at_init = True

    def __init__(self, channels: int, form: str = "gaussian", kernel_size=(3, 7, 7), aggregation: str = "conv",
                 inner_channels: int | None = None, sub_sample: bool = False, attention_impl: str = "auto",
                 chunk_size: int = 512, pool_mode: str = "ceil"):
        super().__init__()
        if form not in RNL_FORMS:
            raise ConfigError(f"block 'rnl': form must be one of {', '.join(RNL_FORMS)}, got {form!r}")
        if aggregation not in RNL_AGGREGATIONS:
            raise ConfigError(f"block 'rnl': aggregation must be one of {', '.join(RNL_AGGREGATIONS)}, "
                              f"got {aggregation!r}")
        self.channels = channels
        self.form = form
        self.kernel_size = _kernel(kernel_size, "rnl")
        self.aggregation = aggregation
        self.inner_channels = inner_width("rnl", channels, inner_channels, 2)
        if pool_mode not in ("ceil", "floor"):
            raise ConfigError(f"block 'rnl': pool_mode must be 'ceil' or 'floor', got {pool_mode!r}")
        self.sub_sample = sub_sample
        self.pool_mode = pool_mode
        self.attention_impl = check_attention_impl("rnl", attention_impl)
        self.chunk_size = chunk_size
        width = self.inner_channels
        self.theta = projection(channels, width)
        self.padding = tuple(k // 2 for k in self.kernel_size)
        if aggregation == "conv":
            self.region = nn.Conv3d(width, width, self.kernel_size, padding=self.padding, groups=width, bias=False)
        self.out_proj = projection(width, channels)
        self.out_norm = zero_init_bn(channels)

    def aggregate(self, embedded: torch.Tensor) -> torch.Tensor:
        """``F_theta`` of channels-last ``(N, T, H, W, d)`` tokens, returned channels-last."""
        x = channels_first(embedded)
        if self.aggregation == "conv":
            out = self.region(x)
        elif self.aggregation == "avg":
            out = self._pool(F.avg_pool3d, x, 0.0)
        else:
            out = self._pool(F.max_pool3d, x, float("-inf"))
        return out.permute(0, 2, 3, 4, 1)

    def _pool(self, pool, x: torch.Tensor, fill: float) -> torch.Tensor:
        """``pool`` over each ``kernel_size`` region, stride 1, ``k // 2`` padding of ``fill`` (zeros count
        in the average; ``-inf`` never wins the max). PyTorch's pooling refuses a map smaller than the
        kernel even when the padding covers it (RNL 3x7x7 at a 4x4 res5 map), so such a map is padded
        explicitly first."""
        if all(size >= k for size, k in zip(x.shape[2:], self.kernel_size)):
            return pool(x, self.kernel_size, stride=1, padding=self.padding)
        pads = [p for pad in reversed(self.padding) for p in (pad, pad)]
        return pool(F.pad(x, pads, value=fill), self.kernel_size, stride=1)

    def attention(self, x_cl: torch.Tensor) -> torch.Tensor:
        """y of eq. 4/9 for channels-last input, as ``(N, T*H*W, inner)``."""
        n = x_cl.shape[0]
        value = self.theta(x_cl)
        region = self.aggregate(value)
        query = region.reshape(n, -1, region.shape[-1])
        if self.sub_sample:
            ceil = self.pool_mode == "ceil"
            region, value = subsample_tokens_2x2(region, ceil), subsample_tokens_2x2(value, ceil)
        key = region.reshape(n, -1, region.shape[-1])
        value = value.reshape(n, -1, value.shape[-1])
        if self.form == "gaussian":
            return softmax_attention(query, key, value, 1.0, self.attention_impl, self.chunk_size)
        num_keys = key.shape[1]
        if self.form == "dot":
            if self.attention_impl == "explicit":
                return torch.matmul(torch.matmul(query, key.transpose(1, 2)) / num_keys, value)
            return torch.matmul(query, torch.matmul(key.transpose(1, 2), value)) / num_keys
        query, key = F.normalize(query, dim=-1), F.normalize(key, dim=-1)

        def weights(q_chunk, k_all):
            return F.relu(torch.matmul(q_chunk, k_all.transpose(-2, -1))) / num_keys

        return pairwise_attention(weights, query, key, value, self.attention_impl, self.chunk_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input("rnl", x, self.channels)
        x_cl = channels_last(x)
        y = self.attention(x_cl)
        out = self.out_proj(y).reshape(x_cl.shape)
        return add_tokens(x, norm_tokens(self.out_norm, out))


@register_block("se_add", description="RNL's modified SE (eq. 10-12): x + W2 ReLU(BN(W1 mean(x))), additive")
class AdditiveSE(nn.Module):
    """``v = x + s``, ``s = W2 ReLU(BN(W1 s'))``, ``s' = mean over T, H, W of x`` (RNL eq. 10-12).

    Args:
        channels: C.
        reduction: ``W1`` maps C -> C / reduction (the paper's C/2: 2).
        zero_init: start ``W2`` (weight and bias) at zero, so the block is the identity at init
            (as the authors' release does for its gate).
        momentum: the BN's running-statistics momentum (PyTorch's default 0.1; the RNL release's
            channel gate uses 0.01, which the RNL presets set).

    The BN normalises the batch of squeezed vectors ``W1 s'`` (one per clip). A batch of ONE clip
    has no batch statistics (``BatchNorm1d`` refuses it in training); this block then normalises
    with the running estimates and leaves them unchanged, so it trains at any batch size.
    """

    def __init__(self, channels: int, reduction: int = 2, zero_init: bool = True, momentum: float = 0.1):
        super().__init__()
        if not isinstance(reduction, int) or reduction <= 0:
            raise ConfigError(f"block 'se_add': reduction must be a positive int, got {reduction!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 < momentum <= 1.0:
            raise ConfigError(f"block 'se_add': momentum must be a number in (0, 1], got {momentum!r}")
        hidden = inner_width("se_add", channels, None, reduction)
        self.channels = channels
        self.fc1 = nn.Linear(channels, hidden)
        self.norm = nn.BatchNorm1d(hidden, momentum=float(momentum))
        self.fc2 = nn.Linear(hidden, channels)
        self.identity_at_init = bool(zero_init)
        if zero_init:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

    def excitation(self, squeezed: torch.Tensor) -> torch.Tensor:
        hidden = self.fc1(squeezed)
        if self.norm.training and hidden.shape[0] == 1:
            norm = self.norm
            hidden = F.batch_norm(hidden, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                                  False, 0.0, norm.eps)
        else:
            hidden = self.norm(hidden)
        return self.fc2(F.relu(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input("se_add", x, self.channels)
        s = self.excitation(x.mean(dim=(2, 3, 4)))
        return x + s[:, :, None, None, None]
