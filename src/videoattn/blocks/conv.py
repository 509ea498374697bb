"""A plain spatio-temporal convolution as a block, for sites that replace a backbone's convolution.

``conv`` is a ``k_t x k x k`` ``Conv3d`` with "same" padding, an optional spatial stride and output
width: placed at ResNet's ``replace_conv2`` site it turns a bottleneck's 3x3 convolution into a
3x3x3 one (an R3D/I3D-style bottleneck) while the rest of the block, and its BN, stay. Kaiming
normal (fan_out) initialisation as the ResNet trunk; its weights are new, so pretrained loading
skips the 2D kernel it replaced (use ``videoattn.backbones.load_pretrained`` reports to see it).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ._attention import check_video_input
from .registry import register_block


@register_block("conv", description="a k_t x k x k 3D convolution (for replace sites), no BN or activation")
class ConvBlock(nn.Module):
    """``(N, C, T, H, W) -> (N, out_channels, T, H/stride, W/stride)``.

    Args:
        channels: input channels C.
        out_channels: output channels (default C).
        kernel_size: ``k`` or ``(k_t, k, k)``; odd sizes only, so padding keeps T and the grid.
        stride: spatial stride (time is never strided: the backbone tracks T itself).
        bias: add a bias (default False: a BN follows in a ResNet).
    """

    identity_at_init = False

    def __init__(self, channels: int, out_channels: int | None = None, kernel_size=(3, 3, 3), stride: int = 1,
                 bias: bool = False):
        super().__init__()
        kernel = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(kernel) != 3 or not all(isinstance(k, int) and k > 0 and k % 2 == 1 for k in kernel):
            raise ConfigError(f"block 'conv': kernel_size must be an odd int or three odd ints (k_t, k, k), "
                              f"got {kernel_size!r}")
        if not isinstance(stride, int) or stride < 1:
            raise ConfigError(f"block 'conv': stride must be a positive int, got {stride!r}")
        self.channels = channels
        self.out_channels = channels if out_channels is None else out_channels
        self.conv = nn.Conv3d(channels, self.out_channels, kernel, stride=(1, stride, stride),
                              padding=tuple(k // 2 for k in kernel), bias=bias)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if bias:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input("conv", x, self.channels)
        return self.conv(x)
