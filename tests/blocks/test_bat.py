"""BAT blocks against float64 references written from the BAT paper's equations (eq. 1-8, Fig. 3).

The reference below loops over samples, frames, groups and positions; it receives the block's
weights (as plain tensors) and the configuration the test chose, never the module itself.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.blocks._block_refs import randomize_
from videoattn.blocks import create
from videoattn.blocks.bat import collect_attention
from videoattn.errors import ConfigError, ShapeError

# --- the reference ------------------------------------------------------------------------------------------


def _weights(block) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in block.state_dict().items()}


def _cbr(w, prefix, vec):
    """1x1 conv + eval BN + ReLU on one position's vector."""
    out = w[f"{prefix}.0.weight"][:, :, 0, 0] @ vec + w[f"{prefix}.0.bias"]
    bn = f"{prefix}.1"
    out = (out - w[f"{bn}.running_mean"]) / torch.sqrt(w[f"{bn}.running_var"] + 1e-5)
    out = out * w[f"{bn}.weight"] + w[f"{bn}.bias"]
    return torch.clamp(out, min=0)


def _per_position(w, prefix, fmap):
    """Apply ``_cbr`` at every (h, w) of ``fmap`` (C, H, W)."""
    c, h, wd = fmap.shape
    out = None
    for i in range(h):
        for j in range(wd):
            v = _cbr(w, prefix, fmap[:, i, j])
            if out is None:
                out = fmap.new_zeros(v.shape[0], h, wd)
            out[:, i, j] = v
    return out


def _norm_rows(m, how):
    """Each row of ``m`` made non-negative and summing to 1 (eq. 2 and the released variants)."""
    out = torch.empty_like(m)
    for i in range(m.shape[0]):
        row = m[i]
        if how == "l1":
            pos = torch.clamp(row, min=0)
            out[i] = pos / (pos.sum() + 1e-6)
        elif how == "sigmoid":
            pos = 1 / (1 + torch.exp(-row))
            out[i] = pos / pos.sum()
        else:
            e = torch.exp(row - row.max())
            out[i] = e / e.sum()
    return out


def _expand(m, r):
    """Fig. 3: entry (i, j) of the s x s matrix goes to the diagonal of block (i, j) of the (s r) x (s r) one."""
    s = m.shape[0]
    full = m.new_zeros(s * r, s * r)
    for a in range(s * r):
        for b in range(s * r):
            if a % r == b % r:
                full[a, b] = m[a // r, b // r]
    return full


def _predict(w, conv, pooled, size, groups):
    """A conv reading all ``size`` pooled steps: output o = (g, i, j) of ``groups * size * size``."""
    weight, bias = w[f"{conv}.weight"], w[f"{conv}.bias"]
    mats = pooled.new_zeros(groups, size, size)
    for g in range(groups):
        for i in range(size):
            for j in range(size):
                o = (g * size + i) * size + j
                mats[g, i, j] = bias[o] + (weight[o] * pooled).sum()
    return mats


def _bilinear(fmap, height, width):
    """Bilinear upsampling, half-pixel centres (align_corners=False), written out."""
    c, sh, sw = fmap.shape
    out = fmap.new_zeros(c, height, width)

    def taps(o, n_in, n_out):
        src = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = int(math.floor(src))
        i1 = min(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    for i in range(height):
        a0, a1, la = taps(i, sh, height)
        for j in range(width):
            b0, b1, lb = taps(j, sw, width)
            out[:, i, j] = ((1 - la) * (1 - lb) * fmap[:, a0, b0] + (1 - la) * lb * fmap[:, a0, b1]
                            + la * (1 - lb) * fmap[:, a1, b0] + la * lb * fmap[:, a1, b1])
    return out


def bat_reference(x, w, *, s, k, tk=0, ts=1, how="l1", matrix="block_based"):
    """BAT / 3D BAT from the paper, one sample and frame at a time. Returns (output, eq. 8 maps)."""
    n_batch, channels, frames, height, width = x.shape
    out = torch.empty_like(x)
    maps = x.new_zeros(n_batch, frames, max(k, 1), height, width)
    for n in range(n_batch):
        reduced, feats, transformed = [], [], []
        for t in range(frames):
            xr = _per_position(w, "reduce", x[n, :, t])  # X: (C/2, H, W)
            reduced.append(xr)
            feats.append(_per_position(w, "squeeze", xr) if (k or tk) else None)
        inner = reduced[0].shape[0]
        for t in range(frames):
            xr, f = reduced[t], feats[t]
            if not k:
                transformed.append(xr)
                continue
            rh, rw = height // s, width // s
            rp = f.new_zeros(f.shape[0], s)
            cp = f.new_zeros(f.shape[0], s)
            for i in range(s):  # eq. 5, 6: max over a block of rows (all columns) / of columns (all rows)
                rp[:, i] = f[:, i * rh:(i + 1) * rh, :].amax(dim=(1, 2))
                cp[:, i] = f[:, :, i * rw:(i + 1) * rw].amax(dim=(1, 2))
            p = _predict(w, "row_conv", rp, s, k)
            q = _predict(w, "col_conv", cp, s, k)
            y = torch.empty(inner, s, s, dtype=x.dtype) if matrix == "downsampling" else torch.empty_like(xr)
            group = inner // k
            for g in range(k):
                pg = _norm_rows(p[g], how)  # rows of P sum to 1
                qg = _norm_rows(q[g].T, how).T  # columns of Q sum to 1
                if matrix == "downsampling":
                    pf, qf = pg, qg
                else:
                    pf, qf = _expand(pg, rh), _expand(qg, rw)
                    # eq. 8: W = P^T A Q^T, A all ones
                    maps[n, t, g] = pf.T @ torch.ones(height, width, dtype=x.dtype) @ qf.T
                for c in range(g * group, (g + 1) * group):
                    xc = xr[c]
                    if matrix == "downsampling":
                        xc = torch.stack([torch.stack([xr[c, i * rh:(i + 1) * rh, j * rw:(j + 1) * rw].mean()
                                                       for j in range(s)]) for i in range(s)])
                    y[c] = pf @ xc @ qf  # eq. 1
            transformed.append(y)
        if tk:
            m = frames // ts
            pooled = x.new_zeros(feats[0].shape[0], ts)
            for u in range(ts):
                pooled[:, u] = torch.stack([feats[t].mean(dim=(1, 2)) for t in range(u * m, (u + 1) * m)]).mean(0)
            tmat = _predict(w, "time_conv", pooled, ts, tk)
            group = inner // tk
            mixed = [torch.zeros_like(transformed[0]) for _ in range(frames)]
            for g in range(tk):
                tf = _expand(_norm_rows(tmat[g], how), m)
                for c in range(g * group, (g + 1) * group):
                    for t in range(frames):  # eq. 7: Z_c[t] = sum_t' T[t, t'] Y_c[t']
                        for t2 in range(frames):
                            mixed[t][c] += tf[t, t2] * transformed[t2][c]
            transformed = mixed
        for t in range(frames):
            y = _per_position(w, "mix", transformed[t])
            if y.shape[-2:] != (height, width):
                y = _bilinear(y, height, width)
            out[n, :, t] = x[n, :, t] + _per_position(w, "expand", y)
    return out, maps


def _build(name, seed=0, **options):
    frames = options.pop("frames", 4)
    kwargs = {"num_frames": frames} if name == "bat3d" else {}
    block = create(name, 16, **kwargs, **options).double()
    return randomize_(block, seed=seed)


def _clip(frames=4, size=6, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, 16, frames, size, size, generator=gen, dtype=torch.float64)


# --- equations ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["l1", "softmax", "sigmoid"])
def test_bat_block_based_matches_reference(how):
    block = _build("bat", s=3, k=2, normalisation=how)
    x = _clip()
    block.keep_attention = True
    with torch.no_grad():
        got = block(x)
    want, maps = bat_reference(x, _weights(block), s=3, k=2, how=how)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(block.last_attention, maps[:, :, :2], rtol=1e-9, atol=1e-9)


def test_bat_full_resolution_and_rectangular_expansion():
    block = _build("bat", s=6, k=4, matrix="full_resolution")
    x = _clip()
    with torch.no_grad():
        got = block(x)
    torch.testing.assert_close(got, bat_reference(x, _weights(block), s=6, k=4)[0], rtol=1e-9, atol=1e-9)
    with pytest.raises(ShapeError, match="full_resolution"):
        block(_clip(size=3))


def test_bat_downsampling_matches_reference():
    block = _build("bat", s=2, k=2, matrix="downsampling")
    x = _clip()
    with torch.no_grad():
        got = block(x)
    want, _ = bat_reference(x, _weights(block), s=2, k=2, matrix="downsampling")
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_bat_k0_is_identity_transform_without_predictor():
    block = _build("bat", s=3, k=0)
    assert not any(n.startswith(("squeeze", "row_conv", "col_conv")) for n in block.state_dict())
    x = _clip()
    with torch.no_grad():
        got = block(x)
    torch.testing.assert_close(got, bat_reference(x, _weights(block), s=3, k=0)[0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("frames", "ts"), [(4, 4), (4, 2)])
def test_bat3d_matches_reference(frames, ts):
    block = _build("bat3d", s=3, k=2, tk=2, ts=ts, frames=frames, normalisation="softmax")
    x = _clip(frames=frames)
    with torch.no_grad():
        got = block(x)
    want, _ = bat_reference(x, _weights(block), s=3, k=2, tk=2, ts=ts, how="softmax")
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_frame_order_2d_blind_3d_not():
    x = _clip()
    perm = torch.tensor([2, 0, 3, 1])
    bat2d = _build("bat", s=3, k=2)
    bat3d = _build("bat3d", s=3, k=2, tk=2)
    with torch.no_grad():
        torch.testing.assert_close(bat2d(x[:, :, perm]), bat2d(x)[:, :, perm])
        assert not torch.allclose(bat3d(x[:, :, perm]), bat3d(x)[:, :, perm], atol=1e-6)


def test_normalised_matrices_sum_to_one():
    block = _build("bat", s=3, k=2, normalisation="l1")
    feats = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    p, q = block.spatial_matrices(feats)
    assert (p >= 0).all() and (q >= 0).all()
    for sums in (p.sum(-1), q.sum(-2)):  # rows of P, columns of Q; an all-negative line stays 0
        assert (sums <= 1 + 1e-12).all()  # eps in the denominator: lines of tiny total weight sum to a bit less
        assert ((sums - 1).abs() < 1e-4).float().mean() > 0.5


def test_attention_recording_leaves_output_unchanged():
    block = _build("bat", s=3, k=2)
    x = _clip()
    with torch.no_grad():
        plain = block(x)
    maps = collect_attention(block, x)
    assert set(maps) == {""} and maps[""].shape == (2, 4, 2, 6, 6)
    assert not block.keep_attention
    with torch.no_grad():
        torch.testing.assert_close(block(x), plain, rtol=0, atol=0)


def test_release_init_and_zero_init():
    block = create("bat", 16, s=3, k=2)
    assert torch.all(block.expand[1].weight == 1)
    zero = create("bat", 16, s=3, k=2, zero_init=True).eval()
    x = _clip().float()
    torch.testing.assert_close(zero(x), x)


def test_bad_options_and_sizes():
    with pytest.raises(ConfigError, match="k"):
        create("bat", 16, k=3)
    with pytest.raises(ConfigError, match="normalisation"):
        create("bat", 16, normalisation="l2")
    with pytest.raises(ShapeError, match="divide"):
        create("bat", 16, s=4, k=2)(_clip().float())
    with pytest.raises(ShapeError, match="ts=4"):
        create("bat3d", 16, num_frames=4, s=3, k=2, tk=2)(_clip(frames=6).float())


def test_block_expand_has_no_concatenation():
    """The expansion is one broadcast product (the release's per-call torch.cat took most of its time)."""
    from videoattn.blocks.bat import block_expand

    m = torch.arange(4.0).view(1, 2, 2)
    want = torch.tensor([[0, 0, 1, 0], [0, 0, 0, 1], [2, 0, 3, 0], [0, 2, 0, 3]], dtype=torch.float32)
    torch.testing.assert_close(block_expand(m, 2)[0], want)
    torch.testing.assert_close(block_expand(m, 2)[0], torch.kron(m[0], torch.eye(2)))


@pytest.mark.parametrize("layout", ["channels_last_3d", "channel_slice_of_channels_last"])
def test_bat3d_temporal_only_takes_channels_last_input(layout):
    """Issue 31.12: ``k=0, tk>0`` reshapes the reduced map itself, which is channels-last for a
    channels-last input (it used to fail with "view size is not compatible"); same values as the
    reference."""
    block = _build("bat3d", s=3, k=0, tk=2, ts=2, normalisation="softmax")
    x = _clip()
    if layout == "channels_last_3d":
        shaped = x.contiguous(memory_format=torch.channels_last_3d)
    else:
        wide = torch.cat([x, x[:, :3]], dim=1).contiguous(memory_format=torch.channels_last_3d)
        shaped = wide[:, :16]
    with torch.no_grad():
        got = block(shaped)
    want, _ = bat_reference(x, _weights(block), s=3, k=0, tk=2, ts=2, how="softmax")
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
