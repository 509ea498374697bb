"""Bilinear Attentional Transforms (Chi, Yuan, Mu, Wang, "Non-Local Neural Networks with Grouped
Bilinear Attentional Transforms", CVPR 2020): the 2D BAT block ``bat`` and the 3D one ``bat3d``.

Per frame (sec. 3.2-3.3, Fig. 2-3), with ``X`` the block input reduced to C/2 channels::

    F      = ReLU(BN(conv1x1(X)))                      C/2 -> C' = k channels (the predictor's input)
    F^rp_i = max over the rows of row block i and all columns  (eq. 5; eq. 3 when s = H)
    F^cp_j = max over the columns of column block j and all rows (eq. 6; eq. 4 when s = W)
    P_g    = conv over all s pooled rows of F^rp   (s x s per group g = 1..k; "full receptive field")
    Q_g    = conv over all s pooled columns of F^cp
    P_g, Q_g normalised: rows of P, columns of Q (eq. 2)
    P_g^full = P_g (x) I_{H/s},  Q_g^full = Q_g (x) I_{W/s}   (Fig. 3: each entry copied along the
                                                                diagonal of its H/s x H/s block)
    Y_c    = P_g^full X_c Q_g^full for every channel c of group g (eq. 1)

``bat3d`` then mixes time (sec. 3.4, eq. 7): ``F`` averaged over space and pooled into ``ts``
temporal blocks, a conv over all ``ts`` steps predicts ``T_g`` (ts x ts) for each of ``tk``
temporal groups, normalised by rows and expanded to T x T as above (Table 9's block-based temporal
matrix when T > ts), and ``Z_c[t] = sum_t' T_g[t, t'] Y_c[t']``.

After the transform: a 1x1 conv C/2 -> C/2 (+BN, ReLU), the 1x1 expansion C/2 -> C (+BN, ReLU),
dropout and the residual addition. Widths, pooling, layer order and initialisation follow the
authors' released code (BA-Transform/BAT-Image-Classification and BAT-Video-Classification); the
parameter counts of Tables 2, 4, 6, 7 and 8 come out exactly (``docs/blocks.md``).

The Kronecker expansions are built by one broadcast multiplication with an identity (no
concatenation per call) and applied as dense H x H / W x W / T x T matrix products, which is what
the papers' FLOP counts assume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ShapeError
from ._attention import check_video_input
from .registry import register_block

NORMALISATIONS = ("l1", "softmax", "sigmoid")
MATRIX_MODES = ("block_based", "full_resolution", "downsampling")


def _pair(name: str, value) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ConfigError(f"block 'bat': {name} must be a positive int or a pair of them, got {value!r}")
    return int(value[0]), int(value[1])


def normalise(matrix: torch.Tensor, dim: int, how: str, eps: float = 1e-6) -> torch.Tensor:
    """Make ``matrix`` non-negative and sum to 1 along ``dim``.

    ``l1``: ReLU then divide by the sum (eq. 2; ``eps`` keeps an all-zero line at 0 instead of 0/0);
    ``softmax``: the released video code; ``sigmoid``: sigmoid then divide by the sum (the released
    image code).
    """
    if how == "softmax":
        return torch.softmax(matrix, dim=dim)
    positive = F.relu(matrix) if how == "l1" else torch.sigmoid(matrix)
    return positive / (positive.sum(dim=dim, keepdim=True) + (eps if how == "l1" else 0.0))


def block_expand(matrix: torch.Tensor, repeat: int) -> torch.Tensor:
    """``(..., s, s)`` -> ``(..., s*r, s*r)``: ``matrix (x) I_r`` (Fig. 3), one broadcast product."""
    if repeat == 1:
        return matrix
    *lead, s, s2 = matrix.shape
    eye = torch.eye(repeat, dtype=matrix.dtype, device=matrix.device)
    full = matrix[..., :, None, :, None] * eye[:, None, :]
    return full.reshape(*lead, s * repeat, s2 * repeat)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU())


class BATBase(nn.Module):
    """Shared body of ``bat`` and ``bat3d``; see the module docstring."""

    block_name = "bat"
    identity_at_init = False  # the release initialises every BN gamma to 1 (zero_init=True: identity)

    def __init__(self, channels: int, *, reduction: int = 2, s=7, k: int = 8, predictor_channels: int | None = None,
                 normalisation: str = "l1", matrix: str = "block_based", tk: int = 0, ts: int | None = None,
                 dropout: float = 0.0, zero_init: bool = False):
        super().__init__()
        name = self.block_name
        if not isinstance(reduction, int) or reduction < 1 or channels % reduction:
            raise ConfigError(f"block {name!r}: reduction must be a positive int dividing C={channels}, "
                              f"got {reduction!r}")
        inner = channels // reduction
        if not isinstance(k, int) or k < 0 or (k and inner % k):
            raise ConfigError(f"block {name!r}: k (attention groups) must be 0 or a positive int dividing the "
                              f"inner width {inner}, got {k!r}")
        if not isinstance(tk, int) or tk < 0 or (tk and inner % tk):
            raise ConfigError(f"block {name!r}: tk (temporal groups) must be 0 or a positive int dividing the "
                              f"inner width {inner}, got {tk!r}")
        if normalisation not in NORMALISATIONS:
            raise ConfigError(f"block {name!r}: normalisation must be one of {', '.join(NORMALISATIONS)}, "
                              f"got {normalisation!r}")
        if matrix not in MATRIX_MODES:
            raise ConfigError(f"block {name!r}: matrix must be one of {', '.join(MATRIX_MODES)}, got {matrix!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"block {name!r}: dropout must be in [0, 1), got {dropout!r}")
        self.channels, self.inner_channels = channels, inner
        self.s_h, self.s_w = _pair("s", s)
        self.k, self.tk = k, tk
        self.ts = ts
        self.normalisation, self.matrix = normalisation, matrix
        self.keep_attention = False  # set True to store eq. 8's maps in ``last_attention`` (output unchanged)
        self.last_attention: torch.Tensor | None = None
        width = predictor_channels if predictor_channels is not None else max(k, tk)
        self.reduce = _conv_bn_relu(channels, inner)
        if k or tk:
            if not isinstance(width, int) or width < 1:
                raise ConfigError(f"block {name!r}: predictor_channels must be a positive int, got {width!r}")
            self.squeeze = _conv_bn_relu(inner, width)
        if k:
            # P: one conv reading all s_h pooled rows (an s_h x 1 kernel), s_h*s_h*k outputs; Q likewise.
            self.row_conv = nn.Conv1d(width, self.s_h * self.s_h * k, self.s_h)
            self.col_conv = nn.Conv1d(width, self.s_w * self.s_w * k, self.s_w)
        if tk:
            if not isinstance(ts, int) or ts < 1:
                raise ConfigError(f"block {name!r}: ts (temporal blocks) must be a positive int, got {ts!r}")
            self.time_conv = nn.Conv1d(width, ts * ts * tk, ts)
        self.mix = _conv_bn_relu(inner, inner)
        self.expand = _conv_bn_relu(inner, channels)
        self.dropout = nn.Dropout3d(dropout)
        self.reset_parameters(zero_init)

    def reset_parameters(self, zero_init: bool = False) -> None:
        """The release: convolutions Kaiming-normal (fan_out, ReLU) with zero bias, BN gamma 1 and beta 0;
        ``zero_init`` sets the output BN's gamma to 0 so that the block starts as the identity."""
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init:
            nn.init.zeros_(self.expand[1].weight)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, s=({self.s_h}, {self.s_w}), k={self.k}, tk={self.tk}, ts={self.ts}, "
                f"normalisation={self.normalisation!r}, matrix={self.matrix!r}")

    # --- the transformation predictor ------------------------------------------------------------------------
    def spatial_matrices(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised ``P`` ``(B, k, s_h, s_h)`` and ``Q`` ``(B, k, s_w, s_w)`` from the predictor input
        ``F`` ``(B, C', H, W)`` (B = frames)."""
        batch, width, height, wide = features.shape
        rows = features.amax(dim=3).view(batch, width, self.s_h, height // self.s_h).amax(dim=3)
        cols = features.amax(dim=2).view(batch, width, self.s_w, wide // self.s_w).amax(dim=3)
        p = self.row_conv(rows).view(batch, self.k, self.s_h, self.s_h)
        q = self.col_conv(cols).view(batch, self.k, self.s_w, self.s_w)
        return normalise(p, -1, self.normalisation), normalise(q, -2, self.normalisation)

    def temporal_matrix(self, features: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """Normalised ``T`` ``(N, tk, ts, ts)`` from ``F`` ``(N*T, C', H, W)``."""
        pooled = features.mean(dim=(2, 3)).view(batch, frames, -1).transpose(1, 2)
        pooled = pooled.reshape(batch, pooled.shape[1], self.ts, frames // self.ts).mean(dim=3)
        t = self.time_conv(pooled).view(batch, self.tk, self.ts, self.ts)
        return normalise(t, -1, self.normalisation)

    def _check_sizes(self, height: int, width: int, frames: int) -> None:
        name = self.block_name
        if self.k and self.matrix == "full_resolution" and (height, width) != (self.s_h, self.s_w):
            raise ShapeError(f"block {name!r} (matrix='full_resolution') was built for {self.s_h}x{self.s_w} "
                             f"feature maps (s), got {height}x{width}")
        if self.k and (height % self.s_h or width % self.s_w):
            raise ShapeError(f"block {name!r}: the feature map {height}x{width} must divide into s = "
                             f"{self.s_h}x{self.s_w} blocks (set the option s to a divisor of H and W)")
        if self.tk and frames % self.ts:
            raise ShapeError(f"block {name!r}: T={frames} frames must divide into ts={self.ts} temporal blocks")

    # --- forward ---------------------------------------------------------------------------------------------
    def transform(self, x: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """Eq. 1 (and eq. 7) on the reduced map ``x`` ``(N*T, C/2, H, W)``; returns the same shape."""
        nt, inner, height, width = x.shape
        if not (self.k or self.tk):
            return x
        features = self.squeeze(x)
        y = x
        if self.k:
            p, q = self.spatial_matrices(features)
            group = inner // self.k
            if self.matrix == "downsampling":
                small = F.adaptive_avg_pool2d(x, (self.s_h, self.s_w)).view(nt, self.k, group, self.s_h, self.s_w)
                y = (p.unsqueeze(2) @ small @ q.unsqueeze(2)).view(nt, inner, self.s_h, self.s_w)
            else:
                p_full = block_expand(p, height // self.s_h)
                q_full = block_expand(q, width // self.s_w)
                y = (p_full.unsqueeze(2) @ x.view(nt, self.k, group, height, width) @ q_full.unsqueeze(2))
                y = y.view(nt, inner, height, width)
            if self.keep_attention:
                self.last_attention = self.reprojected_attention(p, q, height, width).view(
                    batch, frames, self.k, height, width).detach()
        if self.tk:
            t_full = block_expand(self.temporal_matrix(features, batch, frames), frames // self.ts)
            h2, w2 = y.shape[-2:]
            # reshape: y is the reduced map itself when k=0, channels-last for a channels-last input
            grouped = y.reshape(batch, frames, self.tk, inner // self.tk * h2 * w2).transpose(1, 2)
            y = (t_full @ grouped).transpose(1, 2).reshape(nt, inner, h2, w2)
        return y

    def reprojected_attention(self, p: torch.Tensor, q: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Eq. 8, ``W = P^T A Q^T`` with ``A`` all ones, for the full-size ``P``/``Q`` of each group:
        ``W[h, w] = (sum_i P[i, h]) (sum_j Q[w, j])``; ``(B, k, H, W)``."""
        if self.matrix == "downsampling":
            p_full, q_full = p, q
        else:
            p_full, q_full = block_expand(p, height // self.s_h), block_expand(q, width // self.s_w)
        return p_full.sum(dim=-2).unsqueeze(-1) * q_full.sum(dim=-1).unsqueeze(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input(self.block_name, x, self.channels)
        batch, channels, frames, height, width = x.shape
        self._check_sizes(height, width, frames)
        folded = x.transpose(1, 2).reshape(batch * frames, channels, height, width)
        y = self.mix(self.transform(self.reduce(folded), batch, frames))
        if y.shape[-2:] != (height, width):  # downsampling: bilinear back to full resolution
            y = F.interpolate(y, size=(height, width), mode="bilinear", align_corners=False)
        y = self.expand(y).view(batch, frames, channels, height, width).transpose(1, 2)
        return x + self.dropout(y)


@register_block("bat", description="2D BAT block (Chi et al. 2020): grouped bilinear transforms P X Q per frame")
class BATBlock(BATBase):
    """2D BAT block (BAT sec. 3.2-3.3): per frame, ``Y_c = P_g X_c Q_g`` with data-dependent ``P``, ``Q``.

    Args:
        channels: C (input and output).
        reduction: inner width C / reduction (2 in the paper and the release).
        s: ``s_h = s_w`` or a pair: the block-based matrix size (7); ``P``/``Q`` are s x s, expanded.
        k: attention groups (8 for the Kinetics models, 4 for ImageNet); ``0``: P = Q = identity and no
            predictor (Table 4's ``k = 0`` baseline).
        predictor_channels: C', the predictor's width (default k, as in the paper and the release).
        normalisation: ``"l1"`` (eq. 2, default), ``"softmax"`` (released video code) or ``"sigmoid"``
            (released image code: sigmoid, then divide by the sum).
        matrix: Table 2's variants: ``"block_based"`` (default), ``"full_resolution"`` (P, Q predicted at
            H x W directly: set ``s`` to the feature map size), ``"downsampling"`` (X average-pooled to
            s x s, transformed and mixed there, then upsampled bilinearly).
        dropout: channel dropout before the residual addition (``Dropout3d``; 0.2 in the release for
            ResNet-50 and deeper).
        zero_init: start the output BN at gamma 0 (identity at init); the release uses 1.
    """

    scope = "frame"

    def __init__(self, channels: int, reduction: int = 2, s=7, k: int = 8, predictor_channels: int | None = None,
                 normalisation: str = "l1", matrix: str = "block_based", dropout: float = 0.0,
                 zero_init: bool = False):
        super().__init__(channels, reduction=reduction, s=s, k=k, predictor_channels=predictor_channels,
                         normalisation=normalisation, matrix=matrix, dropout=dropout, zero_init=zero_init)


@register_block("bat3d", needs_num_frames=True,
                description="3D BAT block (Chi et al. 2020): 2D BAT per frame, then a predicted T x T along time")
class BAT3DBlock(BATBase):
    """3D BAT block (BAT sec. 3.4, eq. 7): the 2D block's transform, then ``Z_c = T_g Y_c`` along time.

    Args (besides those of ``bat``):
        tk: temporal attention groups (4 in Table 8; 0 gives the 2D block).
        ts: temporal blocks of ``T`` (default: T of the site when T <= 8, else 8, Table 9's 8 x 8); the
            clip's T must be a multiple of it.
    """

    block_name = "bat3d"

    def __init__(self, channels: int, num_frames: int, reduction: int = 2, s=7, k: int = 8, tk: int = 4,
                 ts: int | None = None, predictor_channels: int | None = None, normalisation: str = "l1",
                 matrix: str = "block_based", dropout: float = 0.0, zero_init: bool = False):
        if ts is None:
            ts = num_frames if num_frames <= 8 else 8
        super().__init__(channels, reduction=reduction, s=s, k=k, predictor_channels=predictor_channels,
                         normalisation=normalisation, matrix=matrix, tk=tk, ts=ts, dropout=dropout,
                         zero_init=zero_init)


def collect_attention(model: nn.Module, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Eq. 8's re-projected attention ``(N, T, k, H, W)`` of every BAT block in ``model`` for ``inputs``
    (run once in the model's current mode, without gradients), keyed by module path."""
    blocks = [(name, m) for name, m in model.named_modules() if isinstance(m, BATBase) and m.k]
    for _, block in blocks:
        block.keep_attention, block.last_attention = True, None
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for _, block in blocks:
            block.keep_attention = False
    return {name: block.last_attention for name, block in blocks}
