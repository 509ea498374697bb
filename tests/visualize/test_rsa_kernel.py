"""``visualize rsa``: the kernel RSA predicts for a query, checked against the block's own output.

With the basic context (``context_type="V"``) RSA's output at ``p`` is, per head ``h`` and value
channel ``v``, ``y[v * N_h + h] = sum_m w_h[m] v_v(p + m)``: the drawn kernel must reproduce the
block's output when applied by hand (float64, neighbourhood zero-padded, values L2-normalised as
the paper's release does)."""

import pytest
import torch

from videoattn.blocks import create
from videoattn.visualize.rsa import rsa_kernel


def _values(block, x):
    """The L2-normalised value projection, ``(d_v, T, H, W)``, float64, written out."""
    weight = block.projection.weight.double().flatten(1)[-block.dv:]
    v = torch.einsum("oc,cthw->othw", weight, x[0].double())
    return v / torch.sqrt((v * v).sum(0, keepdim=True) + 1e-6)


@pytest.mark.parametrize("kernel_type", ["V", "R", "VplusR"])
@pytest.mark.parametrize("position", [(1, 2, 3), (0, 0, 0), (3, 4, 1)])
def test_kernel_applied_to_the_values_gives_the_block_output(kernel_type, position):
    torch.manual_seed(0)
    block = create("rsa", 8, num_heads=2, kernel_size=(3, 3, 3), kernel_type=kernel_type,
                   context_type="V").double().eval()
    x = torch.randn(1, 8, 4, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        out = block(x)
    kernel = torch.from_numpy(rsa_kernel(block, x, position))  # (N_h, 3, 3, 3)
    assert kernel.shape == (2, 3, 3, 3)
    v = torch.nn.functional.pad(_values(block, x), (1, 1, 1, 1, 1, 1))
    t, y, w = position
    window = v[:, t:t + 3, y:y + 3, w:w + 3]  # (d_v, 3, 3, 3) around p
    expected = torch.einsum("hm,vm->vh", kernel.flatten(1), window.flatten(1)).reshape(-1)  # channel v*N_h + h
    torch.testing.assert_close(out[0, :, t, y, w], expected, rtol=1e-10, atol=1e-12)


def test_visualize_rsa_writes_the_figure_and_refuses_other_models(tmp_path):
    from videoattn import create_model
    from videoattn.errors import ConfigError
    from videoattn.visualize.loading import Clip
    from videoattn.visualize.rsa import rsa_figure

    torch.manual_seed(0)
    model = create_model("r2d18_rsa", num_classes=3, num_frames=4, base_channels=8).eval()
    frames = torch.rand(4, 32, 32, 3).numpy()
    clip = Clip(video=torch.randn(1, 3, 4, 32, 32), frames=frames, path="clip", classes=["a", "b", "c"])
    (path,) = rsa_figure(model, clip, tmp_path, [(2, 16, 16)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="no RSA layer"):
        rsa_figure(create_model("r2d18", num_classes=3, num_frames=4, base_channels=8), clip, tmp_path, [(0, 0, 0)])
