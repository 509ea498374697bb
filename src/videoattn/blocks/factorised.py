"""Factorised self-attention of the GTA paper: spatial (SA), temporal (TA), decoupled NL (DNL), TAPE.

Paper: He et al., "GTA: Global Temporal Attention for Video Action Understanding", BMVC 2021,
sections 3.1-3.2 (eq. 1-4), Fig. 2(a)-(b), Table 6 (SA, TA, SA+TA, SA+TAPE).

SA and TA map ``(N, C, T, H, W) -> (N, C, T, H, W)`` as ``y = x + BN(W_O A)`` with the attention
``A`` restricted to one frame (SA) or to one spatial position across frames (TA); the output BN's
gamma starts at zero, so both are the identity at initialisation. Four projections (query, key,
value, output) of inner width C/4, scaled dot product ``1/sqrt(inner)`` (eq. 3-4, where the paper
writes ``sqrt(C)`` for its C-wide projections). SA max-pools its keys/values 1x2x2 after their
projections; TA does not pool. This reproduces Table 6: +SA 27.5 M / 41.7 G, +TA 27.5 M / 41.0 G,
+SA+TA 31.2 M / 49.9 G.

DNL and TAPE are instances of the decoupled composite (:class:`.composite.Decoupled`): SA within
each frame, then TA (with a learned positional embedding for TAPE) along time. SA declares
``scope = "frame"`` and TA ``scope = "time"``: they already restrict attention to a frame / a
position, so the composite runs them on the whole clip instead of folding frames or positions into
the batch (the same function; ``tests/blocks/test_composite.py`` checks it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ShapeError
from ._attention import (
    add_tokens,
    check_attention_impl,
    check_video_input,
    fused_projections,
    inner_width,
    norm_tokens,
    projection,
    softmax_attention,
    subsample_tokens_2x2,
    token_view,
    zero_init_bn,
)
from .composite import Decoupled
from .registry import register_block


def check_pool_position(block_name: str, pool_position: str) -> str:
    """SA's key/value sub-sampling: ``"after"`` the key/value projections (default, GTA Table 6 and the
    R2D rows of Table 1) or ``"before"`` them, on the input (PySlowFast's non-local; the SlowFast rows)."""
    if pool_position not in ("after", "before"):
        raise ConfigError(
            f"block {block_name!r}: pool_position must be 'after' or 'before', got {pool_position!r}"
        )
    return pool_position


def _frame_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """``(N, T, H, W, d)`` -> ``(N*T, H*W, d)``: the positions of one frame attend to each other."""
    n, frames, h, w, d = tokens.shape
    return tokens.reshape(n * frames, h * w, d)


def _time_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """``(N, T, H, W, d)`` -> ``(N*H*W, T, d)``: the T frames at one position attend to each other."""
    n, frames, h, w, d = tokens.shape
    return tokens.permute(0, 2, 3, 1, 4).reshape(n * h * w, frames, d)


def _from_time_tokens(z: torch.Tensor, n: int, frames: int, h: int, w: int) -> torch.Tensor:
    return z.reshape(n, h, w, frames, z.shape[-1]).permute(0, 3, 1, 2, 4)


def resize_along_time(param: torch.Tensor, dims: tuple[int, ...], new_frames: int) -> torch.Tensor:
    """Linearly interpolate ``param`` along its time dims ``dims`` (1 or 2 of them) to ``new_frames``.

    An approximation used when a block built for T frames receives T' != T frames and the user
    asked for ``temporal_resize=True``: the learned per-frame quantities are resampled on a grid
    stretched to the new length (``align_corners=True``, first and last frames map to each other).
    """
    moved = param.movedim(dims, tuple(range(param.dim() - len(dims), param.dim())))
    lead_shape = moved.shape[: moved.dim() - len(dims)]
    flat = moved.reshape(1, -1, *moved.shape[moved.dim() - len(dims):])
    mode = "linear" if len(dims) == 1 else "bilinear"
    resized = F.interpolate(flat, size=(new_frames,) * len(dims), mode=mode, align_corners=True)
    resized = resized.reshape(*lead_shape, *resized.shape[2:])
    return resized.movedim(tuple(range(resized.dim() - len(dims), resized.dim())), dims)


class _FactorisedSelfAttention(nn.Module):
    """Shared body of SA (eq. 3) and TA (eq. 4): ``y = x + BN(W_O softmax(Q K^T/sqrt(d)) V)``
    with attention restricted to one frame (``axis="space"``) or one position (``axis="time"``)."""

    identity_at_init = True
    block_name = ""

    def __init__(
        self,
        channels: int,
        axis: str,
        inner_channels: int | None,
        use_scale: bool,
        sub_sample: bool,
        attention_impl: str,
        chunk_size: int,
        pool_position: str = "after",
    ):
        super().__init__()
        self.channels = channels
        self.axis = axis
        self.inner_channels = inner_width(self.block_name, channels, inner_channels, 4)
        self.use_scale = use_scale
        self.sub_sample = sub_sample
        self.pool_position = check_pool_position(self.block_name, pool_position)
        self.attention_impl = check_attention_impl(self.block_name, attention_impl)
        self.chunk_size = chunk_size
        width = self.inner_channels
        self.query = projection(channels, width)
        self.key = projection(channels, width)
        self.value = projection(channels, width)
        self.out_proj = projection(width, channels)
        self.out_norm = zero_init_bn(channels)

    def _embed_input(self, x_cl: torch.Tensor) -> torch.Tensor:
        return x_cl

    def _query_key_value(self, x_cl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Channels-last query ``(N, T, H, W, d)`` and keys/values ``(N, T, H_k, W_k, d)`` (the
        visualisers recompute attention rows from these too)."""
        embedded = self._embed_input(x_cl)
        if self.sub_sample and self.pool_position == "before":
            # PySlowFast-style: pool the (embedded) input, then project keys/values on 1/4 of the tokens.
            query = self.query(embedded)
            key, value = fused_projections([self.key, self.value], subsample_tokens_2x2(embedded))
            return query, key, value
        query, key, value = fused_projections([self.query, self.key, self.value], embedded)
        if self.sub_sample:
            query = query.contiguous()  # see NonLocalBlock._keys_values
            key, value = subsample_tokens_2x2(key), subsample_tokens_2x2(value)
        return query, key, value

    def attention(self, x_cl: torch.Tensor) -> torch.Tensor:
        """A_s (eq. 3) or A_t (eq. 4) for channels-last input, as channels-last ``(N, T, H, W, inner)``."""
        n, frames, h, w, _ = x_cl.shape
        query, key, value = self._query_key_value(x_cl)
        scale = 1.0 / math.sqrt(self.inner_channels) if self.use_scale else 1.0
        if self.axis == "space":
            z = softmax_attention(
                _frame_tokens(query), _frame_tokens(key), _frame_tokens(value),
                scale, self.attention_impl, self.chunk_size,
            )
            return z.reshape(n, frames, h, w, -1)
        z = softmax_attention(
            _time_tokens(query), _time_tokens(key), _time_tokens(value),
            scale, self.attention_impl, self.chunk_size,
        )
        return _from_time_tokens(z, n, frames, h, w)

    def check_frames(self, x: torch.Tensor) -> None:
        """Blocks with T-sized parameters raise a ShapeError here for a T they cannot handle."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input(self.block_name, x, self.channels)
        self.check_frames(x)
        z = self.attention(token_view(x))  # the projections read x itself, no channels-last copy
        return add_tokens(x, norm_tokens(self.out_norm, self.out_proj(z)))


@register_block("sa", description="spatial self-attention within each frame (GTA paper eq. 3)")
class SpatialSelfAttention(_FactorisedSelfAttention):
    """SA, GTA paper eq. 3: ``Y_s(t) = X(t) + BN(A_s(t) W_O^s)``,
    ``A_s(t) = softmax(Q_s(t) K_s(t)^T / sqrt(d)) V_s(t)`` over the HW positions of frame t.

    Keys/values are max-pooled 1x2x2 after their projections (``sub_sample=True``,
    ``pool_position="after"``), which the Table 6 FLOPs (41.7 G) require; inner width C/4 (Table 6
    params, 27.5 M). ``pool_position="before"`` max-pools the input 1x2x2 and then projects keys and
    values (as PySlowFast's non-local and ``nl``'s option of the same name): the same parameters, 3/4
    fewer key/value projection MACs; the SlowFast rows of GTA Table 1 need it.
    """

    block_name = "sa"
    scope = "frame"  # attends within each frame: the decoupled composite need not fold frames

    def __init__(
        self,
        channels: int,
        inner_channels: int | None = None,
        use_scale: bool = True,
        sub_sample: bool = True,
        attention_impl: str = "auto",
        chunk_size: int = 512,
        pool_position: str = "after",
    ):
        super().__init__(channels, "space", inner_channels, use_scale, sub_sample, attention_impl, chunk_size,
                         pool_position)


def spatial_in_front(block_name: str, spatial: bool, channels: int, inner_channels: int | None, use_scale: bool,
                     attention_impl: str, chunk_size: int, pool_position: str) -> SpatialSelfAttention | None:
    """The SA block a decoupled block (GTA, TAPE) runs before its temporal one, or None when ``spatial``
    is off; ``pool_position`` is checked either way, so a wrong value is refused with SA off too."""
    check_pool_position(block_name, pool_position)
    if not spatial:
        return None
    return SpatialSelfAttention(channels, inner_channels, use_scale, True, attention_impl, chunk_size, pool_position)


class _TemporalPositionalEmbedding(nn.Module):
    """Learned per-frame embedding ``P in R^{C x T}`` added to the TA input (TAPE, GTA Table 6).

    Initialised N(0, ``init_std``^2) with ``init_std=1`` by default: the embedding is added to
    batch-normalised, ReLU'd features of about unit scale, so a unit-scale embedding is what makes
    the frame position visible to the projections from the start (the sinusoidal embedding of the
    Transformer has the same scale). With ViT's 0.02 the positional signal is 2% of the features:
    in our measurement (R2D-18 + SA+TAPE on the synthetic time-reversed pairs, ``videoattn demo``
    settings, 600 SGD steps) the model then memorised its training set and stayed at chance within
    the pairs (54%), while ``init_std=1`` reached 99%.
    """

    def __init__(self, channels: int, num_frames: int, temporal_resize: bool, block_name: str,
                 init_std: float = 1.0):
        super().__init__()
        self.num_frames = num_frames
        self.temporal_resize = temporal_resize
        self.block_name = block_name
        self.embedding = nn.Parameter(torch.empty(channels, num_frames))
        nn.init.normal_(self.embedding, std=init_std)

    def check_frames(self, x: torch.Tensor) -> None:
        frames = x.shape[2]
        if frames != self.num_frames and not self.temporal_resize:
            raise ShapeError(
                f"block {self.block_name!r} was built for num_frames={self.num_frames} but got input of "
                f"shape {tuple(x.shape)} with T={frames}; build it with num_frames={frames} or pass "
                f"temporal_resize=True to interpolate its positional embedding (an approximation)"
            )

    def forward(self, x_cl: torch.Tensor) -> torch.Tensor:
        """Add P[:, t] at frame t of channels-last ``(N, T, H, W, C)`` tokens."""
        frames = x_cl.shape[1]
        embedding = self.embedding
        if frames != self.num_frames:
            embedding = resize_along_time(embedding, (1,), frames)
        return x_cl + embedding.to(x_cl.dtype).t()[None, :, None, None, :]


@register_block("ta", description="temporal self-attention across frames at each position (GTA paper eq. 4)")
class TemporalSelfAttention(_FactorisedSelfAttention):
    """TA, GTA paper eq. 4: ``Y_t(i,j) = Y_s(i,j) + BN(A_t(i,j) W_O^t)``,
    ``A_t(i,j) = softmax(Q_t K_t^T / sqrt(d)) V_t`` over the T frames at spatial position (i, j).

    Permutation-equivariant in time: shuffling frames shuffles the output the same way (the GTA
    paper's argument against it). With ``num_frames`` and ``positional_embedding=True`` it becomes
    TAPE: a learned temporal embedding ``P in R^{C x T}`` (init N(0, positional_init_std^2), 1 by
    default, see :class:`_TemporalPositionalEmbedding`) is added to the
    input of the query/key/value projections (not to the residual path). The paper does not say
    where the embedding enters; adding it to the token features follows the Transformer/ViT
    convention.
    """

    block_name = "ta"
    scope = "time"  # attends along time at each position: the decoupled composite need not fold

    def __init__(
        self,
        channels: int,
        num_frames: int | None = None,
        inner_channels: int | None = None,
        use_scale: bool = True,
        positional_embedding: bool = False,
        temporal_resize: bool = False,
        attention_impl: str = "auto",
        chunk_size: int = 512,
        positional_init_std: float = 1.0,
    ):
        super().__init__(channels, "time", inner_channels, use_scale, False, attention_impl, chunk_size)
        self.num_frames = num_frames
        if positional_embedding:
            if not isinstance(num_frames, int) or num_frames <= 0:
                raise ConfigError(
                    f"block {self.block_name!r}: positional_embedding=True learns one vector per frame; "
                    f"pass num_frames=T (a positive int), got {num_frames!r}"
                )
            self.positional_embedding = _TemporalPositionalEmbedding(
                channels, num_frames, temporal_resize, self.block_name, positional_init_std
            )
        else:
            self.positional_embedding = None

    def check_frames(self, x: torch.Tensor) -> None:
        if self.positional_embedding is not None:
            self.positional_embedding.check_frames(x)

    def _embed_input(self, x_cl: torch.Tensor) -> torch.Tensor:
        return x_cl if self.positional_embedding is None else self.positional_embedding(x_cl)


@register_block("dnl", description="decoupled non-local: SA then TA with separate projections (GTA Fig. 2b)")
class DecoupledNonLocal(Decoupled):
    """DNL, GTA paper sec. 3.2 and Fig. 2(b): SA (eq. 3) followed by TA (eq. 4), each with its own
    query/key/value/output projections and zero-initialised BN; the decoupled composite with
    ``spatial="sa"``, ``temporal="ta"``. The options below go to both halves, except
    ``spatial_sub_sample`` and ``pool_position`` (SA's key/value pooling; TA does not pool)."""

    block_name = "dnl"

    def __init__(
        self,
        channels: int,
        inner_channels: int | None = None,
        use_scale: bool = True,
        spatial_sub_sample: bool = True,
        attention_impl: str = "auto",
        chunk_size: int = 512,
        pool_position: str = "after",
    ):
        super().__init__(
            channels,
            spatial=SpatialSelfAttention(
                channels, inner_channels, use_scale, spatial_sub_sample, attention_impl, chunk_size, pool_position
            ),
            temporal=TemporalSelfAttention(
                channels, None, inner_channels, use_scale, attention_impl=attention_impl, chunk_size=chunk_size
            ),
        )


class _TemporalWithPositionalEmbedding(TemporalSelfAttention):
    block_name = "tape"


@register_block(
    "tape", needs_num_frames=True,
    description="temporal self-attention with a learned temporal positional embedding (GTA Table 6)",
)
class TemporalAttentionPE(Decoupled):
    """TAPE (GTA paper Table 6 "+SA+TAPE", Table 9): TA (eq. 4) whose input gets a learned
    per-frame embedding, so it can tell frame order apart.

    ``spatial=False`` (default) is TAPE alone (Table 9 "+ TAPE"); ``spatial=True`` puts SA (eq. 3)
    in front, the "+SA+TAPE" row of Table 6 used by the ``r2d50_tape`` preset. ``pool_position``
    is SA's (see :class:`SpatialSelfAttention`).
    """

    block_name = "tape"

    def __init__(
        self,
        channels: int,
        num_frames: int,
        spatial: bool = False,
        inner_channels: int | None = None,
        use_scale: bool = True,
        temporal_resize: bool = False,
        attention_impl: str = "auto",
        chunk_size: int = 512,
        positional_init_std: float = 1.0,
        pool_position: str = "after",
    ):
        super().__init__(
            channels,
            num_frames,
            spatial=spatial_in_front(self.block_name, spatial, channels, inner_channels, use_scale, attention_impl,
                                     chunk_size, pool_position),
            temporal=_TemporalWithPositionalEmbedding(
                channels, num_frames, inner_channels, use_scale, positional_embedding=True,
                temporal_resize=temporal_resize, attention_impl=attention_impl, chunk_size=chunk_size,
                positional_init_std=positional_init_std,
            ),
        )
