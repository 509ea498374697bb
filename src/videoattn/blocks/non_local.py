"""Non-local family: NL, spatial / temporal self-attention (SA, TA), decoupled NL (DNL) and TAPE.

Papers
    Wang et al., "Non-local Neural Networks", CVPR 2018 (NL, sections 3.2-3.3, Fig. 2).
    He et al., "GTA: Global Temporal Attention for Video Action Understanding", BMVC 2021,
    sections 3.1-3.2 (eq. 1-4), Fig. 2(a)-(b), Table 6 (SA, TA, SA+TA, SA+TAPE).

Every block maps ``(N, C, T, H, W) -> (N, C, T, H, W)`` as ``y = x + BN(W_out z)`` where ``z`` is
the attention output, ``W_out`` a 1x1x1 projection and ``BN`` a BatchNorm3d (``TokenBatchNorm``,
fed channels-last tokens) whose gamma starts at zero (NL paper sec. 4.1), so every block is the
identity at initialisation (``identity_at_init = True``). Query/key/value projections are 1x1x1
convolutions initialised N(0, 0.01^2) with zero bias, as in the NL paper's Caffe2 code; the GTA
paper gives no other init. Internally everything runs on channels-last ``(N, T, H, W, C)`` tokens
(one copy of the input; projections are GEMMs), see :mod:`videoattn.blocks._attention`.

Widths (see ``docs/blocks.md`` for the derivation against Tables 1 and 6):

* ``nl``: inner width C/2, keys/values max-pooled 1x2x2 *after* the phi/g projections by default
  (mmcv / TSM style, ``pool_position="after"``; this reproduces Table 1's 61.1 GFLOPs) or *before*
  them (original Caffe2 code, ``pool_position="before"``, cheaper).
* ``sa`` / ``ta``: four projections (query, key, value, output) of inner width C/4, scaled dot
  product ``1/sqrt(inner)`` (eq. 3-4, where the paper writes ``sqrt(C)`` for its C-wide
  projections). SA max-pools its keys/values 1x2x2 after their projections; TA does not pool.
  This reproduces Table 6: +SA 27.5 M / 41.7 G, +TA 27.5 M / 41.0 G, +SA+TA 31.2 M / 49.9 G.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ShapeError
from ._attention import (
    channels_first,
    channels_last,
    check_attention_impl,
    check_video_input,
    fused_projections,
    inner_width,
    norm_tokens,
    pairwise_attention,
    projection,
    softmax_attention,
    subsample_tokens_2x2,
    zero_init_bn,
)
from .registry import register_block

NL_MODES = ("embedded_gaussian", "dot_product", "gaussian", "concatenation")


def _flat(tokens: torch.Tensor) -> torch.Tensor:
    """Channels-last ``(N, T, H, W, d)`` -> ``(N, T*H*W, d)``: every spacetime position is a token."""
    return tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])


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
    ):
        super().__init__()
        if mode not in NL_MODES:
            raise ConfigError(f"block 'nl': mode must be one of {', '.join(NL_MODES)}, got {mode!r}")
        if pool_position not in ("after", "before"):
            raise ConfigError(f"block 'nl': pool_position must be 'after' or 'before', got {pool_position!r}")
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
        self.out_proj = projection(width, channels)
        self.out_norm = zero_init_bn(channels)

    def _keys_values(self, x_cl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query, key and value tokens ``(N, positions, width)`` from channels-last ``x_cl``."""
        embed = self.mode != "gaussian"
        if self.sub_sample and self.pool_position == "before":
            query = self.theta(x_cl) if embed else x_cl
            pooled = subsample_tokens_2x2(x_cl)
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
                key, value = subsample_tokens_2x2(key), subsample_tokens_2x2(value)
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
        x_cl = channels_last(x)
        z = self.attention(x_cl)
        out = self.out_proj(z).reshape(x_cl.shape)
        return x + channels_first(norm_tokens(self.out_norm, out))


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
    ):
        super().__init__()
        self.channels = channels
        self.axis = axis
        self.inner_channels = inner_width(self.block_name, channels, inner_channels, 4)
        self.use_scale = use_scale
        self.sub_sample = sub_sample
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

    def attention(self, x_cl: torch.Tensor) -> torch.Tensor:
        """A_s (eq. 3) or A_t (eq. 4) for channels-last input, as channels-last ``(N, T, H, W, inner)``."""
        n, frames, h, w, _ = x_cl.shape
        embedded = self._embed_input(x_cl)
        query, key, value = fused_projections([self.query, self.key, self.value], embedded)
        if self.sub_sample:
            query = query.contiguous()  # see NonLocalBlock._keys_values
        if self.sub_sample:
            key, value = subsample_tokens_2x2(key), subsample_tokens_2x2(value)
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
        z = self.attention(channels_last(x))
        return x + channels_first(norm_tokens(self.out_norm, self.out_proj(z)))


@register_block("sa", description="spatial self-attention within each frame (GTA paper eq. 3)")
class SpatialSelfAttention(_FactorisedSelfAttention):
    """SA, GTA paper eq. 3: ``Y_s(t) = X(t) + BN(A_s(t) W_O^s)``,
    ``A_s(t) = softmax(Q_s(t) K_s(t)^T / sqrt(d)) V_s(t)`` over the HW positions of frame t.

    Keys/values are max-pooled 1x2x2 after their projections (``sub_sample=True``), which the
    Table 6 FLOPs (41.7 G) require; inner width C/4 (Table 6 params, 27.5 M).
    """

    block_name = "sa"

    def __init__(
        self,
        channels: int,
        inner_channels: int | None = None,
        use_scale: bool = True,
        sub_sample: bool = True,
        attention_impl: str = "auto",
        chunk_size: int = 512,
    ):
        super().__init__(channels, "space", inner_channels, use_scale, sub_sample, attention_impl, chunk_size)


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


class SpatialThenTemporal(nn.Module):
    """Shared body of DNL, TAPE and GTA: optional SA (eq. 3, ``self.spatial``, None to skip) followed
    by a temporal module (``self.temporal``) that checks T before any spatial work is done."""

    identity_at_init = True
    block_name = ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input(self.block_name, x, self.channels)
        self.temporal.check_frames(x)  # fail before doing the spatial work
        if self.spatial is not None:
            x = self.spatial(x)
        return self.temporal(x)


@register_block("dnl", description="decoupled non-local: SA then TA with separate projections (GTA Fig. 2b)")
class DecoupledNonLocal(SpatialThenTemporal):
    """DNL, GTA paper sec. 3.2 and Fig. 2(b): SA (eq. 3) followed by TA (eq. 4), each with its own
    query/key/value/output projections and zero-initialised BN. Options other than the ones below
    go to both halves."""

    block_name = "dnl"

    def __init__(
        self,
        channels: int,
        inner_channels: int | None = None,
        use_scale: bool = True,
        spatial_sub_sample: bool = True,
        attention_impl: str = "auto",
        chunk_size: int = 512,
    ):
        super().__init__()
        self.channels = channels
        self.spatial = SpatialSelfAttention(
            channels, inner_channels, use_scale, spatial_sub_sample, attention_impl, chunk_size
        )
        self.temporal = TemporalSelfAttention(
            channels, None, inner_channels, use_scale, attention_impl=attention_impl, chunk_size=chunk_size
        )


class _TemporalWithPositionalEmbedding(TemporalSelfAttention):
    block_name = "tape"


@register_block(
    "tape", needs_num_frames=True,
    description="temporal self-attention with a learned temporal positional embedding (GTA Table 6)",
)
class TemporalAttentionPE(SpatialThenTemporal):
    """TAPE (GTA paper Table 6 "+SA+TAPE", Table 9): TA (eq. 4) whose input gets a learned
    per-frame embedding, so it can tell frame order apart.

    ``spatial=False`` (default) is TAPE alone (Table 9 "+ TAPE"); ``spatial=True`` puts SA (eq. 3)
    in front, the "+SA+TAPE" row of Table 6 used by the ``r2d50_tape`` preset.
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
    ):
        super().__init__()
        self.channels = channels
        self.num_frames = num_frames
        self.spatial = (
            SpatialSelfAttention(channels, inner_channels, use_scale, True, attention_impl, chunk_size)
            if spatial else None
        )
        self.temporal = _TemporalWithPositionalEmbedding(
            channels, num_frames, inner_channels, use_scale, positional_embedding=True,
            temporal_resize=temporal_resize, attention_impl=attention_impl, chunk_size=chunk_size,
            positional_init_std=positional_init_std,
        )
