"""Non-local block (Wang, Girshick, Gupta, He, "Non-local Neural Networks", CVPR 2018).

Spacetime self-attention over all T*H*W positions, sections 3.2-3.3 and Fig. 2 of the paper:
``y = x + BN(W_z z)``, ``z_i = 1/C(x) sum_j f(x_i, x_j) g(x_j)``. ``BN`` is a BatchNorm3d
(``TokenBatchNorm``, fed channels-last tokens) whose gamma starts at zero (NL paper sec. 4.1), so the
block is the identity at initialisation. Query/key/value projections are 1x1x1 convolutions
initialised N(0, 0.01^2) with zero bias, as in the paper's Caffe2 code. Internally everything runs
on channels-last ``(N, T, H, W, C)`` tokens (one copy of the input; projections are GEMMs), see
:mod:`videoattn.blocks._attention`.

Width and sub-sampling (``docs/blocks.md`` derives them from GTA Table 1): inner width C/2,
keys/values max-pooled 1x2x2 *after* the phi/g projections by default (mmcv / TSM style,
``pool_position="after"``; this reproduces Table 1's 61.1 GFLOPs) or *before* them (original Caffe2
code, ``pool_position="before"``, cheaper).

The factorised attentions of the GTA paper (SA, TA, DNL, TAPE) are in :mod:`.factorised`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._attention import (
    add_tokens,
    check_attention_impl,
    check_video_input,
    fused_projections,
    inner_width,
    norm_tokens,
    pairwise_attention,
    projection,
    softmax_attention,
    subsample_tokens_2x2,
    token_view,
    zero_init_bn,
)
from .registry import register_block

NL_MODES = ("embedded_gaussian", "dot_product", "gaussian", "concatenation")


def _flat(tokens: torch.Tensor) -> torch.Tensor:
    """Channels-last ``(N, T, H, W, d)`` -> ``(N, T*H*W, d)``: every spacetime position is a token."""
    return tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])



@register_block("nl", description="Non-local block (Wang et al. 2018): spacetime self-attention over THW")
class NonLocalBlock(nn.Module):
    """Non-local block, ``y = x + BN(W_z z)``, ``z_i = 1/C(x) sum_j f(x_i, x_j) g(x_j)`` (NL eq. 1-2, 6).

    Args:
        channels: C, input/output channels.
        mode: pairwise function ``f`` (NL sec. 3.2):
            ``"embedded_gaussian"``: ``softmax_j(theta_i . phi_j * scale)`` (eq. 3, default; GTA eq. 1);
            ``"gaussian"``: ``softmax_j(x_i . x_j * scale)`` on the raw input, no theta/phi (eq. 2);
            ``"dot_product"``: ``theta_i . phi_j / S`` with S the number of keys (eq. 4);
            ``"concatenation"``: ``ReLU(w_f^T [theta_i, phi_j]) / S`` (eq. 5).
        inner_channels: width of theta/phi/g (default C/2).
        use_scale: multiply the softmax logits by ``1/sqrt(width)`` (default False: the NL paper's
            embedded Gaussian has no scaling; mmcv calls this ``use_scale``). Softmax modes only.
        sub_sample: max-pool keys/values 1x2x2 (NL sec. 4.1 "subsampling trick").
        pool_position: ``"after"`` the phi/g projections (mmcv / TSM, default, Table 1 FLOPs) or
            ``"before"`` them, on the input (original Caffe2 code; 4x cheaper phi/g).
        pool_mode: ``"ceil"`` (default) keeps the last row/column of an odd-sized map as its own
            pooling window; ``"floor"`` drops it, as the TSM repository's and mmcv's ``MaxPool3d``
            do (e.g. res5's 7x7 pools to 3x3 instead of 4x4). The two agree on even sizes, which is
            every site of the papers' five-block layouts at 224 px; ceil is the default because floor
            silently hides the last row and column of keys from every query.
        out_bias: give the output projection ``W_z`` a bias (default True, the NL paper's Caffe2
            code and the TSM repository); mmcv builds it without one because BN follows.
        attention_impl: ``"auto"`` | ``"explicit"`` | ``"sdpa"`` | ``"chunked"`` (see
            :mod:`videoattn.blocks._attention`); all compute the same function.
        chunk_size: query chunk length of the chunked implementation.
    """

    identity_at_init = True

    def __init__(
        self,
        channels: int,
        mode: str = "embedded_gaussian",
        inner_channels: int | None = None,
        use_scale: bool = False,
        sub_sample: bool = True,
        pool_position: str = "after",
        attention_impl: str = "auto",
        chunk_size: int = 512,
        pool_mode: str = "ceil",
        out_bias: bool = True,
    ):
        super().__init__()
        if mode not in NL_MODES:
            raise ConfigError(f"block 'nl': mode must be one of {', '.join(NL_MODES)}, got {mode!r}")
        if pool_position not in ("after", "before"):
            raise ConfigError(f"block 'nl': pool_position must be 'after' or 'before', got {pool_position!r}")
        if pool_mode not in ("ceil", "floor"):
            raise ConfigError(f"block 'nl': pool_mode must be 'ceil' or 'floor', got {pool_mode!r}")
        self.pool_mode = pool_mode
        self.channels = channels
        self.mode = mode
        self.inner_channels = inner_width("nl", channels, inner_channels, 2)
        self.use_scale = use_scale
        self.sub_sample = sub_sample
        self.pool_position = pool_position
        self.attention_impl = check_attention_impl("nl", attention_impl)
        self.chunk_size = chunk_size
        width = self.inner_channels
        self.g = projection(channels, width)
        if mode != "gaussian":
            self.theta = projection(channels, width)
            self.phi = projection(channels, width)
        if mode == "concatenation":
            # w_f in eq. 5: a linear map of the concatenated [theta_i, phi_j] to one score.
            self.concat_weight = nn.Parameter(torch.empty(2 * width))
            nn.init.normal_(self.concat_weight, std=0.01)
        self.out_proj = projection(width, channels, bias=out_bias)
        self.out_norm = zero_init_bn(channels)

    def _keys_values(self, x_cl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query, key and value tokens ``(N, positions, width)`` from channels-last ``x_cl``."""
        embed = self.mode != "gaussian"
        if self.sub_sample and self.pool_position == "before":
            query = self.theta(x_cl) if embed else x_cl
            pooled = subsample_tokens_2x2(x_cl, self.pool_mode == "ceil")
            key, value = fused_projections([self.phi, self.g], pooled) if embed else (pooled, self.g(pooled))
        else:
            if embed:
                query, key, value = fused_projections([self.theta, self.phi, self.g], x_cl)
                # A contiguous query lets the fused output (and its full-resolution keys/values)
                # be freed after pooling instead of being pinned by attention's saved query.
                query = query.contiguous() if self.sub_sample else query
            else:
                query, key, value = x_cl, x_cl, self.g(x_cl)
            if self.sub_sample:
                ceil = self.pool_mode == "ceil"
                key, value = subsample_tokens_2x2(key, ceil), subsample_tokens_2x2(value, ceil)
        return _flat(query), _flat(key), _flat(value)

    def attention(self, x_cl: torch.Tensor) -> torch.Tensor:
        """z of NL eq. 1 for channels-last input ``(N, T, H, W, C)``, as ``(N, T*H*W, inner)``."""
        query, key, value = self._keys_values(x_cl)
        impl = self.attention_impl
        if self.mode in ("embedded_gaussian", "gaussian"):
            scale = 1.0 / math.sqrt(query.shape[-1]) if self.use_scale else 1.0
            return softmax_attention(query, key, value, scale, impl, self.chunk_size)
        num_keys = key.shape[1]
        if self.mode == "dot_product":
            if impl == "explicit":
                return torch.matmul(torch.matmul(query, key.transpose(1, 2)) / num_keys, value)
            # Same function re-associated: (Q K^T / S) V = Q (K^T V) / S, never forming L x S.
            return torch.matmul(query, torch.matmul(key.transpose(1, 2), value)) / num_keys
        # concatenation: w_f^T [theta_i, phi_j] = a . theta_i + b . phi_j
        width = query.shape[-1]
        weight_query, weight_key = self.concat_weight[:width], self.concat_weight[width:]
        score_key = torch.matmul(key, weight_key.to(key.dtype))  # (N, S)

        def weights(q_chunk, _key):
            score_query = torch.matmul(q_chunk, weight_query.to(q_chunk.dtype))
            return F.relu(score_query.unsqueeze(-1) + score_key.unsqueeze(-2)) / num_keys

        return pairwise_attention(weights, query, key, value, impl, self.chunk_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input("nl", x, self.channels)
        x_cl = token_view(x)  # the projections read x itself, no channels-last copy
        z = self.attention(x_cl)
        out = self.out_proj(z).reshape(x_cl.shape)
        return add_tokens(x, norm_tokens(self.out_norm, out))
