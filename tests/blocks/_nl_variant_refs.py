"""Float64 references for ``cgnl`` and ``glore`` written from their papers' equations, with loops
over positions. Each receives the weights (a state dict) and the input, and the options the test
built the block with; it never calls the block.
"""

from __future__ import annotations

import math

import torch

from ._rnl_refs import _grid, affine


def _map(w: dict, name: str, sample: torch.Tensor) -> torch.Tensor:
    """A 1x1x1 conv ``name`` applied at every position of one sample ``(C, T, H, W)``, one at a time."""
    _, frames, height, width = sample.shape
    out = torch.stack([affine(w, name, sample[:, t, i, j]) for t, i, j in _grid(frames, height, width)], dim=1)
    return out.reshape(-1, frames, height, width)


def cgnl_pairwise(theta: float, phi: float, kernel: str, order: int, gamma: float) -> float:
    """f(theta_i, phi_j) of CGNL: the order-P Taylor expansion of exp(-gamma (theta - phi)^2) with the
    factor beta = exp(-2 gamma) (as released), or the dot product."""
    if kernel == "dot":
        return theta * phi
    beta = math.exp(-2.0 * gamma)
    return beta * sum((2.0 * gamma) ** p / math.factorial(p) * theta ** p * phi ** p for p in range(order + 1))


def reference_cgnl(w: dict, x: torch.Tensor, *, groups: int, kernel: str, order: int = 3, gamma: float = 1e-4,
                   scale: bool = False, eps: float = 1e-5) -> torch.Tensor:
    """CGNL: in each of G channel groups, every (channel, position) entry i of theta gets
    y_i = sum_j f(theta_i, phi_j) g_j over all K entries j of the group's phi and g (/ sqrt(K) with
    ``scale``); z = GN(W_z y) + x with W_z grouped (G groups) and GN over G channel groups."""
    out = torch.empty_like(x)
    channels = x.shape[1]
    for s in range(x.shape[0]):
        theta, phi, g = (_map(w, name, x[s]) for name in ("t", "p", "g"))
        width = theta.shape[0]
        per_group = width // groups
        y = torch.empty_like(theta)
        for k in range(groups):
            rows = slice(k * per_group, (k + 1) * per_group)
            th, ph, gg = (v[rows].reshape(-1).tolist() for v in (theta, phi, g))
            norm = math.sqrt(len(th)) if scale else 1.0
            values = [sum(cgnl_pairwise(ti, pj, kernel, order, gamma) * gj for pj, gj in zip(ph, gg)) / norm
                      for ti in th]
            y[rows] = torch.tensor(values, dtype=x.dtype).reshape(y[rows].shape)
        # grouped 1x1x1 conv: output channel o reads the inner channels of its own group
        weight = w["z.weight"].reshape(channels, per_group)
        out_per_group = channels // groups
        z = torch.zeros_like(x[s])
        for o in range(channels):
            k = o // out_per_group
            for c in range(per_group):
                z[o] += weight[o, c] * y[k * per_group + c]
        for k in range(groups):
            block = z[k * out_per_group:(k + 1) * out_per_group]
            mean = block.sum() / block.numel()
            var = ((block - mean) ** 2).sum() / block.numel()
            for o in range(k * out_per_group, (k + 1) * out_per_group):
                normed = (z[o] - mean) / math.sqrt(var + eps)
                out[s, o] = x[s, o] + w["gn.weight"][o] * normed + w["gn.bias"][o]
    return out


def reference_glore(w: dict, x: torch.Tensor, *, normalize: bool = False, eps: float = 1e-4) -> torch.Tensor:
    """GloRe eq. 1-3 (as released): V = sum_l (W_s x_l) b_l^T, b_l = W_b x_l (states x nodes);
    H = V + V A^T + a (node-wise conv, bias a); Z = W_g ReLU(H); y_l = Z b_l;
    out_l = x_l + BN(W_e y_l), BN in eval mode."""
    out = torch.empty_like(x)
    grid = _grid(*x.shape[2:])
    a, a_bias, w_g = w["gcn.conv1.weight"][:, :, 0], w["gcn.conv1.bias"], w["gcn.conv2.weight"][:, :, 0]
    for s in range(x.shape[0]):
        states = [affine(w, "conv_state", x[s, :, t, i, j]) for t, i, j in grid]
        projections = [affine(w, "conv_proj", x[s, :, t, i, j]) for t, i, j in grid]
        num_states, num_nodes = states[0].numel(), projections[0].numel()
        v = torch.zeros(num_states, num_nodes, dtype=x.dtype)
        for state, proj in zip(states, projections):
            for m in range(num_states):
                for n in range(num_nodes):
                    v[m, n] += state[m] * proj[n]
        if normalize:
            v = v / len(grid)
        h = torch.empty_like(v)
        for m in range(num_states):
            for n in range(num_nodes):
                h[m, n] = v[m, n] + sum(a[n, k] * v[m, k] for k in range(num_nodes)) + a_bias[n]
        z = w_g @ torch.relu(h)
        for (t, i, j), proj in zip(grid, projections):
            y = sum(z[:, n] * proj[n] for n in range(num_nodes))
            e = w["conv_extend.weight"].reshape(x.shape[1], -1) @ y
            bn = ((e - w["blocker.running_mean"]) / torch.sqrt(w["blocker.running_var"] + eps)
                  * w["blocker.weight"] + w["blocker.bias"])
            out[s, :, t, i, j] = x[s, :, t, i, j] + bn
    return out
