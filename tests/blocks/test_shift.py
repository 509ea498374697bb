import pytest
import torch

from videoattn.blocks import create
from videoattn.errors import ShapeError
from videoattn.models import build_recognizer


def shift_reference(x, n_div):
    """Loop over frames and channels: TSM's shift written element by element."""
    n, c, t, h, w = x.shape
    fold = c // n_div
    out = torch.zeros_like(x)
    for frame in range(t):
        for channel in range(c):
            if channel < fold:
                source = frame + 1  # from the future
            elif channel < 2 * fold:
                source = frame - 1  # from the past
            else:
                source = frame
            if 0 <= source < t:
                out[:, channel, frame] = x[:, channel, source]
    return out


@pytest.mark.parametrize("n_div", [4, 8])
def test_shift_matches_loop_reference(n_div):
    x = torch.randn(2, 16, 5, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(create("tsm", 16, n_div=n_div)(x), shift_reference(x, n_div))


def test_shift_on_a_permuted_view_equals_contiguous():
    frames = torch.randn(2 * 4, 16, 3, 3)
    view = frames.view(2, 4, 16, 3, 3).transpose(1, 2)
    torch.testing.assert_close(create("tsm", 16)(view), shift_reference(view.contiguous(), 8))


def test_tsm_model_sees_frame_order_and_r2d_does_not():
    clip = torch.randn(2, 3, 8, 32, 32)
    order = torch.randperm(8)
    for variant, invariant in (("r2d", True), ("tsm", False)):
        model = build_recognizer(depth=18, variant=variant, num_classes=5, base_channels=16, dropout=0.0).eval()
        with torch.no_grad():
            same = torch.allclose(model(clip), model(clip[:, :, order]), atol=1e-5)
        assert same == invariant, variant


def test_tsm_block_errors():
    with pytest.raises(ShapeError, match="channels \\(4\\) must be >= n_div"):
        create("tsm", 4)
    with pytest.raises(ShapeError, match=r"expected \(N, 16, T, H, W\)"):
        create("tsm", 16)(torch.randn(2, 8, 4, 3, 3))


@pytest.mark.parametrize("frames", [1, 2, 5])
def test_shift_gradients_match_the_loop_reference(frames):
    """The hand-written backward (the opposite shift) against autograd through the loop reference,
    and gradcheck/gradgradcheck in float64; a transposed (non-contiguous) input as the backbone gives."""
    from videoattn.blocks.shift import temporal_shift

    base = torch.randn(2, frames, 16, 3, 3, dtype=torch.float64)
    x = base.transpose(1, 2).requires_grad_(True)
    weights = torch.randn(2, 16, frames, 3, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad((temporal_shift(x, 4) * weights).sum(), x)
    (expected,) = torch.autograd.grad((shift_reference(x, 4) * weights).sum(), x)
    torch.testing.assert_close(grad, expected, rtol=0, atol=0)
    torch.testing.assert_close(temporal_shift(x, 4), shift_reference(x, 4), rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda v: temporal_shift(v, 4), (x,))
    assert torch.autograd.gradgradcheck(lambda v: temporal_shift(v, 4), (x,))
