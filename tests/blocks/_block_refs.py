"""Slow float64 references written line by line from the papers' equations, and test helpers.

Everything here loops over samples, frames, positions, groups and regions with plain
matrix-vector products, reading the weights out of the module under test, so that a mismatch in
the vectorised code (a wrong permute, a transposed matrix, a misplaced sum) shows up.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def randomize_(module: nn.Module, seed: int = 0, std: float = 0.3) -> nn.Module:
    """Move every parameter and BN statistic away from its init (so zero gammas no longer hide
    anything) and put the module in eval mode (BN then uses the running statistics)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float64) * std)
        for sub in module.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                sub.weight.copy_(1.0 + 0.3 * torch.randn(sub.weight.shape, generator=gen, dtype=torch.float64))
                sub.running_mean.copy_(0.1 * torch.randn(sub.running_mean.shape, generator=gen, dtype=torch.float64))
                sub.running_var.copy_(0.5 + torch.rand(sub.running_var.shape, generator=gen, dtype=torch.float64))
    return module.eval()


# --- elementary operations on single vectors -----------------------------------------------------


def linear(conv: nn.Conv3d, vector: torch.Tensor) -> torch.Tensor:
    """W v + b of a 1x1x1 convolution applied to one position's feature vector."""
    out = conv.weight[:, :, 0, 0, 0] @ vector
    return out if conv.bias is None else out + conv.bias


def batch_norm_eval(bn: nn.BatchNorm3d, vector: torch.Tensor) -> torch.Tensor:
    return (vector - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias


def positions(frames: int, height: int, width: int) -> list[tuple[int, int, int]]:
    return [(t, i, j) for t in range(frames) for i in range(height) for j in range(width)]


def pooled_positions(frames: int, height: int, width: int,
                     floor: bool = False) -> list[tuple[int, list[tuple[int, int]]]]:
    """For each 1x2x2 max-pool window (frame-major): its frame and member (i, j). Ceil mode lets a
    last odd row/column form windows of its own; floor mode uses only complete 2x2 windows."""
    windows = []
    last = 1 if floor else 0
    for t in range(frames):
        for i0 in range(0, height - last, 2):
            for j0 in range(0, width - last, 2):
                members = [(i, j) for i in range(i0, min(i0 + 2, height)) for j in range(j0, min(j0 + 2, width))]
                windows.append((t, members))
    return windows


def features_at(feature_map: torch.Tensor, t: int, i: int, j: int) -> torch.Tensor:
    """feature_map (C, T, H, W) -> the vector at (t, i, j)."""
    return feature_map[:, t, i, j]


def project_map(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """Apply ``linear`` at every position of x (C, T, H, W), looping."""
    _, frames, height, width = x.shape
    out = torch.zeros(conv.weight.shape[0], frames, height, width, dtype=x.dtype)
    for t, i, j in positions(frames, height, width):
        out[:, t, i, j] = linear(conv, x[:, t, i, j])
    return out


def max_pool_map(x: torch.Tensor, floor: bool = False) -> torch.Tensor:
    """1x2x2 max-pool of (C, T, H, W) with ceil (default) or floor mode, looping over windows."""
    channels, frames, height, width = x.shape
    size = (height // 2, width // 2) if floor else (math.ceil(height / 2), math.ceil(width / 2))
    out = torch.zeros(channels, frames, *size, dtype=x.dtype)
    for t, members in pooled_positions(frames, height, width, floor):
        i0, j0 = members[0]
        stacked = torch.stack([x[:, t, i, j] for i, j in members])
        out[:, t, i0 // 2, j0 // 2] = stacked.max(dim=0).values
    return out


def softmax(scores: list[torch.Tensor]) -> list[torch.Tensor]:
    """softmax_j s_j = exp(s_j - max) / sum_k exp(s_k - max)."""
    top = max(float(s) for s in scores)
    exps = [torch.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


# --- Non-local family ------------------------------------------------------------------------------


def reference_nl(block, x: torch.Tensor, floor_pool: bool = False) -> torch.Tensor:
    """NL eq. 1-6: y_i = x_i + BN(W_z sum_j f(x_i, x_j) g(x_j) / C(x)), per sample. ``floor_pool``:
    sub-sample keys/values with floor-mode windows (the official codes' ``MaxPool3d``)."""
    out = torch.empty_like(x)
    for n in range(x.shape[0]):
        sample = x[n]
        _, frames, height, width = sample.shape
        embed = block.mode != "gaussian"
        theta = project_map(block.theta, sample) if embed else sample
        if block.sub_sample and block.pool_position == "before":
            pooled = max_pool_map(sample, floor_pool)
            phi = project_map(block.phi, pooled) if embed else pooled
            g = project_map(block.g, pooled)
        else:
            phi = project_map(block.phi, sample) if embed else sample
            g = project_map(block.g, sample)
            if block.sub_sample:
                phi, g = max_pool_map(phi, floor_pool), max_pool_map(g, floor_pool)
        key_positions = positions(*phi.shape[1:])
        width_inner = theta.shape[0]
        scale = 1.0 / math.sqrt(width_inner) if block.use_scale else 1.0
        for t, i, j in positions(frames, height, width):
            query = theta[:, t, i, j]
            keys = [phi[:, tk, ik, jk] for tk, ik, jk in key_positions]
            values = [g[:, tk, ik, jk] for tk, ik, jk in key_positions]
            if block.mode in ("embedded_gaussian", "gaussian"):
                weights = softmax([scale * (query @ key) for key in keys])
            elif block.mode == "dot_product":
                weights = [(query @ key) / len(keys) for key in keys]
            else:  # concatenation: ReLU(w_f^T [theta_i, phi_j]) / N
                weights = [torch.relu(block.concat_weight @ torch.cat([query, key])) / len(keys) for key in keys]
            z = sum(w * v for w, v in zip(weights, values))
            out[n, :, t, i, j] = sample[:, t, i, j] + batch_norm_eval(block.out_norm, linear(block.out_proj, z))
    return out


def reference_sa(block, x: torch.Tensor) -> torch.Tensor:
    """GTA eq. 3: Y_s(t) = X(t) + BN(W_O softmax(Q_s(t) K_s(t)^T / sqrt(d)) V_s(t)), frame by frame."""
    out = torch.empty_like(x)
    scale = 1.0 / math.sqrt(block.inner_channels) if block.use_scale else 1.0
    for n in range(x.shape[0]):
        sample = x[n]
        _, frames, height, width = sample.shape
        q = project_map(block.query, sample)
        k = project_map(block.key, sample)
        v = project_map(block.value, sample)
        if block.sub_sample:
            k, v = max_pool_map(k), max_pool_map(v)
        for t in range(frames):
            key_cells = [(ik, jk) for ik in range(k.shape[2]) for jk in range(k.shape[3])]
            for i in range(height):
                for j in range(width):
                    weights = softmax([scale * (q[:, t, i, j] @ k[:, t, ik, jk]) for ik, jk in key_cells])
                    a = sum(w * v[:, t, ik, jk] for w, (ik, jk) in zip(weights, key_cells))
                    out[n, :, t, i, j] = sample[:, t, i, j] + batch_norm_eval(block.out_norm, linear(block.out_proj, a))
    return out


def reference_ta(block, x: torch.Tensor, positional_embedding: torch.Tensor | None = None) -> torch.Tensor:
    """GTA eq. 4: Y_t(i,j) = Y_s(i,j) + BN(W_O softmax(Q_t K_t^T / sqrt(d)) V_t), position by position.
    TAPE: the projections see X + P (P[:, t] added at frame t)."""
    out = torch.empty_like(x)
    scale = 1.0 / math.sqrt(block.inner_channels) if block.use_scale else 1.0
    for n in range(x.shape[0]):
        sample = x[n]
        _, frames, height, width = sample.shape
        embedded = sample.clone()
        if positional_embedding is not None:
            for t in range(frames):
                embedded[:, t] = embedded[:, t] + positional_embedding[:, t, None, None]
        q = project_map(block.query, embedded)
        k = project_map(block.key, embedded)
        v = project_map(block.value, embedded)
        for i in range(height):
            for j in range(width):
                for t in range(frames):
                    weights = softmax([scale * (q[:, t, i, j] @ k[:, s, i, j]) for s in range(frames)])
                    a = sum(w * v[:, s, i, j] for s, w in enumerate(weights))
                    out[n, :, t, i, j] = sample[:, t, i, j] + batch_norm_eval(block.out_norm, linear(block.out_proj, a))
    return out


# --- GTA ----------------------------------------------------------------------------------------------


def reference_temporal_mix(matrix: torch.Tensor, values: list[torch.Tensor], head_mode: str,
                           num_groups: int) -> list[torch.Tensor]:
    """Eq. 6-8 for one sample (pixel or region): ``values[t']`` is the C-vector at frame t'.

    single: out[t] = sum_t' M[t, t'] V[t'];
    multi_head: out[t]_g = sum_t' M[g][t, t'] V[t']_g (channel group g);
    cross_channel: out[t]_k = sum_g sum_t' M[g][k][t, t'] V[t']_g (head k = output group k).
    """
    frames = len(values)
    channels = values[0].shape[0]
    outputs = []
    for t in range(frames):
        if head_mode == "single":
            outputs.append(sum(matrix[t, s] * values[s] for s in range(frames)))
            continue
        size = channels // num_groups
        heads = []
        for k in range(num_groups):
            if head_mode == "multi_head":
                heads.append(sum(matrix[k, t, s] * values[s][k * size:(k + 1) * size] for s in range(frames)))
            else:
                heads.append(sum(
                    matrix[g, k, t, s] * values[s][g * size:(g + 1) * size]
                    for g in range(num_groups) for s in range(frames)
                ))
        outputs.append(torch.cat(heads))
    return outputs


def reference_gta_temporal(module, x: torch.Tensor) -> torch.Tensor:
    """GTA eq. 5-8: Y = X + BN_P(W_P^O A_P) + BN_R(W_R^O A_R), sample by sample, for T = num_frames."""
    out = x.clone()
    for n in range(x.shape[0]):
        sample = x[n]
        _, frames, height, width = sample.shape
        cells = [(i, j) for i in range(height) for j in range(width)]
        if module.pixel_value is not None:
            v_p = project_map(module.pixel_value, sample)
            for i, j in cells:
                mixed = reference_temporal_mix(module.pixel_matrix, [v_p[:, t, i, j] for t in range(frames)],
                                               module.head_mode, module.num_groups)
                for t in range(frames):
                    out[n, :, t, i, j] += batch_norm_eval(module.pixel_out_norm,
                                                          linear(module.pixel_out_proj, mixed[t]))
        if module.region_value is not None:
            v_r = project_map(module.region_value, sample)
            source = v_r if module.region_source == "value" else sample
            w_g = module.region_transform.weight[:, :, 0, 0, 0]  # K x C_source
            transforms, regions = [], []
            for t in range(frames):
                # G_R(t) = W_G X(t)^T : K x HW
                g_r = torch.stack([w_g @ source[:, t, i, j] for i, j in cells], dim=1)
                transforms.append(g_r)
                # X_G(t) = G_R(t) V(t) : K x C'
                v_t = torch.stack([v_r[:, t, i, j] for i, j in cells], dim=0)
                regions.append(g_r @ v_t)
            num_regions = w_g.shape[0]
            mixed_regions = torch.zeros(frames, num_regions, v_r.shape[0], dtype=x.dtype)
            for r in range(num_regions):
                mixed = reference_temporal_mix(module.region_matrix, [regions[t][r] for t in range(frames)],
                                               module.head_mode, module.num_groups)
                for t in range(frames):
                    mixed_regions[t, r] = mixed[t]
            for t in range(frames):
                back = transforms[t].T @ mixed_regions[t]  # G_R(t)^T (M_R X_G)(t) : HW x C'
                for p, (i, j) in enumerate(cells):
                    out[n, :, t, i, j] += batch_norm_eval(module.region_out_norm,
                                                          linear(module.region_out_proj, back[p]))
    return out


def assert_identity_then_gradients(block: torch.nn.Module, x: torch.Tensor) -> None:
    """The block is the identity at init (zero BN gamma) and, once gamma is 1, every parameter gets a
    non-zero gradient."""
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)
    for module in block.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            torch.nn.init.ones_(module.weight)
    block(x).square().sum().backward()
    for name, param in block.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
