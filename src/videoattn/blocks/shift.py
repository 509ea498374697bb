"""Temporal Shift Module (TSM; Lin et al., ICCV 2019) as a block.

A fraction ``1/n_div`` of the channels is shifted one frame back in time (frame t receives frame t+1's
features), another ``1/n_div`` one frame forward (frame t receives frame t-1's), the rest stay; frames
shifted in from outside the clip are zeros. This is the "residual shift" the TSM backbone places in
the residual branch before ``conv1`` of every bottleneck. The channel assignment (first fold shifted
from the future, second fold from the past) follows the official implementation, so its
checkpoints keep their meaning.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ShapeError
from .registry import register_block


def temporal_shift(x: torch.Tensor, n_div: int = 8) -> torch.Tensor:
    """Shift channels of a ``(N, C, T, H, W)`` tensor along T (see module docstring).

    One pass over memory each way: the output is written slice by slice into an uninitialised
    tensor (only the vacated edge frames are zeroed), and with autograd the backward pass is the
    opposite shift written the same way (slice assignment into ``zeros_like`` cost a full-size fill
    and, backwards, a full-size zero gradient per slice: ~12% of a TSM-R50 training step on CPU).
    """
    if x.dim() != 5:
        raise ShapeError(f"temporal_shift expects (N, C, T, H, W), got shape {tuple(x.shape)}")
    fold = x.shape[1] // n_div
    if torch.is_grad_enabled() and x.requires_grad:
        return _Shift.apply(x, fold, False)
    return _shift(x, fold, False)


def _shift(x: torch.Tensor, fold: int, reverse: bool) -> torch.Tensor:
    """The shift (``reverse=False``) or its adjoint, the opposite shift (``reverse=True``)."""
    out = torch.empty_like(x)
    if x.shape[2] == 1:
        out[:, : 2 * fold] = 0
    else:
        # forward: fold 1 takes frame t+1 (future), fold 2 frame t-1 (past); reverse swaps them
        future, past = (slice(fold, 2 * fold), slice(0, fold)) if reverse else (slice(0, fold), slice(fold, 2 * fold))
        out[:, future, :-1] = x[:, future, 1:]
        out[:, future, -1] = 0
        out[:, past, 1:] = x[:, past, :-1]
        out[:, past, 0] = 0
    out[:, 2 * fold :] = x[:, 2 * fold :]
    return out


class _Shift(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, fold: int, reverse: bool) -> torch.Tensor:
        ctx.fold, ctx.reverse = fold, reverse
        return _shift(x, fold, reverse)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _Shift.apply(grad, ctx.fold, not ctx.reverse), None, None


@register_block("tsm", description="temporal shift of 1/n_div channels each way (TSM), no parameters")
class TemporalShift(nn.Module):
    """Parameter-free temporal shift; ``n_div=8`` shifts 1/8 of the channels each way."""

    identity_at_init = False

    def __init__(self, channels: int, n_div: int = 8):
        super().__init__()
        if n_div < 2:
            raise ShapeError(f"tsm: n_div must be >= 2 (1/n_div of channels shifted each way), got {n_div}")
        if channels < n_div:
            raise ShapeError(f"tsm: channels ({channels}) must be >= n_div ({n_div}) so a fold is non-empty")
        self.channels = channels
        self.n_div = n_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != self.channels:
            raise ShapeError(
                f"tsm: expected (N, {self.channels}, T, H, W), got shape {tuple(x.shape)}"
            )
        return temporal_shift(x, self.n_div)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, n_div={self.n_div}"
