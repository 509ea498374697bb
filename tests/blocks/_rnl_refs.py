"""Float64 references for RNL (eq. 2-9), its modified SE (eq. 10-12) and the attention baselines,
written from the papers' equations with loops over positions. Each takes the weights (a dict of
tensors read from the module's state dict) and the choices to compute (form, kernel, ...) from the
test, never from the module's flags."""

from __future__ import annotations

import math

import torch
from torch import nn


def weights_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().double() for k, v in module.state_dict().items()}


def affine(w: dict, name: str, vector: torch.Tensor) -> torch.Tensor:
    """W v + b of a 1x1x1 conv / linear layer called ``name`` (bias optional)."""
    weight = w[f"{name}.weight"]
    out = weight.reshape(weight.shape[0], -1) @ vector
    bias = w.get(f"{name}.bias")
    return out if bias is None else out + bias


def bn_eval(w: dict, name: str, vector: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return ((vector - w[f"{name}.running_mean"]) / torch.sqrt(w[f"{name}.running_var"] + eps)
            * w[f"{name}.weight"] + w[f"{name}.bias"])


def _grid(frames, height, width):
    return [(t, i, j) for t in range(frames) for i in range(height) for j in range(width)]


def region_aggregate(feature: torch.Tensor, kernel, aggregation: str, depthwise: torch.Tensor | None = None):
    """theta(N_i) of eq. 3 for every position of one sample ``(d, T, H, W)``: over the cuboid of
    size ``kernel`` centred at i (positions outside the clip contribute nothing), the channel-wise
    weighted sum ``sum_k u_k * x_k`` (``depthwise`` is ``(d, 1, kt, kh, kw)``), the average over
    the full cuboid volume, or the maximum over the positions inside the clip."""
    d, frames, height, width = feature.shape
    kt, kh, kw = kernel
    out = torch.zeros_like(feature)
    for t, i, j in _grid(frames, height, width):
        acc = torch.zeros(d, dtype=feature.dtype)
        values = []
        for a in range(kt):
            for b in range(kh):
                for c in range(kw):
                    tt, ii, jj = t + a - kt // 2, i + b - kh // 2, j + c - kw // 2
                    if 0 <= tt < frames and 0 <= ii < height and 0 <= jj < width:
                        v = feature[:, tt, ii, jj]
                        values.append(v)
                        if aggregation == "conv":
                            acc = acc + depthwise[:, 0, a, b, c] * v
                        else:
                            acc = acc + v
        if aggregation == "conv":
            out[:, t, i, j] = acc
        elif aggregation == "avg":
            out[:, t, i, j] = acc / (kt * kh * kw)
        else:
            out[:, t, i, j] = torch.stack(values).max(dim=0).values
    return out


def _pool_2x2(feature: torch.Tensor, floor: bool = False) -> list[torch.Tensor]:
    """1x2x2 max-pool windows of ``(d, T, H, W)``, frame-major: ceil mode (a last odd row/column is a
    window of its own) or, with ``floor``, only the full 2x2 windows (the last odd row/column dropped)."""
    d, frames, height, width = feature.shape
    rows = height - height % 2 if floor else height
    cols = width - width % 2 if floor else width
    out = []
    for t in range(frames):
        for i0 in range(0, rows, 2):
            for j0 in range(0, cols, 2):
                members = [feature[:, t, i, j] for i in range(i0, min(i0 + 2, height))
                           for j in range(j0, min(j0 + 2, width))]
                out.append(torch.stack(members).max(dim=0).values)
    return out


def reference_rnl(w: dict, x: torch.Tensor, form: str, kernel, aggregation: str, sub_sample: bool = False,
                  floor_pool: bool = False):
    """RNL block, eq. 4-9: e = W_g x; a = F_theta(e); y_i = 1/C(x) sum_j f(a_i, a_j) e_j;
    z = x + BN(W_z y). ``w`` names: theta (W_g), region (depthwise kernel), out_proj (W_z), out_norm."""
    n, _, frames, height, width = x.shape
    out = torch.empty_like(x)
    grid = _grid(frames, height, width)
    for s in range(n):
        embedded = torch.stack([affine(w, "theta", x[s, :, t, i, j]) for t, i, j in grid], dim=1)
        embedded = embedded.reshape(-1, frames, height, width)
        region = region_aggregate(embedded, kernel, aggregation, w.get("region.weight"))
        queries = [region[:, t, i, j] for t, i, j in grid]
        if sub_sample:
            keys, values = _pool_2x2(region, floor_pool), _pool_2x2(embedded, floor_pool)
        else:
            keys, values = queries, [embedded[:, t, i, j] for t, i, j in grid]
        for q_index, (t, i, j) in enumerate(grid):
            q = queries[q_index]
            if form == "gaussian":  # eq. 5, C(x) = sum_j f
                scores = [torch.exp(q @ k) for k in keys]
                total = sum(scores)
                weights = [sc / total for sc in scores]
            elif form == "dot":  # eq. 6, C(x) = number of positions
                weights = [(q @ k) / len(keys) for k in keys]
            else:  # eq. 7
                weights = [torch.relu((q @ k) / (q.norm() * k.norm())) / len(keys) for k in keys]
            y = sum(wt * v for wt, v in zip(weights, values))
            out[s, :, t, i, j] = x[s, :, t, i, j] + bn_eval(w, "out_norm", affine(w, "out_proj", y))
    return out


def reference_se_add(w: dict, x: torch.Tensor) -> torch.Tensor:
    """Modified SE, eq. 10-12: s' = mean over THW; s = W2 ReLU(BN(W1 s')); v = x + s (broadcast)."""
    out = torch.empty_like(x)
    for s in range(x.shape[0]):
        squeezed = x[s].reshape(x.shape[1], -1).sum(dim=1) / x[s, 0].numel()
        excite = affine(w, "fc2", torch.relu(bn_eval(w, "norm", affine(w, "fc1", squeezed))))
        out[s] = x[s] + excite[:, None, None, None]
    return out


def sigmoid(v: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-v))


def softmax_list(scores: list[torch.Tensor]) -> list[torch.Tensor]:
    top = max(float(s) for s in scores)
    exps = [math.e ** (float(s) - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def reference_se(w: dict, x: torch.Tensor) -> torch.Tensor:
    """SE eq. 2-4: z_c = mean over THW of x_c; s = sigmoid(W2 ReLU(W1 z)); y_c = s_c x_c."""
    out = torch.empty_like(x)
    for s in range(x.shape[0]):
        z = torch.stack([x[s, c].sum() / x[s, c].numel() for c in range(x.shape[1])])
        gate = sigmoid(affine(w, "fc2", torch.relu(affine(w, "fc1", z))))
        for c in range(x.shape[1]):
            out[s, c] = gate[c] * x[s, c]
    return out


def reference_cbam(w: dict, x: torch.Tensor, kernel) -> torch.Tensor:
    """CBAM eq. 1-3: Mc = sigmoid(MLP(avg) + MLP(max)); F' = Mc * F; Ms = sigmoid(f([avg_c F'; max_c F']))
    with f a ``kernel``-sized conv (zero padding, 2 -> 1 channels, bias); F'' = Ms * F'."""
    out = torch.empty_like(x)
    _, channels, frames, height, width = x.shape
    kt, kh, kw = kernel
    weight, bias = w["spatial.weight"][0], w["spatial.bias"][0]
    for s in range(x.shape[0]):
        avg = torch.stack([x[s, c].mean() for c in range(channels)])
        mx = torch.stack([x[s, c].max() for c in range(channels)])
        mlp = [affine(w, "fc2", torch.relu(affine(w, "fc1", v))) for v in (avg, mx)]
        gate = sigmoid(mlp[0] + mlp[1])
        refined = torch.stack([gate[c] * x[s, c] for c in range(channels)])
        maps = torch.stack([refined.mean(dim=0), refined.max(dim=0).values])  # (2, T, H, W)
        for t, i, j in _grid(frames, height, width):
            acc = bias.clone()
            for a in range(kt):
                for b in range(kh):
                    for c in range(kw):
                        tt, ii, jj = t + a - kt // 2, i + b - kh // 2, j + c - kw // 2
                        if 0 <= tt < frames and 0 <= ii < height and 0 <= jj < width:
                            acc = acc + weight[:, a, b, c] @ maps[:, tt, ii, jj]
            out[s, :, t, i, j] = sigmoid(acc) * refined[:, t, i, j]
    return out


def reference_gc(w: dict, x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """GCNet eq. 3: alpha_j = exp(W_k x_j) / sum_m exp(W_k x_m); c = sum_j alpha_j x_j;
    z_i = x_i + W_v2 ReLU(LN(W_v1 c)), LN over the C/r channels with its affine weights."""
    out = torch.empty_like(x)
    _, channels, frames, height, width = x.shape
    grid = _grid(frames, height, width)
    for s in range(x.shape[0]):
        vectors = [x[s, :, t, i, j] for t, i, j in grid]
        alphas = softmax_list([affine(w, "key", v)[0] for v in vectors])
        context = sum(a * v for a, v in zip(alphas, vectors))
        hidden = affine(w, "fc1", context)
        mean = hidden.sum() / hidden.numel()
        var = ((hidden - mean) ** 2).sum() / hidden.numel()
        normed = (hidden - mean) / torch.sqrt(var + eps) * w["norm.weight"] + w["norm.bias"]
        transform = affine(w, "fc2", torch.relu(normed))
        out[s] = x[s] + transform[:, None, None, None]
    return out
