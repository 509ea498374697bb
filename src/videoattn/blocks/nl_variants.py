"""Non-local variants GTA Table 5 compares against: CGNL and GloRe, from their papers' equations,
extended from images to video by treating T*H*W positions where the image papers have H*W.

``cgnl`` (Yue et al., "Compact Generalized Non-local Network", NeurIPS 2018, sec. 3):
    theta, phi, g: 1x1x1 convs C -> C/2 (no bias), split into G channel groups. Within a group every
    (channel, position) pair is one "position" of the compact form: with K = C/(2G) * T*H*W entries
    ``y_i = sum_j f(theta_i, phi_j) g_j`` over all K entries j of the group. Kernels:

    * ``gaussian`` (the Taylor-expanded RBF ``f = exp(-gamma (theta_i - phi_j)^2)``, order P):
      ``f ~= beta * sum_{p=0..P} (2 gamma)^p / p! * theta_i^p * phi_j^p``, so
      ``y_i = sum_p alpha_p^2 theta_i^p (sum_j phi_j^p g_j)``, ``alpha_p^2 = beta (2 gamma)^p / p!``:
      linear in K. ``beta`` is the constant ``exp(-2 gamma)`` the authors' release uses in place of
      ``exp(-gamma (theta_i^2 + phi_j^2))`` (its note: training was hard with the exact factor);
      gamma = 1e-4 and P = 3 as released.
    * ``dot``: ``f = theta_i phi_j`` (``y_i = theta_i sum_j phi_j g_j``).

    ``scale`` divides f by sqrt(K) (off in the released CGNL). Then ``z = GN(W_z y) + x`` with W_z a
    grouped 1x1x1 conv C/2 -> C (G groups, no bias) and a G-group GroupNorm whose affine weight and
    bias start at zero (the release's init), so the block is the identity at init.

``glore`` (Chen et al., "Graph-Based Global Reasoning Networks", CVPR 2019, eq. 1-3, Fig. 3):
    ``V = (W_s x) B^T`` projects the S = C/2 reduced states of all L = T*H*W positions onto
    N = C/4 nodes with the learned projection ``B = W_b x`` (1x1x1 convs with bias);
    graph convolution ``Z = W_g ReLU(V + A_g V)``: A_g a node-wise 1D conv (N x N, with bias) plus
    the identity term, then a state-wise 1D conv W_g (S x S, no bias); reverse projection
    ``Y = Z B``; ``out = x + BN(W_e Y)`` with W_e a 1x1x1 conv S -> C (no bias) and a BatchNorm
    (eps 1e-4) whose weight starts at zero (the release's init): the identity at init. Widths, the
    ReLU, the sign of the identity term (``+``; the paper writes ``I - A_g``, the same family with
    A_g negated) and ``normalize`` (divide V by L; off as released) follow the authors' release.

Both pool nothing, so they run at any T, H, W, including the decoupled composite's folded
``(N*H*W, C, T, 1, 1)`` and ``(N*T, C, 1, H, W)`` shapes. Module names follow the releases
(``t``, ``p``, ``g``, ``z``, ``gn``; ``conv_state``, ``conv_proj``, ``gcn.conv1``, ``gcn.conv2``,
``conv_extend``, ``blocker``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from ._attention import batch_norm_standard, check_video_input, inner_width
from .registry import register_block

CGNL_KERNELS = ("gaussian", "dot")


def _positive_int(block: str, option: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"block {block!r}: {option} must be a positive int, got {value!r}")
    return value


@register_block("cgnl", description="Compact Generalized Non-local (Yue et al. 2018): grouped, Taylor-expanded "
                "Gaussian or dot-product kernel over channels and positions")
class CompactGeneralizedNonLocal(nn.Module):
    """Grouped compact non-local block (module doc, CGNL sec. 3).

    Args:
        channels: C.
        inner_channels: width of theta/phi/g (default ``channels // reduction``).
        reduction: C / inner width when ``inner_channels`` is None (2, as released).
        groups: G channel groups (8, as released); must divide C and the inner width.
        kernel: ``"gaussian"`` (Taylor-expanded RBF, the default) or ``"dot"``.
        order: Taylor order P of the Gaussian kernel (3, as released).
        gamma: gamma of the Gaussian kernel (1e-4, as released).
        scale: divide the kernel by sqrt(K), K = entries per group (False, as released).
    """

    identity_at_init = True

    def __init__(self, channels: int, inner_channels: int | None = None, reduction: int = 2, groups: int = 8,
                 kernel: str = "gaussian", order: int = 3, gamma: float = 1e-4, scale: bool = False):
        super().__init__()
        width = inner_width("cgnl", channels, inner_channels, _positive_int("cgnl", "reduction", reduction))
        groups = _positive_int("cgnl", "groups", groups)
        if channels % groups or width % groups:
            raise ConfigError(f"block 'cgnl': groups={groups} must divide channels={channels} and the inner "
                              f"width {width}")
        if kernel not in CGNL_KERNELS:
            raise ConfigError(f"block 'cgnl': kernel must be one of {', '.join(CGNL_KERNELS)}, got {kernel!r}")
        if not isinstance(order, int) or isinstance(order, bool) or order < 0:
            raise ConfigError(f"block 'cgnl': order must be a non-negative int, got {order!r}")
        if not isinstance(gamma, (int, float)) or isinstance(gamma, bool) or not gamma > 0:
            raise ConfigError(f"block 'cgnl': gamma must be a positive number, got {gamma!r}")
        self.channels, self.width, self.groups = channels, width, groups
        self.kernel, self.order, self.gamma, self.scale = kernel, order, float(gamma), bool(scale)
        self.t = nn.Conv3d(channels, width, 1, bias=False)
        self.p = nn.Conv3d(channels, width, 1, bias=False)
        self.g = nn.Conv3d(channels, width, 1, bias=False)
        self.z = nn.Conv3d(width, channels, 1, groups=groups, bias=False)
        self.gn = nn.GroupNorm(groups, channels)
        nn.init.zeros_(self.gn.weight)
        nn.init.zeros_(self.gn.bias)
        # alpha_p = sqrt(beta (2 gamma)^p / p!), beta = exp(-2 gamma) (the release's constant beta)
        beta = math.exp(-2.0 * self.gamma)
        alphas = [math.sqrt(beta * (2.0 * self.gamma) ** p / math.factorial(p)) for p in range(order + 1)]
        self.register_buffer("alphas", torch.tensor(alphas, dtype=torch.float64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input("cgnl", x, self.channels)
        n = x.shape[0]
        theta, phi, g = (conv(x).reshape(n, self.groups, 1, -1) for conv in (self.t, self.p, self.g))
        entries = theta.shape[-1]
        if self.kernel == "gaussian":  # (N, G, P+1, K): alpha_p * u^p
            alphas = self.alphas.to(theta.dtype).reshape(-1, 1)
            theta, phi = alphas * _powers(theta, self.order), alphas * _powers(phi, self.order)
        context = torch.matmul(phi, g.transpose(-1, -2))  # (N, G, P+1 or 1, 1): sum_j phi_j^p g_j
        if self.scale:
            context = context / math.sqrt(entries)
        y = torch.matmul(context.transpose(-1, -2), theta)  # (N, G, 1, K)
        return x + self.gn(self.z(y.reshape(n, self.width, *x.shape[2:])))


def _powers(u: torch.Tensor, order: int) -> torch.Tensor:
    """``(..., 1, K) -> (..., order + 1, K)``: u^0, u^1, ..., u^order by repeated products (``pow``'s
    gradient at u = 0 for the zeroth power is NaN)."""
    terms = [torch.ones_like(u)]
    for _ in range(order):
        terms.append(terms[-1] * u)
    return torch.cat(terms, dim=-2)


class _GraphConvolution(nn.Module):
    """``Z = W_g ReLU(V + A_g V)`` on ``V`` of shape (N, S, nodes) (GloRe eq. 3, as released)."""

    def __init__(self, states: int, nodes: int):
        super().__init__()
        self.conv1 = nn.Conv1d(nodes, nodes, 1)  # A_g: node-wise, shared by all states
        self.conv2 = nn.Conv1d(states, states, 1, bias=False)  # W_g: state-wise, shared by all nodes

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        h = self.conv1(v.transpose(1, 2)).transpose(1, 2) + v
        return self.conv2(torch.relu(h))


@register_block("glore", description="Global Reasoning unit (Chen et al. 2019): project to graph nodes, graph "
                "convolution, project back, residual")
class GlobalReasoningUnit(nn.Module):
    """Graph-based global reasoning unit (module doc, GloRe sec. 3).

    Args:
        channels: C.
        nodes: N graph nodes (default ``channels // 4``, the release's bottleneck width).
        state_channels: S reduced states (default ``channels // 2``, twice the release's bottleneck).
        normalize: divide the projected node states by the number of positions L (False, as
            released; the release advises it when the input size varies).
    """

    identity_at_init = True

    def __init__(self, channels: int, nodes: int | None = None, state_channels: int | None = None,
                 normalize: bool = False):
        super().__init__()
        self.nodes = inner_width("glore", channels, nodes, 4)
        self.states = inner_width("glore", channels, state_channels, 2)
        self.channels, self.normalize = channels, bool(normalize)
        self.conv_state = nn.Conv3d(channels, self.states, 1)
        self.conv_proj = nn.Conv3d(channels, self.nodes, 1)
        self.gcn = _GraphConvolution(self.states, self.nodes)
        self.conv_extend = nn.Conv3d(self.states, channels, 1, bias=False)
        self.blocker = nn.BatchNorm3d(channels, eps=1e-4)
        nn.init.zeros_(self.blocker.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input("glore", x, self.channels)
        n = x.shape[0]
        states = self.conv_state(x).reshape(n, self.states, -1)  # (N, S, L)
        projection = self.conv_proj(x).reshape(n, self.nodes, -1)  # B: (N, nodes, L)
        node_states = torch.matmul(states, projection.transpose(1, 2))  # V: (N, S, nodes)
        if self.normalize:
            node_states = node_states / states.shape[-1]
        y = torch.matmul(self.gcn(node_states), projection)  # (N, S, L)
        # the residual hands the BN the block's output gradient as it comes (at batch 1 possibly with an odd
        # batch stride, which PyTorch's BN backward mishandles: _attention.standard_layout)
        return x + batch_norm_standard(self.blocker, self.conv_extend(y.reshape(n, self.states, *x.shape[2:])))
