"""Gate-Shift Module (GSM; Sudhakaran, Escalera, Lanz, CVPR 2020) and Self-Attention Gate-Shift (SA-GSM).

``gsm`` (SA-GSM report sec. 4.1, GSM's published formulation). The input ``X`` of shape
``(N, C, T, H, W)`` is split into two channel halves ``X = [X_1, X_2]``; one 3x3x3 convolution with
two groups (one output map per half, zero-initialised, with a bias) followed by tanh gives a gate
map per half, and::

    Y_k = tanh(W_k * X_k) . X_k        R_k = X_k - Y_k
    Z_1 = shift_fw(Y_1) + R_1          Z_2 = shift_bw(Y_2) + R_2

``shift_fw`` moves features one frame forward in time (frame t receives frame t-1's, frame 0 zeros),
``shift_bw`` one frame backward (frame t receives frame t+1's, the last frame zeros). With the gate
at zero the block is the identity.

Options that follow the released code (``swathikirans/GSM``, ``gsm.py``) instead of the equations:

* ``gate_norm=True``: the gate convolution sees ``ReLU(BN(X))`` instead of ``X`` (the released module
  normalises its input for the gate only; the gated and residual paths use ``X``). The BN-Inception
  presets use it because GSM sits between a 1x1 convolution and its BatchNorm there, where ``X`` is
  not normalised.
* ``released_order=True``: the first half receives the *next* frame's features and the second the
  previous frame's (the release's ``lshift``/``rshift``), and the output channels of each half are
  interleaved as the release's final view/permute does (channel ``i*C/4 + j`` of a half goes to
  ``2*j + i``), so at initialisation the block is a fixed channel permutation, not the identity.

The gate is computed without PyTorch's grouped 3x3x3 convolution with two output channels, which
runs at about 1 GMAC/s on CPU (``gate_impl="conv3d"`` keeps it as the reference path): both groups'
27 kernel taps are one batched matrix product ``(27, C/2) x (C/2, H*W)`` per frame on the
frame-batched layout the backbones use (``gate_impl="matmul"``, the default), and the 27 two-channel
tap maps are summed at their space-time offsets (:class:`_TapSum`). The ``tanh``, gating, residual
and both shifts are one fused op (:mod:`.kernels.gate_shift`): a Triton kernel on CUDA (``kernel``
option, ``docs/blocks.md`` "Fused Triton kernels"), else an autograd function with a written-out
backward (no concatenation, permuted copy or per-slice zero-filled buffer of the whole tensor).

``sa_gsm`` (SA-GSM report eq. 1-4): GSM followed by SAGAN-style self-attention within each frame::

    s_ij = f(x_i)^T g(x_j),  beta_ji = softmax_i(s_ij),  o_j = v(sum_i beta_ji h(x_i)),
    y_j = gamma o_j + x_j

``f``, ``g`` map C -> C/8 (``reduction``); with ``value="paper"`` (default) ``h`` maps C -> C/8 and
``v`` maps C/8 -> C (SAGAN, Zhang et al. 2019, sec. 3, with C-bar = C/8); ``value="released"`` is
the SAGAN code's form the SA-GSM count (11.0 M) implies: ``h`` maps C -> C and there is no ``v``.
All projections are 1x1 convolutions with biases (as in the SAGAN code); ``gamma`` starts at 0, so
a fresh block is the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._attention import (
    PointwiseProjection,
    batch_norm_standard,
    capturing_graph,
    channels_first,
    channels_last,
    check_attention_impl,
    check_video_input,
    fused_projections,
    softmax_attention,
)
from .kernels import check_kernel_choice, use_triton
from .kernels.gate_shift import gate_shift
from .registry import register_block

GATE_IMPLS = ("matmul", "conv3d")
VALUE_FORMS = ("paper", "released")


def _tap_windows(frames: int, height: int, width: int):
    """For each 3x3x3 tap ``(dt, dh, dw)``: the output window and the matching input window (zero
    padding: only the part of the output whose shifted position lies inside the clip)."""
    for dt in range(3):
        for dh in range(3):
            for dw in range(3):
                ot, oh, ow = dt - 1, dh - 1, dw - 1
                t0, t1 = max(0, -ot), frames - max(0, ot)
                h0, h1 = max(0, -oh), height - max(0, oh)
                w0, w1 = max(0, -ow), width - max(0, ow)
                if t0 < t1 and h0 < h1 and w0 < w1:
                    out = (slice(t0, t1), slice(h0, h1), slice(w0, w1))
                    source = (slice(t0 + ot, t1 + ot), slice(h0 + oh, h1 + oh), slice(w0 + ow, w1 + ow))
                    yield (dt, dh, dw), out, source


class _TapSum(torch.autograd.Function):
    """Sum 3x3x3 kernel-tap maps with their offsets (zero outside the clip).

    ``taps`` is ``(N, T, G, 3, 3, 3, H, W)``: tap ``(dt, dh, dw)`` of group g, frame t at ``(h, w)``
    holds ``sum_c W_g[c, dt, dh, dw] X_g[c, t, h, w]``. Returns ``(N, T, G, H, W)`` with
    ``out[t, g, h, w] = sum_taps taps[t + dt - 1, g, (dt, dh, dw), h + dh - 1, w + dw - 1]``: the
    cross-correlation of a padding-1 convolution. A custom backward writes each tap's gradient
    window once into one buffer (autograd's slice backward would allocate a full-size zero tensor
    per tap).
    """

    @staticmethod
    def forward(ctx, taps: torch.Tensor) -> torch.Tensor:
        batch, frames, groups, _, _, _, height, width = taps.shape
        out = taps.new_zeros(batch, frames, groups, height, width)
        for (dt, dh, dw), (t, h, w), (ts, hs, ws) in _tap_windows(frames, height, width):
            out[:, t, :, h, w] += taps[:, ts, :, dt, dh, dw, hs, ws]
        ctx.shape = taps.shape
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        frames, height, width = ctx.shape[1], ctx.shape[6], ctx.shape[7]
        grad_taps = grad.new_zeros(ctx.shape)
        for (dt, dh, dw), (t, h, w), (ts, hs, ws) in _tap_windows(frames, height, width):
            grad_taps[:, ts, :, dt, dh, dw, hs, ws] = grad[:, t, :, h, w]
        return grad_taps


def _tap_sum_traceable(taps: torch.Tensor) -> torch.Tensor:
    """:class:`_TapSum`'s forward without in-place writes: zero-pad frames, rows and columns by one and
    add the 27 shifted windows."""
    frames, height, width = taps.shape[1], taps.shape[6], taps.shape[7]
    padded = F.pad(taps.permute(0, 2, 3, 4, 5, 1, 6, 7), (1, 1, 1, 1, 1, 1))  # (N, G, 3, 3, 3, T+2, H+2, W+2)
    out = None
    for dt in range(3):
        for dh in range(3):
            for dw in range(3):
                window = padded[:, :, dt, dh, dw, dt:dt + frames, dh:dh + height, dw:dw + width]
                out = window if out is None else out + window
    return out.transpose(1, 2)  # (N, T, G, H, W)


@register_block("gsm", description="Gate-Shift Module: tanh-gated halves shifted forward/backward in time (GSM)")
class GateShift(nn.Module):
    """GSM over ``(N, C, T, H, W)`` (module docstring). ``C`` must be even (a multiple of 4 with
    ``released_order``)."""

    identity_at_init = True

    def __init__(self, channels: int, gate_norm: bool = False, released_order: bool = False,
                 gate_impl: str = "matmul", kernel: str = "auto"):
        super().__init__()
        self.kernel = check_kernel_choice("gsm", kernel)
        if channels % (4 if released_order else 2):
            raise ConfigError(
                f"block 'gsm': channels must be divisible by {4 if released_order else 2} "
                f"({'released_order interleaves quarters' if released_order else 'two gated halves'}), got {channels}"
            )
        if gate_impl not in GATE_IMPLS:
            raise ConfigError(f"block 'gsm': gate_impl must be one of {', '.join(GATE_IMPLS)}, got {gate_impl!r}")
        self.channels = channels
        self.gate_impl = gate_impl
        self.gate = nn.Conv3d(channels, 2, kernel_size=3, padding=1, groups=2, bias=True)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        self.gate_bn = nn.BatchNorm3d(channels) if gate_norm else None
        self._set_order(released_order)

    def _set_order(self, released_order: bool) -> None:
        self.released_order = bool(released_order)
        self.identity_at_init = not self.released_order
        order = None
        if self.released_order:
            quarter, half = self.channels // 4, self.channels // 2
            first = [(k % 2) * quarter + k // 2 for k in range(half)]
            order = torch.tensor(first + [half + i for i in first], device=self.gate.weight.device)
        self.register_buffer("_order", order, persistent=False)

    def set_released_options(self, gate_norm: bool, released_order: bool) -> list[str]:
        """Switch this block to ``gate_norm`` / ``released_order`` in place (a released-checkpoint loader
        does, before filling the weights); a newly added gate BN starts as PyTorch's. Returns the options
        that changed, as ``name: old -> new``."""
        changed = []
        if released_order and self.channels % 4:
            raise ConfigError(f"block 'gsm': released_order needs channels divisible by 4 (released_order "
                              f"interleaves quarters), got {self.channels}")
        if bool(gate_norm) != (self.gate_bn is not None):
            changed.append(f"gate_norm: {self.gate_bn is not None} -> {bool(gate_norm)}")
            weight = self.gate.weight
            self.gate_bn = (nn.BatchNorm3d(self.channels, device=weight.device, dtype=weight.dtype)
                            if gate_norm else None)
        if bool(released_order) != self.released_order:
            changed.append(f"released_order: {self.released_order} -> {bool(released_order)}")
            self._set_order(released_order)
        return changed

    def gate_maps(self, x: torch.Tensor) -> torch.Tensor:
        """``tanh(W * X)`` (of ``ReLU(BN(X))`` with ``gate_norm``): ``(N, 2, T, H, W)``."""
        return torch.tanh(self.gate_logits(x))

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``W * X + b`` before the ``tanh`` (of ``ReLU(BN(X))`` with ``gate_norm``): ``(N, 2, T, H, W)``."""
        source = F.relu(batch_norm_standard(self.gate_bn, x)) if self.gate_bn is not None else x
        if self.gate_impl == "conv3d":
            return self.gate(source)
        batch, channels, frames, height, width = source.shape
        # (N*T, 2, C/2, H*W): a view when x is the backbone's frame-batched memory, else one copy
        frames_first = source.transpose(1, 2).reshape(batch * frames, 2, channels // 2, height * width)
        # each group's 27 taps x its C/2 channels: one batched matrix product for both groups
        taps = self.gate.weight.permute(0, 2, 3, 4, 1).reshape(2, 27, channels // 2)
        tap_maps = torch.matmul(taps, frames_first).view(batch, frames, 2, 3, 3, 3, height, width)
        summed = _tap_sum_traceable(tap_maps) if capturing_graph() else _TapSum.apply(tap_maps)
        pre_gate = summed + self.gate.bias.view(1, 1, 2, 1, 1)  # (N, T, 2, H, W)
        return pre_gate.transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input("gsm", x, self.channels)
        # tanh, gating, residual and both shifts: one fused op (Triton on CUDA; the out-of-place PyTorch
        # form while a graph is captured, since tracers record in-place slice writes wrongly)
        out = gate_shift(x, self.gate_logits(x), not self.released_order, use_triton("gsm", self.kernel, x))
        if self.released_order:
            out = out.index_select(1, self._order)
        return out

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, gate_norm={self.gate_bn is not None}, "
                f"released_order={self.released_order}, gate_impl={self.gate_impl!r}, kernel={self.kernel!r}")


class FrameSelfAttention(nn.Module):
    """SAGAN self-attention within each frame, ``y = gamma o + x`` (SA-GSM eq. 1-4, module docstring)."""

    def __init__(self, channels: int, reduction: int = 8, value: str = "paper", attention_impl: str = "auto"):
        super().__init__()
        if value not in VALUE_FORMS:
            raise ConfigError(f"block 'sa_gsm': value must be one of {', '.join(VALUE_FORMS)}, got {value!r}")
        if not isinstance(reduction, int) or reduction < 1 or channels // reduction < 1:
            raise ConfigError(
                f"block 'sa_gsm': reduction must be a positive int with channels // reduction >= 1 "
                f"(channels={channels}), got {reduction!r}")
        width = channels // reduction
        self.channels = channels
        self.attention_impl = check_attention_impl("sa_gsm", attention_impl)
        self.f = PointwiseProjection(channels, width, kernel_size=1)
        self.g = PointwiseProjection(channels, width, kernel_size=1)
        self.width = width
        self._build_value(value)
        self.gamma = nn.Parameter(torch.zeros(1))

    def _build_value(self, value: str, **factory) -> None:
        self.value_form = value
        self.h = PointwiseProjection(self.channels, self.width if value == "paper" else self.channels, kernel_size=1,
                                     **factory)
        self.v = PointwiseProjection(self.width, self.channels, kernel_size=1, **factory) if value == "paper" else None

    def set_value_form(self, value: str) -> list[str]:
        """Rebuild the value path in ``value``'s form in place (fresh ``h``/``v``, PyTorch's init; a
        released-checkpoint loader does, before filling the weights). Returns what changed."""
        if value not in VALUE_FORMS:
            raise ConfigError(f"block 'sa_gsm': value must be one of {', '.join(VALUE_FORMS)}, got {value!r}")
        if value == self.value_form:
            return []
        old = self.value_form
        weight = self.f.weight
        self._build_value(value, device=weight.device, dtype=weight.dtype)
        return [f"value: {old!r} -> {value!r}"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = channels_last(x)  # (N, T, H, W, C)
        batch, frames, height, width, channels = tokens.shape
        f, g, h = fused_projections([self.f, self.g, self.h], tokens)
        shape = (batch, frames, height * width, -1)
        # o_j = sum_i softmax_i(f_i . g_j) h_i: the query is g at j, the key f at i; no scaling (eq. 1-2)
        attended = softmax_attention(g.reshape(shape), f.reshape(shape), h.reshape(shape), 1.0,
                                     self.attention_impl)
        if self.v is not None:
            attended = self.v(attended)
        attended = attended.view(batch, frames, height, width, channels)
        return x + self.gamma * channels_first(attended)


@register_block("sa_gsm", description="GSM followed by SAGAN self-attention within each frame (SA-GSM)")
class SelfAttentionGateShift(nn.Module):
    """SA-GSM: :class:`GateShift` then :class:`FrameSelfAttention` (module docstring)."""

    identity_at_init = True

    def __init__(self, channels: int, reduction: int = 8, value: str = "paper", gate_norm: bool = False,
                 released_order: bool = False, gate_impl: str = "matmul", attention_impl: str = "auto",
                 kernel: str = "auto"):
        super().__init__()
        self.channels = channels
        self.gsm = GateShift(channels, gate_norm, released_order, gate_impl, kernel)
        self.attention = FrameSelfAttention(channels, reduction, value, attention_impl)

    def set_released_options(self, gate_norm: bool, released_order: bool, value: str) -> list[str]:
        """:meth:`GateShift.set_released_options` and :meth:`FrameSelfAttention.set_value_form` in place."""
        return self.gsm.set_released_options(gate_norm, released_order) + self.attention.set_value_form(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input("sa_gsm", x, self.channels)
        return self.attention(self.gsm(x))
