"""A slow float64 reference of Relational Self-Attention, written position by position from the
equations (docs/blocks.md, "Relational Self-Attention").

Every neighbourhood is unfolded explicitly (zero outside the clip), the kernel is built from the
query-key Hadamard correlation ``q_h (x) K`` (M x d_k) and the relational context from the value
self-correlation ``V V^T`` (M x M). The weights are passed in as plain tensors; the kernel and
context types are arguments, never read from the module.
"""

from __future__ import annotations

import torch


def _normalise(vector: torch.Tensor) -> torch.Tensor:
    return vector / torch.sqrt((vector**2).sum() + 1e-6)


def reference_rsa(x: torch.Tensor, weights: dict[str, torch.Tensor], *, num_heads: int, key_channels: int,
                  kernel_size: tuple[int, int, int], kernel_type: str, context_type: str,
                  stride: int = 1) -> torch.Tensor:
    """``x``: (N, C, T, H, W) float64. ``weights``: ``projection`` (d_hid, C) rows ordered queries
    (head-major), key (if the kernel uses one), value; ``H1`` (d_k, d_d, M); ``P1`` (d_k, d_d);
    ``H2`` (d_d, M); ``G`` (d_v, M); ``I`` (d_v, d_v). M is ordered (dt, dh, dw) row-major."""
    n_batch, _, frames, height, width = x.shape
    nh, dk = num_heads, key_channels
    kt, kh, kw = kernel_size
    offsets = [(a - kt // 2, b - kh // 2, c - kw // 2) for a in range(kt) for b in range(kh) for c in range(kw)]
    w_proj = weights["projection"]
    uses_key = kernel_type != "V"
    dv = w_proj.shape[0] - nh * dk - (dk if uses_key else 0)
    h2 = weights["H2"]
    out = torch.zeros(n_batch, dv * nh, frames, height, width, dtype=torch.float64)
    for n in range(n_batch):
        # per-position projections, normalised over channels
        q, k, v = {}, {}, {}
        for t in range(frames):
            for i in range(height):
                for j in range(width):
                    e = w_proj @ x[n, :, t, i, j]
                    q[t, i, j] = [_normalise(e[h * dk:(h + 1) * dk]) for h in range(nh)]
                    if uses_key:
                        k[t, i, j] = _normalise(e[nh * dk:nh * dk + dk])
                    v[t, i, j] = _normalise(e[-dv:])

        def neighbours(table, t, i, j, width_):
            rows = []
            for dt, di, dj in offsets:
                p = (t + dt, i + di, j + dj)
                inside = 0 <= p[0] < frames and 0 <= p[1] < height and 0 <= p[2] < width
                rows.append(table[p] if inside else torch.zeros(width_, dtype=torch.float64))
            return torch.stack(rows)  # (M, width)

        for t in range(frames):
            for i in range(height):
                for j in range(width):
                    values = neighbours(v, t, i, j, dv)  # V: (M, d_v)
                    # context F: (d_v, d_d)
                    basic = (h2 @ values).T  # F_V[v, d] = sum_m H2[d, m] V[m, v]
                    correlation = values @ values.T  # V V^T: (M, M)
                    relational = weights["G"] @ correlation @ h2.T if context_type != "V" else None  # (d_v, d_d)
                    if context_type == "V":
                        context = basic
                    elif context_type == "R":
                        context = relational
                    else:  # (G(V) + I)^T F_V = G V V^T H2^T + I^T F_V
                        context = relational + weights["I"].T @ basic
                    if uses_key:
                        keys = neighbours(k, t, i, j, dk)  # K: (M, d_k)
                    for h in range(nh):
                        query = q[t, i, j][h]
                        if kernel_type == "V":
                            kernel = query
                        else:
                            hadamard = keys * query  # (M, d_k): q_h[c] k_c(p + m)
                            kernel = torch.einsum("mc,cdm->d", hadamard, weights["H1"])
                            if kernel_type == "VplusR":
                                kernel = kernel + weights["P1"].T @ query
                        y = context @ kernel  # (d_v,): sum_d kappa_h[d] F[v, d]
                        for vi in range(dv):
                            out[n, vi * nh + h, t, i, j] = y[vi]
    if stride == 1:
        return out
    # 3x3 average, stride 2, zero padding 1 counted in the divisor (9)
    ho, wo = (height + 1) // 2, (width + 1) // 2
    pooled = torch.zeros(n_batch, dv * nh, frames, ho, wo, dtype=torch.float64)
    for a in range(ho):
        for b in range(wo):
            total = 0
            for i in range(2 * a - 1, 2 * a + 2):
                for j in range(2 * b - 1, 2 * b + 2):
                    if 0 <= i < height and 0 <= j < width:
                        total = total + out[:, :, :, i, j]
            pooled[:, :, :, a, b] = total / 9
    return pooled


def rsa_weights(block) -> dict[str, torch.Tensor]:
    """The block's parameters as the plain matrices the reference takes (float64)."""
    state = {name: p.detach().to(torch.float64) for name, p in block.named_parameters()}
    weights = {"projection": state["projection.weight"].flatten(1), "H2": state["H2"].flatten(1)}
    if "H1" in state:
        dd = state["H2"].shape[0]
        weights["H1"] = state["H1"].reshape(-1, dd, state["H1"][0].numel())  # (d_k, d_d, M)
    if "P1" in state:
        weights["P1"] = state["P1"][0]
    if "G" in state:
        weights["G"] = state["G"].flatten(1)
    if "I" in state:
        weights["I"] = state["I"][0]
    return weights
