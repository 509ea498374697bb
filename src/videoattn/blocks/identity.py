"""The trivial block: returns its input. Used for "no block" and to test insertion plans."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_block


@register_block("identity", description="returns its input unchanged (no temporal modelling)")
class IdentityBlock(nn.Module):
    identity_at_init = True

    def __init__(self, channels: int, num_frames: int | None = None):
        super().__init__()
        self.channels = channels
        self.num_frames = num_frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
