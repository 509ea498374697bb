"""Relational Self-Attention (RSA; Kim, Kwon, Kim, Kwak, Cho, NeurIPS 2021).

RSA replaces a convolution: it maps ``(N, C, T, H, W)`` to ``(N, C_out, T, H, W)`` (``H, W``
halved with ``stride=2``), mixing each position's ``M = k_t x k_h x k_w`` neighbourhood with a
*dynamic* kernel predicted from the query and the query-key correlations (the relational kernel),
applied to a context made of the neighbourhood's values and their self-correlation (the relational
context). There is no softmax. The notation (and the option and parameter names) follows the
authors' release; ``docs/blocks.md`` ("Relational Self-Attention") lists which equation each part
implements.

Per position ``p`` (``N_h`` heads, widths ``d_k``, ``d_v = C_out / N_h``, ``d_d``):

* one bias-free 1x1x1 ``projection`` gives ``N_h`` queries ``q_h`` (``d_k``), one shared key ``k``
  (``d_k``) and one shared value ``v`` (``d_v``), each L2-normalised over channels
  (``x / sqrt(sum x^2 + 1e-6)``); the neighbourhood of ``p`` is zero-padded at the borders;
* kernel ``kappa_h`` in ``R^{d_d}``: ``V``: ``q_h`` (needs ``d_k = d_d``); ``R``:
  ``kappa_h[d] = sum_{c,m} q_h[c] k_c(p+m) H1[c,d,m]`` (the Hadamard query-key correlation
  projected by ``H1``); ``VplusR``: the ``R`` kernel plus ``P1^T q_h``;
* context ``F`` in ``R^{d_v x d_d}``: ``V``: ``F[v,d] = sum_m H2[d,m] v_v(p+m)``; ``R``:
  ``G(V)^T F`` with ``G(V)[v,v'] = sum_m G[v',m] v_v(p+m)``, i.e. ``G (V V^T) H2^T``, the value
  self-correlation ``V V^T`` (``M x M``) projected by ``G`` and ``H2``; ``VplusR``:
  ``(G(V) + I)^T F`` (``I`` learnable, initialised to the identity);
* output ``y[v*N_h + h] = sum_d kappa_h[d] F[v, d]`` (the release's channel order: value-major,
  head-minor); with ``stride=2`` a 3x3 average pool, stride 2, padding 1 (as released).

The fast path (docs/blocks.md, "RSA benchmark", has the measurements):

* the projection and everything after it run position-major (``(N, T, H, W, channels)``);
* the three neighbourhood projections are 2D convolutions in channels-last layout over the ``k_t``
  temporally shifted copies of each channel (``H1`` grouped over the key channels; ``H2`` and ``G``
  fused into one convolution with the value channels folded into the batch), whose output is
  already position-major;
* the per-position contractions are one fused op (:mod:`.kernels.relational`): a Triton kernel on
  CUDA (``kernel`` option), else batched matrix products with a hand-written backward
  (:class:`~.kernels.relational.PositionProducts`), associated as ``y = (kappa F_V^T)(G(V) + I)`` (fewer products
  than the release's ``kappa ((G(V) + I)^T F_V)^T``; the same function);
* the clip is processed ``chunk_frames`` frames at a time (default 2, each with its ``k_t // 2``
  frames of temporal context); in training each chunk is recomputed in backward
  (``torch.utils.checkpoint``), so the ``M``-sized neighbourhood tensors of only one chunk are
  ever alive. ``chunk_frames=None`` keeps the whole clip's (faster, about 2-3x the memory).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from ._attention import check_video_input, standard_grad
from .kernels import check_kernel_choice, use_triton
from .kernels.relational import position_products
from .registry import register_block

KERNEL_TYPES = ("V", "R", "VplusR")
CONTEXT_TYPES = ("V", "R", "VplusR")
_EPS = 1e-6  # the release's L2-normalisation epsilon (added to the squared norm)


def _l2_normalise(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).sum(dim=dim, keepdim=True) + _EPS)


def _positive_int(name: str, value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"block 'rsa': {name} must be a positive int, got {value!r} ({what})")
    return value


def _shifted_frames(padded: torch.Tensor, kt: int, dim: int) -> torch.Tensor:
    """The ``k_t`` temporal taps of every frame as a new last dimension: ``padded`` holds the frames
    with ``k_t // 2`` frames of context on each side along ``dim`` (zeros outside the clip); the
    result has ``k_t - 1`` fewer frames there and ``[..., i]`` is frame ``t + i - k_t // 2``."""
    frames = padded.shape[dim] - (kt - 1)
    return torch.stack([padded.narrow(dim, i, frames) for i in range(kt)], dim=-1)


def _neighbourhood_conv(shifted: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int],
                        groups: int) -> torch.Tensor:
    """Every channel's ``k_t x k_h x k_w`` neighbourhood projected by its own filters: ``shifted``
    ``(B, H, W, G * k_t)`` (from :func:`_shifted_frames`, the ``k_t`` temporal taps of each of the
    ``G = groups`` channels), ``weight`` ``(G * J, 1, k_t, k_h, k_w)``; returns ``(B, H, W, G * J)``,
    i.e. ``F.conv3d(u, weight, groups=G, padding=...)`` position-major. One 2D convolution in
    channels-last layout over the temporally shifted copies: the same sums as the 3D convolution
    with one input channel per group, much faster on CPU (forward and backward, see docs/blocks.md),
    and its output is already position-major, as the per-position products need it."""
    out = F.conv2d(shifted.permute(0, 3, 1, 2), weight.flatten(1, 2), padding=padding, groups=groups)
    return out.permute(0, 2, 3, 1)


@register_block("rsa", description="Relational Self-Attention (relational kernel and context), replaces a conv")
class RelationalSelfAttention(nn.Module):
    """``(N, C, T, H, W) -> (N, out_channels, T, H/stride, W/stride)``.

    Args:
        channels: input channels C.
        out_channels: output channels (default C); ``num_heads`` must divide it (``d_v = C_out / N_h``).
        stride: spatial stride, 1 or 2 (2: the release's 3x3 average pool after the layer).
        num_heads: ``N_h`` query heads (default 8).
        key_channels: ``d_k`` (default ``d_v``).
        kernel_channels: ``d_d``, the width of the kernel and of the context's neighbourhood
            projection (default ``d_k``).
        kernel_size: ``(k_t, k_h, k_w)`` neighbourhood, odd sizes (default 5x7x7), or one int.
        kernel_type: ``"V"`` (basic), ``"R"`` (relational) or ``"VplusR"`` (both; default).
        context_type: ``"V"`` (basic), ``"R"`` (relational) or ``"VplusR"`` (both; default).
        chunk_frames: frames computed at a time, recomputed in backward (default 2); None: the whole
            clip at once, nothing recomputed. The same function either way.
        kernel: the per-position products' implementation, ``"auto"`` (Triton on CUDA), ``"triton"``
            or ``"torch"`` (:mod:`.kernels`).
    """

    identity_at_init = False

    def __init__(self, channels: int, out_channels: int | None = None, stride: int = 1, num_heads: int = 8,
                 key_channels: int | None = None, kernel_channels: int | None = None,
                 kernel_size=(5, 7, 7), kernel_type: str = "VplusR", context_type: str = "VplusR",
                 chunk_frames: int | None = 2, kernel: str = "auto"):
        super().__init__()
        self.kernel = check_kernel_choice("rsa", kernel)
        if chunk_frames is not None:
            _positive_int("chunk_frames", chunk_frames, "frames per chunk, or None for the whole clip at once")
        self.chunk_frames = chunk_frames
        out_channels = channels if out_channels is None else out_channels
        _positive_int("out_channels", out_channels, "the width of the output")
        _positive_int("num_heads", num_heads, "N_h")
        if out_channels % num_heads:
            raise ConfigError(f"block 'rsa': num_heads={num_heads} must divide out_channels={out_channels} "
                              f"(each head outputs d_v = out_channels / num_heads channels)")
        if stride not in (1, 2):
            raise ConfigError(f"block 'rsa': stride must be 1 or 2 (2 = the release's 3x3 average pool), "
                              f"got {stride!r}")
        if kernel_type not in KERNEL_TYPES:
            raise ConfigError(f"block 'rsa': kernel_type must be one of {', '.join(KERNEL_TYPES)}, got {kernel_type!r}")
        if context_type not in CONTEXT_TYPES:
            raise ConfigError(f"block 'rsa': context_type must be one of {', '.join(CONTEXT_TYPES)}, "
                              f"got {context_type!r}")
        kernel = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(kernel) != 3 or not all(isinstance(k, int) and k > 0 and k % 2 == 1 for k in kernel):
            raise ConfigError(f"block 'rsa': kernel_size must be an odd int or three odd ints (k_t, k_h, k_w), "
                              f"got {kernel_size!r}")
        dv = out_channels // num_heads
        dk = _positive_int("key_channels", dv if key_channels is None else key_channels, "d_k")
        dd = _positive_int("kernel_channels", dk if kernel_channels is None else kernel_channels, "d_d")
        if kernel_type == "V" and dk != dd:
            raise ConfigError(f"block 'rsa': kernel_type 'V' uses the query itself as the kernel, so key_channels "
                              f"({dk}) must equal kernel_channels ({dd})")
        self.channels, self.out_channels, self.stride = channels, out_channels, stride
        self.num_heads, self.dk, self.dv, self.dd = num_heads, dk, dv, dd
        self.kernel_size, self.kernel_type, self.context_type = kernel, kernel_type, context_type
        self.padding = tuple(k // 2 for k in kernel)
        uses_key = kernel_type != "V"
        self.split = (num_heads * dk, dk if uses_key else 0, dv)
        # Parameters carry the release's names and shapes (a released checkpoint maps by name).
        self.projection = nn.Conv3d(channels, sum(self.split), 1, bias=False)
        if uses_key:
            self.H1 = nn.Parameter(torch.empty(dk * dd, 1, *kernel))
        if kernel_type == "VplusR":
            self.P1 = nn.Parameter(torch.randn(1, dk, dd) * math.sqrt(1.0 / (math.prod(kernel) * dd)))
        self.H2 = nn.Parameter(torch.empty(dd, 1, *kernel))
        if context_type != "V":
            self.G = nn.Parameter(torch.empty(dv, 1, *kernel))
        if context_type == "VplusR":
            self.I = nn.Parameter(torch.eye(dv).unsqueeze(0))
        # MSRA init as the release's ResNet applies to every Conv3d (kaiming normal, fan_out, ReLU).
        for name in ("H1", "H2", "G"):
            if hasattr(self, name):
                nn.init.kaiming_normal_(getattr(self, name), mode="fan_out", nonlinearity="relu")
        nn.init.kaiming_normal_(self.projection.weight, mode="fan_out", nonlinearity="relu")

    def extra_repr(self) -> str:
        return (f"{self.channels} -> {self.out_channels}, heads={self.num_heads}, d_k={self.dk}, d_v={self.dv}, "
                f"d_d={self.dd}, kernel_size={self.kernel_size}, kernel={self.kernel_type}, "
                f"context={self.context_type}, stride={self.stride}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input("rsa", x, self.channels)
        x = standard_grad(x)  # its backward may otherwise return an odd batch-1 stride (_attention.standard_layout)
        n, _, t, h, w = x.shape
        nh, dk = self.num_heads, self.dk
        pad = self.padding[0]
        # the 1x1x1 projection, position-major: (N, T, H, W, N_h d_k [+ d_k] + d_v)
        proj = torch.matmul(x.permute(0, 2, 3, 4, 1), self.projection.weight.flatten(1).t())
        q, k, v = torch.split(proj, self.split, dim=-1)
        q = _l2_normalise(q.unflatten(-1, (nh, dk)), dim=-1)  # (N, T, H, W, N_h, d_k)
        # keys (N, T, H, W, d_k) and values (N, d_v, T, H, W), zero-padded in time for the neighbourhoods
        k = F.pad(_l2_normalise(k, dim=-1), (0, 0, 0, 0, 0, 0, pad, pad)) if self.kernel_type != "V" else None
        v = F.pad(_l2_normalise(v, dim=-1).permute(0, 4, 1, 2, 3), (0, 0, 0, 0, pad, pad))
        step = t if self.chunk_frames is None else self.chunk_frames
        recompute = step < t and proj.requires_grad
        outs = []
        for start in range(0, t, step):
            stop = min(start + step, t)
            args = (q[:, start:stop], None if k is None else k[:, start:stop + 2 * pad], v[:, :, start:stop + 2 * pad])
            if recompute:  # keep only the chunk's inputs; rebuild its neighbourhoods in backward
                outs.append(checkpoint(self._frames, *args, use_reentrant=False))
            else:
                outs.append(self._frames(*args))
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        out = out.permute(0, 4, 1, 2, 3).contiguous()
        if self.stride == 2:
            out = F.avg_pool3d(out, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        return out

    def _frames(self, q: torch.Tensor, k: torch.Tensor | None, v: torch.Tensor) -> torch.Tensor:
        """RSA on a run of frames: ``q`` ``(N, T', H, W, N_h, d_k)``, ``k`` ``(N, T' + k_t - 1, H, W, d_k)``
        and ``v`` ``(N, d_v, T' + k_t - 1, H, W)`` with their temporal context; returns ``(N, T', H, W,
        C_out)``, channel ``v * N_h + h`` as released."""
        n, t, h, w = q.shape[:4]
        positions = t * h * w
        dk, dv, dd, kt = self.dk, self.dv, self.dd, self.kernel_size[0]
        padding = self.padding[1:]
        q = q.reshape(-1, self.num_heads, dk)  # -1, not n * positions: traced exports keep a dynamic batch
        rel = None
        if k is not None:
            # H1: each key channel's neighbourhood projected by its own d_d filters -> (N*P, d_k, d_d)
            shifted = _shifted_frames(k, kt, dim=1).reshape(-1, h, w, dk * kt)
            rel = _neighbourhood_conv(shifted, self.H1, padding, groups=dk).reshape(-1, dk, dd)
        # H2 (and G) project each value channel's neighbourhood: one convolution of the d_v value
        # channels folded into the batch, with the d_d (+ d_v) filters as output channels.
        weights = self.H2 if self.context_type == "V" else torch.cat([self.H2, self.G], dim=0)
        shifted = _shifted_frames(v, kt, dim=2).reshape(-1, h, w, kt)
        values = _neighbourhood_conv(shifted, weights, padding, groups=1).reshape(-1, dv, positions, weights.shape[0])
        p1 = self.P1 if self.kernel_type == "VplusR" else None
        eye = self.I if self.context_type == "VplusR" else None
        out = position_products(q, rel, p1, values, eye, dd, use_triton("rsa", self.kernel, q))  # (N*P, N_h, d_v)
        return out.transpose(1, 2).reshape(-1, t, h, w, self.out_channels)
