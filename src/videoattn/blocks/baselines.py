"""Attention baselines the RNL and GTA papers compare against, from their own papers' equations,
extended from images to video by pooling over T*H*W where the image paper pools over H*W.

``se`` (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018, eq. 2-4):
    ``z = mean_THW(x)``, ``s = sigmoid(W2 ReLU(W1 z))``, ``y = s * x`` (per channel), W1: C -> C/r.
``cbam`` (Woo et al., "CBAM", ECCV 2018, eq. 1-3):
    channel attention ``Mc = sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` (shared MLP C -> C/r -> C),
    ``x' = Mc * x``; spatial attention ``Ms = sigmoid(conv([mean_c(x'); max_c(x')]))`` with a 7x7
    kernel applied to each frame (``spatial_kernel`` (1, 7, 7)), ``y = Ms * x'``.
``gc`` (Cao et al., "GCNet", ICCVW 2019, eq. 3 / Fig. 4(d)):
    ``alpha = softmax_j(W_k x_j)``, ``c = sum_j alpha_j x_j``,
    ``y_i = x_i + W_v2 ReLU(LN(W_v1 c))``; W_v2 zero-initialised (GCNet sec. 4.1), so the block is
    the identity at init.

SE, CBAM and GC sit before the residual addition in their papers; the presets put them at the
``before_residual`` site.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._attention import check_video_input, inner_width
from .registry import register_block


def _reduction(block: str, channels: int, reduction) -> int:
    if not isinstance(reduction, int) or reduction <= 0:
        raise ConfigError(f"block {block!r}: reduction must be a positive int, got {reduction!r}")
    return inner_width(block, channels, None, reduction)


@register_block("se", description="Squeeze-and-Excitation (Hu et al. 2018): x * sigmoid(W2 ReLU(W1 mean(x)))")
class SqueezeExcitation(nn.Module):
    """``y = x * sigmoid(W2 ReLU(W1 mean_THW(x)))`` (SE eq. 2-4). ``reduction``: r of W1 (16)."""

    identity_at_init = False

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = _reduction("se", channels, reduction)
        self.channels = channels
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input("se", x, self.channels)
        scale = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3, 4))))))
        return x * scale[:, :, None, None, None]


@register_block("cbam", description="CBAM (Woo et al. 2018): channel attention then spatial attention")
class CBAM(nn.Module):
    """Channel attention then spatial attention (CBAM eq. 1-3, sec. 3).

    Args:
        channels: C.
        reduction: r of the shared MLP (16).
        spatial_kernel: kernel of the spatial attention conv over the [mean; max] maps (odd sizes):
            ``(1, 7, 7)``, the paper's 7x7 on each frame, by default.
    """

    identity_at_init = False

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: Sequence[int] = (1, 7, 7)):
        super().__init__()
        hidden = _reduction("cbam", channels, reduction)
        kernel = tuple(spatial_kernel) if isinstance(spatial_kernel, Sequence) else ()
        if len(kernel) != 3 or not all(isinstance(k, int) and k >= 1 and k % 2 for k in kernel):
            raise ConfigError(f"block 'cbam': spatial_kernel must be three odd ints (t, h, w), got {spatial_kernel!r}")
        self.channels = channels
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.spatial = nn.Conv3d(2, 1, kernel, padding=tuple(k // 2 for k in kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input("cbam", x, self.channels)
        n, c = x.shape[:2]
        pooled = torch.stack([x.mean(dim=(2, 3, 4)), x.reshape(n, c, -1).amax(dim=-1)])  # (2, N, C)
        channel = torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))).sum(dim=0))
        x = x * channel[:, :, None, None, None]
        maps = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(maps))


@register_block("gc", description="GCNet global context block (Cao et al. 2019): x + W2 ReLU(LN(W1 context))")
class GlobalContext(nn.Module):
    """``y_i = x_i + W_v2 ReLU(LN(W_v1 sum_j softmax_j(W_k x_j) x_j))`` (GCNet eq. 3).

    Args:
        channels: C.
        reduction: r of the bottleneck W_v1: C -> C/r (16).
    """

    identity_at_init = True

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = _reduction("gc", channels, reduction)
        self.channels = channels
        # No bias: softmax over positions is invariant to adding one constant to every logit, so a bias
        # here (the release's conv_mask has one) can never receive a gradient or change the output.
        self.key = nn.Conv3d(channels, 1, 1, bias=False)
        self.fc1 = nn.Conv3d(channels, hidden, 1)
        self.norm = nn.LayerNorm(hidden)
        self.fc2 = nn.Conv3d(hidden, channels, 1)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input("gc", x, self.channels)
        n, c = x.shape[:2]
        weights = torch.softmax(self.key(x).reshape(n, -1), dim=-1)  # (N, THW)
        context = torch.bmm(x.reshape(n, c, -1), weights.unsqueeze(-1)).reshape(n, c, 1, 1, 1)
        hidden = self.fc1(context)
        hidden = self.norm(hidden.flatten(1)).reshape(hidden.shape)
        return x + self.fc2(F.relu(hidden))
