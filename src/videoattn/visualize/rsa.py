"""``videoattn visualize rsa``: the dynamic kernel RSA predicts for one query position.

RSA (Kim et al., NeurIPS 2021) replaces a convolution whose kernel is fixed by one whose kernel is
predicted per position from the query and its neighbourhood. With ``docs/blocks.md``'s notation, the
output of head ``h`` at position ``p`` before the relational context's channel mixing is

    a_h[v] = sum_d kappa_h[d] F_V[v, d] = sum_m w_h[m] v_v(p + m),   w_h[m] = sum_d kappa_h[d] H2[d, m]

so ``w_h`` (``k_t x k_h x k_w``) is the space-time kernel head ``h`` applies to the values around
``p``: the counterpart of a convolution's kernel, but different at every position and for every
clip. The relational context (``G(V) + I``) then mixes value channels; it does not change which
neighbours contribute, so it is not drawn. The kernel is computed here in float64 from the captured
block input and the block's parameters, straight from the equations (zero-padded borders), not
through the block's fast path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ..blocks.rsa import RelationalSelfAttention
from ..errors import ConfigError
from .capture import block_summary, find_modules
from .figures import Row, clip_frame_index, draw_rows
from .loading import Clip

__all__ = ["rsa_figure", "rsa_kernel"]


def _normalise(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).sum(dim=dim, keepdim=True) + 1e-6)


@torch.no_grad()
def rsa_kernel(block: RelationalSelfAttention, x: torch.Tensor, position: tuple[int, int, int]) -> np.ndarray:
    """The kernel ``w_h`` of every head at ``position`` ``(t, y, x)`` of the block's input grid:
    ``(N_h, k_t, k_h, k_w)``; entry ``[h, i, j, l]`` weighs the value at ``(t + i - k_t // 2,
    y + j - k_h // 2, x + l - k_w // 2)`` (zero outside the clip)."""
    x = x[:1].double()
    nh, dk, dd = block.num_heads, block.dk, block.dd
    kt, kh, kw = block.kernel_size
    weight = block.projection.weight.double().flatten(1)  # (N_h d_k [+ d_k] + d_v, C)
    proj = torch.einsum("oc,cthw->othw", weight, x[0])
    t, y, w = position
    q = _normalise(proj[:nh * dk, t, y, w].reshape(nh, dk), dim=1)  # (N_h, d_k)
    if block.kernel_type == "V":
        kappa = q  # d_k == d_d
    else:
        key = _normalise(proj[nh * dk:nh * dk + dk], dim=0)  # (d_k, T, H, W)
        pt, ph, pw = kt // 2, kh // 2, kw // 2
        padded = F.pad(key, (pw, pw, ph, ph, pt, pt))
        window = padded[:, t:t + kt, y:y + kh, w:w + kw]  # (d_k, k_t, k_h, k_w): k(p + m)
        h1 = block.H1.double().reshape(dk, dd, kt, kh, kw)  # H1[c * d_d + d, 0, m]
        relation = torch.einsum("cm,cdm->cd", window.flatten(1), h1.flatten(2))  # sum_m k_c(p+m) H1[c,d,m]
        kappa = q @ relation  # (N_h, d_d)
        if block.kernel_type == "VplusR":
            kappa = kappa + q @ block.P1.double()[0]
    h2 = block.H2.double().reshape(dd, kt * kh * kw)
    return (kappa @ h2).reshape(nh, kt, kh, kw).cpu().numpy()


def _kernel_over_grid(kernel: np.ndarray, position: tuple[int, int, int], grid: tuple[int, int, int]) -> np.ndarray:
    """The head-averaged kernel placed on the block's ``(T', H', W')`` grid around ``position``
    (cells outside the neighbourhood: 0; neighbours outside the clip are dropped, as the padding
    contributes nothing)."""
    kt, kh, kw = kernel.shape
    volume = np.zeros(grid)
    t, y, x = position
    for i in range(kt):
        for j in range(kh):
            for k in range(kw):
                tt, yy, xx = t + i - kt // 2, y + j - kh // 2, x + k - kw // 2
                if 0 <= tt < grid[0] and 0 <= yy < grid[1] and 0 <= xx < grid[2]:
                    volume[tt, yy, xx] = kernel[i, j, k]
    return volume


def rsa_figure(model: nn.Module, clip: Clip, out: Path, queries: Sequence[tuple[int, int, int]],
               select: str | None = None) -> list[Path]:
    """For every RSA layer and query: its kernel averaged over heads, drawn over the clip frames it
    reaches (blue negative, red positive; white where the neighbourhood does not reach)."""
    from .kinds import _block_position, _prediction, run_with_capture

    found = find_modules(model, (RelationalSelfAttention,), select)
    if not found:
        where = f" whose path contains {select!r}" if select else ""
        raise ConfigError(f"visualize rsa: the model has no RSA layer{where}; it has {block_summary(model)}")
    records, logits = run_with_capture(model, clip, (RelationalSelfAttention,), select)
    num_frames = clip.frames.shape[0]
    rows = []
    for query in queries:
        for name, module in found:
            x = records[name]
            position = _block_position(query, clip, x)
            kernel = rsa_kernel(module, x, position).mean(axis=0)
            volume = _kernel_over_grid(kernel, position, tuple(x.shape[2:]))
            span = float(np.abs(kernel).max()) or 1.0
            maps = []
            for t in range(num_frames):
                tt = clip_frame_index(t, num_frames, x.shape[2])
                maps.append(volume[tt] if abs(tt - position[0]) <= module.kernel_size[0] // 2 else None)
            marks = [(query[1], query[2]) if clip_frame_index(t, num_frames, x.shape[2]) == position[0] else None
                     for t in range(num_frames)]
            size = "x".join(str(k) for k in module.kernel_size)
            rows.append(Row(f"{name}\nRSA {size}, mean of {module.num_heads} heads\n"
                            f"query t={query[0]} y={query[1]} x={query[2]}",
                            maps, marks, cmap="RdBu_r", vmin=-span, vmax=span, alpha=0.7))
    return [draw_rows(clip.frames, rows, out / "rsa_kernel.png",
                      f"RSA's predicted kernel for the query (+) over its space-time neighbourhood: red adds "
                      f"the neighbour's value, blue subtracts it. {_prediction(logits, clip.classes)}")]
