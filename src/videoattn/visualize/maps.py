"""The maps the figures draw, computed from a block's captured input with the block's own modules.

Each function takes a block and its captured input ``x`` ``(N, C, T, H, W)`` (one clip: ``N = 1``,
or the frames of one clip folded into the batch) and returns numpy arrays for the first clip. The
attention weights that the fast paths (SDPA, chunked) never materialise are recomputed here for the
queried positions only: one row ``softmax(scale q_i K^T)`` per query, from the query/key tokens the
block's own projections give for ``x`` (the same fused GEMMs and pooling the block runs).
Everything runs under ``torch.no_grad`` in the model's current (eval) mode.

Positions: a query ``(t, y, x)`` is in the block's own grid (frame t of the block input, row y,
column x); :func:`grid_position` maps a position of the input clip onto it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from ..blocks._attention import channels_last, fused_projections, subsample_tokens_2x2
from ..blocks.bat import BATBase, block_expand
from ..blocks.factorised import _FactorisedSelfAttention
from ..blocks.gsm import FrameSelfAttention, GateShift
from ..blocks.gta import GlobalTemporalAttention
from ..blocks.non_local import NonLocalBlock
from ..blocks.rnl import RegionNonLocalBlock

__all__ = [
    "bat_attention", "factorised_attention", "frame_attention", "grid_position", "gsm_gates",
    "gta_matrices", "gta_regions", "nl_attention", "rnl_attention",
]


def grid_position(query: tuple[int, int, int], clip_shape: tuple[int, int, int],
                  grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """Position ``(t, y, x)`` of the input clip (``clip_shape = (T, H, W)``) in a ``grid`` of
    ``(T', H', W')`` cells covering the same extent."""
    return tuple(min(g - 1, int(q * g // s)) for q, s, g in zip(query, clip_shape, grid))  # type: ignore[return-value]


def _pooled_size(size: int, ceil: bool) -> int:
    return (size + 1) // 2 if ceil else size // 2


def _first(x: torch.Tensor) -> torch.Tensor:
    return x[:1]


@torch.no_grad()
def nl_attention(block: NonLocalBlock, x: torch.Tensor, position: tuple[int, int, int]) -> np.ndarray:
    """Row ``position`` of the Non-local block's weight matrix ``f(x_i, x_j) / C(x)`` over its keys,
    as ``(T, H_k, W_k)`` (keys sub-sampled 1x2x2 when the block pools them). Softmax modes sum to 1."""
    x = _first(x)
    frames, height, width = x.shape[2:]
    query, key, _ = block._keys_values(channels_last(x))
    t, y, w = position
    q = query[0, (t * height + y) * width + w]
    keys = key[0]
    num_keys = keys.shape[0]
    if block.mode in ("embedded_gaussian", "gaussian"):
        scale = 1.0 / math.sqrt(q.shape[-1]) if block.use_scale else 1.0
        row = torch.softmax((keys @ q) * scale, dim=0)
    elif block.mode == "dot_product":
        row = (keys @ q) / num_keys
    else:
        inner = q.shape[-1]
        weight = block.concat_weight.to(q.dtype)
        row = F.relu(q @ weight[:inner] + keys @ weight[inner:]) / num_keys
    if block.sub_sample:
        ceil = block.pool_mode == "ceil"
        height, width = _pooled_size(height, ceil), _pooled_size(width, ceil)
    return row.reshape(frames, height, width).float().cpu().numpy()


def _factorised_query_key(block: _FactorisedSelfAttention, x_cl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SA/TA query and key tokens, channels-last ``(N, T, H, W, d)`` and ``(N, T, H_k, W_k, d)``, as the
    block's ``attention`` computes them."""
    query, key, _ = block._query_key_value(x_cl)
    return query, key


@torch.no_grad()
def factorised_attention(block: _FactorisedSelfAttention, x: torch.Tensor,
                         position: tuple[int, int, int]) -> np.ndarray:
    """SA (GTA eq. 3): the query's weights over the keys of its own frame, ``(H_k, W_k)``.
    TA (eq. 4): the query's weights over the T frames at its spatial position, ``(T,)``."""
    query, key = _factorised_query_key(block, channels_last(_first(x)))
    t, y, w = position
    q = query[0, t, y, w]
    scale = 1.0 / math.sqrt(block.inner_channels) if block.use_scale else 1.0
    if block.axis == "space":
        keys = key[0, t]
        return torch.softmax((keys.reshape(-1, q.shape[-1]) @ q) * scale, dim=0).reshape(
            keys.shape[:2]).float().cpu().numpy()
    return torch.softmax((key[0, :, y, w] @ q) * scale, dim=0).float().cpu().numpy()


@torch.no_grad()
def rnl_attention(block: RegionNonLocalBlock, x: torch.Tensor, position: tuple[int, int, int]) -> np.ndarray:
    """RNL (eq. 4-7): the weights of the region around ``position`` over every key region,
    ``(T, H_k, W_k)``; the Gaussian form sums to 1."""
    x = _first(x)
    frames, height, width = x.shape[2:]
    value = block.theta(channels_last(x))
    region = block.aggregate(value)
    t, y, w = position
    q = region[0, t, y, w]
    if block.sub_sample:
        region = subsample_tokens_2x2(region)
    keys = region[0].reshape(-1, region.shape[-1])
    num_keys = keys.shape[0]
    if block.form == "gaussian":
        row = torch.softmax(keys @ q, dim=0)
    elif block.form == "dot":
        row = (keys @ q) / num_keys
    else:
        row = F.relu(F.normalize(keys, dim=-1) @ F.normalize(q, dim=0)) / num_keys
    return row.reshape(frames, *region.shape[2:4]).float().cpu().numpy()


@torch.no_grad()
def frame_attention(block: FrameSelfAttention, x: torch.Tensor, position: tuple[int, int, int]) -> np.ndarray:
    """SA-GSM's SAGAN attention (eq. 1-2): for the query position ``(y, x)`` of every frame,
    ``beta_j = softmax_i(f(x_i)^T g(x_j))`` over the frame's positions: ``(T, H, W)``."""
    x = _first(x)
    frames, height, width = x.shape[2:]
    f, g, _ = fused_projections([block.f, block.g, block.h], channels_last(x))
    _, y, w = position
    queries = g[0, :, y, w]  # (T, d): the query is g at j
    keys = f[0].reshape(frames, height * width, -1)  # the keys are f at i
    scores = torch.einsum("tpd,td->tp", keys, queries)
    return torch.softmax(scores, dim=-1).reshape(frames, height, width).float().cpu().numpy()


@torch.no_grad()
def gsm_gates(block: GateShift, x: torch.Tensor) -> np.ndarray:
    """GSM's gates ``tanh(W * X)`` for the two channel halves, ``(2, T, H, W)`` in [-1, 1]: half 0 is
    shifted forward in time, half 1 backward (reversed with ``released_order``)."""
    return block.gate_maps(_first(x))[0].float().cpu().numpy()


def gta_matrices(block: GlobalTemporalAttention) -> dict[str, np.ndarray]:
    """GTA Fig. 5: each learned temporal matrix as ``|M|`` averaged over groups and heads,
    ``[t_out, t_in]``; keys ``"pixel"`` / ``"region"``."""
    from ..analysis.plots import temporal_matrix_magnitude

    found = {}
    for branch in ("pixel", "region"):
        matrix = getattr(block, f"{branch}_matrix", None)
        if isinstance(matrix, torch.Tensor):
            found[branch] = temporal_matrix_magnitude(matrix)
    return found


@torch.no_grad()
def gta_regions(block: GlobalTemporalAttention, x: torch.Tensor) -> np.ndarray:
    """Region GTA's assignments ``G_R(t)^T``: the weight of every pixel in each of the K regions,
    ``(T, H, W, K)`` (eq. 6; ``W_G`` applied to the value features or to the input)."""
    if block.region_value is None:
        raise ValueError("the block has no Region GTA branch")
    x_cl = channels_last(_first(x))
    n, frames, height, width, channels = x_cl.shape
    if block.region_source == "value":
        source = block.region_value(x_cl).reshape(n, frames, height * width, block.inner_channels)
    else:
        source = x_cl.reshape(n, frames, height * width, channels)
    transform = block.region_transform(source)
    return transform[0].reshape(frames, height, width, -1).float().cpu().numpy()


@torch.no_grad()
def bat_attention(block: BATBase, x: torch.Tensor) -> np.ndarray:
    """BAT eq. 8, the re-projected attention ``W_g = P_g^T A Q_g^T`` (``A`` all ones) of every group
    for every frame of the first clip: ``(T, k, H, W)`` (``s x s`` for ``matrix="downsampling"``)."""
    x = _first(x)
    _, channels, frames, height, width = x.shape
    folded = x.transpose(1, 2).reshape(frames, channels, height, width)
    p, q = block.spatial_matrices(block.squeeze(block.reduce(folded)))
    if block.matrix != "downsampling":
        p, q = block_expand(p, height // block.s_h), block_expand(q, width // block.s_w)
    ones = p.new_ones(p.shape[-1], q.shape[-1])
    return (p.transpose(-1, -2) @ ones @ q.transpose(-1, -2)).float().cpu().numpy()
