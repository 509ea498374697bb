"""GSM and SA-GSM against float64 references written from the SA-GSM report's sec. 4.1 equations
(the GSM equations and eq. 1-4), plus shift directions, padding, options and errors.

The references loop over samples, frames and positions and read the weights out of the module;
they never call the block's helpers or look at its flags to decide what to compute (the options a
reference implements are passed to it explicitly).
"""

from __future__ import annotations

import math

import pytest
import torch

from videoattn.blocks import create
from videoattn.errors import ConfigError, ShapeError

from ._block_refs import randomize_

CHANNELS, FRAMES, HEIGHT, WIDTH = 8, 4, 3, 3


def video(batch=2, channels=CHANNELS, frames=FRAMES, height=HEIGHT, width=WIDTH, seed=3):
    return torch.randn(batch, channels, frames, height, width, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def reference_gsm(weight, bias, x, bn=None, next_frame_first=False, interleave=False):
    """GSM from the equations. ``weight`` (2, C/2, 3, 3, 3) and ``bias`` (2,) are the two gating
    kernels W_1, W_2; ``bn`` (running mean, var, gamma, beta, eps) normalises the gate's input
    (released); ``next_frame_first`` swaps the shift directions and ``interleave`` applies the
    release's channel interleaving (both released)."""
    batch, channels, frames, height, width = x.shape
    half = channels // 2
    source = x.clone()
    if bn is not None:
        mean, var, gamma, beta, eps = bn
        for c in range(channels):
            source[:, c] = torch.relu((x[:, c] - mean[c]) / math.sqrt(var[c] + eps) * gamma[c] + beta[c])
    out = torch.zeros_like(x)
    for n in range(batch):
        gated = torch.zeros(channels, frames, height, width, dtype=x.dtype)
        for k in range(2):  # X_k, W_k
            channels_k = range(k * half, (k + 1) * half)
            for t in range(frames):
                for i in range(height):
                    for j in range(width):
                        total = bias[k].clone()
                        for dt in range(3):
                            for di in range(3):
                                for dj in range(3):
                                    tt, ii, jj = t + dt - 1, i + di - 1, j + dj - 1
                                    if 0 <= tt < frames and 0 <= ii < height and 0 <= jj < width:
                                        total = total + weight[k, :, dt, di, dj] @ source[n, channels_k, tt, ii, jj]
                        gate = torch.tanh(total)  # Y_k = tanh(W_k * X_k) . X_k
                        gated[channels_k, t, i, j] = gate * x[n, channels_k, t, i, j]
        residual = x[n] - gated  # R_k = X_k - Y_k
        z = residual.clone()
        for t in range(frames):
            previous = gated[:, t - 1] if t > 0 else torch.zeros_like(gated[:, 0])
            following = gated[:, t + 1] if t < frames - 1 else torch.zeros_like(gated[:, 0])
            first, second = (following, previous) if next_frame_first else (previous, following)
            z[:half, t] += first[:half]  # Z_1 = shift_fw(Y_1) + R_1 (paper: frame t receives t-1)
            z[half:, t] += second[half:]  # Z_2 = shift_bw(Y_2) + R_2 (paper: frame t receives t+1)
        if interleave:
            quarter = channels // 4
            mixed = torch.empty_like(z)
            for offset in (0, half):
                for i in range(2):
                    for j in range(quarter):
                        mixed[offset + 2 * j + i] = z[offset + i * quarter + j]
            z = mixed
        out[n] = z
    return out


def reference_sagan(weights, x):
    """Eq. 1-4 within each frame: s_ij = f(x_i)^T g(x_j), beta_ji = softmax over i,
    o_j = v(sum_i beta_ji h(x_i)) (v absent: identity), y_j = gamma o_j + x_j."""
    batch, channels, frames, height, width = x.shape
    out = torch.empty_like(x)

    def apply(name, vector):
        w, b = weights[name]
        return w @ vector + b

    for n in range(batch):
        for t in range(frames):
            pos = [(i, j) for i in range(height) for j in range(width)]
            xs = [x[n, :, t, i, j] for i, j in pos]
            f = [apply("f", v) for v in xs]
            g = [apply("g", v) for v in xs]
            h = [apply("h", v) for v in xs]
            for jdx, (i, j) in enumerate(pos):
                scores = torch.stack([f[idx] @ g[jdx] for idx in range(len(pos))])
                beta = torch.exp(scores) / torch.exp(scores).sum()
                o = sum(beta[idx] * h[idx] for idx in range(len(pos)))
                if "v" in weights:
                    o = apply("v", o)
                out[n, :, t, i, j] = weights["gamma"] * o + xs[jdx]
    return out


def sagan_weights(attention):
    weights = {name: (getattr(attention, name).weight[:, :, 0, 0, 0], getattr(attention, name).bias)
               for name in ("f", "g", "h", "v") if getattr(attention, name, None) is not None}
    weights["gamma"] = attention.gamma[0]
    return weights


@pytest.mark.parametrize("gate_impl", ["matmul", "conv3d"])
def test_gsm_matches_equations(gate_impl):
    block = randomize_(create("gsm", CHANNELS, gate_impl=gate_impl).double())
    x = video()
    expected = reference_gsm(block.gate.weight, block.gate.bias, x)
    torch.testing.assert_close(block(x), expected)


def test_gsm_released_options_match_release_semantics():
    block = randomize_(create("gsm", CHANNELS, gate_norm=True, released_order=True).double())
    x = video(seed=5)
    bn = block.gate_bn
    expected = reference_gsm(block.gate.weight, block.gate.bias, x,
                             bn=(bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps),
                             next_frame_first=True, interleave=True)
    torch.testing.assert_close(block(x), expected)
    assert not block.identity_at_init


def test_released_options_switched_in_place_give_the_released_function():
    """``set_released_options`` (what the gsm / sa_gsm checkpoint layouts call) turns a block built with the
    equations' options into the released one: same reference as a block built that way, and back."""
    block = create("sa_gsm", CHANNELS, reduction=2).double()
    changed = block.set_released_options(gate_norm=True, released_order=True, value="released")
    assert changed == ["gate_norm: False -> True", "released_order: False -> True", "value: 'paper' -> 'released'"]
    assert block.set_released_options(gate_norm=True, released_order=True, value="released") == []
    randomize_(block)
    assert block.attention.v is None and block.attention.h.weight.shape == (CHANNELS, CHANNELS, 1, 1, 1)
    assert block.attention.h.weight.dtype == torch.float64
    x = video(seed=6)
    bn = block.gsm.gate_bn
    shifted = reference_gsm(block.gsm.gate.weight, block.gsm.gate.bias, x,
                            bn=(bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps),
                            next_frame_first=True, interleave=True)
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_sagan(sagan_weights(block.attention), shifted))
    gsm = block.gsm
    gsm.set_released_options(gate_norm=False, released_order=False)
    assert gsm.gate_bn is None and gsm.identity_at_init
    with torch.no_grad():
        torch.testing.assert_close(gsm(x), reference_gsm(gsm.gate.weight, gsm.gate.bias, x))
    with pytest.raises(ConfigError, match="released_order needs channels divisible by 4"):
        create("gsm", 6).set_released_options(gate_norm=True, released_order=True)


def test_gsm_open_gate_is_a_pure_shift_with_zeros_at_both_ends():
    """tanh(40) == 1 in float64: Y = X, R = 0, so Z_1 is X_1 moved one frame forward and Z_2 X_2
    one frame backward, with zeros entering at the first / last frame."""
    block = create("gsm", CHANNELS).double()
    with torch.no_grad():
        block.gate.bias.fill_(40.0)
    x = video()
    out = block(x)
    half = CHANNELS // 2
    torch.testing.assert_close(out[:, :half, 1:], x[:, :half, :-1], rtol=0, atol=0)
    assert (out[:, :half, 0] == 0).all()
    torch.testing.assert_close(out[:, half:, :-1], x[:, half:, 1:], rtol=0, atol=0)
    assert (out[:, half:, -1] == 0).all()


def test_gsm_closed_gate_is_identity_and_learns():
    block = create("gsm", CHANNELS).double()
    x = video()
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)
    block(x).square().sum().backward()
    assert block.gate.weight.grad.abs().sum() > 0 and block.gate.bias.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["gsm", "sa_gsm"])
def test_frame_order_matters(name):
    block = randomize_(create(name, CHANNELS).double())
    x = video()
    permutation = torch.tensor([2, 0, 3, 1])
    permuted_then_block = block(x[:, :, permutation])
    block_then_permuted = block(x)[:, :, permutation]
    assert (permuted_then_block - block_then_permuted).abs().max() > 1e-3


@pytest.mark.parametrize("value", ["paper", "released"])
def test_sa_gsm_matches_equations(value):
    block = randomize_(create("sa_gsm", 16, value=value, reduction=4).double())
    x = video(channels=16, frames=2)
    shifted = reference_gsm(block.gsm.gate.weight, block.gsm.gate.bias, x)
    expected = reference_sagan(sagan_weights(block.attention), shifted)
    torch.testing.assert_close(block(x), expected)
    assert (block.attention.v is None) == (value == "released")


def test_sa_gsm_gamma_zero_is_identity_and_count():
    block = create("sa_gsm", 64, value="released")
    x = torch.randn(1, 64, 3, 4, 4)
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)
    # released form: f, g C -> C/8, h C -> C (biases), gamma, plus the gate (27 C + 2)
    c = 64
    expected = 2 * (c * c // 8 + c // 8) + c * c + c + 1 + 27 * c + 2
    assert sum(p.numel() for p in block.parameters()) == expected
    paper = create("sa_gsm", 64)
    assert sum(p.numel() for p in paper.parameters()) == 3 * (c * c // 8 + c // 8) + c * c // 8 + c + 1 + 27 * c + 2


def test_frame_batched_view_input():
    """Inside a backbone the block gets a transposed view of (N*T, C, H, W) memory."""
    block = randomize_(create("sa_gsm", CHANNELS, reduction=2, gate_norm=True).double())
    frames = torch.randn(2 * FRAMES, CHANNELS, HEIGHT, WIDTH, dtype=torch.float64)
    view = frames.view(2, FRAMES, CHANNELS, HEIGHT, WIDTH).transpose(1, 2)
    torch.testing.assert_close(block(view), block(view.contiguous()))


def test_single_frame_and_errors():
    block = create("gsm", CHANNELS)
    x = torch.randn(1, CHANNELS, 1, 3, 3)
    assert block(x).shape == x.shape
    with pytest.raises(ConfigError, match="divisible by 2"):
        create("gsm", 7)
    with pytest.raises(ConfigError, match="divisible by 4"):
        create("gsm", 6, released_order=True)
    with pytest.raises(ConfigError, match="gate_impl"):
        create("gsm", 8, gate_impl="fft")
    with pytest.raises(ConfigError, match="value"):
        create("sa_gsm", 8, value="other")
    with pytest.raises(ShapeError, match="C=8"):
        block(torch.randn(1, 6, 2, 3, 3))


@pytest.mark.parametrize("released_order", [False, True])
def test_written_out_backwards_pass_gradcheck(released_order):
    """The tap sum and the gated shift have hand-written backwards: check them numerically
    (float64; the input's gradient passes through both, the gate bias and BN weight through the shift).
    The gate weight's gradient is the matmul's, from the same tap-sum gradient as the input's."""
    block = randomize_(create("gsm", 4, gate_norm=True, released_order=released_order).double()).train()
    x = torch.randn(1, 4, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    names = ["gate.bias", "gate_bn.weight"]

    def fn(inputs, *weights):
        return torch.func.functional_call(block, dict(zip(names, weights)), (inputs,))

    weights = tuple(block.get_parameter(n).detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(fn, (x, *weights))
