"""Global Temporal Attention (GTA).

Paper: He, Yang, Wu, Chen, Lim, Shrivastava, "GTA: Global Temporal Attention for Video Action
Understanding", BMVC 2021, section 3.3 (eq. 5-8), Fig. 2(c), Tables 4, 6, 9, 10, 11.

The ``gta`` block is spatial self-attention (SA, eq. 3, from :mod:`.factorised`) followed by
:class:`GlobalTemporalAttention`:

    Y = X + BN_P(A_P W_P^O) + BN_R(A_R W_R^O)                      (eq. 5, norms as in eq. 2)
    A_P = M_P V_P,  V_P = X W_V^P                                    (eq. 6, at every pixel)
    G_R(t) = W_G X(t)^T in R^{K x HW},  X_G(t) = G_R(t) X(t)         (sec. 3.3, region transform)
    A_R(t) = G_R(t)^T (M_R V_R)(t),  V_R = X_G W_V^R                 (eq. 6, on each region)

That is the paper's Region GTA, ``region_source="input"``; the default ``"value"`` form reads the
regions off the value features instead (below). Row vectors as in the paper (``X(t)`` is HW x C);
every projection also has a bias ``b`` (the paper writes none), the stored 1x1x1 weights are the
transposes (``(out, in, 1, 1, 1)``).

``M_P`` and ``M_R`` are learned, input-independent temporal matrices. With cross-channel
multi-head (CCMH, eq. 7-8) the value channels are split into G groups, there are N_h = G heads and
head k of the output is ``sum_g M_g^k V_g``: each matrix is a ``G x G x T x T`` tensor
``M[g, k, t_out, t_in]``. ``head_mode="multi_head"`` drops the cross-group sum (Table 11
"Multi-head": head g = ``M_g V_g``, a ``G x T x T`` tensor) and ``head_mode="single"`` uses one
``T x T`` matrix for all channels (Table 4 rows without CCMH).

Choices the paper leaves open (documented in ``docs/blocks.md``):

* Widths: V_P, V_R, W_P^O, W_R^O are 1x1x1 projections of inner width C/4 (as SA/TA), so GTA has
  the same projection budget as TA (Table 6: +SA+GTA 31.2 M).
* ``region_source="input"`` is the paper's Region GTA as printed: ``W_G in R^{K x C}`` on the block
  input, regions ``X_G(t) = G_R(t) X(t)`` (K x C), then each region is a sample "in the same manner
  as Pixel GTA": ``V_R(t) = X_G(t) W_V^R + 1_K b^T`` (the value bias added once per region), mixed
  by ``M_R``, and ``G_R(t)^T`` back to pixels. R2D-50 + 5 GTA: 31.75 M / 51.26 GMACs.
* ``region_source="value"`` (default) computes, with ``V(t) = X(t) W_V^R + 1_HW b^T`` the region
  value projection at every pixel and ``W_G in R^{K x C'}``::

      G_R(t) = W_G V(t)^T,   X_G(t) = G_R(t) V(t),   A_R(t) = G_R(t)^T (M_R X_G)(t).

  Expanded, ``G_R(t) = (W_G W_V^R^T) X(t)^T + (W_G b) 1_HW^T`` and ``X_G(t) = (G_R(t) X(t)) W_V^R +
  (G_R(t) 1_HW) b^T``. So it is the paper's form with the K x C matrix ``W_G W_V^R^T`` exactly when
  the value bias ``b`` is zero (it is at init; it is learned). With ``b != 0`` it differs in two
  places: every pixel's region scores get the same offset ``W_G b``, and each region's value gets
  ``b`` weighted by the region's total weight ``G_R(t) 1`` instead of once. Even with ``b = 0`` the
  implied K x C matrix is restricted: rank <= C' and its rows lie in the span of the C' value
  filters, so it is a parametrisation tied to the value projection, not an equivalent of a free
  ``W_G``. R2D-50 + 5 GTA: 31.40 M / 50.90 GMACs, closer to Table 1's 31.2 M / 50.2 G.
* No normalisation of ``G_R`` (the paper writes none); the zero-initialised BN after each output
  projection absorbs the scale.
* Init: projections N(0, 0.01^2) as in NL; ``W_G`` N(0, 0.01^2); the "randomly initialised"
  temporal matrices N(0, 1/fan_in) with fan_in = T (single, multi_head) or G*T (CCMH); BN gamma 0
  so the block is the identity at init.
* A block built for T frames raises :class:`~videoattn.errors.ShapeError` on T' != T unless
  ``temporal_resize=True``: then the learned matrices are bilinearly resampled to T' x T'
  (corners aligned) and multiplied by T/T' so each output still sums about as many inputs' worth
  of weight. This is an approximation, not what the network was trained for.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError, ShapeError
from ._attention import (
    add_tokens,
    check_video_input,
    fused_projections,
    inner_width,
    norm_tokens,
    projection,
    token_view,
    zero_init_bn,
)
from .composite import Decoupled
from .factorised import resize_along_time, spatial_in_front
from .kernels import check_kernel_choice, use_triton
from .kernels.temporal_mix import temporal_mix  # PyTorch path unless told (the name the tests import)
from .registry import register_block

HEAD_MODES = ("cross_channel", "multi_head", "single")
REGION_SOURCES = ("value", "input")


class GlobalTemporalAttention(nn.Module):
    """The GTA temporal module (eq. 5-8): Pixel GTA and/or Region GTA, residual, identity at init.

    Args:
        channels: C.
        num_frames: T, the size of the learned temporal matrices.
        inner_channels: width of V_P / V_R (default C/4).
        pixel, region: switch Pixel GTA / Region GTA on or off (Table 4).
        head_mode: ``"cross_channel"`` (CCMH, default), ``"multi_head"`` (Table 11) or ``"single"``.
        num_groups: G, groups = heads of CCMH / multi-head (default 8, Fig. 4). Must divide the
            inner width.
        num_regions: K regions per frame (default C/8, Table 10).
        region_source: ``"value"`` (default) or ``"input"``, what ``W_G`` is applied to (see module doc).
        temporal_resize: allow inputs with T' != num_frames by resampling the matrices.
        kernel: the T x T mixing's implementation, ``"auto"`` (Triton on CUDA), ``"triton"`` or
            ``"torch"`` (:mod:`.kernels`).
    """

    identity_at_init = True
    scope = "time"  # models time itself (regions span the frame): run on the whole clip, never folded

    def __init__(
        self,
        channels: int,
        num_frames: int,
        inner_channels: int | None = None,
        pixel: bool = True,
        region: bool = True,
        head_mode: str = "cross_channel",
        num_groups: int = 8,
        num_regions: int | None = None,
        region_source: str = "value",
        temporal_resize: bool = False,
        block_name: str = "gta",
        kernel: str = "auto",
    ):
        super().__init__()
        self.block_name = block_name
        self.kernel = check_kernel_choice(block_name, kernel)
        if not (pixel or region):
            raise ConfigError(f"block {block_name!r}: at least one of pixel=True / region=True is needed")
        if head_mode not in HEAD_MODES:
            raise ConfigError(f"block {block_name!r}: head_mode must be one of {', '.join(HEAD_MODES)}, "
                              f"got {head_mode!r}")
        if region_source not in REGION_SOURCES:
            raise ConfigError(f"block {block_name!r}: region_source must be one of "
                              f"{', '.join(REGION_SOURCES)}, got {region_source!r}")
        if not isinstance(num_frames, int) or num_frames <= 0:
            raise ConfigError(f"block {block_name!r}: num_frames must be a positive int, got {num_frames!r}")
        width = inner_width(block_name, channels, inner_channels, 4)
        if head_mode != "single":
            if not isinstance(num_groups, int) or num_groups <= 0:
                raise ConfigError(f"block {block_name!r}: num_groups must be a positive int, got {num_groups!r}")
            if width % num_groups:
                raise ConfigError(
                    f"block {block_name!r}: the value width {width} (channels={channels}, inner_channels="
                    f"{inner_channels}) is not divisible by num_groups={num_groups}; choose channels/"
                    f"inner_channels divisible by {num_groups} or another num_groups"
                )
        regions = max(1, channels // 8) if num_regions is None else num_regions
        if region and (not isinstance(regions, int) or regions <= 0):
            raise ConfigError(f"block {block_name!r}: num_regions must be a positive int, got {num_regions!r}")
        self.channels = channels
        self.num_frames = num_frames
        self.inner_channels = width
        self.head_mode = head_mode
        self.num_groups = num_groups if head_mode != "single" else 1
        self.num_regions = regions if region else 0
        self.region_source = region_source
        self.temporal_resize = temporal_resize

        if head_mode == "single":
            matrix_shape, fan_in = (num_frames, num_frames), num_frames
        elif head_mode == "multi_head":
            matrix_shape, fan_in = (num_groups, num_frames, num_frames), num_frames
        else:
            matrix_shape, fan_in = (num_groups, num_groups, num_frames, num_frames), num_groups * num_frames

        def temporal_matrix() -> nn.Parameter:
            return nn.Parameter(torch.randn(matrix_shape) / math.sqrt(fan_in))

        if pixel:
            self.pixel_value = projection(channels, width)
            self.pixel_matrix = temporal_matrix()
            self.pixel_out_proj = projection(width, channels)
            self.pixel_out_norm = zero_init_bn(channels)
        else:
            self.pixel_value = None
        if region:
            self.region_value = projection(channels, width)
            source_channels = width if region_source == "value" else channels
            self.region_transform = projection(source_channels, regions, bias=False)  # W_G, no bias (eq.)
            self.region_matrix = temporal_matrix()
            self.region_out_proj = projection(width, channels)
            self.region_out_norm = zero_init_bn(channels)
        else:
            self.region_value = None

    def check_frames(self, x: torch.Tensor) -> None:
        frames = x.shape[2]
        if frames != self.num_frames and not self.temporal_resize:
            raise ShapeError(
                f"block {self.block_name!r} learns {self.num_frames}x{self.num_frames} temporal matrices "
                f"(built with num_frames={self.num_frames}) but got input of shape {tuple(x.shape)} with "
                f"T={frames}; build it with num_frames={frames} or pass temporal_resize=True to "
                f"interpolate the matrices (an approximation)"
            )

    def effective_matrix(self, matrix: torch.Tensor, frames: int) -> torch.Tensor:
        """The temporal matrix used for T=``frames`` input (resampled when frames != num_frames)."""
        if frames == self.num_frames:
            return matrix
        dims = (matrix.dim() - 2, matrix.dim() - 1)
        return resize_along_time(matrix, dims, frames) * (self.num_frames / frames)

    def pixel_branch(self, x_cl: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
        """A_P = M_P V_P (eq. 6-8) for channels-last ``(N, T, H, W, C)``, as ``(N, T, H, W, inner)``;
        ``values`` is ``V_P`` when already computed (``forward`` fuses it with the region values)."""
        values = self.pixel_value(x_cl) if values is None else values
        n, frames, h, w, width = values.shape
        matrix = self.effective_matrix(self.pixel_matrix, frames)
        mixed = temporal_mix(matrix, values.reshape(n, frames, h * w, width), self.head_mode, self.num_groups,
                             use_triton(self.block_name, self.kernel, values))
        return mixed.reshape(n, frames, h, w, width)

    def region_branch(self, x_cl: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
        """Region GTA (eq. 6-8) for channels-last ``(N, T, H, W, C)``, as ``(N, T, H, W, inner)``.

        ``"input"``: ``G_R(t) = W_G X(t)^T``, ``X_G(t) = G_R(t) X(t)``, region values
        ``V_R(t) = X_G(t) W_V^R + b`` (one bias per region), ``A_R(t) = G_R(t)^T (M_R V_R)(t)``.
        ``"value"``: ``V(t) = X(t) W_V^R + b`` at every pixel, ``G_R(t) = W_G V(t)^T``,
        ``X_G(t) = G_R(t) V(t)``, ``A_R(t) = G_R(t)^T (M_R X_G)(t)``.
        """
        n, frames, h, w, channels = x_cl.shape
        if self.region_source == "value":
            values = self.region_value(x_cl) if values is None else values  # V(t), or given by forward
            values = values.reshape(n, frames, h * w, self.inner_channels)
            transform = self.region_transform(values)  # G_R(t)^T: (N, T, HW, K)
            region_values = torch.einsum("ntpk,ntpc->ntkc", transform, values)  # X_G(t) = G_R(t) V(t)
        else:
            pixels = x_cl.reshape(n, frames, h * w, channels)
            transform = self.region_transform(pixels)  # G_R(t)^T: (N, T, HW, K)
            regions = torch.einsum("ntpk,ntpc->ntkc", transform, pixels)  # X_G(t) = G_R(t) X(t)
            region_values = self.region_value(regions)  # V_R(t) = X_G(t) W_V^R + b, per region
        width = self.inner_channels
        matrix = self.effective_matrix(self.region_matrix, frames)
        mixed = temporal_mix(matrix, region_values, self.head_mode, self.num_groups,
                             use_triton(self.block_name, self.kernel, region_values))  # M_R X_G
        back = torch.einsum("ntpk,ntkc->ntpc", transform, mixed)  # A_R(t) = G_R(t)^T (M_R X_G)(t)
        return back.reshape(n, frames, h, w, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input(self.block_name, x, self.channels)
        self.check_frames(x)
        x_cl = token_view(x)  # the projections read x itself, no channels-last copy
        pixel_values = region_values = None
        if self.pixel_value is not None and self.region_value is not None and self.region_source == "value":
            # V_P and V_R read the same input: one GEMM with the stacked weights (same function,
            # one input gradient instead of two plus their sum).
            pixel_values, region_values = fused_projections([self.pixel_value, self.region_value], x_cl)
        branches = []
        if self.pixel_value is not None:
            branches.append(norm_tokens(self.pixel_out_norm,
                                        self.pixel_out_proj(self.pixel_branch(x_cl, pixel_values))))
        if self.region_value is not None:
            branches.append(norm_tokens(self.region_out_norm,
                                        self.region_out_proj(self.region_branch(x_cl, region_values))))
        # Y = X + BN_P(.) + BN_R(.): the branches summed channels-last, then one residual add.
        return add_tokens(x, branches[0] if len(branches) == 1 else branches[0] + branches[1])


@register_block(
    "gta", needs_num_frames=True,
    description="spatial self-attention + Global Temporal Attention (He et al. 2021, eq. 3, 5-8)",
)
class GTABlock(Decoupled):
    """GTA block: SA (eq. 3) followed by :class:`GlobalTemporalAttention` (eq. 5-8), Fig. 2(c).

    ``spatial=False`` drops SA (Table 9 "+ Pixel GTA" rows); ``pixel``/``region``/``head_mode``
    select the Table 4 and Table 11 variants; ``num_groups`` (Fig. 4) and ``num_regions``
    (Table 10) their sizes. ``use_scale``/``attention_impl``/``chunk_size``/``pool_position``
    configure SA (``pool_position="before"``: keys/values pooled before their projections, the
    SlowFast rows of Table 1).
    """

    block_name = "gta"

    def __init__(
        self,
        channels: int,
        num_frames: int,
        spatial: bool = True,
        pixel: bool = True,
        region: bool = True,
        head_mode: str = "cross_channel",
        num_groups: int = 8,
        num_regions: int | None = None,
        region_source: str = "value",
        inner_channels: int | None = None,
        temporal_resize: bool = False,
        use_scale: bool = True,
        attention_impl: str = "auto",
        chunk_size: int = 512,
        pool_position: str = "after",
        kernel: str = "auto",
    ):
        super().__init__(
            channels,
            num_frames,
            spatial=spatial_in_front(self.block_name, spatial, channels, inner_channels, use_scale, attention_impl,
                                     chunk_size, pool_position),
            temporal=GlobalTemporalAttention(
                channels, num_frames, inner_channels, pixel, region, head_mode, num_groups,
                num_regions, region_source, temporal_resize, kernel=kernel,
            ),
        )
